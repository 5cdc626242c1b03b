// A small HTTP server for the huptime program tests: the JDK's own com.sun.net.httpserver,
// run from source (`java Server.java PORT VERSION_FILE`, no build step).
//
// Listens on 127.0.0.1:PORT and answers every request with `version=<v> pid=<pid>\n`, where <v>
// is the content of VERSION_FILE read once at start-up: a restart that reaches the new version is
// one that started the JVM again.

import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Executors;

public class Server {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java Server.java PORT VERSION_FILE");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        String version = Files.readString(Path.of(args[1])).trim();
        byte[] body = ("version=" + version + " pid=" + ProcessHandle.current().pid() + "\n")
                .getBytes(StandardCharsets.UTF_8);

        HttpServer server = HttpServer.create(
                new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 128);
        server.createContext("/", exchange -> {
            exchange.getRequestBody().readAllBytes();
            exchange.getResponseHeaders().set("Content-Type", "text/plain");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
    }
}
