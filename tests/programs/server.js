// A small HTTP server for the huptime program tests: node's own `http` module, unmodified.
//
//     node server.js PORT VERSION_FILE
//
// Listens on 127.0.0.1:PORT and answers every request with `version=<v> pid=<pid>\n`, where <v> is
// the content of VERSION_FILE read once at start-up: a restart that reaches the new version is one
// that started the program again.
'use strict';

const fs = require('fs');
const http = require('http');

const [port, versionFile] = process.argv.slice(2);
if (!port || !versionFile) {
  console.error('usage: node server.js PORT VERSION_FILE');
  process.exit(2);
}
const version = fs.readFileSync(versionFile, 'utf8').trim();
const body = `version=${version} pid=${process.pid}\n`;

const server = http.createServer((request, response) => {
  response.writeHead(200, {
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  response.end(body);
});
server.listen(Number(port), '127.0.0.1');
