//! Helpers shared by the operations tests (`pidfile_status`, `systemd_notify`,
//! `socket_activation`, `supervise`), kept out of the harness: a bounded wait, a load whose
//! clients retry a request only when its connection was reset (not when it was refused), a
//! minimal JSON reader for `--status --json`, and `/proc` lookups.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use huptime_tests::{FailureKind, get};

/// Polls `check` every 10 ms until it returns `Some`, at most `timeout`.
///
/// # Panics
/// On timeout, with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The inode of the socket behind `/proc/<pid>/fd/<fd>`, if it is one.
pub fn socket_inode_of(pid: u32, fd: &str) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of every socket `pid` holds.
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| socket_inode_of(pid, entry.ok()?.file_name().to_str()?))
        .collect()
}

/// The environment `pid` started with.
pub fn environ(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// `(pid, state, ppid, comm)` of every process.
pub fn processes() -> Vec<(u32, char, u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some((pid, state, ppid, comm))
        })
        .collect()
}

/// What the clients of a [`RetryLoad`] saw.
#[derive(Debug, Default, Clone)]
pub struct RetryReport {
    /// Requests answered, by the pid that answered.
    pub answered: BTreeMap<u32, u64>,
    /// Connections refused: nobody listened. Never acceptable.
    pub refused: u64,
    /// Connections reset, closed without a reply, or cut short: the process that had accepted
    /// them died. Each is retried.
    pub resets: u64,
    /// Requests still unanswered after every retry, or that failed otherwise (timeouts...).
    pub unanswered: u64,
    /// The first few problems, for the failure message.
    pub samples: Vec<String>,
}

impl RetryReport {
    pub fn total_answered(&self) -> u64 {
        self.answered.values().sum()
    }
}

/// Client threads sending `GET` in a loop. A request whose connection was reset (or closed
/// without a complete reply) is retried, up to [`RetryLoad::RETRIES`] times: that is what a
/// client does when the process that accepted it crashed. A refused connection is counted and
/// not retried: with huptime keeping the socket, there must be none.
pub struct RetryLoad {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<RetryReport>>,
    clients: Vec<JoinHandle<()>>,
}

impl RetryLoad {
    pub const RETRIES: usize = 5;

    pub fn start(port: u16, clients: usize) -> RetryLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(RetryReport::default()));
        let clients = (0..clients)
            .map(|_| {
                let (stop, report) = (Arc::clone(&stop), Arc::clone(&report));
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        request(port, &report);
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        RetryLoad {
            stop,
            report,
            clients,
        }
    }

    /// Answers so far.
    pub fn answered(&self) -> u64 {
        self.report.lock().unwrap().total_answered()
    }

    /// Waits until `count` more answers than now came in.
    pub fn wait_for_more(&self, count: u64, timeout: Duration) {
        let target = self.answered() + count;
        wait_for("the load gets answers", timeout, || {
            (self.answered() >= target).then_some(())
        });
    }

    pub fn stop(self) -> RetryReport {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().expect("a load client panicked");
        }
        self.report.lock().unwrap().clone()
    }
}

fn request(port: u16, report: &Mutex<RetryReport>) {
    for _ in 0..=RetryLoad::RETRIES {
        let result = get(port);
        let mut report = report.lock().unwrap();
        match result {
            Ok(reply) => {
                *report.answered.entry(reply.pid).or_default() += 1;
                return;
            }
            Err(e) => {
                let sample = e.to_string();
                if report.samples.len() < 10 {
                    report.samples.push(sample);
                }
                match e.kind {
                    FailureKind::Refused => {
                        report.refused += 1;
                        return;
                    }
                    FailureKind::Reset | FailureKind::Empty | FailureKind::Short => {
                        report.resets += 1;
                    }
                    _ => {
                        report.unanswered += 1;
                        return;
                    }
                }
            }
        }
    }
    report.lock().unwrap().unanswered += 1;
}

/// A JSON value, as far as `--status --json` needs: numbers are integers.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole document.
    ///
    /// # Panics
    /// On anything that is not JSON (or has a non-integer number).
    pub fn parse(text: &str) -> Json {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value();
        parser.space();
        assert_eq!(parser.at, parser.bytes.len(), "trailing data in {text:?}");
        value
    }

    /// The member `key` of an object.
    ///
    /// # Panics
    /// If this is not an object or has no such member.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no {key:?} in {self:?}")),
            _ => panic!("{self:?} is not an object (looking for {key:?})"),
        }
    }

    /// The keys of an object, in order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("{self:?} is not an object"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Json::Int(value) => *value,
            _ => panic!("{self:?} is not an integer"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(value) => value,
            _ => panic!("{self:?} is not a string"),
        }
    }

    pub fn bool(&self) -> bool {
        match self {
            Json::Bool(value) => *value,
            _ => panic!("{self:?} is not a boolean"),
        }
    }

    pub fn array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => panic!("{self:?} is not an array"),
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.space();
        *self
            .bytes
            .get(self.at)
            .unwrap_or_else(|| panic!("JSON ends early"))
    }

    fn expect(&mut self, byte: u8) {
        assert_eq!(
            self.peek(),
            byte,
            "JSON: expected {:?} at {}",
            byte as char,
            self.at
        );
        self.at += 1;
    }

    fn literal(&mut self, word: &str, value: Json) -> Json {
        assert!(
            self.bytes[self.at..].starts_with(word.as_bytes()),
            "JSON: bad literal at {}",
            self.at
        );
        self.at += word.len();
        value
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'n' => self.literal("null", Json::Null),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'"' => Json::Str(self.string()),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek() == b']' {
                    self.at += 1;
                    return Json::Array(items);
                }
                loop {
                    items.push(self.value());
                    match self.peek() {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Json::Array(items);
                        }
                        other => panic!("JSON: unexpected {:?} in an array", other as char),
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.peek() == b'}' {
                    self.at += 1;
                    return Json::Object(fields);
                }
                loop {
                    self.space();
                    let key = self.string();
                    self.expect(b':');
                    fields.push((key, self.value()));
                    match self.peek() {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Json::Object(fields);
                        }
                        other => panic!("JSON: unexpected {:?} in an object", other as char),
                    }
                }
            }
            _ => {
                let start = self.at;
                if self.bytes[self.at] == b'-' {
                    self.at += 1;
                }
                while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap();
                Json::Int(
                    text.parse()
                        .unwrap_or_else(|_| panic!("JSON: not an integer at {start}")),
                )
            }
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            let byte = self.bytes[self.at];
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).expect("JSON strings are UTF-8"),
                b'\\' => {
                    let escaped = self.bytes[self.at];
                    self.at += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.bytes[self.at..self.at + 4])
                                .expect("hex digits");
                            self.at += 4;
                            let code = u32::from_str_radix(hex, 16).expect("hex digits");
                            let c = char::from_u32(code).expect("a BMP character");
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

#[test]
fn json_reader_reads_what_huptime_writes() {
    let value = Json::parse(r#" {"a":1,"b":[true,null,-3],"c":"q\"uo\\te\n\u0001é","e":{}} "#);
    assert_eq!(value.get("a").int(), 1);
    assert_eq!(value.get("b").array().len(), 3);
    assert_eq!(value.get("c").str(), "q\"uo\\te\n\u{1}é");
    assert_eq!(value.keys(), ["a", "b", "c", "e"]);
}
