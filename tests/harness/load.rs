//! Load: client threads that send requests in a loop (the test protocol's `GET`, or any
//! [`Protocol`]) and count what happens.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::client::{Endpoint, FailureKind};
use crate::protocol::Protocol;

/// Pause between one client's requests, so that on a small machine the clients leave CPU for
/// the server they hammer.
const PAUSE: Duration = Duration::from_millis(1);
/// Failures each client describes in full; the rest are only counted.
const SAMPLES_PER_CLIENT: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A report lists the pids of a version when there are at most this many.
const LISTED_PIDS: usize = 8;

/// Running client threads; [`Load::stop`] ends them and reports.
pub struct Load {
    endpoint: Endpoint,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    clients: Vec<JoinHandle<()>>,
    started: Instant,
}

/// What the clients saw so far; they all add to it after every request.
#[derive(Default)]
struct Tally {
    replies: BTreeMap<(String, u32), u64>,
    failures: BTreeMap<FailureKind, u64>,
    samples_per_client: BTreeMap<usize, usize>,
    samples: Vec<(Duration, String)>,
}

impl Load {
    /// Starts `clients` threads, each connecting, sending `GET`, reading the whole reply and
    /// closing, over and over.
    pub fn start(endpoint: impl Into<Endpoint>, clients: usize) -> Load {
        Load::start_speaking(endpoint, &Protocol::Line, clients)
    }

    /// Like [`Load::start`], with the requests and replies of `protocol`.
    pub fn start_speaking(
        endpoint: impl Into<Endpoint>,
        protocol: &Protocol,
        clients: usize,
    ) -> Load {
        let endpoint = endpoint.into();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let started = Instant::now();
        let clients = (0..clients)
            .map(|index| {
                let client = Client {
                    index,
                    endpoint: endpoint.clone(),
                    protocol: protocol.clone(),
                    stop: Arc::clone(&stop),
                    tally: Arc::clone(&tally),
                    started,
                };
                thread::Builder::new()
                    .name(format!("load-client-{index}"))
                    .spawn(move || client.run())
                    .expect("spawn a load client thread")
            })
            .collect();
        Load {
            endpoint,
            stop,
            tally,
            clients,
            started,
        }
    }

    /// Waits until some client got a reply carrying `version`.
    ///
    /// # Panics
    /// If none came within `timeout`.
    pub fn wait_until_served_by(&self, version: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let tally = lock(&self.tally);
            if tally.replies.keys().any(|(v, _)| v == version) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the load got no reply from {version} within {timeout:?}; failures so far {:?}, \
                 first ones: {:#?}",
                tally.failures,
                tally.samples
            );
            drop(tally);
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the clients got at least `count` replies in all.
    ///
    /// # Panics
    /// If they did not within `timeout`.
    pub fn wait_until_successes(&self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let tally = lock(&self.tally);
            let successes: u64 = tally.replies.values().sum();
            if successes >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the load got {successes} of {count} replies within {timeout:?}; failures so far \
                 {:?}, first ones: {:#?}",
                tally.failures,
                tally.samples
            );
            drop(tally);
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The successful replies so far, counted by (version, pid).
    pub fn replies_so_far(&self) -> BTreeMap<(String, u32), u64> {
        lock(&self.tally).replies.clone()
    }

    /// Stops the clients (each finishes its request in flight) and reports what they saw.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            client.join().expect("a load client thread panicked");
        }
        let tally = std::mem::take(&mut *lock(&self.tally));
        let mut samples = tally.samples;
        samples.sort();
        LoadReport {
            endpoint: self.endpoint.clone(),
            elapsed: self.started.elapsed(),
            replies: tally.replies,
            failures: tally.failures,
            failure_samples: samples
                .into_iter()
                .map(|(at, what)| format!("+{:.3}s {what}", at.as_secs_f64()))
                .collect(),
        }
    }
}

impl Load {
    /// [`Load::stop`], then prints the report and checks that no request failed.
    ///
    /// # Panics
    /// If any did, with the counts and the first failures.
    pub fn stop_without_failures(self) -> LoadReport {
        let report = self.stop();
        eprintln!("{report}");
        report.assert_no_failures();
        report
    }
}

impl Drop for Load {
    /// A test that panics before `stop` leaves its clients to end on their own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A client thread's poisoned lock only means another client panicked; the tally is still good.
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

struct Client {
    index: usize,
    endpoint: Endpoint,
    protocol: Protocol,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
}

impl Client {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            let outcome = self.protocol.request(&self.endpoint);
            let mut tally = lock(&self.tally);
            match outcome {
                Ok(reply) => *tally.replies.entry((reply.version, reply.pid)).or_default() += 1,
                Err(e) => {
                    *tally.failures.entry(e.kind).or_default() += 1;
                    let sampled = tally.samples_per_client.entry(self.index).or_default();
                    if *sampled < SAMPLES_PER_CLIENT {
                        *sampled += 1;
                        let at = self.started.elapsed();
                        tally
                            .samples
                            .push((at, format!("client {}: {e}", self.index)));
                    }
                }
            }
            drop(tally);
            thread::sleep(PAUSE);
        }
    }
}

/// What the load's clients saw, all together.
#[derive(Debug)]
pub struct LoadReport {
    pub endpoint: Endpoint,
    pub elapsed: Duration,
    /// Successful replies counted by (version, pid).
    pub replies: BTreeMap<(String, u32), u64>,
    pub failures: BTreeMap<FailureKind, u64>,
    /// The first few failures of each client, in time order, with their time since the start.
    pub failure_samples: Vec<String>,
}

impl LoadReport {
    pub fn successes(&self) -> u64 {
        self.replies.values().sum()
    }

    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Successful replies that carried `version`.
    pub fn successes_with(&self, version: &str) -> u64 {
        self.replies
            .iter()
            .filter(|((v, _), _)| v == version)
            .map(|(_, count)| count)
            .sum()
    }

    /// Every version seen in a successful reply.
    pub fn versions(&self) -> BTreeSet<&str> {
        self.replies
            .keys()
            .map(|(version, _)| version.as_str())
            .collect()
    }

    /// The pids that answered with `version`.
    pub fn pids_with(&self, version: &str) -> BTreeSet<u32> {
        self.replies
            .keys()
            .filter(|(v, _)| v == version)
            .map(|&(_, pid)| pid)
            .collect()
    }

    /// Every pid that answered.
    pub fn pids(&self) -> BTreeSet<u32> {
        self.replies.keys().map(|&(_, pid)| pid).collect()
    }

    /// # Panics
    /// Unless the versions seen in successful replies are exactly `expected`.
    pub fn assert_versions<'a>(&self, expected: impl IntoIterator<Item = &'a str>) {
        let expected: BTreeSet<&str> = expected.into_iter().collect();
        assert_eq!(self.versions(), expected, "versions the load saw:\n{self}");
    }

    /// # Panics
    /// If any request failed, with the counts and the first failures.
    pub fn assert_no_failures(&self) {
        assert!(self.failures.is_empty(), "load saw failures:\n{self}");
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load on {} for {:.1}s: {} ok, {} failed {:?}",
            self.endpoint,
            self.elapsed.as_secs_f64(),
            self.successes(),
            self.failure_count(),
            self.failures
        )?;
        for version in self.versions() {
            let pids = self.pids_with(version);
            write!(
                f,
                "  version={version}: {} ok from {} pids",
                self.successes_with(version),
                pids.len()
            )?;
            // Per-connection children answer from a new pid each time: list only a few.
            if pids.len() <= LISTED_PIDS {
                write!(f, " {pids:?}")?;
            }
            writeln!(f)?;
        }
        for sample in &self.failure_samples {
            writeln!(f, "  {sample}")?;
        }
        Ok(())
    }
}
