//! Socket activation: the test creates a listening TCP socket and passes it to huptime the way
//! systemd does (descriptor 3, `LISTEN_FDS=1`, `LISTEN_PID` = the PID that executes huptime,
//! `LISTEN_FDNAMES`). The program binds its usual address and is served the passed socket (the
//! same kernel socket, and no other listener on the port), and it does not see the `LISTEN_*`
//! variables. Stopping the program (`huptime --stop`) and starting it again while the test keeps
//! the socket refuses no connection: clients that connect in between wait in the queue and are
//! answered by the new start.
//!
//! Bad input is warned about, one line each, and ignored, and the program still starts:
//! a malformed `LISTEN_FDS`, a `LISTEN_PID` naming another process, descriptors that are not
//! sockets or not open. Needs `cargo build --workspace`.

mod ops;

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use huptime_tests::control::Controller;
use huptime_tests::{
    Sandbox, ServerCommand, ServerProcess, environ, free_port, get, huptime_binary,
    listening_socket_inodes,
};

use ops::{RetryLoad, socket_inodes};

const TIMEOUT: Duration = Duration::from_secs(10);
const CLIENTS: usize = 4;

/// `huptime --pidfile=app.pid -- python3 blocking.py --port <port>` started the systemd way: `passed` (if any)
/// becomes descriptor 3 and `LISTEN_PID` is set to the PID that executes huptime unless `env`
/// sets it.
fn activated(
    sandbox: &Sandbox,
    control: &Controller<'_>,
    port: u16,
    passed: Option<RawFd>,
    env: &[(&str, &str)],
) -> Command {
    let version_file = sandbox.file("version");
    if !version_file.exists() {
        fs::write(&version_file, "v1\n").unwrap();
    }
    let program = ServerCommand::python("blocking.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file);
    // `sh` sets LISTEN_PID to its own PID, which huptime keeps as it replaces it.
    let pidfile = format!("--pidfile={}", sandbox.file("app.pid").display());
    let mut command = program.under_huptime(sandbox, &[&pidfile]);
    let huptime_args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut shell = sandbox.command("sh");
    shell
        .arg("-c")
        .arg(r#": "${LISTEN_PID:=$$}"; export LISTEN_PID; exec "$@""#)
        .arg("sh")
        .arg(huptime_binary())
        .args(huptime_args)
        .env("XDG_RUNTIME_DIR", control.runtime_dir());
    for (key, value) in env {
        shell.env(key, value);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        shell.pre_exec(move || {
            if let Some(fd) = passed {
                if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Nothing else from 4 on, so "not open" means not open.
            libc::close(4);
            Ok(())
        });
    }
    command = shell;
    command
}

fn inode(socket: &TcpListener) -> u64 {
    fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .expect("stat our socket")
        .ino()
}

/// Checks the running program serves `socket` and no other listener on its port.
fn assert_serves_passed_socket(server: &ServerProcess, socket: &TcpListener, port: u16) {
    let inode = inode(socket);
    assert!(
        socket_inodes(server.pid()).contains(&inode),
        "the program holds the passed socket (inode {inode}); it holds {:?}",
        socket_inodes(server.pid())
    );
    assert_eq!(
        listening_socket_inodes(port)
            .into_iter()
            .collect::<Vec<_>>(),
        [inode],
        "the only listener on the port is the passed socket"
    );
    let env = environ(server.pid());
    assert!(
        !env.iter().any(|var| var.starts_with("LISTEN_")),
        "the program must not see LISTEN_*: {env:?}"
    );
}

#[test]
fn passed_socket_is_served_and_survives_stop_and_start() {
    let sandbox = Sandbox::new("activation");
    let control = Controller::new(&sandbox);
    let port = free_port();
    let socket = TcpListener::bind(("127.0.0.1", port)).expect("bind the socket to pass");
    let env = [("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web")];
    let command = activated(&sandbox, &control, port, Some(socket.as_raw_fd()), &env);
    let mut first = sandbox.start_server(command, port);
    assert_serves_passed_socket(&first, &socket, port);
    let stderr = first.stderr();
    assert!(
        !stderr.contains("warning"),
        "no warning for good input: {stderr}"
    );

    let load = RetryLoad::start(port, CLIENTS);
    load.wait_for_more(20, TIMEOUT);
    // Stop: the program ends; clients keep connecting and wait in the queue of our socket.
    let pidfile = format!("--pidfile={}", sandbox.file("app.pid").display());
    let stopped = control.run(&["--stop", "--timeout=5", &pidfile]);
    assert_eq!(stopped.code, Some(0), "{stopped:#?}");
    first
        .wait_exit(TIMEOUT)
        .expect("the program exits on --stop");
    let answered_while_stopped = load.answered();
    thread::sleep(Duration::from_millis(300));
    assert!(
        load.answered() <= answered_while_stopped + CLIENTS as u64,
        "nothing serves while the program is stopped"
    );
    // Started again with the same socket: the waiting clients are answered.
    let command = activated(&sandbox, &control, port, Some(socket.as_raw_fd()), &env);
    let second = sandbox.start_server(command, port);
    assert_ne!(second.pid(), first.pid());
    load.wait_for_more(20, TIMEOUT);
    assert_serves_passed_socket(&second, &socket, port);
    let report = load.stop();
    assert_eq!(
        report.refused, 0,
        "no connection may be refused: {report:#?}"
    );
    assert_eq!(
        report.unanswered, 0,
        "every request is answered: {report:#?}"
    );
    // Only a request the stopped program had accepted can be cut off (it is then retried).
    assert!(report.resets <= CLIENTS as u64, "{report:#?}");
    assert!(
        report.answered.contains_key(&second.pid()) && report.answered.contains_key(&first.pid()),
        "both starts served: {report:#?}"
    );
}

/// The warning lines huptime printed.
fn warnings(server: &ServerProcess) -> Vec<String> {
    server
        .stderr()
        .lines()
        .filter(|line| line.starts_with("huptime: warning: "))
        .map(str::to_owned)
        .collect()
}

fn start_with(name: &str, passed: Option<RawFd>, env: &[(&str, &str)], expected: &[&str]) {
    let sandbox = Sandbox::new(name);
    let control = Controller::new(&sandbox);
    let port = free_port();
    let command = activated(&sandbox, &control, port, passed, env);
    let server = sandbox.start_server(command, port);
    let warnings = warnings(&server);
    assert_eq!(
        warnings.len(),
        expected.len(),
        "{name}: one warning per problem: {warnings:#?}"
    );
    for (line, words) in warnings.iter().zip(expected) {
        assert!(
            line.contains(words),
            "{name}: {line:?} should say {words:?}"
        );
    }
    let reply = get(port).expect("the program serves");
    assert_eq!(reply.pid, server.pid());
    assert!(
        !environ(server.pid())
            .iter()
            .any(|v| v.starts_with("LISTEN_")),
        "{name}: the variables are taken out all the same"
    );
    // The program's listener is its own socket (the passed one was not bound to its port).
    assert_eq!(listening_socket_inodes(port).len(), 1, "{name}");
}

#[test]
fn malformed_listen_fds_is_ignored_with_a_warning() {
    start_with(
        "activation-garbage",
        None,
        &[("LISTEN_FDS", "three")],
        &[r#"ignoring LISTEN_FDS="three": not a number of descriptors"#],
    );
}

#[test]
fn listen_pid_of_another_process_is_ignored_with_a_warning() {
    let other = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    start_with(
        "activation-other-pid",
        Some(other.as_raw_fd()),
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
        &["ignoring LISTEN_FDS=1: LISTEN_PID=1 names another process"],
    );
}

#[test]
fn descriptors_that_are_not_sockets_are_ignored_with_a_warning() {
    let file = File::open(Path::new("/dev/null")).unwrap();
    start_with(
        "activation-not-sockets",
        Some(file.as_raw_fd()),
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "null:missing")],
        &[
            "ignoring LISTEN_FDS descriptor 3 (null): not a socket",
            "ignoring LISTEN_FDS descriptor 4 (missing): not an open descriptor",
        ],
    );
}
