//! A classic daemonizing server (`servers/daemon.py`: fork, the parent exits 0, the child calls
//! `setsid()`, writes its pid file and serves) under huptime. The launched process exits at once
//! with status 0, as it does without huptime; the daemon is the master, and the restart signal
//! goes to the pid in its pid file, as an init script would send it. Three restarts under load,
//! in fork and exec mode, binding before daemonizing and after: no request fails, each restart
//! serves the new version from a new daemon, and the old daemon is gone afterwards (a daemon
//! that restarts forks again, so even in exec mode the daemon's pid changes). Every generation
//! prints its start line on the first start's stdout, although the daemon that restarts it has
//! pointed its own at /dev/null. Needs `cargo build --workspace`.

use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::Duration;

use huptime_tests::{
    Load, Mode, SIGHUP, Sandbox, ServerCommand, free_port, get, hold, read_pid_file, send_signal,
    wait_for_version, wait_gone,
};

const RESTARTS: usize = 3;
const LOAD_CLIENTS: usize = 6;
const HOLD_MS: u64 = 800;
const HOLD_HEAD_START: Duration = Duration::from_millis(200);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const LAUNCHER_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(15);

fn restart_daemon(mode: Mode, bind_after_daemonizing: bool) {
    let sandbox = Sandbox::new(&format!(
        "daemon-{mode:?}-{}",
        if bind_after_daemonizing {
            "bind-after"
        } else {
            "bind-first"
        }
    ));
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("daemon.pid");
    let write_version = |version: &str| {
        fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    };
    write_version("v1");
    let mut server = ServerCommand::python("daemon.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .arg("--pid-file")
        .arg(&pid_file);
    if bind_after_daemonizing {
        server = server.arg("--bind-after-daemonizing");
    }
    let mut launched =
        sandbox.start_server(server.under_huptime(&sandbox, mode.huptime_args()), port);
    let Some(status) = launched.wait_exit(LAUNCHER_EXIT_TIMEOUT) else {
        panic!("the daemon's parent did not exit");
    };
    assert_eq!(
        status.code(),
        Some(0),
        "the daemon's parent exits 0: {status}"
    );
    let first = wait_for_version(port, "v1", START_TIMEOUT);
    let mut daemon = read_pid_file(&pid_file);
    assert_eq!(first.pid, daemon, "the daemon in the pid file answers");
    assert_ne!(
        daemon,
        launched.pid(),
        "the daemon is the launched process's child"
    );

    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let mut daemons = vec![daemon];
    for n in 2..=RESTARTS + 1 {
        let (old, new) = (format!("v{}", n - 1), format!("v{n}"));
        let held = thread::spawn(move || hold(port, HOLD_MS));
        thread::sleep(HOLD_HEAD_START);
        write_version(&new);
        eprintln!("restart {old} -> {new}: SIGHUP to the daemon, pid {daemon}");
        send_signal(daemon, SIGHUP).unwrap_or_else(|e| panic!("SIGHUP to {daemon}: {e}"));
        let reply = wait_for_version(port, &new, RESTART_TIMEOUT);
        let held = held
            .join()
            .expect("the HOLD client panicked")
            .unwrap_or_else(|e| {
                panic!("HOLD request in flight at the restart {old} -> {new}: {e}")
            });
        assert_eq!(held.version, old, "the held request is answered by {old}");
        let new_daemon = read_pid_file(&pid_file);
        assert_eq!(
            reply.pid, new_daemon,
            "{new} answers from the daemon in the pid file"
        );
        assert_ne!(new_daemon, daemon, "{new} runs in a new daemon");
        if let Err(left) = wait_gone(&[daemon], RETIRE_TIMEOUT) {
            panic!(
                "the old daemon {left:?} still runs {RETIRE_TIMEOUT:?} after {new} took over; \
                 it answers: {:?}",
                // Whoever answers now: a daemon that never retired still takes its share.
                (0..20)
                    .filter_map(|_| get(port).ok())
                    .map(|r| (r.version, r.pid))
                    .collect::<BTreeSet<_>>()
            );
        }
        load.wait_until_served_by(&new, SERVED_TIMEOUT);
        daemon = new_daemon;
        daemons.push(daemon);
    }
    let report = load.stop_without_failures();
    let expected: Vec<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    report.assert_versions(expected.iter().map(String::as_str));
    // Each generation started from a daemon whose stdout is /dev/null, yet printed its start
    // line where the first one did: restarts get descriptors 0, 1, 2 of the first start.
    let started: Vec<String> = launched
        .stdout()
        .lines()
        .filter_map(|line| line.strip_prefix("starting ").map(String::from))
        .collect();
    let expected_starts: Vec<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    assert_eq!(
        started, expected_starts,
        "start lines on the first start's stdout"
    );
    // Every pid that answered for an old version is gone too.
    let old_pids: Vec<u32> = (1..=RESTARTS)
        .flat_map(|n| report.pids_with(&format!("v{n}")))
        .filter(|&pid| pid != daemon)
        .collect();
    if let Err(left) = wait_gone(&old_pids, RETIRE_TIMEOUT) {
        panic!("old daemons {left:?} still run; daemons in the pid file were {daemons:?}");
    }
}

#[test]
fn fork_mode_bind_then_daemonize() {
    restart_daemon(Mode::Fork, false);
}

#[test]
fn fork_mode_daemonize_then_bind() {
    restart_daemon(Mode::Fork, true);
}

#[test]
fn exec_mode_bind_then_daemonize() {
    restart_daemon(Mode::Exec, false);
}

#[test]
fn exec_mode_daemonize_then_bind() {
    restart_daemon(Mode::Exec, true);
}
