//! Unclaimed sockets are closed: a configuration change from two ports to one.
//!
//! `servers/ports_from_file.py` listens on the ports its configuration file names, read at
//! start-up. It starts on ports P and Q under load on both; then the configuration says P only
//! and the server is restarted (in fork mode with `huptime --restart`, in exec mode with
//! SIGHUP). Once the new generation is ready, nobody listens on Q any more: a connection
//! to Q is refused, instead of waiting in a queue that nobody serves. P never failed a request,
//! is still the same kernel socket, and serves the new version. Needs `cargo build --workspace`.

mod safe_handover;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    Load, Mode, SIGHUP, Sandbox, ServerCommand, free_port, get, listening_socket_inodes,
    listening_sockets, send_signal, wait_for_version, wait_until,
};
use safe_handover::{start, write_file};

const LOAD_CLIENTS_PER_PORT: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// Failure backstop for the dropped port to refuse connections after `--restart` returned.
const REFUSED_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection attempts on the dropped port that must all be refused.
const REFUSED_PROBES: usize = 20;
/// How long the load runs before the restart, and after it.
const SOAK: Duration = Duration::from_millis(500);

/// How connecting to `port` goes: `Ok(())` if refused, else what happened instead.
fn refused(port: u16) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("connect: {e}")),
        Ok(_) => Err("the connection was accepted by the kernel".into()),
    }
}

fn two_ports_to_one(mode: Mode) {
    let sandbox = Sandbox::new(&format!("unclaimed-{mode:?}"));
    let (kept, dropped) = (free_port(), free_port());
    let ports_file = sandbox.file("ports");
    let version_file = sandbox.file("version");
    write_file(&ports_file, &format!("{kept},{dropped}"));
    write_file(&version_file, "v1");
    let server = ServerCommand::python_direct("ports_from_file.py")
        .arg("--ports-file")
        .arg(&ports_file)
        .arg("--version-file")
        .arg(&version_file);
    let mut args = vec!["--debug"];
    args.extend(mode.huptime_args());
    let instance = start(&sandbox, &args, server, kept);
    for port in [kept, dropped] {
        let reply = wait_for_version(port, "v1", START_TIMEOUT);
        assert_eq!(
            reply.field("port"),
            Some(port.to_string().as_str()),
            "{reply:?}"
        );
    }
    let kept_socket = listening_socket_inodes(kept);
    assert_eq!(kept_socket.len(), 1, "listeners on {kept}: {kept_socket:?}");
    let kept_load = Load::start(kept, LOAD_CLIENTS_PER_PORT);
    let dropped_load = Load::start(dropped, LOAD_CLIENTS_PER_PORT);
    kept_load.wait_until_served_by("v1", SERVED_TIMEOUT);
    dropped_load.wait_until_served_by("v1", SERVED_TIMEOUT);
    thread::sleep(SOAK);

    // The new configuration drops Q. Its clients go first: it is about to refuse them.
    write_file(&ports_file, &kept.to_string());
    write_file(&version_file, "v2");
    let report = dropped_load.stop();
    eprintln!("{report}");
    report.assert_no_failures();
    match mode {
        // `huptime --restart` returns once the new generation serves its sockets.
        Mode::Fork => {
            let outcome = instance.restart(&sandbox);
            assert_eq!(outcome.code, Some(0), "huptime --restart: {outcome:#?}");
        }
        // Not `huptime --restart`: it may report a successful exec-mode restart as a failure
        // (see rollback.rs, exec_mode_restarts_are_reported_as_successes). The new generation
        // is ready once it answers.
        Mode::Exec => {
            send_signal(instance.launched.pid(), SIGHUP).expect("SIGHUP to the server");
            wait_for_version(kept, "v2", SERVED_TIMEOUT);
        }
    }
    let restarted = Instant::now();

    let mut last = Ok(());
    let refusing = wait_until(REFUSED_TIMEOUT, || {
        last = refused(dropped);
        last.is_ok()
    });
    assert!(
        refusing,
        "port {dropped}, dropped from the configuration, still takes connections \
         {REFUSED_TIMEOUT:?} after the restart: {last:?}"
    );
    eprintln!(
        "port {dropped} refuses connections {:?} after --restart returned",
        restarted.elapsed()
    );
    for _ in 0..REFUSED_PROBES {
        if let Err(what) = refused(dropped) {
            panic!("port {dropped} refused a connection, then no more: {what}");
        }
    }
    assert_eq!(listening_sockets(dropped), 0, "listeners on port {dropped}");
    let stderr = instance.launched.stderr();
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("closed inherited socket")
                && line.contains(&dropped.to_string())),
        "the debug log should say the unclaimed socket was closed:\n{stderr}"
    );

    let reply = get(kept).unwrap_or_else(|e| panic!("GET on {kept} after the restart: {e}"));
    assert_eq!(reply.version, "v2", "{reply:?}");
    kept_load.wait_until_served_by("v2", SERVED_TIMEOUT);
    thread::sleep(SOAK);
    let report = kept_load.stop();
    eprintln!("{report}");
    report.assert_no_failures();
    assert_eq!(report.versions(), BTreeSet::from(["v1", "v2"]), "{report}");
    assert_eq!(
        listening_socket_inodes(kept),
        kept_socket,
        "port {kept} is not the same socket after the restart"
    );
}

#[test]
fn two_ports_to_one_fork() {
    two_ports_to_one(Mode::Fork);
}

#[test]
fn two_ports_to_one_exec() {
    two_ports_to_one(Mode::Exec);
}
