//! Each socket stays its own. A server with several listening sockets — two ports, or two
//! `SO_REUSEPORT` listeners on one port — is restarted three times under load on every port. After
//! each restart every port serves the new version, and the listening sockets are the very same
//! kernel sockets as before the first restart (the same socket inodes as the kernel reports its
//! TCP listeners, as many per port as before): they were handed over, never re-bound, never merged and never left behind. The
//! server's replies name the listener that accepted (`listener=<index>`), which shows that each
//! port still reaches its own listener and that both listeners of the pair accept clients in the
//! new generation. No request may fail.
//!
//! Why: the identity of a bound socket is its address plus options, and N `SO_REUSEPORT`
//! listeners share one identity. A handover that matched sockets only by address would give both
//! binds of the pair one socket (the other would be closed as unclaimed, or queue clients nobody
//! serves), or re-bind a fresh socket beside the inherited one; a port mix-up would hand port P's
//! socket to the bind of port Q. Needs `cargo build --workspace` first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    Load, Mode, Sandbox, ServerCommand, Style, free_port, get, listening_socket_inodes,
    read_pid_file, signal_restart, wait_for_version, wait_gone,
};

const RESTARTS: usize = 3;
/// Load clients in all, shared out over the ports.
const LOAD_CLIENTS: usize = 6;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests sent to find both listeners of the pair. The kernel picks a listener by a hash of
/// the client's address and port, so each request has an even chance for either: missing one
/// listener in this many tries by chance is out of the question.
const PAIR_PROBES: usize = 300;
const PAIR_PROBE_TIME: Duration = Duration::from_secs(15);
/// Requests per port that must each come from that port's own listener.
const PORT_PROBES: usize = 20;
/// How long each generation serves the load before the next restart.
const SOAK: Duration = Duration::from_millis(500);

/// How the server listens.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `--ports P,Q`: listener 0 on P, listener 1 on Q.
    TwoPorts,
    /// `--reuseport-pair`: listeners 0 and 1 both on one port, with `SO_REUSEPORT`.
    ReuseportPair,
}

struct Server {
    ports: Vec<u16>,
    /// Listening sockets per port.
    per_port: usize,
    command: ServerCommand,
}

fn server(sandbox: &Sandbox, layout: Layout) -> Server {
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let base = ServerCommand::python(Style::Blocking.script());
    let (ports, per_port, command) = match layout {
        Layout::TwoPorts => {
            let ports = vec![free_port(), free_port()];
            let command = base
                .arg("--ports")
                .arg(format!("{},{}", ports[0], ports[1]));
            (ports, 1, command)
        }
        Layout::ReuseportPair => {
            let port = free_port();
            let command = base
                .arg("--port")
                .arg(port.to_string())
                .arg("--reuseport-pair");
            (vec![port], 2, command)
        }
    };
    let command = command
        .arg("--version-file")
        .arg(version_file)
        .arg("--pid-file")
        .arg(pid_file);
    Server {
        ports,
        per_port,
        command,
    }
}

/// The listener index a reply names; every reply of the multi-listener modes must name one.
fn listener_of(reply: &huptime_tests::Reply) -> usize {
    reply
        .field("listener")
        .and_then(|index| index.parse().ok())
        .unwrap_or_else(|| panic!("reply without a listener index: {reply:?}"))
}

/// Checks that the listeners of `version` accept clients, each on its own port: with two ports,
/// every reply on port k comes from listener k; with the pair, both listeners answer.
fn check_listeners(layout: Layout, ports: &[u16], version: &str) {
    match layout {
        Layout::TwoPorts => {
            for (index, &port) in ports.iter().enumerate() {
                let mut from_version = 0;
                for _ in 0..PORT_PROBES {
                    let reply = get(port).unwrap_or_else(|e| panic!("GET on port {port}: {e}"));
                    assert_eq!(
                        listener_of(&reply),
                        index,
                        "port {port} answered by another listener: {reply:?}"
                    );
                    from_version += usize::from(reply.version == version);
                }
                assert!(
                    from_version > 0,
                    "port {port}: no reply from {version} in {PORT_PROBES} requests"
                );
            }
        }
        Layout::ReuseportPair => {
            let port = ports[0];
            let deadline = Instant::now() + PAIR_PROBE_TIME;
            let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
            let mut probes = 0;
            while seen.len() < 2 && probes < PAIR_PROBES && Instant::now() < deadline {
                probes += 1;
                let reply = get(port).unwrap_or_else(|e| panic!("GET on port {port}: {e}"));
                let listener = listener_of(&reply);
                assert!(listener < 2, "no listener {listener} in a pair: {reply:?}");
                if reply.version == version {
                    *seen.entry(listener).or_default() += 1;
                }
            }
            assert_eq!(
                seen.len(),
                2,
                "{version}: replies per listener after {probes} requests: {seen:?}; \
                 one of the pair accepts no clients"
            );
        }
    }
}

/// The listening sockets on every port: inodes, with their count checked.
fn socket_inodes(ports: &[u16], per_port: usize) -> Vec<BTreeSet<u64>> {
    ports
        .iter()
        .map(|&port| {
            let inodes = listening_socket_inodes(port);
            assert_eq!(
                inodes.len(),
                per_port,
                "listening sockets on port {port}: {inodes:?}"
            );
            inodes
        })
        .collect()
}

fn restart_keeps_each_socket(layout: Layout, mode: Mode) {
    let sandbox = Sandbox::new(&format!("sockets-{layout:?}-{mode:?}"));
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let Server {
        ports,
        per_port,
        command,
    } = server(&sandbox, layout);
    let versions: Vec<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    let deploy = |version: &str| {
        fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    };

    deploy(&versions[0]);
    let launched = sandbox.start_server(
        command.under_huptime(&sandbox, mode.huptime_args()),
        ports[0],
    );
    for &port in &ports {
        wait_for_version(port, &versions[0], START_TIMEOUT);
    }
    let first_inodes = socket_inodes(&ports, per_port);
    eprintln!("listening socket inodes per port {ports:?}: {first_inodes:?}");
    check_listeners(layout, &ports, &versions[0]);

    let loads: Vec<Load> = ports
        .iter()
        .map(|&port| Load::start(port, LOAD_CLIENTS / ports.len()))
        .collect();
    for load in &loads {
        load.wait_until_served_by(&versions[0], SERVED_TIMEOUT);
    }

    let mut masters = vec![read_pid_file(&pid_file)];
    for pair in versions.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        thread::sleep(SOAK);
        deploy(new);
        let master = *masters.last().expect("a master");
        signal_restart(
            mode,
            master,
            launched.pid(),
            &format!("restart {old} -> {new}"),
        );
        let signalled = Instant::now();
        for &port in &ports {
            wait_for_version(port, new, RESTART_TIMEOUT);
        }
        eprintln!(
            "restart {old} -> {new}: served on every port after {:?}",
            signalled.elapsed()
        );
        for load in &loads {
            load.wait_until_served_by(new, SERVED_TIMEOUT);
        }
        assert_eq!(
            socket_inodes(&ports, per_port),
            first_inodes,
            "after the restart {old} -> {new}, the listening sockets on {ports:?} are not the \
             ones the first generation bound"
        );
        check_listeners(layout, &ports, new);
        let master = read_pid_file(&pid_file);
        match mode {
            Mode::Fork => assert!(!masters.contains(&master), "{new} runs in an old process"),
            Mode::Exec => assert_eq!(master, launched.pid(), "exec mode: the pid changed"),
        }
        masters.push(master);
    }

    thread::sleep(SOAK);
    for load in loads {
        let report = load.stop_without_failures();
        report.assert_versions(versions.iter().map(String::as_str));
    }
    assert_eq!(socket_inodes(&ports, per_port), first_inodes);
    if mode == Mode::Fork {
        let old = &masters[..RESTARTS];
        if let Err(left) = wait_gone(old, RETIRE_TIMEOUT) {
            panic!("old generations {left:?} still run {RETIRE_TIMEOUT:?} after the last restart");
        }
    }
    drop(launched);
}

#[test]
fn two_ports_fork() {
    restart_keeps_each_socket(Layout::TwoPorts, Mode::Fork);
}

#[test]
fn two_ports_exec() {
    restart_keeps_each_socket(Layout::TwoPorts, Mode::Exec);
}

#[test]
fn reuseport_pair_fork() {
    restart_keeps_each_socket(Layout::ReuseportPair, Mode::Fork);
}

#[test]
fn reuseport_pair_exec() {
    restart_keeps_each_socket(Layout::ReuseportPair, Mode::Exec);
}
