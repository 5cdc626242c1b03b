//! The test servers on their own, without huptime: each serves its clients correctly under
//! load, with requests held open alongside, survives clients that leave early, and stops on
//! SIGTERM with all its processes. This checks the servers and the harness that the restart
//! tests rely on.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    Endpoint, Load, SIGKILL, SIGTERM, Sandbox, ServerCommand, ServerProcess, Style, free_port, get,
    hold, listening_sockets, read_pid_file, send_signal, wait_gone, write_versioned_testserver,
};

const VERSION: &str = "bare-1";
const TESTSERVER: &str = env!("CARGO_BIN_EXE_hup-testserver");

const LOAD_CLIENTS: usize = 6;
/// HOLD requests sent while the load runs, one every `HOLD_SPACING`.
const HOLDS: u32 = 3;
const HOLD_MS: u64 = 500;
const HOLD_SPACING: Duration = Duration::from_millis(500);
/// Replies each load must get alongside the HOLDs; the timeout only catches a server that hangs
/// (a busy machine slows the load down, it must not fail the test).
const MIN_SUCCESSES: u64 = 50;
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs load on every endpoint until each has served `MIN_SUCCESSES` replies, with `HOLD`
/// requests alongside, and checks that every request got a complete reply carrying `version`.
fn exercise(endpoints: &[Endpoint], version: &str) {
    let loads: Vec<Load> = endpoints
        .iter()
        .map(|endpoint| Load::start(endpoint, LOAD_CLIENTS / endpoints.len()))
        .collect();
    let holds: Vec<_> = (0..HOLDS)
        .map(|i| {
            let endpoint = endpoints[i as usize % endpoints.len()].clone();
            thread::spawn(move || {
                thread::sleep(HOLD_SPACING * i);
                hold(&endpoint, HOLD_MS)
            })
        })
        .collect();
    for load in &loads {
        load.wait_until_successes(MIN_SUCCESSES, SERVE_TIMEOUT);
    }
    for held in holds {
        let reply = held
            .join()
            .expect("HOLD client panicked")
            .expect("HOLD request failed");
        assert_eq!(reply.version, version);
    }
    for load in loads {
        let report = load.stop();
        report.assert_no_failures();
        assert_eq!(report.versions(), BTreeSet::from([version]), "{report}");
    }
}

/// Checks that the server answers a `GET` while a `HOLD` is pending if it `concurrent`, and
/// only after the `HOLD` otherwise: each style must really be the style it claims.
fn check_concurrency(endpoint: &Endpoint, concurrent: bool) {
    const HELD_MS: u64 = 1500;
    let held = {
        let endpoint = endpoint.clone();
        thread::spawn(move || hold(&endpoint, HELD_MS))
    };
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    get(endpoint).expect("GET while a HOLD is pending");
    let waited = started.elapsed();
    held.join()
        .expect("HOLD client panicked")
        .expect("HOLD request failed");
    if concurrent {
        assert!(
            waited < Duration::from_millis(700),
            "GET waited {waited:?} behind a pending HOLD"
        );
    } else {
        assert!(
            waited >= Duration::from_millis(1000),
            "GET answered after {waited:?} despite a pending HOLD"
        );
    }
}

/// Clients that connect and leave, ask and leave before the reply, or send garbage: the server
/// must go on serving (the load that follows checks it).
fn abandon_requests(port: u16) {
    for request in [&b""[..], b"HOLD 100\n", b"NONSENSE\n", b"GET"] {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        stream.write_all(request).expect("send");
    }
    // Let the abandoned HOLD run into its closed connection.
    thread::sleep(Duration::from_millis(200));
}

/// SIGTERM to the server; it and every process it started must be gone soon after. Also checks
/// that it printed nothing on stdout, as the servers promise.
fn stop(sandbox: &Sandbox, mut server: ServerProcess) {
    server.signal(SIGTERM);
    if server.wait_exit(EXIT_TIMEOUT).is_none() {
        panic!(
            "server pid {} ignored SIGTERM for {EXIT_TIMEOUT:?}",
            server.pid()
        );
    }
    if let Err(left) = sandbox.wait_no_processes(EXIT_TIMEOUT) {
        panic!("processes {left:?} outlived their server's SIGTERM");
    }
    assert_eq!(server.stdout(), "", "the server wrote to stdout");
}

fn start_style(sandbox: &Sandbox, style: Style, port: u16) -> ServerProcess {
    let version_file = sandbox.file("version");
    fs::write(&version_file, format!("{VERSION}\n")).expect("write the version file");
    let command = style.command(port, &version_file, &sandbox.file("server.pid"));
    sandbox.start_server(command.bare(sandbox), port)
}

fn check_style(style: Style) {
    let sandbox = Sandbox::new(&format!("bare-{style:?}"));
    let port = free_port();
    let server = start_style(&sandbox, style, port);

    let master = read_pid_file(&sandbox.file("server.pid"));
    assert_eq!(
        master,
        server.pid(),
        "the pid file should name the server process"
    );
    let reply = get(port).expect("GET");
    assert_eq!(reply.version, VERSION);
    assert_eq!(
        reply.pid == master,
        style.replies_from_master(),
        "reply from pid {}, main process {master}",
        reply.pid
    );

    check_concurrency(&port.into(), style.serves_concurrently());
    abandon_requests(port);
    exercise(&[port.into()], VERSION);
    stop(&sandbox, server);
}

/// One test per style.
macro_rules! style_tests {
    ($($name:ident => $style:expr),* $(,)?) => {
        $(#[test] fn $name() { check_style($style) })*
    };
}

style_tests! {
    blocking => Style::Blocking,
    select => Style::Select,
    poll => Style::Poll,
    epoll => Style::Epoll,
    threaded => Style::Threaded,
    forking => Style::Forking,
    threadpool => Style::Threadpool,
    prefork => Style::Prefork,
    asyncio => Style::Asyncio,
}

#[test]
fn prefork_replaces_a_dead_worker() {
    let sandbox = Sandbox::new("bare-prefork-respawn");
    let port = free_port();
    let server = start_style(&sandbox, Style::Prefork, port);
    let workers = 4; // the server's default pool
    let expected = workers + 1;
    wait_for_process_count(&sandbox, expected);

    let victim = get(port).expect("GET").pid;
    send_signal(victim, SIGKILL).expect("kill a worker");
    wait_gone(&[victim], EXIT_TIMEOUT).expect("the killed worker is gone");
    wait_for_process_count(&sandbox, expected);
    exercise(&[port.into()], VERSION);
    stop(&sandbox, server);
}

fn wait_for_process_count(sandbox: &Sandbox, expected: usize) {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        let processes = sandbox.processes();
        if processes.len() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected} processes, have {processes:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn blocking_serves_two_ports() {
    let sandbox = Sandbox::new("bare-two-ports");
    let (first, second) = (free_port(), free_port());
    let version_file = sandbox.file("version");
    fs::write(&version_file, VERSION).expect("write the version file");
    let command = ServerCommand::python(Style::Blocking.script())
        .arg("--ports")
        .arg(format!("{first},{second}"))
        .arg("--version-file")
        .arg(&version_file);
    let server = sandbox.start_server(command.bare(&sandbox), first);
    exercise(&[first.into(), second.into()], VERSION);
    stop(&sandbox, server);
}

#[test]
fn blocking_serves_a_reuseport_pair() {
    let sandbox = Sandbox::new("bare-reuseport-pair");
    let port = free_port();
    let version_file = sandbox.file("version");
    fs::write(&version_file, VERSION).expect("write the version file");
    let command = ServerCommand::python(Style::Blocking.script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--reuseport-pair")
        .arg("--version-file")
        .arg(&version_file);
    let server = sandbox.start_server(command.bare(&sandbox), port);
    assert_eq!(
        listening_sockets(port),
        2,
        "two SO_REUSEPORT listeners on port {port}"
    );
    // The kernel spreads connections over both listeners: one left unserved would fail the load.
    exercise(&[port.into()], VERSION);
    stop(&sandbox, server);
}

#[test]
fn blocking_serves_a_unix_socket() {
    let sandbox = Sandbox::new("bare-unix");
    let path = sandbox.file("server.sock");
    // A stale file where the socket goes, as an earlier run leaves behind: the server unlinks it.
    fs::write(&path, "stale").expect("write a stale socket file");
    let version_file = sandbox.file("version");
    fs::write(&version_file, VERSION).expect("write the version file");
    let command = ServerCommand::python(Style::Blocking.script())
        .arg("--unix")
        .arg(&path)
        .arg("--version-file")
        .arg(&version_file);
    let endpoint = Endpoint::Unix(path);
    let server = sandbox.start_server(command.bare(&sandbox), &endpoint);
    exercise(&[endpoint], VERSION);
    stop(&sandbox, server);
}

fn testserver_command(binary: &Path, port: u16) -> ServerCommand {
    ServerCommand::new(binary)
        .arg("--port")
        .arg(port.to_string())
}

#[test]
fn testserver_answers_with_the_trailer_of_its_file() {
    let sandbox = Sandbox::new("bare-testserver-trailer");
    let binary = sandbox.file("hup-testserver");
    write_versioned_testserver(Path::new(TESTSERVER), &binary, "A");
    let port_a = free_port();
    let server_a = sandbox.start_server(testserver_command(&binary, port_a).bare(&sandbox), port_a);
    assert_eq!(get(port_a).expect("GET").version, "A");

    // Replacing the file does not change the running server, but the next start runs the new file.
    write_versioned_testserver(Path::new(TESTSERVER), &binary, "B");
    let port_b = free_port();
    let server_b = sandbox.start_server(testserver_command(&binary, port_b).bare(&sandbox), port_b);
    assert_eq!(get(port_b).expect("GET").version, "B");
    assert_eq!(get(port_a).expect("GET").version, "A");

    check_concurrency(&port_a.into(), false);
    exercise(&[port_a.into()], "A");
    drop(server_b);
    stop(&sandbox, server_a);
}

#[test]
fn testserver_without_trailer_is_builtin() {
    let sandbox = Sandbox::new("bare-testserver-builtin");
    let port = free_port();
    let server = sandbox.start_server(
        testserver_command(Path::new(TESTSERVER), port).bare(&sandbox),
        port,
    );
    assert_eq!(get(port).expect("GET").version, "builtin");
    exercise(&[port.into()], "builtin");
    stop(&sandbox, server);
}
