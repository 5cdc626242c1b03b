//! A server on a Unix socket path, restarted three times under load, in fork and exec mode.
//!
//! `blocking.py --unix PATH` does what most programs do: it unlinks PATH (a stale file from an
//! earlier run would make `bind()` fail) and then binds it. Under huptime, the new generation's
//! unlink must not remove the file of the socket it is about to inherit (clients would find
//! nothing to connect to), and its bind must return the inherited socket. So after each restart:
//! no connection failed, the file at PATH is still the same file (same inode: never removed and
//! re-created), and the socket listening on PATH is the same kernel socket as at the first start
//! (same inode in `/proc/net/unix`, and only one). Needs `cargo build --workspace` first.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    Endpoint, Load, Mode, Sandbox, ServerCommand, Style, read_pid_file, signal_restart,
    unix_listening_inodes, wait_for_version, wait_gone,
};

const RESTARTS: usize = 3;
const LOAD_CLIENTS: usize = 4;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each generation serves the load before the next restart.
const SOAK: Duration = Duration::from_millis(500);

/// The file at `path`: it must be a socket; returns its inode.
fn socket_file_inode(path: &Path) -> u64 {
    let metadata =
        fs::metadata(path).unwrap_or_else(|e| panic!("the socket file {}: {e}", path.display()));
    assert!(
        metadata.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    metadata.ino()
}

/// The one socket listening on `path`.
fn listening_inode(path: &Path) -> u64 {
    let inodes = unix_listening_inodes(path);
    assert_eq!(
        inodes.len(),
        1,
        "sockets listening on {}: {inodes:?}",
        path.display()
    );
    *inodes.first().expect("one inode")
}

fn restart_unix_socket(mode: Mode) {
    let sandbox = Sandbox::new(&format!("unix-{mode:?}"));
    let path = sandbox.file("server.sock");
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let command = ServerCommand::python(Style::Blocking.script())
        .arg("--unix")
        .arg(&path)
        .arg("--version-file")
        .arg(&version_file)
        .arg("--pid-file")
        .arg(&pid_file);
    let endpoint = Endpoint::Unix(path.clone());
    let versions: Vec<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    let deploy = |version: &str| {
        fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    };

    deploy(&versions[0]);
    let launched = sandbox.start_server(
        command.under_huptime(&sandbox, mode.huptime_args()),
        &endpoint,
    );
    wait_for_version(&endpoint, &versions[0], START_TIMEOUT);
    let file_inode = socket_file_inode(&path);
    let socket_inode = listening_inode(&path);
    eprintln!(
        "{}: file inode {file_inode}, socket inode {socket_inode}",
        path.display()
    );

    let load = Load::start(&endpoint, LOAD_CLIENTS);
    load.wait_until_served_by(&versions[0], SERVED_TIMEOUT);
    let mut masters = vec![read_pid_file(&pid_file)];
    for pair in versions.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        thread::sleep(SOAK);
        deploy(new);
        let master = *masters.last().expect("a master");
        let signalled = Instant::now();
        signal_restart(
            mode,
            master,
            launched.pid(),
            &format!("restart {old} -> {new}"),
        );
        wait_for_version(&endpoint, new, RESTART_TIMEOUT);
        eprintln!(
            "restart {old} -> {new}: served after {:?}",
            signalled.elapsed()
        );
        load.wait_until_served_by(new, SERVED_TIMEOUT);
        assert_eq!(
            socket_file_inode(&path),
            file_inode,
            "after the restart {old} -> {new}, {} is another file",
            path.display()
        );
        assert_eq!(
            listening_inode(&path),
            socket_inode,
            "after the restart {old} -> {new}, another socket listens on {}",
            path.display()
        );
        let master = read_pid_file(&pid_file);
        match mode {
            Mode::Fork => assert!(!masters.contains(&master), "{new} runs in an old process"),
            Mode::Exec => assert_eq!(master, launched.pid(), "exec mode: the pid changed"),
        }
        masters.push(master);
    }
    thread::sleep(SOAK);

    let report = load.stop_without_failures();
    report.assert_versions(versions.iter().map(String::as_str));
    if mode == Mode::Fork {
        let old = &masters[..RESTARTS];
        if let Err(left) = wait_gone(old, RETIRE_TIMEOUT) {
            panic!("old generations {left:?} still run {RETIRE_TIMEOUT:?} after the last restart");
        }
    }
    // Once the old generations are gone, the socket and its file are still the first ones.
    assert_eq!(socket_file_inode(&path), file_inode);
    assert_eq!(listening_inode(&path), socket_inode);
}

#[test]
fn fork_mode() {
    restart_unix_socket(Mode::Fork);
}

#[test]
fn exec_mode() {
    restart_unix_socket(Mode::Exec);
}
