//! Bounded draining: `--drain-timeout` bounds how long a retiring generation waits for its
//! connections.
//!
//! A client connects to the thread-per-connection server and stays silent (its handler thread
//! waits for the request line), while a `HOLD` request of 500 ms is in flight and other clients
//! keep hammering the port. At the restart:
//!
//! - fork mode with `--drain-timeout=2`: the old generation waits for the silent client (still
//!   there 1 s after the signal, not gone before 2 s, since it starts draining only once the new
//!   generation is ready) and is gone soon after the timeout (10 s is the failure backstop);
//!   the silent connection is closed then; the `HOLD` reply is complete;
//! - fork mode without it: the silent client keeps the old generation alive (still there 3 s
//!   after the signal); once the client closes, the old generation exits;
//! - exec mode with `--drain-timeout=2`: the new version serves only after the drain timeout
//!   (the same process drains first) and within the backstop, and the silent connection is
//!   closed by the exec.
//!
//! No load request may fail. Needs `cargo build --workspace` first.

mod safe_handover;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use huptime_tests::{
    ClientError, Load, Reply, SIGHUP, Sandbox, ServerCommand, Style, free_port, get, hold,
    pids_alive, read_pid_file, send_signal, wait_for_version, wait_gone,
};
use safe_handover::{Instance, start, write_file};

const LOAD_CLIENTS: usize = 3;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const DRAIN_TIMEOUT_ARG: &str = "--drain-timeout=2";
/// The request in flight at the restart: shorter than the drain timeout, so answered in full.
const HOLD_MS: u64 = 500;
/// Time for the held request to reach the server before the restart signal goes out.
const HOLD_HEAD_START: Duration = Duration::from_millis(150);
/// While the silent client is connected, the old generation is surely still there this long
/// after the signal (with the drain timeout: well before it; without: for good).
const STILL_THERE_WITH_TIMEOUT: Duration = Duration::from_secs(1);
const STILL_THERE_WITHOUT_TIMEOUT: Duration = Duration::from_secs(3);
/// Failure backstop: the old generation is gone (exec mode: the new one serves) by then.
const BACKSTOP: Duration = Duration::from_secs(10);
/// A small allowance for the two clocks' readings around the signal.
const SLACK: Duration = Duration::from_millis(100);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the silent client waits to see its connection closed.
const CLOSED_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

struct Server {
    _sandbox: Sandbox,
    port: u16,
    version_file: PathBuf,
    pid_file: PathBuf,
    instance: Instance,
}

/// The thread-per-connection server under `huptime <args>`, serving v1.
fn start_threaded(name: &str, args: &[&str]) -> Server {
    let sandbox = Sandbox::new(name);
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    write_file(&version_file, "v1");
    let server = ServerCommand::python_direct(Style::Threaded.script()).serving(
        port,
        &version_file,
        &pid_file,
    );
    let instance = start(&sandbox, args, server, port);
    wait_for_version(port, "v1", START_TIMEOUT);
    assert_eq!(read_pid_file(&pid_file), instance.launched.pid());
    Server {
        _sandbox: sandbox,
        port,
        version_file,
        pid_file,
        instance,
    }
}

/// Connects and sends nothing. Returns once the server has accepted the connection: the
/// server's one accepting thread takes connections from the queue in order, so a `GET` sent
/// afterwards and answered by `pid` proves it.
fn silent_client(port: u16, pid: u32) -> TcpStream {
    let silent =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect the silent client");
    let reply = get(port).unwrap_or_else(|e| panic!("GET after the silent client: {e}"));
    assert_eq!(
        reply.pid, pid,
        "the GET after the silent client came from elsewhere"
    );
    silent
}

/// Sends a `HOLD` request and gives it time to reach the server.
fn hold_in_flight(port: u16) -> JoinHandle<Result<Reply, ClientError>> {
    let held = thread::spawn(move || hold(port, HOLD_MS));
    thread::sleep(HOLD_HEAD_START);
    held
}

/// The held request was answered in full (the client checks the body) by `version`.
fn assert_held_answered(held: JoinHandle<Result<Reply, ClientError>>, version: &str) {
    let reply = held
        .join()
        .expect("the HOLD client panicked")
        .unwrap_or_else(|e| panic!("the HOLD request in flight at the restart: {e}"));
    assert_eq!(reply.version, version, "the HOLD request: {reply:?}");
}

/// The server closed the silent connection (end of file, or a reset).
fn assert_closed(mut silent: TcpStream, what: &str) {
    silent
        .set_read_timeout(Some(CLOSED_TIMEOUT))
        .expect("set a read timeout");
    let mut byte = [0u8; 1];
    match silent.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: the silent connection got data"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the silent connection is still open ({e})"),
    }
}

/// Waits until `pid` is gone, at most `timeout` after `since`; returns when that was, since
/// `since`.
fn watch_exit(pid: u32, since: Instant, timeout: Duration) -> Duration {
    loop {
        let elapsed = since.elapsed();
        if pids_alive(&[pid]).is_empty() {
            return elapsed;
        }
        assert!(
            elapsed < timeout,
            "pid {pid} still runs {elapsed:?} after the restart signal"
        );
        thread::sleep(POLL);
    }
}

#[test]
fn drain_timeout_ends_a_silent_connection() {
    let server = start_threaded("drain-timeout-fork", &["--debug", DRAIN_TIMEOUT_ARG]);
    let (port, old) = (server.port, server.instance.launched.pid());
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let silent = silent_client(port, old);
    let held = hold_in_flight(port);

    write_file(&server.version_file, "v2");
    let signalled = Instant::now();
    send_signal(old, SIGHUP).expect("SIGHUP to the master");
    let first = wait_for_version(port, "v2", SERVED_TIMEOUT);
    eprintln!(
        "v2 (pid {}) serves {:?} after the signal",
        first.pid,
        signalled.elapsed()
    );
    assert_eq!(read_pid_file(&server.pid_file), first.pid);
    assert_held_answered(held, "v1");

    let gone_after = watch_exit(old, signalled, BACKSTOP);
    eprintln!("the old generation is gone {gone_after:?} after the signal");
    assert!(
        gone_after > STILL_THERE_WITH_TIMEOUT,
        "the old generation did not wait for its silent client: gone {gone_after:?} after the \
         signal"
    );
    assert!(
        gone_after + SLACK >= DRAIN_TIMEOUT,
        "the old generation left {gone_after:?} after the signal, before its drain timeout \
         {DRAIN_TIMEOUT:?}"
    );
    assert_closed(silent, "after the drain timeout");
    let stderr = server.instance.launched.stderr();
    let open_at_timeout = stderr
        .split("drain timeout: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse::<usize>().ok());
    assert!(
        open_at_timeout.is_some_and(|count| count >= 1),
        "the old generation should say the drain timed out with the silent connection open:\n\
         {stderr}"
    );

    let report = load.stop_without_failures();
    report.assert_versions(["v1", "v2"]);
}

#[test]
fn without_drain_timeout_a_silent_connection_keeps_the_old_generation() {
    let server = start_threaded("drain-unbounded", &["--debug"]);
    let (port, old) = (server.port, server.instance.launched.pid());
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let silent = silent_client(port, old);
    let held = hold_in_flight(port);

    write_file(&server.version_file, "v2");
    let signalled = Instant::now();
    send_signal(old, SIGHUP).expect("SIGHUP to the master");
    wait_for_version(port, "v2", SERVED_TIMEOUT);
    assert_held_answered(held, "v1");
    load.wait_until_served_by("v2", SERVED_TIMEOUT);
    while signalled.elapsed() < STILL_THERE_WITHOUT_TIMEOUT {
        assert_eq!(
            pids_alive(&[old]),
            [old],
            "without --drain-timeout the old generation left {:?} after the signal, while its \
             silent client was still connected",
            signalled.elapsed()
        );
        thread::sleep(POLL);
    }

    let closed = Instant::now();
    drop(silent);
    if let Err(left) = wait_gone(&[old], GONE_TIMEOUT) {
        panic!(
            "the old generation {left:?} still runs {GONE_TIMEOUT:?} after its last client left"
        );
    }
    eprintln!(
        "the old generation is gone {:?} after its silent client closed",
        closed.elapsed()
    );
    let report = load.stop_without_failures();
    report.assert_versions(["v1", "v2"]);
}

#[test]
fn drain_timeout_in_exec_mode() {
    let server = start_threaded(
        "drain-timeout-exec",
        &["--debug", "--exec", DRAIN_TIMEOUT_ARG],
    );
    let (port, pid) = (server.port, server.instance.launched.pid());
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let silent = silent_client(port, pid);
    let held = hold_in_flight(port);

    write_file(&server.version_file, "v2");
    let signalled = Instant::now();
    send_signal(pid, SIGHUP).expect("SIGHUP to the server");
    let first = wait_for_version(port, "v2", BACKSTOP);
    let served_after = signalled.elapsed();
    eprintln!("v2 serves {served_after:?} after the signal");
    assert_eq!(first.pid, pid, "exec mode keeps the pid");
    assert!(
        served_after + SLACK >= DRAIN_TIMEOUT,
        "v2 served {served_after:?} after the signal: the old image did not wait for its \
         silent client for the drain timeout {DRAIN_TIMEOUT:?}"
    );
    assert_held_answered(held, "v1");
    assert_closed(silent, "after the exec");

    load.wait_until_served_by("v2", SERVED_TIMEOUT);
    let report = load.stop_without_failures();
    report.assert_versions(["v1", "v2"]);
    assert_eq!(
        report.pids(),
        BTreeSet::from([pid]),
        "exec mode keeps the pid"
    );
}
