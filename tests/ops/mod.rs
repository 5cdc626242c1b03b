//! Helpers shared by the operations tests (`socket_activation`, `supervise`), kept out of the
//! harness: a load whose clients retry a request only when its connection was reset (not when
//! it was refused), and the sockets a process holds.

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use huptime_tests::{FailureKind, get, wait_for};

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
