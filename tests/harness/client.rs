//! The client side of the test protocol (see `servers/common.py`): one request per connection,
//! `GET` or `HOLD <ms>`, and a one-line reply `version=<v> pid=<pid>[ <key>=<value>...][ body=<x...>]`.
//! Fields between the pid and the body are optional extras some servers add (e.g. `listener=1`
//! in `blocking.py`'s multi-listener modes); they are kept in [`Reply::extra`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

/// Length of the body of a `HOLD` reply, so that a reply cut short is told from a whole one.
const HOLD_BODY_LEN: usize = 65536;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reply may take beyond the delay the request asked for.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply longer than this is garbage; stop reading.
const MAX_REPLY_LEN: usize = HOLD_BODY_LEN + 1024;
/// How much of a reply cut short by a timeout its error shows.
const PREVIEW_LEN: usize = 200;
const VERSION_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl From<u16> for Endpoint {
    /// A port on 127.0.0.1, where the test servers listen by default.
    fn from(port: u16) -> Endpoint {
        Endpoint::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(endpoint: &Endpoint) -> Endpoint {
        endpoint.clone()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(address) => write!(f, "tcp {address}"),
            Endpoint::Unix(path) => write!(f, "unix {}", path.display()),
        }
    }
}

/// A complete, well-formed reply.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reply {
    pub version: String,
    pub pid: u32,
    /// The optional `key=value` fields after the pid, in order (the `HOLD` body is not one).
    pub extra: Vec<(String, String)>,
}

impl Reply {
    /// The value of the extra field `key`, if the reply has one.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }
}

/// What went wrong with a request, in the categories the restart tests care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// Nobody listened: the connection was refused.
    Refused,
    /// The connection was reset or aborted.
    Reset,
    /// Connecting or the reply took too long.
    Timeout,
    /// The server closed the connection without a byte of reply.
    Empty,
    /// The reply stopped before its end (no final newline, or a `HOLD` body too short).
    Short,
    /// The reply is not what the protocol says.
    Malformed,
    /// Any other I/O error.
    Other,
}

#[derive(Clone, Debug)]
pub struct ClientError {
    pub kind: FailureKind,
    pub detail: String,
}

impl ClientError {
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>) -> ClientError {
        ClientError {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(stage: &str, e: io::Error) -> ClientError {
        let kind = match e.kind() {
            // A Unix socket path that does not exist has nobody listening either.
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => FailureKind::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureKind::Reset,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FailureKind::Timeout,
            _ => FailureKind::Other,
        };
        ClientError::new(kind, format!("{stage}: {e}"))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for ClientError {}

/// Sends `GET` and returns the reply.
pub fn get(endpoint: impl Into<Endpoint>) -> Result<Reply, ClientError> {
    let data = exchange(&endpoint.into(), b"GET\n", REPLY_TIMEOUT)?;
    parse_reply(&data, false)
}

/// Sends `HOLD <ms>` and returns the reply, whose padding body must be complete.
pub fn hold(endpoint: impl Into<Endpoint>, ms: u64) -> Result<Reply, ClientError> {
    let request = format!("HOLD {ms}\n");
    let data = exchange(
        &endpoint.into(),
        request.as_bytes(),
        REPLY_TIMEOUT + Duration::from_millis(ms),
    )?;
    parse_reply(&data, true)
}

/// Polls with `GET` until a reply carries `version`, and returns that reply. Refusals and other
/// failures on the way are tolerated (this waits for a start, not for a clean restart).
///
/// # Panics
/// When no such reply came within `timeout`, with the last reply or error seen.
pub fn wait_for_version(endpoint: impl Into<Endpoint>, version: &str, timeout: Duration) -> Reply {
    let endpoint = endpoint.into();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match get(&endpoint) {
            Ok(reply) if reply.version == version => return reply,
            Ok(reply) => format!("{reply:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            panic!(
                "{endpoint}: no reply with version {version:?} within {timeout:?}; last: {last}"
            );
        }
        thread::sleep(VERSION_POLL_INTERVAL);
    }
}

/// A connected stream whose read timeout can be moved as the deadline nears.
trait Connection: Read + Write {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Connection for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl Connection for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

/// Connects, sends `request`, and reads until the server closes, all within `timeout` (plus the
/// connect timeout).
pub(crate) fn exchange(
    endpoint: &Endpoint,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    match endpoint {
        Endpoint::Tcp(address) => {
            let mut stream = TcpStream::connect_timeout(address, CONNECT_TIMEOUT)
                .map_err(|e| ClientError::io("connect", e))?;
            send(&mut stream, request, timeout)?;
            read_to_end(&mut stream, timeout)
        }
        Endpoint::Unix(path) => {
            let mut stream =
                UnixStream::connect(path).map_err(|e| ClientError::io("connect", e))?;
            send(&mut stream, request, timeout)?;
            read_to_end(&mut stream, timeout)
        }
    }
}

fn send(
    stream: &mut impl Connection,
    request: &[u8],
    timeout: Duration,
) -> Result<(), ClientError> {
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| ClientError::io("set timeout", e))?;
    stream
        .write_all(request)
        .map_err(|e| ClientError::io("send", e))
}

/// Reads until the server closes the connection, for at most `timeout`.
fn read_to_end(stream: &mut impl Connection, timeout: Duration) -> Result<Vec<u8>, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::new(
                FailureKind::Timeout,
                format!(
                    "no complete reply within {timeout:?} ({} bytes so far, starting {:?})",
                    data.len(),
                    data[..data.len().min(PREVIEW_LEN)]
                        .escape_ascii()
                        .to_string()
                ),
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| ClientError::io("set timeout", e))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ClientError::io(
                    &format!("read after {} bytes", data.len()),
                    e,
                ));
            }
        }
        if data.len() > MAX_REPLY_LEN {
            return Err(ClientError::new(
                FailureKind::Malformed,
                format!("reply longer than {MAX_REPLY_LEN} bytes"),
            ));
        }
    }
}

fn parse_reply(data: &[u8], with_body: bool) -> Result<Reply, ClientError> {
    let malformed = |why: &str| {
        let start = &data[..data.len().min(80)];
        ClientError::new(
            FailureKind::Malformed,
            format!("{why}: {:?}", start.escape_ascii().to_string()),
        )
    };
    if data.is_empty() {
        return Err(ClientError::new(
            FailureKind::Empty,
            "connection closed without a reply",
        ));
    }
    let Some(line) = data.strip_suffix(b"\n") else {
        return Err(ClientError::new(
            FailureKind::Short,
            format!("reply cut short after {} bytes", data.len()),
        ));
    };
    let line = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8"))?;
    let mut fields = line.split(' ');
    let version = fields
        .next()
        .and_then(|f| f.strip_prefix("version="))
        .ok_or_else(|| malformed("no version"))?;
    let pid = fields
        .next()
        .and_then(|f| f.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| malformed("no pid"))?;
    let mut extra = Vec::new();
    let mut body = None;
    for field in fields {
        if body.is_some() {
            return Err(malformed("field after the body"));
        }
        let (key, value) = field
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| malformed("unexpected field"))?;
        if key == "body" {
            body = Some(value);
        } else if key == "version" || key == "pid" || extra.iter().any(|(k, _)| k == key) {
            return Err(malformed("repeated field"));
        } else {
            extra.push((key.to_string(), value.to_string()));
        }
    }
    match (body, with_body) {
        (None, false) => {}
        (Some(body), true) => {
            if body.len() < HOLD_BODY_LEN {
                let detail = format!("body of {} bytes, expected {HOLD_BODY_LEN}", body.len());
                return Err(ClientError::new(FailureKind::Short, detail));
            }
            if body.len() > HOLD_BODY_LEN || body.bytes().any(|b| b != b'x') {
                return Err(malformed("body is not 65536 'x'"));
            }
        }
        (None, true) => return Err(malformed("no body")),
        (Some(_), false) => return Err(malformed("unexpected field")),
    }
    Ok(Reply {
        version: version.to_string(),
        pid,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_reply() {
        let reply = parse_reply(b"version=v2 pid=42\n", false).unwrap();
        assert_eq!(
            reply,
            Reply {
                version: "v2".into(),
                pid: 42,
                extra: Vec::new(),
            }
        );
    }

    #[test]
    fn keeps_extra_fields() {
        let reply = parse_reply(b"version=v2 pid=42 listener=1\n", false).unwrap();
        assert_eq!((reply.version.as_str(), reply.pid), ("v2", 42));
        assert_eq!(reply.field("listener"), Some("1"));
        assert_eq!(reply.field("other"), None);

        let mut data = b"version=v1 pid=7 listener=0 body=".to_vec();
        data.resize(data.len() + HOLD_BODY_LEN, b'x');
        data.push(b'\n');
        let reply = parse_reply(&data, true).unwrap();
        assert_eq!(reply.field("listener"), Some("0"));
        assert_eq!(reply.field("body"), None);

        for bad in [
            &b"version=v1 pid=1 =0\n"[..],
            b"version=v1 pid=1 pid=2\n",
            b"version=v1 pid=1 a=1 a=2\n",
            b"version=v1 pid=1 body=x listener=0\n",
        ] {
            assert_eq!(
                parse_reply(bad, false).unwrap_err().kind,
                FailureKind::Malformed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parses_hold_reply_and_checks_the_body() {
        let mut data = b"version=v1 pid=7 body=".to_vec();
        data.resize(data.len() + HOLD_BODY_LEN, b'x');
        data.push(b'\n');
        assert_eq!(parse_reply(&data, true).unwrap().pid, 7);

        let mut short = b"version=v1 pid=7 body=xxx".to_vec();
        assert_eq!(
            parse_reply(&short, true).unwrap_err().kind,
            FailureKind::Short
        );
        short.push(b'\n');
        assert_eq!(
            parse_reply(&short, true).unwrap_err().kind,
            FailureKind::Short
        );
    }

    #[test]
    fn sorts_failures_into_categories() {
        assert_eq!(
            parse_reply(b"", false).unwrap_err().kind,
            FailureKind::Empty
        );
        assert_eq!(
            parse_reply(b"version=v1 pi", false).unwrap_err().kind,
            FailureKind::Short
        );
        assert_eq!(
            parse_reply(b"hello\n", false).unwrap_err().kind,
            FailureKind::Malformed
        );
        assert_eq!(
            parse_reply(b"version=v1 pid=x\n", false).unwrap_err().kind,
            FailureKind::Malformed
        );
        assert_eq!(
            parse_reply(b"version=v1 pid=1 more\n", false)
                .unwrap_err()
                .kind,
            FailureKind::Malformed
        );
        assert_eq!(
            parse_reply(b"version=v1 pid=1\n", true).unwrap_err().kind,
            FailureKind::Malformed
        );
    }
}
