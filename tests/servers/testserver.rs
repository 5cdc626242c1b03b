//! `hup-testserver`: a single-threaded, blocking `std::net` server speaking the test protocol
//! (see `servers/common.py`): `GET` gets `version=<v> pid=<pid>`, `HOLD <ms>` gets the same after
//! `ms` milliseconds, padded with a 65536-byte body.
//!
//! Its version is a trailer appended to the executable file itself: if the file ends with the
//! line `HUPVERSION=<v>`, the version is `<v>`, else `builtin`. Bytes appended to an ELF file do
//! not change how it runs, so a test makes two differently answering binaries without compiling
//! anything: copy the built binary and append a trailer (the harness's
//! `write_versioned_testserver`). Replacing the file on disk and restarting then shows whether
//! the restart ran the new file. The trailer is read once at start-up through `/proc/self/exe`,
//! which keeps naming the running inode even after the path is replaced.
//!
//! Usage: `hup-testserver --port N [--host H] [--pid-file PATH]`

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

const TRAILER_KEY: &str = "HUPVERSION=";
const DEFAULT_VERSION: &str = "builtin";
const HOLD_BODY_LEN: usize = 65536;
const MAX_REQUEST_LEN: u64 = 64;
/// How long to wait for a client's request line, so a silent client cannot wedge the server.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error that signals a shortage (e.g. out of descriptors).
const ACCEPT_BACK_OFF: Duration = Duration::from_millis(50);

struct Args {
    host: String,
    port: u16,
    pid_file: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut host = "127.0.0.1".to_string();
    let mut port = None;
    let mut pid_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => host = value()?,
            "--port" => {
                let text = value()?;
                port = Some(text.parse().map_err(|_| format!("bad port {text:?}"))?);
            }
            "--pid-file" => pid_file = Some(value()?),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    Ok(Args {
        host,
        port,
        pid_file,
    })
}

/// The version from the trailer of our own executable file; see the module docs.
fn read_version() -> io::Result<String> {
    let mut exe = File::open("/proc/self/exe")?;
    let len = exe.metadata()?.len();
    // The trailer is one short line: the file's last few hundred bytes hold all of it.
    exe.seek(SeekFrom::Start(len.saturating_sub(256)))?;
    let mut tail = Vec::new();
    exe.read_to_end(&mut tail)?;
    Ok(version_from_tail(&tail)
        .unwrap_or(DEFAULT_VERSION)
        .to_string())
}

fn version_from_tail(tail: &[u8]) -> Option<&str> {
    let body = tail.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|&b| b == b'\n')? + 1;
    let line = std::str::from_utf8(&body[start..]).ok()?;
    line.strip_prefix(TRAILER_KEY).filter(|v| !v.is_empty())
}

fn write_pid_file(path: &str) -> io::Result<()> {
    // Written aside and renamed, so a reader never sees a half-written pid.
    let tmp = format!("{path}.{}.tmp", std::process::id());
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(tmp, path)
}

fn reply(version: &str, hold: bool) -> Vec<u8> {
    let mut out = format!("version={version} pid={}", std::process::id()).into_bytes();
    if hold {
        out.extend_from_slice(b" body=");
        out.resize(out.len() + HOLD_BODY_LEN, b'x');
    }
    out.push(b'\n');
    out
}

/// Serves one connection; errors mean the client left or misbehaved and end only this exchange.
fn serve(stream: TcpStream, version: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST_LEN)).read_line(&mut line)?;
    if !line.ends_with('\n') {
        return Ok(()); // the client left without a full request
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let hold = match words.as_slice() {
        ["GET"] => false,
        ["HOLD", ms] => {
            let ms: u64 = ms
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad HOLD delay"))?;
            thread::sleep(Duration::from_millis(ms));
            true
        }
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request")),
    };
    (&stream).write_all(&reply(version, hold))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("hup-testserver: {message}");
            eprintln!("usage: hup-testserver --port N [--host H] [--pid-file PATH]");
            return ExitCode::from(2);
        }
    };
    let version = match read_version() {
        Ok(version) => version,
        Err(e) => {
            eprintln!("hup-testserver: cannot read /proc/self/exe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind((args.host.as_str(), args.port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("hup-testserver: bind {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.pid_file {
        if let Err(e) = write_pid_file(path) {
            eprintln!("hup-testserver: pid file {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => match serve(stream, &version) {
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    eprintln!("hup-testserver: {e}")
                }
                _ => {} // done, or the client went away: nothing to answer
            },
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::ConnectionAborted => {}
                _ => {
                    eprintln!("hup-testserver: accept: {e}");
                    thread::sleep(ACCEPT_BACK_OFF);
                }
            },
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::version_from_tail;

    #[test]
    fn trailer_is_the_last_line() {
        assert_eq!(version_from_tail(b"\x7fELF...\nHUPVERSION=B\n"), Some("B"));
        assert_eq!(
            version_from_tail(b"...\nHUPVERSION=A\n...\nHUPVERSION=B\n"),
            Some("B")
        );
    }

    #[test]
    fn no_trailer_means_none() {
        assert_eq!(version_from_tail(b"\x7fELF\0\0binary"), None);
        assert_eq!(version_from_tail(b"\nHUPVERSION=A\nmore"), None);
        assert_eq!(version_from_tail(b"\nHUPVERSION=\n"), None);
    }
}
