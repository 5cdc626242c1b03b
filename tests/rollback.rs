//! Rollback: a new version that fails to start never takes the service down.
//!
//! `servers/flaky.py` reads at start-up how that start goes: `good`, `exit-before-bind` (exit 3),
//! `exit-after-listen` (bind and listen, then exit 4), `segfault` (bind, then SIGSEGV) or `hang`
//! (bind and listen, never accept). For each bad start, in fork mode and under continuous client
//! load: the running version v1 goes on serving with no failed request, `huptime --restart`
//! exits with status 1 and prints why (the exit status, the signal, or "not ready within"), no
//! process of the failed generation is left, the old master says why on its stderr in one line
//! and its record says it serves and that its last restart failed; then a good v3 restarts fine.
//!
//! `huptime --restart` reports each rollback as a failure with its own reason, and `--status`
//! shows it; in exec mode it reports every successful restart as one.
//!
//! Deploy faults, in fork and exec mode: the server (thread per connection; for the failed
//! `execve` in exec mode also the `epoll`, `poll` and `select` loops) runs through a start
//! script that is made non-executable, removed, or given a missing interpreter before the
//! restart. The restart fails with the reason, v1 goes on serving (in exec mode in the same
//! process throughout, its sockets given back after the failed `execve`), and once the script
//! is repaired a restart succeeds.
//!
//! Needs `cargo build --workspace` first.

mod safe_handover;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use huptime_tests::control::Outcome;
use huptime_tests::{
    Load, Mode, Sandbox, ServerCommand, Style, free_port, get, listening_socket_inodes,
    read_pid_file, wait_for_version, wait_gone, wait_until, zombie_children,
};
use safe_handover::{Flaky, Instance, start, threads_waiting, write_file};

const LOAD_CLIENTS: usize = 4;
/// Short, so that the hanging start is given up quickly.
const READY_TIMEOUT_ARG: &str = "--ready-timeout=2";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the processes of a failed generation, or a retired one, may take to go away.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// The load goes on this long after a failed restart, served by the old version.
const AFTER_FAILURE: Duration = Duration::from_millis(300);
/// What the master logs (always, not only with --debug) when it rolls a restart back.
const ROLLBACK_LINE: &str = "restart failed";

/// The reason a failed `huptime --restart` printed, after checking that it failed as it
/// should: exit status 1, nothing claimed as restarted, a `failed: <reason>` line on stderr.
fn failure_reason(outcome: &Outcome) -> String {
    assert_eq!(
        outcome.code,
        Some(1),
        "huptime --restart of a rolled-back restart should exit with status 1: {outcome:#?}"
    );
    assert!(
        !outcome.stdout.contains("restarted"),
        "huptime --restart claims a restart that was rolled back: {outcome:#?}"
    );
    let line = outcome
        .stderr
        .lines()
        .find(|line| line.contains("failed: "))
        .unwrap_or_else(|| panic!("huptime --restart printed no reason: {outcome:#?}"));
    let reason = line
        .split_once("failed: ")
        .map(|(_, reason)| reason.trim().to_owned())
        .unwrap_or_default();
    assert!(!reason.is_empty(), "an empty reason: {outcome:#?}");
    reason
}

fn assert_succeeded(outcome: &Outcome, what: &str) {
    assert_eq!(
        outcome.code,
        Some(0),
        "{what}: huptime --restart should succeed: {outcome:#?}"
    );
    assert!(
        outcome.stdout.contains("restarted"),
        "{what}: huptime --restart should say it restarted: {outcome:#?}"
    );
}

/// Who serves before a restart that is to fail.
struct Serving {
    port: u16,
    /// The listening socket's inode.
    socket: BTreeSet<u64>,
    pid: u32,
    version: &'static str,
}

/// `pid` serves v1 on `port`: who serves, and a load it serves.
fn serving_v1_under_load(port: u16, pid: u32) -> (Serving, Load) {
    let serving = Serving {
        port,
        socket: listening_socket_inodes(port),
        pid,
        version: "v1",
    };
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    (serving, load)
}

/// After a good restart to v3 that followed the rollbacks, in `mode`: v3 serves from the pid in
/// `pid_file` (fork mode: a new process; exec mode: the old one) on the same socket, the load
/// saw v1 and v3 and no failure, and in fork mode the old master retires, in exec mode it
/// answered every request and is alone.
fn assert_v3_took_over(sandbox: &Sandbox, old: &Serving, pid_file: &Path, mode: Mode, load: Load) {
    let (port, master) = (old.port, old.pid);
    let new_master = read_pid_file(pid_file);
    match mode {
        Mode::Fork => assert_ne!(new_master, master, "fork mode: a new process serves v3"),
        Mode::Exec => assert_eq!(new_master, master, "exec mode: the pid changed"),
    }
    let reply = get(port).unwrap_or_else(|e| panic!("GET after the good restart: {e}"));
    assert_eq!((reply.version.as_str(), reply.pid), ("v3", new_master));
    load.wait_until_served_by("v3", SERVED_TIMEOUT);
    let report = load.stop_without_failures();
    report.assert_versions(["v1", "v3"]);
    assert_eq!(listening_socket_inodes(port), old.socket);
    match mode {
        Mode::Fork => {
            if let Err(left) = wait_gone(&[master], GONE_TIMEOUT) {
                panic!("the old master {left:?} did not retire after the good restart");
            }
        }
        Mode::Exec => {
            assert_eq!(
                report.pids(),
                BTreeSet::from([master]),
                "exec mode: every reply comes from the launched process"
            );
            assert!(
                wait_until(GONE_TIMEOUT, || sandbox.processes() == [master]),
                "exec mode: processes {:?} besides the launched one",
                sandbox.processes()
            );
        }
    }
}

/// After a failed restart: the old master alone serves its version on its port, from the same
/// socket, and is the only process of the sandbox; its record says it serves and that the
/// restart failed; its stderr has said why, `rollbacks` times in all.
fn assert_rolled_back(
    sandbox: &Sandbox,
    instance: &Instance,
    serving: &Serving,
    reason: &str,
    rollbacks: usize,
) {
    let Serving {
        port,
        ref socket,
        pid,
        version,
    } = *serving;
    let only_master = wait_until(GONE_TIMEOUT, || sandbox.processes() == [pid]);
    assert!(
        only_master,
        "after the rollback the processes are {:?}, not the old master {pid} alone",
        sandbox.processes()
    );
    let reply = get(port).unwrap_or_else(|e| {
        panic!(
            "GET after the rollback: {e}; the old master's threads:\n{}",
            threads_waiting(pid)
        )
    });
    assert_eq!(
        (reply.version.as_str(), reply.pid),
        (version, pid),
        "after the rollback"
    );
    assert_eq!(
        &listening_socket_inodes(port),
        socket,
        "the listening socket changed"
    );
    let records = instance.records();
    assert_eq!(
        records.len(),
        1,
        "one master, one record after the rollback: {records:#?}"
    );
    let record = &records[0];
    assert_eq!(
        (record.pid, record.phase.as_str()),
        (pid, "serving"),
        "{record:?}"
    );
    assert!(
        record
            .last
            .as_deref()
            .is_some_and(|last| last.split(',').nth(1) == Some("failed")),
        "the record should say the last restart failed: {record:?}"
    );
    let stderr = instance.launched.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(ROLLBACK_LINE))
        .collect();
    assert_eq!(
        lines.len(),
        rollbacks,
        "the old generation should say why in one line per rollback: {lines:#?}"
    );
    // "... restart failed, generation N goes on serving: <why>"; `huptime --restart` gives the
    // same why, perhaps with more around it.
    let why = lines
        .last()
        .and_then(|line| line.split_once("serving: "))
        .map(|(_, why)| why.trim())
        .unwrap_or_default();
    assert!(
        !why.is_empty() && reason.contains(why),
        "the old generation's line and huptime --restart should give the same reason \
         ({reason:?}): {lines:#?}"
    );
}

/// One bad start under load and the good restart after it, in fork mode. `expect` are words
/// the reason must contain; `reaped` also checks that the failed generation is not left as a
/// zombie child of the old master.
fn bad_start(behaviour: &str, expect: &[&str], reaped: bool) {
    let sandbox = Sandbox::new(&format!("rollback-{behaviour}"));
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let instance = start(
        &sandbox,
        &["--debug", READY_TIMEOUT_ARG],
        flaky.command(),
        port,
    );
    let master = read_pid_file(&flaky.pid);
    assert_eq!(
        master,
        instance.launched.pid(),
        "the launched process serves"
    );
    wait_for_version(port, "v1", START_TIMEOUT);
    let (serving, load) = serving_v1_under_load(port, master);

    flaky.deploy(behaviour, "v2");
    let outcome = instance.restart(&sandbox);
    let reason = failure_reason(&outcome);
    eprintln!(
        "{behaviour}: the restart failed after {:?}: {reason}",
        outcome.took
    );
    for word in expect {
        assert!(
            reason.contains(word),
            "{behaviour}: the reason should say {word:?}: {reason:?}"
        );
    }
    let failed = flaky.started_as(behaviour);
    assert_eq!(failed.len(), 1, "starts as {behaviour}: {failed:?}");
    if let Err(left) = wait_gone(&failed, GONE_TIMEOUT) {
        panic!("{behaviour}: the failed generation {left:?} is still running");
    }
    if reaped {
        let reaped = wait_until(GONE_TIMEOUT, || zombie_children(master).is_empty());
        assert!(
            reaped,
            "{behaviour}: the failed generation is left as a zombie child {:?} of the old master",
            zombie_children(master)
        );
    }
    assert_rolled_back(&sandbox, &instance, &serving, &reason, 1);
    thread::sleep(AFTER_FAILURE);

    flaky.deploy("good", "v3");
    let outcome = instance.restart(&sandbox);
    assert_succeeded(&outcome, &format!("good again after {behaviour}"));
    assert_v3_took_over(&sandbox, &serving, &flaky.pid, Mode::Fork, load);
}

#[test]
fn exit_before_bind() {
    bad_start(
        "exit-before-bind",
        &["exited", "before it was ready"],
        false,
    );
}

#[test]
fn exit_after_listen() {
    bad_start(
        "exit-after-listen",
        &["exited", "before it was ready"],
        false,
    );
}

#[test]
fn segfault() {
    bad_start("segfault", &["before it was ready"], false);
}

#[test]
fn hang_is_stopped_after_the_ready_timeout() {
    bad_start("hang", &["not ready within 2"], false);
}

/// The reason gives the exit status or the signal, and the old master reaps what it started.
#[test]
fn exit_before_bind_reason_has_the_status() {
    bad_start("exit-before-bind", &["exited with status 3"], true);
}

#[test]
fn exit_after_listen_reason_has_the_status() {
    bad_start("exit-after-listen", &["exited with status 4"], true);
}

#[test]
fn segfault_reason_has_the_signal() {
    bad_start("segfault", &["signal 11"], true);
}

#[test]
fn hang_is_reaped() {
    bad_start("hang", &["not ready within 2"], true);
}

/// `huptime --restart` reports each rolled-back restart as a failure with its own reason (not
/// a stale one from an earlier attempt), `--status` shows it, and a later restart succeeds.
#[test]
fn restart_command_reports_a_rollback_as_a_failure() {
    let sandbox = Sandbox::new("rollback-report");
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let instance = start(
        &sandbox,
        &["--debug", READY_TIMEOUT_ARG],
        flaky.command(),
        port,
    );
    let (serving, load) = serving_v1_under_load(port, instance.launched.pid());

    flaky.deploy("exit-before-bind", "v2");
    let first = failure_reason(&instance.restart(&sandbox));
    assert!(
        first.contains("before it was ready"),
        "first reason: {first:?}"
    );
    assert_rolled_back(&sandbox, &instance, &serving, &first, 1);

    flaky.deploy("hang", "v2");
    let second = failure_reason(&instance.restart(&sandbox));
    assert!(
        second.contains("not ready within"),
        "the second failure should report its own reason, not the first one's: {second:?}"
    );
    assert_rolled_back(&sandbox, &instance, &serving, &second, 2);

    let status = instance.status(&sandbox);
    assert_eq!(status.code, Some(0), "--status: {status:#?}");
    let last = status
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("Last restart:"))
        .unwrap_or_else(|| panic!("--status shows no last restart: {status:#?}"));
    assert!(
        last.contains("failed") && last.contains("not ready within"),
        "--status should show the failed restart and why: {last:?}"
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|line| line.trim_start() == "Phase: serving"),
        "--status: the old generation serves: {status:#?}"
    );

    flaky.deploy("good", "v3");
    assert_succeeded(&instance.restart(&sandbox), "after two rollbacks");
    load.wait_until_served_by("v3", SERVED_TIMEOUT);
    let report = load.stop_without_failures();
    report.assert_versions(["v1", "v3"]);
}

/// What is wrong with the start script at the restart.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `chmod -x`.
    NotExecutable,
    /// Renamed away.
    Removed,
    /// Its `#!` names an interpreter that does not exist: `execve` itself fails (ENOENT).
    MissingInterpreter,
}

const WRAPPER: &str = "#!/bin/sh\n# Start script: sets nothing up, runs the server.\nexec \"$@\"\n";

fn install_wrapper(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, text).expect("write the start script");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod the start script");
    fs::rename(&tmp, path).expect("install the start script");
}

impl Fault {
    fn apply(self, wrapper: &Path) {
        match self {
            Fault::NotExecutable => {
                fs::set_permissions(wrapper, fs::Permissions::from_mode(0o644))
                    .expect("chmod -x the start script");
            }
            Fault::Removed => {
                fs::rename(wrapper, wrapper.with_extension("away"))
                    .expect("remove the start script");
            }
            Fault::MissingInterpreter => install_wrapper(
                wrapper,
                &WRAPPER.replacen("#!/bin/sh", "#!/nonexistent/bin/sh", 1),
            ),
        }
    }

    fn repair(self, wrapper: &Path) {
        install_wrapper(wrapper, WRAPPER);
    }

    /// Whether `reason` tells this fault (in one of the words a user would recognise).
    fn explained_by(self, reason: &str) -> bool {
        match self {
            Fault::NotExecutable => {
                reason.contains("Permission denied") || reason.contains("not executable")
            }
            Fault::Removed => reason.contains("No such file") || reason.contains("does not exist"),
            Fault::MissingInterpreter => reason.contains("No such file"),
        }
    }
}

/// The server `style` run through a start script that `fault` breaks before a restart, in
/// `mode`.
fn deploy_fault(fault: Fault, mode: Mode, style: Style) {
    let sandbox = Sandbox::new(&format!("rollback-{fault:?}-{mode:?}-{style:?}"));
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let wrapper = sandbox.file("start.sh");
    install_wrapper(&wrapper, WRAPPER);
    let deploy = |version: &str| write_file(&version_file, version);
    deploy("v1");
    let server = ServerCommand::python_direct(style.script())
        .serving(port, &version_file, &pid_file)
        .wrapped_in(&wrapper, &[]);
    let mut args = vec!["--debug", READY_TIMEOUT_ARG];
    args.extend(mode.huptime_args());
    let instance = start(&sandbox, &args, server, port);
    let master = instance.launched.pid();
    assert_eq!(
        read_pid_file(&pid_file),
        master,
        "the launched process serves"
    );
    let (serving, load) = serving_v1_under_load(port, master);

    fault.apply(&wrapper);
    deploy("v2");
    let outcome = instance.restart(&sandbox);
    let reason = failure_reason(&outcome);
    eprintln!(
        "{fault:?}: the restart failed after {:?}: {reason}",
        outcome.took
    );
    let wrapper_path = wrapper.to_string_lossy();
    assert!(
        reason.contains(wrapper_path.as_ref()) && fault.explained_by(&reason),
        "{fault:?}: the reason should name {wrapper_path} and what is wrong with it: {reason:?}"
    );
    assert_eq!(
        read_pid_file(&pid_file),
        master,
        "{fault:?}: the server started again although its start script is broken"
    );
    assert_rolled_back(&sandbox, &instance, &serving, &reason, 1);
    assert!(
        zombie_children(master).is_empty(),
        "{fault:?}: zombie children {:?} of the master",
        zombie_children(master)
    );
    thread::sleep(AFTER_FAILURE);

    fault.repair(&wrapper);
    deploy("v3");
    assert_succeeded(&instance.restart(&sandbox), &format!("{fault:?} repaired"));
    wait_for_version(port, "v3", START_TIMEOUT);
    assert_v3_took_over(&sandbox, &serving, &pid_file, mode, load);
}

/// Thread per connection, its main thread blocked in `accept()`: the most common shape.
mod deploy_fault {
    use super::*;

    #[test]
    fn not_executable_fork() {
        deploy_fault(Fault::NotExecutable, Mode::Fork, Style::Threaded);
    }

    #[test]
    fn not_executable_exec() {
        deploy_fault(Fault::NotExecutable, Mode::Exec, Style::Threaded);
    }

    #[test]
    fn removed_fork() {
        deploy_fault(Fault::Removed, Mode::Fork, Style::Threaded);
    }

    #[test]
    fn removed_exec() {
        deploy_fault(Fault::Removed, Mode::Exec, Style::Threaded);
    }

    #[test]
    fn missing_interpreter_fork() {
        deploy_fault(Fault::MissingInterpreter, Mode::Fork, Style::Threaded);
    }

    /// `execve` itself fails after the old image ghosted and drained: its sockets are given
    /// back, and the thread blocked in `accept()` must accept from the real socket again.
    #[test]
    fn missing_interpreter_exec() {
        deploy_fault(Fault::MissingInterpreter, Mode::Exec, Style::Threaded);
    }

    /// The same with an event loop: its epoll registration must be given back too.
    #[test]
    fn missing_interpreter_exec_epoll() {
        deploy_fault(Fault::MissingInterpreter, Mode::Exec, Style::Epoll);
    }

    /// A `poll()` loop, and a `select()` loop: one may be waiting in the call on the ghost when
    /// the real socket is given back.
    #[test]
    fn missing_interpreter_exec_poll() {
        deploy_fault(Fault::MissingInterpreter, Mode::Exec, Style::Poll);
    }

    #[test]
    fn missing_interpreter_exec_select() {
        deploy_fault(Fault::MissingInterpreter, Mode::Exec, Style::Select);
    }
}

/// `huptime --restart` in exec mode, again and again under load: each restart succeeds and is
/// reported as one. The server is a pool of threads blocked in `accept()`: the process executes
/// the new generation from a thread other than its main one, and while the kernel ends the
/// other threads it shows the pid as a zombie for a moment; that is not an exit.
#[test]
fn exec_mode_restarts_are_reported_as_successes() {
    const RESTARTS: usize = 20;
    let sandbox = Sandbox::new("rollback-exec-reports");
    let port = free_port();
    let version_file = sandbox.file("version");
    write_file(&version_file, "v0");
    let server = ServerCommand::python_direct(Style::Threadpool.script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .arg("--workers")
        .arg("32");
    let instance = start(&sandbox, &["--debug", "--exec"], server, port);
    let pid = instance.launched.pid();
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v0", SERVED_TIMEOUT);
    let mut failed = Vec::new();
    for n in 1..=RESTARTS {
        let version = format!("v{n}");
        write_file(&version_file, &version);
        let outcome = instance.restart(&sandbox);
        if outcome.code != Some(0) {
            failed.push(format!("{version}: {outcome:?}"));
        }
        wait_for_version(port, &version, START_TIMEOUT);
    }
    let report = load.stop_without_failures();
    assert_eq!(
        report.pids(),
        BTreeSet::from([pid]),
        "exec mode keeps the pid"
    );
    assert!(
        failed.is_empty(),
        "{} of {RESTARTS} exec-mode restarts were reported as failures:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
