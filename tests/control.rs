//! `huptime --status`, `--restart` and `--stop` against running instances: they find the
//! instance by the command it was started with (whole, or from its second word on), report the
//! outcome with their exit status (0 done, 3 no such instance), and act on that instance only.
//! Commands that merely start the same way, and other users' instances (even through a record
//! planted in our own runtime directory), are never signalled.
//!
//! Each test has its own `XDG_RUNTIME_DIR` inside its sandbox, for the instances and the control
//! commands alike, so that tests running in parallel never see each other's instances. Needs
//! `cargo build --workspace`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use huptime_tests::control::{Outcome, private_dir, run_bounded};
use huptime_tests::{
    Endpoint, Load, Sandbox, ServerProcess, free_port, get, huptime_binary, wait_gone,
};

/// How long a control command may take before the test gives up on it.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(40);
/// `--restart --timeout` and `--stop --timeout`, well below [`CONTROL_TIMEOUT`].
const RESTART_TIMEOUT_ARG: &str = "--timeout=30";
const STOP_TIMEOUT_ARG: &str = "--timeout=10";
const GONE_TIMEOUT: Duration = Duration::from_secs(15);
/// `--status`, `--restart` and `--stop` found no instance.
const EXIT_NO_INSTANCE: i32 = 3;
/// The uid and gid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// The test server script, by absolute path.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/blocking.py")
}

fn write_version(path: &Path, version: &str) {
    fs::write(path, format!("{version}\n")).expect("write the version file");
}

fn words<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items
        .into_iter()
        .map(|item| item.as_ref().to_owned())
        .collect()
}

/// `python3 <abs>/blocking.py --port <port> --version-file <file>`, the command of the instances.
fn server_words(python: &str, port: u16, version_file: &Path) -> Vec<OsString> {
    words([
        OsStr::new(python),
        script().as_os_str(),
        OsStr::new("--port"),
        OsStr::new(&port.to_string()),
        OsStr::new("--version-file"),
        version_file.as_os_str(),
    ])
}

/// `huptime <args...>` with `XDG_RUNTIME_DIR` set to `runtime_dir`.
fn huptime(sandbox: &Sandbox, runtime_dir: &Path, args: &[OsString]) -> Command {
    let mut command = sandbox.command(huptime_binary());
    command.env("XDG_RUNTIME_DIR", runtime_dir).args(args);
    command
}

/// `huptime <action> [extra...] <words...>` as the current user; returns what it said.
fn control(
    sandbox: &Sandbox,
    runtime_dir: &Path,
    action: &str,
    extra: &[&str],
    command_words: &[OsString],
) -> Outcome {
    let mut args = words([action]);
    args.extend(words(extra));
    args.extend_from_slice(command_words);
    run_bounded(
        sandbox,
        huptime(sandbox, runtime_dir, &args),
        CONTROL_TIMEOUT,
    )
}

/// `huptime --restart [extra...] <words...>`, which must succeed; the old and new pid it
/// reports.
fn restart(
    sandbox: &Sandbox,
    runtime_dir: &Path,
    extra: &[&str],
    command_words: &[OsString],
    what: &str,
) -> (u32, u32) {
    let mut args = vec![RESTART_TIMEOUT_ARG];
    args.extend(extra);
    let outcome = control(sandbox, runtime_dir, "--restart", &args, command_words);
    outcome.expect_code(0, what);
    restart_pids(&outcome)
}

/// The pid on the `PID:` line of a `--status` block, one per instance.
fn status_pids(outcome: &Outcome) -> Vec<u32> {
    outcome
        .stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("PID:"))
        .map(|pid| {
            pid.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad PID line in {outcome:#?}"))
        })
        .collect()
}

/// The old and new pid that `--restart` reports: `... pid OLD (generation N) -> pid NEW ...`.
fn restart_pids(outcome: &Outcome) -> (u32, u32) {
    let tokens: Vec<&str> = outcome.stdout.split_whitespace().collect();
    let pids: Vec<u32> = tokens
        .windows(2)
        .filter(|pair| pair[0] == "pid")
        .filter_map(|pair| pair[1].parse().ok())
        .collect();
    match pids.as_slice() {
        &[old, new] => (old, new),
        _ => panic!("--restart should report an old and a new pid: {outcome:#?}"),
    }
}

/// Starts `huptime <mode_args> -- <words>` with `XDG_RUNTIME_DIR=runtime_dir`, serving `endpoint`.
fn start_instance(
    sandbox: &Sandbox,
    runtime_dir: &Path,
    mode_args: &[&str],
    server: &[OsString],
    endpoint: impl Into<Endpoint>,
) -> ServerProcess {
    let mut args = words(mode_args);
    args.push("--".into());
    args.extend_from_slice(server);
    sandbox.start_server(huptime(sandbox, runtime_dir, &args), endpoint)
}

/// Asserts that `endpoint` is still served by `pid` with `version`.
fn assert_untouched(endpoint: &Endpoint, pid: u32, version: &str, what: &str) {
    let reply = get(endpoint).unwrap_or_else(|e| panic!("{what} no longer serves: {e}"));
    assert_eq!(
        (reply.version.as_str(), reply.pid),
        (version, pid),
        "{what} was signalled"
    );
}

fn at(host: [u8; 4], port: u16) -> Endpoint {
    Endpoint::Tcp((host, port).into())
}

#[test]
fn status_restart_and_stop_in_fork_mode() {
    let sandbox = Sandbox::new("control-fork");
    let runtime_dir = private_dir(&sandbox.file("run"));
    let port = free_port();
    let version_file = sandbox.file("version");
    write_version(&version_file, "v1");
    let server = server_words("python3", port, &version_file);
    let launched = start_instance(&sandbox, &runtime_dir, &[], &server, port);
    let first = get(port).expect("GET");
    assert_eq!(
        first.pid,
        launched.pid(),
        "the launched process runs the server"
    );

    // --status finds it by its whole command, and by the command without `python3`.
    let status = control(&sandbox, &runtime_dir, "--status", &["--"], &server);
    status.expect_code(0, "--status of the running command");
    assert_eq!(status_pids(&status), [first.pid], "pids --status printed");
    let status = control(&sandbox, &runtime_dir, "--status", &[], &server[1..]);
    status.expect_code(0, "--status of the command without its interpreter");
    assert_eq!(status_pids(&status), [first.pid], "pids --status printed");
    let other = server_words("python3", free_port(), &version_file);
    control(&sandbox, &runtime_dir, "--status", &["--"], &other)
        .expect_code(EXIT_NO_INSTANCE, "--status of a command that does not run");

    let load = Load::start(port, 2);
    load.wait_until_served_by("v1", Duration::from_secs(10));

    // --restart by the whole command: a new process serves the new version.
    write_version(&version_file, "v2");
    let (old, new) = restart(
        &sandbox,
        &runtime_dir,
        &["--"],
        &server,
        "--restart of the running command",
    );
    assert_eq!(old, first.pid, "--restart's old pid");
    assert_ne!(new, old, "fork mode: the new generation is a new process");
    let reply = get(port).expect("GET after --restart");
    assert_eq!(
        (reply.version.as_str(), reply.pid),
        ("v2", new),
        "served after --restart returned"
    );
    if let Err(left) = wait_gone(&[old], GONE_TIMEOUT) {
        panic!("the old generation {left:?} did not exit");
    }

    // --restart by the words after `python3`, typed as a user would (no `--`).
    write_version(&version_file, "v3");
    let (old, newer) = restart(
        &sandbox,
        &runtime_dir,
        &[],
        &server[1..],
        "--restart of the command without its interpreter",
    );
    assert_eq!(old, new, "--restart's old pid");
    assert_ne!(newer, new, "fork mode: the new generation is a new process");
    let reply = get(port).expect("GET after --restart");
    assert_eq!(
        (reply.version.as_str(), reply.pid),
        ("v3", newer),
        "served after --restart returned"
    );

    load.stop_without_failures();

    control(
        &sandbox,
        &runtime_dir,
        "--restart",
        &[RESTART_TIMEOUT_ARG, "--"],
        &other,
    )
    .expect_code(EXIT_NO_INSTANCE, "--restart of a command that does not run");

    let stop = control(
        &sandbox,
        &runtime_dir,
        "--stop",
        &[STOP_TIMEOUT_ARG, "--"],
        &server,
    );
    stop.expect_code(0, "--stop of the running command");
    assert!(
        stop.stdout.contains(&newer.to_string()),
        "--stop should name the pid it stopped: {stop:#?}"
    );
    if let Err(left) = sandbox.wait_no_processes(GONE_TIMEOUT) {
        panic!("processes {left:?} outlived --stop");
    }
    assert!(get(port).is_err(), "the port still answers after --stop");
    control(&sandbox, &runtime_dir, "--status", &["--"], &server)
        .expect_code(EXIT_NO_INSTANCE, "--status after --stop");
}

#[test]
fn restart_in_exec_mode_keeps_the_pid() {
    let sandbox = Sandbox::new("control-exec");
    let runtime_dir = private_dir(&sandbox.file("run"));
    let port = free_port();
    let version_file = sandbox.file("version");
    write_version(&version_file, "v1");
    let server = server_words("python3", port, &version_file);
    let launched = start_instance(&sandbox, &runtime_dir, &["--exec"], &server, port);
    let pid = launched.pid();
    assert_eq!(get(port).expect("GET").pid, pid);

    let load = Load::start(port, 2);
    load.wait_until_served_by("v1", Duration::from_secs(10));
    for version in ["v2", "v3"] {
        write_version(&version_file, version);
        let pids = restart(
            &sandbox,
            &runtime_dir,
            &[],
            &server[1..],
            "--restart in exec mode",
        );
        assert_eq!(pids, (pid, pid), "exec mode keeps the pid");
        let reply = get(port).expect("GET after --restart");
        assert_eq!(
            (reply.version.as_str(), reply.pid),
            (version, pid),
            "served after --restart returned"
        );
    }
    load.stop_without_failures();

    let status = control(&sandbox, &runtime_dir, "--status", &["--"], &server);
    status.expect_code(0, "--status in exec mode");
    assert_eq!(status_pids(&status), [pid]);
    control(
        &sandbox,
        &runtime_dir,
        "--stop",
        &[STOP_TIMEOUT_ARG, "--"],
        &server,
    )
    .expect_code(0, "--stop in exec mode");
    if let Err(left) = sandbox.wait_no_processes(GONE_TIMEOUT) {
        panic!("processes {left:?} outlived --stop");
    }
}

/// A bare process and a huptime instance whose commands start like the target's, plus more
/// words: `--restart` and `--stop` of the target's exact command leave both alone.
#[test]
fn commands_that_only_start_the_same_are_not_touched() {
    let sandbox = Sandbox::new("control-prefix");
    let runtime_dir = private_dir(&sandbox.file("run"));
    let port = free_port();
    let version_file = sandbox.file("version");
    write_version(&version_file, "v1");
    let server = server_words("python3", port, &version_file);

    // The same command plus words, without huptime: the same port on another loopback address.
    let mut bare_words = server.clone();
    bare_words.extend(words(["--workers", "2", "--host", "127.0.0.2"]));
    let bare_endpoint = at([127, 0, 0, 2], port);
    let mut bare = sandbox.command(&bare_words[0]);
    bare.args(&bare_words[1..]);
    let bare = sandbox.start_server(bare, &bare_endpoint);
    // The same command plus a trailing argument, under huptime, in the same runtime directory.
    let mut longer = server.clone();
    longer.extend(words(["--host", "127.0.0.3"]));
    let longer_endpoint = at([127, 0, 0, 3], port);
    let longer_instance = start_instance(&sandbox, &runtime_dir, &[], &longer, &longer_endpoint);
    // The target.
    let target = start_instance(&sandbox, &runtime_dir, &[], &server, port);
    let (bare_pid, longer_pid, target_pid) = (bare.pid(), longer_instance.pid(), target.pid());
    assert_untouched(&bare_endpoint, bare_pid, "v1", "the bare process");
    assert_untouched(&longer_endpoint, longer_pid, "v1", "the longer instance");
    assert_untouched(&port.into(), target_pid, "v1", "the target");

    let status = control(&sandbox, &runtime_dir, "--status", &["--"], &server);
    status.expect_code(0, "--status of the target");
    assert_eq!(
        status_pids(&status),
        [target_pid],
        "--status lists the target alone"
    );
    let status = control(&sandbox, &runtime_dir, "--status", &[], &[]);
    status.expect_code(0, "--status of all instances");
    let mut all = status_pids(&status);
    all.sort();
    let mut expected = vec![longer_pid, target_pid];
    expected.sort();
    assert_eq!(all, expected, "--status lists both instances");

    write_version(&version_file, "v2");
    let (old, new) = restart(
        &sandbox,
        &runtime_dir,
        &["--"],
        &server,
        "--restart of the target",
    );
    assert_eq!(old, target_pid);
    assert_untouched(&port.into(), new, "v2", "the restarted target");
    assert_untouched(&bare_endpoint, bare_pid, "v1", "the bare process");
    assert_untouched(&longer_endpoint, longer_pid, "v1", "the longer instance");

    let stop = control(
        &sandbox,
        &runtime_dir,
        "--stop",
        &[STOP_TIMEOUT_ARG],
        &server[1..],
    );
    stop.expect_code(0, "--stop of the target");
    if let Err(left) = wait_gone(&[new], GONE_TIMEOUT) {
        panic!("the target {left:?} outlived --stop");
    }
    // Give a stray signal time to take effect before looking.
    thread::sleep(Duration::from_millis(500));
    assert_untouched(&bare_endpoint, bare_pid, "v1", "the bare process");
    assert_untouched(&longer_endpoint, longer_pid, "v1", "the longer instance");
    let status = control(&sandbox, &runtime_dir, "--status", &[], &[]);
    status.expect_code(0, "--status after the target stopped");
    assert_eq!(
        status_pids(&status),
        [longer_pid],
        "--status lists the longer instance alone"
    );
}

/// The way to run a command as `nobody`, if this machine has one and we may use it.
fn as_nobody() -> Option<Vec<OsString>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: switching to user nobody needs root");
        return None;
    }
    let candidates = [
        words([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]),
        words(["runuser", "-u", "nobody", "--"]),
    ];
    for prefix in candidates {
        let works = Command::new(&prefix[0])
            .args(&prefix[1..])
            .args(["sh", "-c", "test \"$(id -u)\" = 65534"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if works {
            return Some(prefix);
        }
    }
    eprintln!(
        "SKIPPED: neither setpriv nor runuser can run a command as nobody \
         (both come with Debian's util-linux package)"
    );
    None
}

/// An interpreter `nobody` can run: root's own `python3` may live in a directory only root can
/// read (pyenv under /root).
fn python_for_nobody(prefix: &[OsString]) -> Option<String> {
    for python in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        let works = Command::new(&prefix[0])
            .args(&prefix[1..])
            .args([
                python,
                "-c",
                "import sys; assert sys.version_info >= (3, 10)",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if works {
            return Some(python.to_owned());
        }
    }
    eprintln!("SKIPPED: no python3 (3.10 or newer) that user nobody can run");
    None
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Another user's instance is never signalled by our `--stop`/`--restart`: not when it is only
/// in that user's runtime directory, and not when its record is copied into ours.
#[test]
fn another_users_instance_is_never_signalled() {
    let Some(prefix) = as_nobody() else { return };
    let Some(python) = python_for_nobody(&prefix) else {
        return;
    };
    let sandbox = Sandbox::new("control-other-user");
    let root_runtime = private_dir(&sandbox.file("root-run"));
    let home = sandbox.file("nobody");
    fs::create_dir(&home).expect("create nobody's directory");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
    chown_nobody(&home);
    let nobody_runtime = private_dir(&home.join("run"));
    chown_nobody(&nobody_runtime);
    let version_file = home.join("version");
    write_version(&version_file, "theirs");
    chown_nobody(&version_file);

    let port = free_port();
    let server = server_words(&python, port, &version_file);
    let mut command = sandbox.command(&prefix[0]);
    command
        .args(&prefix[1..])
        .arg(huptime_binary())
        .arg("--")
        .args(&server)
        .env("XDG_RUNTIME_DIR", &nobody_runtime)
        .env("HOME", &home)
        .current_dir(&home);
    let _theirs = sandbox.start_server(command, port);
    let pid = get(port).expect("GET").pid;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read its status");
    assert!(
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.contains("65534")),
        "the server should run as nobody: {status}"
    );

    // Their own --status finds it: the record is there and valid.
    let mut own_status = sandbox.command(&prefix[0]);
    own_status
        .args(&prefix[1..])
        .arg(huptime_binary())
        .args(["--status", "--"])
        .args(&server)
        .env("XDG_RUNTIME_DIR", &nobody_runtime)
        .env("HOME", &home);
    let own = run_bounded(&sandbox, own_status, CONTROL_TIMEOUT);
    own.expect_code(0, "nobody's own --status");
    assert_eq!(status_pids(&own), [pid], "nobody's own --status");

    // Ours does not: our runtime directory knows nothing of it.
    control(
        &sandbox,
        &root_runtime,
        "--stop",
        &[STOP_TIMEOUT_ARG, "--"],
        &server,
    )
    .expect_code(EXIT_NO_INSTANCE, "our --stop of nobody's command");
    assert_untouched(&port.into(), pid, "theirs", "nobody's instance");

    // A record of theirs planted in our runtime directory, naming their pid.
    let planted_dir = private_dir(&root_runtime.join("huptime"));
    let records = nobody_runtime.join("huptime");
    let mut planted = 0;
    for entry in fs::read_dir(&records).expect("read nobody's records") {
        let entry = entry.expect("read nobody's records");
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let text = fs::read_to_string(entry.path()).expect("read a record");
        assert!(
            text.contains(&pid.to_string()),
            "nobody's record should name pid {pid}: {text}"
        );
        fs::copy(entry.path(), planted_dir.join(entry.file_name())).expect("plant the record");
        planted += 1;
    }
    assert_eq!(planted, 1, "nobody's records in {}", records.display());

    for action in ["--stop", "--restart"] {
        let timeout = if action == "--stop" {
            STOP_TIMEOUT_ARG
        } else {
            RESTART_TIMEOUT_ARG
        };
        write_version(&version_file, "signalled");
        let outcome = control(&sandbox, &root_runtime, action, &[timeout, "--"], &server);
        assert_ne!(
            outcome.code,
            Some(0),
            "our {action} through a planted record reported success: {outcome:#?}"
        );
        // A restart or a stop would take effect well within this.
        thread::sleep(Duration::from_millis(1500));
        assert_untouched(&port.into(), pid, "theirs", "nobody's instance");
    }
}
