//! Deploys as they are done in practice, followed by a restart under load: the new generation
//! must run what the deploy put in place, found anew by the paths the server was started with.
//!
//! - A `current` symlink flipped atomically from one release directory to the next: the restart
//!   runs `current/server` through the new link (not the old inode, not the old target).
//! - The server's working directory replaced by a new one under the same name: the restart
//!   re-enters the directory by its path, so a relative `--version-file` is read from the new
//!   directory (not from the old one, which a kept directory handle would still point at).
//!
//! Zero failed requests throughout, a request in flight at each restart answered in full, and
//! the old generations gone. Needs `cargo build --workspace`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use huptime_tests::{
    Load, Mode, SIGHUP, Sandbox, ServerCommand, ServerProcess, free_port, hold, read_pid_file,
    send_signal, wait_for_version, wait_gone, write_versioned_testserver,
};

const TESTSERVER: &str = env!("CARGO_BIN_EXE_hup-testserver");
const LOAD_CLIENTS: usize = 6;
/// The request held open across each restart.
const HOLD_MS: u64 = 800;
const HOLD_HEAD_START: Duration = Duration::from_millis(200);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `command` (a huptime command line) serving `versions[0]`, which must already be
/// deployed, then for each later version: holds a request open, calls `deploy(version)`, sends
/// SIGHUP to the master and waits until the new version serves. The server writes its pid to
/// `pid_file`.
fn restart_under_load(
    sandbox: &Sandbox,
    command: Command,
    mode: Mode,
    port: u16,
    pid_file: &Path,
    versions: &[&str],
    mut deploy: impl FnMut(&str),
) {
    let launched: ServerProcess = sandbox.start_server(command, port);
    let first = wait_for_version(port, versions[0], START_TIMEOUT);
    let mut master = read_pid_file(pid_file);
    assert_eq!(
        first.pid, master,
        "the reply comes from the pid in the pid file"
    );
    let mut masters = vec![master];
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by(versions[0], SERVED_TIMEOUT);

    for pair in versions.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        let held = thread::spawn(move || hold(port, HOLD_MS));
        thread::sleep(HOLD_HEAD_START);
        deploy(new);
        eprintln!("restart {old} -> {new}: SIGHUP to pid {master}");
        send_signal(master, SIGHUP).unwrap_or_else(|e| panic!("SIGHUP to {master}: {e}"));
        let reply = wait_for_version(port, new, RESTART_TIMEOUT);
        let held = held
            .join()
            .expect("the HOLD client panicked")
            .unwrap_or_else(|e| {
                panic!("HOLD request in flight at the restart {old} -> {new}: {e}")
            });
        assert_eq!(held.version, old, "the held request is answered by {old}");
        let new_master = read_pid_file(pid_file);
        assert_eq!(
            reply.pid, new_master,
            "{new} answers from the pid in the pid file"
        );
        match mode {
            Mode::Fork => assert_ne!(new_master, master, "fork mode: {new} is a new process"),
            Mode::Exec => assert_eq!(
                (new_master, master),
                (launched.pid(), launched.pid()),
                "exec mode: {new} runs in the launched process"
            ),
        }
        master = new_master;
        masters.push(master);
        load.wait_until_served_by(new, SERVED_TIMEOUT);
    }

    let report = load.stop_without_failures();
    let seen: Vec<&str> = report.versions().into_iter().collect();
    let mut expected = versions.to_vec();
    expected.sort();
    assert_eq!(seen, expected, "versions the load saw:\n{report}");
    let old: Vec<u32> = masters.into_iter().filter(|&pid| pid != master).collect();
    if let Err(left) = wait_gone(&old, RETIRE_TIMEOUT) {
        panic!("old generations {left:?} still run {RETIRE_TIMEOUT:?} after the last restart");
    }
}

/// Points the symlink `link` at `target` atomically: a new link beside it, renamed over it.
fn flip_symlink(link: &Path, target: &Path) {
    let new = link.with_extension("new");
    let _ = fs::remove_file(&new);
    symlink(target, &new).unwrap_or_else(|e| panic!("symlink {}: {e}", new.display()));
    fs::rename(&new, link).unwrap_or_else(|e| panic!("rename over {}: {e}", link.display()));
}

/// `releases/<version>/server`, a test server answering with `version`; returns its directory
/// relative to the sandbox, as a deploy tool would write the link.
fn build_release(sandbox: &Sandbox, version: &str) -> PathBuf {
    let relative = Path::new("releases").join(version);
    let dir = sandbox.file(relative.to_str().expect("UTF-8 path"));
    fs::create_dir_all(&dir).expect("create the release directory");
    write_versioned_testserver(Path::new(TESTSERVER), &dir.join("server"), version);
    relative
}

#[test]
fn flipped_current_symlink_runs_the_new_release() {
    let sandbox = Sandbox::new("deploy-symlink");
    let port = free_port();
    let pid_file = sandbox.file("server.pid");
    let current = sandbox.file("current");
    for version in ["a", "b"] {
        build_release(&sandbox, version);
    }
    flip_symlink(&current, Path::new("releases/a"));
    let command = ServerCommand::new(current.join("server"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--pid-file")
        .arg(&pid_file)
        .under_huptime(&sandbox, &[]);
    restart_under_load(
        &sandbox,
        command,
        Mode::Fork,
        port,
        &pid_file,
        &["a", "b", "c"],
        |version| {
            let release = build_release(&sandbox, version);
            flip_symlink(&current, &release);
        },
    );
}

/// `app/` is replaced by a new directory of the same name; the server runs in it and reads the
/// relative `--version-file ver`.
fn replaced_working_directory(mode: Mode) {
    let sandbox = Sandbox::new(&format!("deploy-dir-{mode:?}"));
    let port = free_port();
    let pid_file = sandbox.file("server.pid");
    let app = sandbox.file("app");
    let staged = sandbox.file("app.new");
    let retired = sandbox.file("app.old");
    fs::create_dir(&app).expect("create app/");
    fs::write(app.join("ver"), "v1\n").expect("write app/ver");

    let mut command = ServerCommand::python("blocking.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg("ver")
        .arg("--pid-file")
        .arg(&pid_file)
        .under_huptime(&sandbox, mode.huptime_args());
    // As a shell started in app/ would run it.
    command.current_dir(&app).env("PWD", &app);
    restart_under_load(
        &sandbox,
        command,
        mode,
        port,
        &pid_file,
        &["v1", "v2", "v3"],
        |version| {
            fs::create_dir(&staged).expect("create app.new/");
            fs::write(staged.join("ver"), format!("{version}\n")).expect("write app.new/ver");
            if retired.exists() {
                fs::remove_dir_all(&retired).expect("remove the previous app.old/");
            }
            fs::rename(&app, &retired).expect("rename app/ to app.old/");
            fs::rename(&staged, &app).expect("rename app.new/ to app/");
        },
    );
}

#[test]
fn replaced_working_directory_fork_mode() {
    replaced_working_directory(Mode::Fork);
}

#[test]
fn replaced_working_directory_exec_mode() {
    replaced_working_directory(Mode::Exec);
}
