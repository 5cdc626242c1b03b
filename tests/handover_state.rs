//! Bad input reaching the preload library or the launcher: the program must run as it would
//! without huptime, with a one-line warning, and never crash.
//!
//! - An unreadable handover state (`HUPTIME_STATE`): a malformed one, or one of a format version
//!   this library does not know. A start script puts it in the environment of the server's first
//!   start only; the shell and the server run in the launched process (each `exec`s the next), so
//!   the state reaches the server as its own. The script runs the Python interpreter's own
//!   executable, not a `python3` that may be a wrapper execing other programs first, so that the
//!   server is the first program image to see the bad input and exactly one warning is expected. The server must serve normally, warn once, and
//!   start as a first generation, so that a restart afterwards works as always: the next
//!   generation gets a good state and the same socket, and no client notices.
//! - Unreadable launcher options (`HUPTIME_OPTIONS`): the server serves normally, warns that
//!   restarts are disabled, and the restart signal does what it does without huptime: SIGHUP
//!   (not handled by the server) kills it.
//! - A statically linked program ignores `LD_PRELOAD`: the launcher warns that restarts will not
//!   keep its sockets, then runs it, with its output and exit status unchanged.
//!
//! Needs `cargo build --workspace` first, and a C compiler with a static libc for the last test
//! (Debian: `gcc`, `libc6-dev`).

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    FailureKind, Load, SIGHUP, Sandbox, ServerCommand, Style, free_port, get, huptime_binary,
    listening_socket_inodes, read_pid_file, wait_for_version,
};

const LOAD_CLIENTS: usize = 4;
const LOAD_TIME: Duration = Duration::from_millis(500);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A start script that sets `variable` to `value` and then `exec`s its arguments; with
/// `first_start_only`, only when `marker` does not exist yet (it creates it).
fn start_script(sandbox: &Sandbox, variable: &str, value: &str, first_start_only: bool) -> PathBuf {
    let script = sandbox.file("start.sh");
    let marker = sandbox.file("started-once");
    let condition = if first_start_only {
        format!("[ ! -e '{}' ]", marker.display())
    } else {
        "true".to_string()
    };
    let text = format!(
        "#!/bin/sh\n\
         if {condition}; then\n\
         \x20   : > '{marker}'\n\
         \x20   {variable}='{value}'\n\
         \x20   export {variable}\n\
         fi\n\
         exec \"$@\"\n",
        marker = marker.display(),
    );
    fs::write(&script, text).expect("write the start script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
        .expect("make the start script executable");
    script
}

/// The lines of `text` that contain `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|line| line.contains(needle)).collect()
}

fn write_version(path: &Path, version: &str) {
    fs::write(path, format!("{version}\n")).expect("write the version file");
}

/// Serves under load for a moment: every request answered by `version`.
fn serve_under_load(port: u16, version: &str) {
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by(version, SERVED_TIMEOUT);
    thread::sleep(LOAD_TIME);
    let report = load.stop();
    report.assert_no_failures();
    assert_eq!(report.versions().into_iter().collect::<Vec<_>>(), [version]);
}

/// The server's first start gets `state` as its handover state.
fn starts_fresh_on_an_unreadable_state(name: &str, state: &str) {
    let sandbox = Sandbox::new(name);
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    write_version(&version_file, "v1");
    let script = start_script(&sandbox, "HUPTIME_STATE", state, true);
    let server = ServerCommand::python_direct(Style::Blocking.script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .arg("--pid-file")
        .arg(&pid_file)
        .wrapped_in(&script, &[]);
    let mut launched = sandbox.start_server(server.under_huptime(&sandbox, &[]), port);
    assert!(
        sandbox.file("started-once").exists(),
        "the start script did not run"
    );

    let reply = get(port).expect("GET");
    assert_eq!(reply.version, "v1");
    assert_eq!(
        reply.pid,
        launched.pid(),
        "the server should run in the launched process (each step execs the next)"
    );
    let stderr = launched.stderr();
    let warnings = lines_with(&stderr, "handover state");
    assert_eq!(
        warnings.len(),
        1,
        "expected one warning about the handover state; stderr:\n{stderr}"
    );
    eprintln!("warning: {}", warnings[0]);
    serve_under_load(port, "v1");

    // It started as a first generation: a restart works as always.
    let inodes = listening_socket_inodes(port);
    assert_eq!(inodes.len(), 1, "listening sockets on port {port}");
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    write_version(&version_file, "v2");
    launched.signal(SIGHUP);
    wait_for_version(port, "v2", RESTART_TIMEOUT);
    load.wait_until_served_by("v2", SERVED_TIMEOUT);
    thread::sleep(LOAD_TIME);
    load.stop_without_failures();
    assert_eq!(
        listening_socket_inodes(port),
        inodes,
        "the restart did not hand over the listening socket"
    );
    let new_master = read_pid_file(&pid_file);
    assert_ne!(
        new_master,
        launched.pid(),
        "fork mode: v2 runs in a new process"
    );
    let status = launched
        .wait_exit(RETIRE_TIMEOUT)
        .unwrap_or_else(|| panic!("the first generation still runs {RETIRE_TIMEOUT:?} after it"));
    assert!(
        status.success(),
        "the first generation retired with {status}"
    );
    // The second generation read its state without complaint.
    let stderr = launched.stderr();
    assert_eq!(
        lines_with(&stderr, "handover state").len(),
        1,
        "stderr:\n{stderr}"
    );
    assert_eq!(get(port).expect("GET after the restart").pid, new_master);
}

#[test]
fn malformed_state_starts_a_first_generation() {
    starts_fresh_on_an_unreadable_state("state-malformed", "huptime/1;gen=oops;end");
}

#[test]
fn state_of_an_unknown_version_starts_a_first_generation() {
    starts_fresh_on_an_unreadable_state(
        "state-foreign",
        "huptime/9;gen=1;pid=1;instance=future;sock=3,whatever;end",
    );
}

/// Starts `blocking.py` on `port`, serves some load, sends SIGHUP, and returns how it ended.
fn sighup_outcome(sandbox: &Sandbox, command: Command, port: u16) -> ExitStatus {
    let mut server = sandbox.start_server(command, port);
    serve_under_load(port, "v1");
    server.signal(SIGHUP);
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("still running {EXIT_TIMEOUT:?} after SIGHUP"));
    let refused = get(port).expect_err("the port answers after the server ended");
    assert_eq!(refused.kind, FailureKind::Refused, "{refused}");
    status
}

#[test]
fn malformed_options_disable_restarts() {
    let sandbox = Sandbox::new("options-malformed");
    let version_file = sandbox.file("version");
    write_version(&version_file, "v1");
    let server = |port: u16| {
        ServerCommand::python_direct(Style::Blocking.script())
            .arg("--port")
            .arg(port.to_string())
            .arg("--version-file")
            .arg(&version_file)
    };

    // What SIGHUP does to this server without huptime: it does not handle the signal.
    let port = free_port();
    let bare = sighup_outcome(&sandbox, server(port).bare(&sandbox), port);
    assert_eq!(bare.signal(), Some(SIGHUP), "bare server: {bare}");

    let script = start_script(&sandbox, "HUPTIME_OPTIONS", "garbage", false);
    let port = free_port();
    let command = server(port)
        .wrapped_in(&script, &[])
        .under_huptime(&sandbox, &[]);
    let log = sandbox.file("server-2.stderr.log");
    let status = sighup_outcome(&sandbox, command, port);
    let stderr = fs::read_to_string(&log).expect("read the server's stderr");
    let warnings = lines_with(&stderr, "restarts are disabled");
    assert_eq!(warnings.len(), 1, "stderr:\n{stderr}");
    assert!(
        warnings[0].contains("options"),
        "the warning should say what is wrong: {}",
        warnings[0]
    );
    eprintln!("warning: {}", warnings[0]);
    // Restarts are disabled, so the signal does what it does without huptime.
    assert_eq!(status, bare, "under huptime with bad options: {status}");
}

/// Runs `command` to its end (within `timeout`): status, stdout, stderr.
fn run(mut command: Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still runs after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let read = |stream: &mut dyn Read| {
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read output");
        text
    };
    let stdout = read(child.stdout.as_mut().expect("stdout pipe"));
    let stderr = read(child.stderr.as_mut().expect("stderr pipe"));
    (status, stdout, stderr)
}

#[test]
fn static_binary_runs_with_a_warning() {
    let sandbox = Sandbox::new("static-binary");
    let source = sandbox.file("hello.c");
    let binary = sandbox.file("hello");
    fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 3; }\n",
    )
    .expect("write hello.c");
    let mut cc = sandbox.command("cc");
    cc.arg("-static").arg("-o").arg(&binary).arg(&source);
    let (status, _, stderr) = run(cc, Duration::from_secs(60));
    assert!(
        status.success(),
        "`cc -static` failed ({status}): this test needs a C compiler and a static libc \
         (Debian: gcc, libc6-dev)\n{stderr}"
    );

    let mut command = sandbox.command(huptime_binary());
    command.arg("--").arg(&binary);
    let (status, stdout, stderr) = run(command, EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(3), "{status}; stderr:\n{stderr}");
    assert_eq!(stdout, "hello\n");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one warning line; stderr:\n{stderr}"
    );
    assert!(
        lines[0].contains("statically linked") && lines[0].contains("restarts will not keep"),
        "stderr: {stderr}"
    );
    assert!(
        lines[0].contains("hello"),
        "the warning should name the program: {stderr}"
    );

    // A dynamically linked program gets no such warning.
    let mut command = sandbox.command(huptime_binary());
    command.args(["--", "sh", "-c", "echo dynamic; exit 3"]);
    let (status, stdout, stderr) = run(command, EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(3), "{status}; stderr:\n{stderr}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("dynamic\n", ""));
}
