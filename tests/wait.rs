//! `--wait`: a retiring generation also waits for its child processes. With a pre-fork server
//! (`servers/prefork.py`, a master and its worker processes) in fork mode, a slow request is held
//! open on an old worker across a restart:
//!
//! - with `--wait` the old master stays alive for as long as that request is in flight, and is
//!   gone within a few seconds after it completed;
//! - without `--wait` the old master exits right away, before the request completes, and the
//!   request is still answered in full by its old worker.
//!
//! Needs `cargo build --workspace`.

use std::fs;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use huptime_tests::{
    ClientError, Reply, SIGHUP, Sandbox, ServerProcess, Style, free_port, hold, pids_alive,
    read_pid_file, send_signal, wait_for_version, wait_gone,
};

/// The request held open on an old worker across the restart.
const HOLD_MS: u64 = 1500;
/// Time for the held request to reach a worker before the restart signal goes out.
const HOLD_HEAD_START: Duration = Duration::from_millis(200);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the old master may take to exit once its last old worker is done (`--wait`).
const EXIT_AFTER_WORKERS: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// A restarted server with a request held open on an old worker. Its processes live until it
/// is dropped.
struct Restarted {
    // Dropped last (fields drop in order): the launched process, then the sandbox's processes.
    old_master: u32,
    held: Option<JoinHandle<Result<Reply, ClientError>>>,
    /// When the held request was sent.
    held_since: Instant,
    _launched: ServerProcess,
    _sandbox: Sandbox,
}

impl Restarted {
    fn held_in_flight(&self) -> bool {
        self.held.as_ref().is_some_and(|held| !held.is_finished())
    }

    /// The held request's reply: complete (the body is checked) and from an old worker.
    fn held_reply(&mut self) -> Reply {
        let reply = self
            .held
            .take()
            .expect("the held request's reply was taken already")
            .join()
            .expect("the HOLD client panicked")
            .unwrap_or_else(|e| panic!("the request held across the restart: {e}"));
        assert_eq!(reply.version, "v1", "the held request is answered by v1");
        assert_ne!(
            reply.pid, self.old_master,
            "a worker answers, not the master"
        );
        reply
    }
}

/// Starts the pre-fork server under `huptime <args>`, holds a request open on one of its
/// workers, restarts it and waits until the new version serves.
fn restart_with_request_held(name: &str, args: &[&str]) -> Restarted {
    let sandbox = Sandbox::new(name);
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    fs::write(&version_file, "v1\n").expect("write the version file");
    let command = Style::Prefork
        .command(port, &version_file, &pid_file)
        .arg("--workers")
        .arg("2")
        .under_huptime(&sandbox, args);
    let launched = sandbox.start_server(command, port);
    wait_for_version(port, "v1", START_TIMEOUT);
    let old_master = read_pid_file(&pid_file);

    let held_since = Instant::now();
    let held = thread::spawn(move || hold(port, HOLD_MS));
    thread::sleep(HOLD_HEAD_START);
    fs::write(&version_file, "v2\n").expect("write the version file");
    send_signal(old_master, SIGHUP).expect("SIGHUP to the master");
    let reply = wait_for_version(port, "v2", RESTART_TIMEOUT);
    eprintln!(
        "v2 served by pid {} {:?} after the HOLD was sent",
        reply.pid,
        held_since.elapsed()
    );
    assert_ne!(
        read_pid_file(&pid_file),
        old_master,
        "fork mode: a new master"
    );
    assert!(
        !held.is_finished(),
        "the held request finished before the new version served: cannot judge; \
         the restart took too long"
    );
    Restarted {
        old_master,
        held: Some(held),
        held_since,
        _launched: launched,
        _sandbox: sandbox,
    }
}

#[test]
fn with_wait_the_old_master_outlives_its_workers() {
    let mut restarted = restart_with_request_held("wait-on", &["--wait"]);
    let old_master = restarted.old_master;
    let mut checks = 0;
    while restarted.held_in_flight() {
        assert_eq!(
            pids_alive(&[old_master]),
            [old_master],
            "--wait: the old master exited {:?} after the HOLD was sent, while its worker still \
             served the request",
            restarted.held_since.elapsed()
        );
        checks += 1;
        thread::sleep(POLL);
    }
    assert!(
        checks > 0,
        "nothing checked while the request was in flight"
    );
    let done = Instant::now();
    let reply = restarted.held_reply();
    if let Err(left) = wait_gone(&[old_master], EXIT_AFTER_WORKERS) {
        panic!(
            "--wait: the old master {left:?} still runs {EXIT_AFTER_WORKERS:?} after its last \
             request (worker {}) completed",
            reply.pid
        );
    }
    eprintln!(
        "old master gone {:?} after the held request completed",
        done.elapsed()
    );
}

#[test]
fn without_wait_the_old_master_exits_at_once() {
    let mut restarted = restart_with_request_held("wait-off", &[]);
    let old_master = restarted.old_master;
    loop {
        if pids_alive(&[old_master]).is_empty() {
            break;
        }
        assert!(
            restarted.held_in_flight(),
            "without --wait the old master should exit right away, not wait for the request \
             its worker serves; it still ran when that request completed"
        );
        thread::sleep(POLL);
    }
    eprintln!(
        "old master gone {:?} after the HOLD was sent",
        restarted.held_since.elapsed()
    );
    assert!(
        restarted.held_in_flight(),
        "the request completed before the old master was seen gone"
    );
    restarted.held_reply();
}
