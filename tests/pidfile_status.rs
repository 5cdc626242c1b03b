//! `--pidfile`, the restart outcome and `--status --json`.
//!
//! - The pid file always names a live master of the instance, sampled every few milliseconds
//!   across 10 fork-mode restarts, and names the new master once `huptime --restart
//!   --pidfile=FILE` has reported it; that command exits 0 and reports old and new PID,
//!   generation and duration.
//! - A restart that cannot succeed (the server's start script made non-executable) is rolled
//!   back: `--restart --pidfile` exits 1 and says "rolled back" with the reason, and the pid file
//!   still names the old master.
//! - `--status --json --pidfile=FILE` is parsed and checked field by field.
//! - Pid files that lead nowhere (missing, garbage, a directory, unreadable, a dead PID, a live
//!   process that is no instance, another user's process) get a clear message and a non-zero
//!   exit, and no process is signalled.
//!
//! Each test has its own `XDG_RUNTIME_DIR` in its sandbox. Needs `cargo build --workspace`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::control::{Controller, Outcome};
use huptime_tests::json::Json;
use huptime_tests::{
    Sandbox, ServerCommand, free_port, get, pids_alive, wait_for, wait_for_version,
};

const RESTARTS: u64 = 10;
const START_TIMEOUT: Duration = Duration::from_secs(10);
const PIDFILE_TIMEOUT: Duration = Duration::from_secs(5);
/// The uid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// A start script that runs the test server, as deploys often have: making it non-executable
/// makes the next restart fail.
fn write_wrapper(sandbox: &Sandbox) -> std::path::PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/blocking.py");
    let wrapper = sandbox.file("run-server.sh");
    fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec python3 {} \"$@\"\n", script.display()),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn pidfile_arg(path: &Path) -> String {
    format!("--pidfile={}", path.display())
}

/// `pid A (generation N) -> pid B (generation M) in T ms` from `--restart`'s stdout.
fn restarted(outcome: &Outcome) -> (u32, u64, u32, u64, u64) {
    let line = outcome
        .stdout
        .lines()
        .find(|line| line.starts_with("huptime: restarted "))
        .unwrap_or_else(|| panic!("no outcome line: {outcome:#?}"));
    let tail = &line[line.rfind(": pid ").expect("': pid '") + 2..];
    let words: Vec<&str> = tail
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        [
            "pid",
            old,
            "generation",
            old_gen,
            "->",
            "pid",
            new,
            "generation",
            new_gen,
            "in",
            ms,
            "ms",
        ] => (
            old.parse().unwrap(),
            old_gen.parse().unwrap(),
            new.parse().unwrap(),
            new_gen.parse().unwrap(),
            ms.parse().unwrap(),
        ),
        _ => panic!("cannot read {line:?}"),
    }
}

#[test]
fn pidfile_follows_ten_restarts_and_status_json_tells_all() {
    let sandbox = Sandbox::new("pidfile-restarts");
    let control = Controller::new(&sandbox);
    let port = free_port();
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").unwrap();
    let wrapper = write_wrapper(&sandbox);
    let pidfile = sandbox.file("app.pid");
    let server = ServerCommand::new(&wrapper)
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file);
    let mut command = server.under_huptime(&sandbox, &[&pidfile_arg(&pidfile)]);
    command.env("XDG_RUNTIME_DIR", control.runtime_dir());
    let launched = sandbox.start_server(command, port);
    // One copy: huptime became the program, so the pid file names the launched process.
    let mut master = wait_for(
        "the pid file names the launched pid",
        PIDFILE_TIMEOUT,
        || (read_pid(&pidfile) == Some(launched.pid())).then_some(launched.pid()),
    );

    // Sample the pid file all along: it must always name a live process.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pidfile) = (Arc::clone(&stop), pidfile.clone());
        thread::spawn(move || {
            let mut samples = 0u64;
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match read_pid(&pidfile) {
                    Some(pid) if !pids_alive(&[pid]).is_empty() => {}
                    Some(pid) => {
                        // Dead, unless it was rewritten in between.
                        if read_pid(&pidfile) == Some(pid) && bad.len() < 10 {
                            bad.push(format!("pid {pid} is not running"));
                        }
                    }
                    None => bad.push("unreadable or not a PID".to_owned()),
                }
                samples += 1;
                thread::sleep(Duration::from_millis(3));
            }
            (samples, bad)
        })
    };
    let mut masters = vec![master];
    for n in 1..=RESTARTS {
        fs::write(&version_file, format!("v{}\n", n + 1)).unwrap();
        let outcome = control.run(&["--restart", "--timeout=30", &pidfile_arg(&pidfile)]);
        assert_eq!(outcome.code, Some(0), "restart {n}: {outcome:#?}");
        let (old, old_gen, new, new_gen, ms) = restarted(&outcome);
        assert_eq!((old, old_gen), (master, n - 1), "restart {n}: {outcome:#?}");
        assert_eq!(new_gen, n, "restart {n}");
        assert_ne!(new, old, "fork mode: a new PID");
        assert!(ms < 30_000, "restart {n} took {ms} ms");
        // The library rewrites the pid file as the new master becomes ready.
        wait_for("the pid file names the new master", PIDFILE_TIMEOUT, || {
            (read_pid(&pidfile) == Some(new)).then_some(())
        });
        // (A thread of the old generation blocked in accept() may still serve one client.)
        let reply = wait_for_version(port, &format!("v{}", n + 1), START_TIMEOUT);
        assert_eq!(reply.pid, new);
        master = new;
        masters.push(new);
    }
    stop.store(true, Ordering::Relaxed);
    let (samples, bad) = sampler.join().unwrap();
    assert!(samples > 100, "only {samples} samples of the pid file");
    assert!(
        bad.is_empty(),
        "the pid file did not name a live master: {bad:?}"
    );

    // A restart that cannot succeed: the start script is no longer executable.
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o644)).unwrap();
    let failed = control.run(&["--restart", "--timeout=30", &pidfile_arg(&pidfile)]);
    assert_eq!(
        failed.code,
        Some(1),
        "a rolled-back restart fails: {failed:#?}"
    );
    assert!(!failed.stdout.contains("restarted"), "{failed:#?}");
    let line = failed
        .stderr
        .lines()
        .find(|line| line.contains("failed: rolled back"))
        .unwrap_or_else(|| panic!("no 'failed: rolled back' line: {failed:#?}"));
    assert!(
        line.contains("Permission denied") || line.contains("not executable"),
        "the reason is given: {line}"
    );
    assert!(
        line.contains(&format!(
            "pid {master} (generation {RESTARTS}) goes on serving"
        )),
        "{line}"
    );
    assert_eq!(
        read_pid(&pidfile),
        Some(master),
        "the old master still serves"
    );
    let reply = wait_for_version(port, &format!("v{}", RESTARTS + 1), START_TIMEOUT);
    assert_eq!(reply.pid, master, "the old master still serves");

    // --status --json, field by field.
    let status = control.run(&["--status", "--json", &pidfile_arg(&pidfile)]);
    assert_eq!(status.code, Some(0), "{status:#?}");
    let document = Json::parse(&status.stdout);
    assert_eq!(document.keys(), ["huptime_status", "instances"]);
    assert_eq!(document.get("huptime_status").int(), 1);
    let instances = document.get("instances").array();
    assert_eq!(instances.len(), 1, "{document:?}");
    let instance = &instances[0];
    assert_eq!(
        instance.keys(),
        [
            "instance",
            "command",
            "pid",
            "generation",
            "mode",
            "state",
            "signal",
            "started_at",
            "uptime_seconds",
            "generation_started_at",
            "generation_uptime_seconds",
            "connections",
            "sockets",
            "last_restart",
            "supervisor",
            "draining",
        ]
    );
    assert!(
        instance
            .get("instance")
            .str()
            .starts_with(&format!("{}-", launched.pid()))
    );
    let command: Vec<&str> = instance
        .get("command")
        .array()
        .iter()
        .map(Json::str)
        .collect();
    assert_eq!(
        command,
        [
            wrapper.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--version-file",
            version_file.to_str().unwrap()
        ]
    );
    assert_eq!(instance.get("pid").int(), i64::from(master));
    assert_eq!(instance.get("generation").int(), RESTARTS as i64);
    assert_eq!(instance.get("mode").str(), "fork");
    assert_eq!(instance.get("state").str(), "serving");
    assert_eq!(instance.get("signal").str(), "SIGHUP");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let started = instance.get("started_at").int();
    let generation_started = instance.get("generation_started_at").int();
    assert!(started <= generation_started && generation_started <= now + 1);
    assert!(now - started < 120, "started {started}, now {now}");
    let uptime = instance.get("uptime_seconds").int();
    assert!((0..120).contains(&uptime), "{uptime}");
    assert!(instance.get("generation_uptime_seconds").int() <= uptime);
    assert!(instance.get("connections").int() >= 0);
    let sockets = instance.get("sockets").array();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let socket = &sockets[0];
    assert!(socket.get("fd").int() >= 0);
    assert_eq!(socket.get("family").str(), "ipv4");
    assert_eq!(socket.get("type").str(), "stream");
    assert_eq!(socket.get("address").str(), format!("127.0.0.1:{port}"));
    assert_eq!(socket.get("port").int(), i64::from(port));
    assert!(!socket.get("v6only").bool() && !socket.get("reuseport").bool());
    assert_eq!(
        socket.get("description").str(),
        format!("tcp 127.0.0.1:{port}")
    );
    let last = instance.get("last_restart");
    assert!(!last.get("ok").bool(), "{last:?}");
    assert_eq!(last.get("attempt").int(), 1);
    assert_eq!(last.get("new_pid"), &Json::Null);
    assert!((0..30_000).contains(&last.get("duration_ms").int()));
    let detail = last.get("detail").str();
    assert!(
        detail.contains("Permission denied") || detail.contains("not executable"),
        "{detail}"
    );
    assert_eq!(instance.get("supervisor"), &Json::Null);
    for old in instance.get("draining").array() {
        assert!(masters.contains(&(old.get("pid").int() as u32)), "{old:?}");
        assert_eq!(old.get("state").str(), "draining");
    }
    // Without a target, --status --json lists every instance: this one (read a moment later,
    // so the uptimes may have ticked).
    let all = Json::parse(&control.run(&["--status", "--json"]).stdout);
    assert_eq!(
        without_uptimes(all.get("instances").array()),
        without_uptimes(instances)
    );

    // Repaired, the next restart succeeds; then --stop through the pid file removes it.
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let outcome = control.run(&["--restart", "--timeout=30", &pidfile_arg(&pidfile)]);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let (_, _, new, new_gen, _) = restarted(&outcome);
    assert_eq!(new_gen, RESTARTS + 1);
    wait_for_version(port, &format!("v{}", RESTARTS + 1), START_TIMEOUT);
    let stopped = control.run(&["--stop", "--timeout=10", &pidfile_arg(&pidfile)]);
    assert_eq!(stopped.code, Some(0), "{stopped:#?}");
    assert!(stopped.stdout.contains(&new.to_string()), "{stopped:#?}");
    assert!(!pidfile.exists(), "--stop removes the pid file");
    let again = control.run(&["--status", &pidfile_arg(&pidfile)]);
    assert_eq!(again.code, Some(3), "{again:#?}");
    drop(launched);
}

/// A process that no control command may touch: it would die of SIGHUP or SIGTERM.
fn bystander(sandbox: &Sandbox, uid: Option<u32>) -> std::process::Child {
    let mut command = sandbox.command("sleep");
    command.arg("30").stdout(Stdio::null());
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    command.spawn().expect("start sleep")
}

#[test]
fn bad_pid_files_are_refused_and_signal_nobody() {
    let sandbox = Sandbox::new("pidfile-bad");
    let control = Controller::new(&sandbox);
    // An instance runs, so that the runtime directory has records to (not) match.
    let port = free_port();
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").unwrap();
    let mut command = ServerCommand::python("blocking.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .under_huptime(&sandbox, &[]);
    command.env("XDG_RUNTIME_DIR", control.runtime_dir());
    let server = sandbox.start_server(command, port);

    let mut mine = bystander(&sandbox, None);
    let mut theirs = bystander(&sandbox, Some(NOBODY));
    let mut exited = Command::new("true").spawn().unwrap();
    let dead_pid = exited.id();
    exited.wait().unwrap();

    let write = |name: &str, text: &str| {
        let path = sandbox.file(name);
        fs::write(&path, text).unwrap();
        path
    };
    let directory = sandbox.file("dir.pid");
    fs::create_dir(&directory).unwrap();
    let unreadable = write("unreadable.pid", &format!("{}\n", server.pid()));
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    // (file, exit status, words the message must contain)
    let cases = [
        (sandbox.file("missing.pid"), 3, "no such file"),
        (write("garbage.pid", "hello world\n"), 1, "not a PID"),
        (write("empty.pid", ""), 1, "not a PID"),
        (write("negative.pid", "-1\n"), 1, "not a PID"),
        (directory, 1, "is a directory"),
        (
            write("dead.pid", &format!("{dead_pid}\n")),
            3,
            "not running",
        ),
        (
            write("bystander.pid", &format!("{}\n", mine.id())),
            3,
            "not a huptime instance",
        ),
        (
            write("foreign.pid", &format!("{}\n", theirs.id())),
            3,
            "another user",
        ),
    ];
    for (path, code, words) in &cases {
        for action in ["--restart", "--stop", "--status"] {
            let mut args = vec![action.to_owned()];
            if action != "--status" {
                args.push("--timeout=5".to_owned());
            }
            args.push(pidfile_arg(path));
            let outcome = control.run(&args);
            assert_eq!(outcome.code, Some(*code), "{action} {path:?}: {outcome:#?}");
            let message = outcome.stderr.trim();
            assert!(
                message.starts_with(&format!("huptime: pid file {}: ", path.display()))
                    && message.contains(words)
                    && message.lines().count() == 1,
                "{action} {path:?}: {message:?}"
            );
        }
    }
    // Unreadable: only for a user who cannot read it (root reads anything).
    let mut as_nobody = control.huptime();
    as_nobody
        .args(["--restart", &pidfile_arg(&unreadable)])
        .uid(NOBODY)
        .gid(NOBODY);
    let outcome = huptime_tests::control::run_bounded(&sandbox, as_nobody, Duration::from_secs(30));
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(outcome.stderr.contains("cannot read it"), "{outcome:#?}");

    // Using a pid file and naming a command is a usage error.
    let both = control.run(&["--restart", &pidfile_arg(&cases[0].0), "--", "python3"]);
    assert_eq!(both.code, Some(2), "{both:#?}");

    // Nobody got a signal: the bystanders and the server live, the server as the same master.
    let started = Instant::now();
    thread::sleep(Duration::from_millis(200));
    assert!(
        mine.try_wait().unwrap().is_none(),
        "our sleep was signalled"
    );
    assert!(
        theirs.try_wait().unwrap().is_none(),
        "nobody's sleep was signalled"
    );
    assert_eq!(
        get(port).expect("the server still serves").pid,
        server.pid()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = mine.kill();
    let _ = theirs.kill();
    let _ = mine.wait();
    let _ = theirs.wait();
}

/// `instances` without the fields that change with the clock.
fn without_uptimes(instances: &[Json]) -> Vec<Json> {
    instances
        .iter()
        .map(|instance| match instance {
            Json::Object(fields) => Json::Object(
                fields
                    .iter()
                    .filter(|(key, _)| !key.ends_with("uptime_seconds"))
                    .cloned()
                    .collect(),
            ),
            other => other.clone(),
        })
        .collect()
}
