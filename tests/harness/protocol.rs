//! The request/reply protocols that the load and the probes speak: the test servers' own line
//! protocol, HTTP/1.0, redis and memcached. Every request is a short connection (connect, send
//! the request, read the whole reply until the server closes, close), and every protocol maps its
//! reply to the same [`Reply`]: the version that answered and the process that answered, so one
//! [`crate::Load`] and one set of checks serve every program.
//!
//! A reply that is not complete and well-formed is a failure, in the categories of
//! [`FailureKind`]: a missing end is [`FailureKind::Short`], a wrong status or a protocol error
//! is [`FailureKind::Malformed`].

use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, ClientError, Endpoint, FailureKind, REPLY_TIMEOUT, Reply};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How to ask a server which version and process serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The test servers' line protocol (`GET\n`, see [`crate::client`]).
    Line,
    /// `GET <path> HTTP/1.0` with `Connection: close`. The reply must have status 200 and a body
    /// of exactly its `Content-Length` (when it gives one) that is one line
    /// `version=<v>[ pid=<p>][ <key>=<value>...]`. A body without a pid (a static file) gives pid
    /// 0: the reply does not say which process sent it.
    Http { path: String },
    /// Redis: `INFO server`, then `QUIT`. The version is `run_id` (a random id that every start
    /// of the server draws anew), the pid is `process_id`.
    Redis,
    /// memcached: `get <key>`, `stats`, `quit`. The version is the value stored under `key`, or
    /// `""` when the key is unset (a fresh cache: a generation nobody labelled yet, see
    /// [`memcached_add`]); the pid is `STAT pid`.
    Memcached { key: String },
}

impl Protocol {
    /// HTTP on `path`.
    pub fn http(path: &str) -> Protocol {
        Protocol::Http {
            path: path.to_owned(),
        }
    }

    /// One request on a new connection; the reply, or what went wrong.
    pub fn request(&self, endpoint: &Endpoint) -> Result<Reply, ClientError> {
        match self {
            Protocol::Line => client::get(endpoint),
            Protocol::Http { path } => {
                let request = format!(
                    "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: huptime-tests\r\n\
                     Connection: close\r\n\r\n"
                );
                let data = client::exchange(endpoint, request.as_bytes(), REPLY_TIMEOUT)?;
                parse_http(&data)
            }
            Protocol::Redis => {
                let request = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n*1\r\n$4\r\nQUIT\r\n";
                let data = client::exchange(endpoint, request, REPLY_TIMEOUT)?;
                parse_redis(&data)
            }
            Protocol::Memcached { key } => {
                let request = format!("get {key}\r\nstats\r\nquit\r\n");
                let data = client::exchange(endpoint, request.as_bytes(), REPLY_TIMEOUT)?;
                parse_memcached(&data, key)
            }
        }
    }

    /// Polls with requests until a reply satisfies `wanted`, and returns it. Failures on the way
    /// are tolerated (this waits for a start or a reload, not for a clean restart).
    ///
    /// # Panics
    /// When no such reply came within `timeout`, with `what` and the last reply or error seen.
    pub fn wait_for(
        &self,
        endpoint: &Endpoint,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.request(endpoint) {
                Ok(reply) if wanted(&reply) => return reply,
                Ok(reply) => format!("{reply:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!("{endpoint}: no reply with {what} within {timeout:?}; last: {last}");
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// memcached `add <key> <value>` on a new connection: `Ok(true)` if stored, `Ok(false)` if the
/// key was already set (memcached's `NOT_STORED`).
pub fn memcached_add(endpoint: &Endpoint, key: &str, value: &str) -> Result<bool, ClientError> {
    let request = format!("add {key} 0 0 {}\r\n{value}\r\nquit\r\n", value.len());
    let data = client::exchange(endpoint, request.as_bytes(), REPLY_TIMEOUT)?;
    match data.as_slice() {
        b"STORED\r\n" => Ok(true),
        b"NOT_STORED\r\n" => Ok(false),
        b"" => Err(empty()),
        other => Err(malformed("unexpected reply to add", other)),
    }
}

fn malformed(why: &str, data: &[u8]) -> ClientError {
    let start = &data[..data.len().min(120)];
    ClientError::new(
        FailureKind::Malformed,
        format!("{why}: {:?}", start.escape_ascii().to_string()),
    )
}

fn empty() -> ClientError {
    ClientError::new(FailureKind::Empty, "connection closed without a reply")
}

fn short(detail: impl Into<String>) -> ClientError {
    ClientError::new(FailureKind::Short, detail)
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len())
        .position(|window| window == needle)
}

fn parse_http(data: &[u8]) -> Result<Reply, ClientError> {
    if data.is_empty() {
        return Err(empty());
    }
    let Some(head_end) = find(data, b"\r\n\r\n") else {
        return Err(short(format!(
            "HTTP headers cut short after {} bytes",
            data.len()
        )));
    };
    let head = std::str::from_utf8(&data[..head_end])
        .map_err(|_| malformed("HTTP headers not UTF-8", data))?;
    let body = &data[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut status = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (status.next(), status.next()) else {
        return Err(malformed("no HTTP status line", data));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(malformed("not an HTTP/1 reply", data));
    }
    if code != "200" {
        return Err(malformed(&format!("HTTP status {code}"), data));
    }
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed("bad HTTP header", data));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .parse()
                .map_err(|_| malformed("bad Content-Length", data))?;
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(malformed("unexpected Transfer-Encoding", data));
        }
    }
    if let Some(length) = content_length {
        if body.len() < length {
            return Err(short(format!(
                "HTTP body of {} bytes, Content-Length {length}",
                body.len()
            )));
        }
        if body.len() > length {
            return Err(malformed("HTTP body longer than its Content-Length", data));
        }
    }
    parse_version_line(body, data)
}

/// `version=<v>[ pid=<p>][ <key>=<value>...]\n`, pid 0 when absent.
fn parse_version_line(body: &[u8], data: &[u8]) -> Result<Reply, ClientError> {
    let Some(line) = body.strip_suffix(b"\n") else {
        return Err(short(format!(
            "body of {} bytes without its final newline",
            body.len()
        )));
    };
    let line = std::str::from_utf8(line).map_err(|_| malformed("body not UTF-8", data))?;
    let mut fields = line.split(' ');
    let version = fields
        .next()
        .and_then(|field| field.strip_prefix("version="))
        .filter(|version| !version.is_empty())
        .ok_or_else(|| malformed("no version in the body", data))?;
    let mut reply = Reply {
        version: version.to_owned(),
        pid: 0,
        extra: Vec::new(),
    };
    let mut pid_seen = false;
    for field in fields {
        let Some((key, value)) = field.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            return Err(malformed("unexpected field in the body", data));
        };
        if key == "pid" && !pid_seen {
            pid_seen = true;
            reply.pid = value
                .parse()
                .map_err(|_| malformed("bad pid in the body", data))?;
        } else if key == "version" || key == "pid" || reply.field(key).is_some() {
            return Err(malformed("repeated field in the body", data));
        } else {
            reply.extra.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(reply)
}

/// `$<n>\r\n<n bytes>\r\n+OK\r\n`: INFO's bulk string, then QUIT's reply.
fn parse_redis(data: &[u8]) -> Result<Reply, ClientError> {
    if data.is_empty() {
        return Err(empty());
    }
    if data.starts_with(b"-") {
        return Err(malformed("redis error", data));
    }
    let Some(header_end) = find(data, b"\r\n") else {
        return Err(short(format!(
            "redis reply cut short after {} bytes",
            data.len()
        )));
    };
    let length: usize = std::str::from_utf8(&data[..header_end])
        .ok()
        .and_then(|header| header.strip_prefix('$'))
        .and_then(|length| length.parse().ok())
        .ok_or_else(|| malformed("not a redis bulk string", data))?;
    let info_start = header_end + 2;
    let expected_len = info_start + length + b"\r\n+OK\r\n".len();
    if data.len() < expected_len {
        return Err(short(format!(
            "redis reply of {} bytes, expected {expected_len}",
            data.len()
        )));
    }
    if data.len() > expected_len || !data.ends_with(b"\r\n+OK\r\n") {
        return Err(malformed("redis reply does not end with QUIT's +OK", data));
    }
    let info = std::str::from_utf8(&data[info_start..info_start + length])
        .map_err(|_| malformed("INFO not UTF-8", data))?;
    let field = |name: &str| {
        info.split("\r\n")
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
    };
    let version = field("run_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed("no run_id in INFO", data))?;
    let pid = field("process_id")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| malformed("no process_id in INFO", data))?;
    Ok(Reply {
        version: version.to_owned(),
        pid,
        extra: Vec::new(),
    })
}

/// `[VALUE <key> <flags> <n>\r\n<n bytes>\r\n]END\r\n` (the get), then `STAT <name> <value>\r\n`
/// lines and `END\r\n` (the stats); then the server closes (the quit).
fn parse_memcached(data: &[u8], key: &str) -> Result<Reply, ClientError> {
    if data.is_empty() {
        return Err(empty());
    }
    let text = std::str::from_utf8(data).map_err(|_| malformed("reply not UTF-8", data))?;
    if !text.ends_with("END\r\n") {
        return Err(short(format!(
            "memcached reply cut short after {} bytes",
            data.len()
        )));
    }
    let mut rest = text;
    let mut version = String::new();
    if let Some(value) = rest.strip_prefix("VALUE ") {
        let header_end = value
            .find("\r\n")
            .ok_or_else(|| malformed("VALUE line without its end", data))?;
        let header: Vec<&str> = value[..header_end].split(' ').collect();
        let length: usize = match header.as_slice() {
            [got_key, _flags, length] if *got_key == key => length
                .parse()
                .map_err(|_| malformed("bad VALUE length", data))?,
            _ => return Err(malformed("unexpected VALUE line", data)),
        };
        let value_start = header_end + 2;
        let value_end = value_start + length;
        if value.len() < value_end + 2 || &value[value_end..value_end + 2] != "\r\n" {
            return Err(malformed("VALUE of the wrong length", data));
        }
        version = value[value_start..value_end].to_owned();
        rest = &value[value_end + 2..];
    }
    let Some(stats) = rest.strip_prefix("END\r\n") else {
        return Err(malformed("the get does not end with END", data));
    };
    let Some(stats) = stats.strip_suffix("END\r\n") else {
        return Err(short("no stats after the get"));
    };
    let mut pid = None;
    for line in stats.split_terminator("\r\n") {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("STAT"), Some("pid"), Some(value)) => pid = value.parse().ok(),
            (Some("STAT"), Some(_), Some(_)) => {}
            _ => return Err(malformed("unexpected stats line", data)),
        }
    }
    let pid = pid.ok_or_else(|| malformed("no STAT pid", data))?;
    Ok(Reply {
        version,
        pid,
        extra: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(version: &str, pid: u32) -> Reply {
        Reply {
            version: version.to_owned(),
            pid,
            extra: Vec::new(),
        }
    }

    #[test]
    fn http_reply_with_pid() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\nConnection: close\r\n\r\n\
                     version=v2 pid=42\n";
        assert_eq!(parse_http(data).unwrap(), reply("v2", 42));
    }

    #[test]
    fn http_static_file_without_pid_or_length() {
        let data = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\nversion=v3\n";
        assert_eq!(parse_http(data).unwrap(), reply("v3", 0));
    }

    #[test]
    fn http_failures() {
        let kind = |data: &[u8]| parse_http(data).unwrap_err().kind;
        assert_eq!(kind(b""), FailureKind::Empty);
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nContent-Le"), FailureKind::Short);
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\nversion=v2"),
            FailureKind::Short
        );
        assert_eq!(
            kind(b"HTTP/1.0 200 OK\r\n\r\nversion=v2 pid=4"),
            FailureKind::Short
        );
        assert_eq!(
            kind(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"),
            FailureKind::Malformed
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nversion=v2\n"),
            FailureKind::Malformed
        );
        assert_eq!(
            kind(b"HTTP/1.0 200 OK\r\n\r\nhello\n"),
            FailureKind::Malformed
        );
    }

    #[test]
    fn redis_info_then_quit() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:77\r\nrun_id:abc123\r\n";
        let data = format!("${}\r\n{info}\r\n+OK\r\n", info.len());
        assert_eq!(parse_redis(data.as_bytes()).unwrap(), reply("abc123", 77));
        let cut = &data.as_bytes()[..data.len() - 3];
        assert_eq!(parse_redis(cut).unwrap_err().kind, FailureKind::Short);
        assert_eq!(
            parse_redis(b"-LOADING Redis is loading\r\n")
                .unwrap_err()
                .kind,
            FailureKind::Malformed
        );
    }

    #[test]
    fn memcached_get_and_stats() {
        let data = b"VALUE gen 0 2\r\nv4\r\nEND\r\nSTAT pid 12\r\nSTAT uptime 3\r\nEND\r\n";
        assert_eq!(parse_memcached(data, "gen").unwrap(), reply("v4", 12));
        let unset = b"END\r\nSTAT pid 12\r\nEND\r\n";
        assert_eq!(parse_memcached(unset, "gen").unwrap(), reply("", 12));
        let cut = b"END\r\nSTAT pid 12\r\nSTAT upt";
        assert_eq!(
            parse_memcached(cut, "gen").unwrap_err().kind,
            FailureKind::Short
        );
        let no_stats = b"END\r\n";
        assert_eq!(
            parse_memcached(no_stats, "gen").unwrap_err().kind,
            FailureKind::Short
        );
        let error = b"ERROR\r\nEND\r\nSTAT pid 12\r\nEND\r\n";
        assert_eq!(
            parse_memcached(error, "gen").unwrap_err().kind,
            FailureKind::Malformed
        );
    }
}
