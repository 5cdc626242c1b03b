//! Helpers shared by the safe-handover tests (`rollback`, `draining`, `unclaimed`, `storm`,
//! `udp`): the flaky test server, an instance with its private runtime directory and its
//! `huptime --restart/--status` runs, the instance records, and where a process's threads wait.
//!
//! Included with `mod safe_handover;` by each of those test files; not every file uses every
//! helper.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use huptime_tests::control::{Outcome, private_dir, run_bounded};
use huptime_tests::{
    Endpoint, Sandbox, ServerCommand, ServerProcess, free_port, huptime_binary, pids_alive,
};

/// How long a control command (`huptime --restart ...`) may take before the test gives up.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// `--timeout` given to `huptime --restart`, well below [`CONTROL_TIMEOUT`].
pub const RESTART_TIMEOUT_ARG: &str = "--timeout=40";

/// `servers/flaky.py` on a free port: the files it reads at start-up and writes.
pub struct Flaky {
    pub port: u16,
    pub version: PathBuf,
    pub behaviour: PathBuf,
    pub pid: PathBuf,
    pub starts: PathBuf,
    /// What a `paused` start waits for.
    pub go: PathBuf,
}

impl Flaky {
    pub fn new(sandbox: &Sandbox) -> Flaky {
        Flaky {
            port: free_port(),
            version: sandbox.file("version"),
            behaviour: sandbox.file("behaviour"),
            pid: sandbox.file("server.pid"),
            starts: sandbox.file("starts"),
            go: sandbox.file("go"),
        }
    }

    pub fn command(&self) -> ServerCommand {
        ServerCommand::python_direct("flaky.py")
            .serving(self.port, &self.version, &self.pid)
            .arg("--behaviour-file")
            .arg(&self.behaviour)
            .arg("--starts-file")
            .arg(&self.starts)
            .arg("--go-file")
            .arg(&self.go)
    }

    /// The next start behaves like `behaviour` and answers with `version`.
    pub fn deploy(&self, behaviour: &str, version: &str) {
        write_file(&self.version, version);
        write_file(&self.behaviour, behaviour);
    }

    /// Whether a start as `behaviour` with `version` has begun.
    pub fn started(&self, behaviour: &str, version: &str) -> bool {
        let text = fs::read_to_string(&self.starts).unwrap_or_default();
        text.lines().any(|line| {
            let mut fields = line.split(' ').skip(1);
            fields.next() == Some(behaviour) && fields.next() == Some(version)
        })
    }

    /// The pids of the starts that behaved like `behaviour`, in order.
    pub fn started_as(&self, behaviour: &str) -> Vec<u32> {
        let text = fs::read_to_string(&self.starts).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let pid = fields.next()?.parse().ok()?;
                (fields.next()? == behaviour).then_some(pid)
            })
            .collect()
    }
}

/// Writes `text` so that a starting server never reads half of it.
pub fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{text}\n")).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// An instance under test: the server's command, its runtime directory, the launched process.
pub struct Instance {
    pub server: ServerCommand,
    pub runtime_dir: PathBuf,
    pub launched: ServerProcess,
}

/// Starts `huptime <huptime_args> -- <server>` with its own runtime directory, and waits until
/// it answers on `endpoint`.
pub fn start(
    sandbox: &Sandbox,
    huptime_args: &[&str],
    server: ServerCommand,
    endpoint: impl Into<Endpoint>,
) -> Instance {
    start_with(sandbox, huptime_args, server, |command| {
        sandbox.start_server(command, endpoint)
    })
}

/// Like [`start`], with stderr going to `stderr`, which the test copies to `stderr_log`.
pub fn start_with_stderr(
    sandbox: &Sandbox,
    huptime_args: &[&str],
    server: ServerCommand,
    endpoint: impl Into<Endpoint>,
    stderr: Stdio,
    stderr_log: PathBuf,
) -> Instance {
    start_with(sandbox, huptime_args, server, |command| {
        sandbox.start_server_with_stderr(command, endpoint, stderr, stderr_log)
    })
}

fn start_with(
    sandbox: &Sandbox,
    huptime_args: &[&str],
    server: ServerCommand,
    launch: impl FnOnce(Command) -> ServerProcess,
) -> Instance {
    let runtime_dir = private_dir(&sandbox.file("run"));
    let mut command = server.under_huptime(sandbox, huptime_args);
    command.env("XDG_RUNTIME_DIR", &runtime_dir);
    let launched = launch(command);
    Instance {
        server,
        runtime_dir,
        launched,
    }
}

impl Instance {
    /// `huptime --restart --timeout=... -- <server>`; returns what it said.
    pub fn restart(&self, sandbox: &Sandbox) -> Outcome {
        self.control(sandbox, &["--restart", RESTART_TIMEOUT_ARG])
    }

    /// `huptime --status -- <server>`.
    pub fn status(&self, sandbox: &Sandbox) -> Outcome {
        self.control(sandbox, &["--status"])
    }

    fn control(&self, sandbox: &Sandbox, args: &[&str]) -> Outcome {
        let mut command = sandbox.command(huptime_binary());
        command
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .args(args)
            .arg("--")
            .args(self.server.words());
        run_bounded(sandbox, command, CONTROL_TIMEOUT)
    }

    /// The live instance records in this instance's runtime directory.
    pub fn records(&self) -> Vec<Record> {
        records(&self.runtime_dir)
    }
}

/// One instance record (`$XDG_RUNTIME_DIR/huptime/<instance>.<pid>`), the fields tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub instance: String,
    pub pid: u32,
    pub generation: u64,
    pub phase: String,
    /// `attempt,ok|failed,new_pid,millis,<hex detail>` as written, if any.
    pub last: Option<String>,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != "huptime-record/1" {
            return None;
        }
        let mut record = Record {
            instance: String::new(),
            pid: 0,
            generation: 0,
            phase: String::new(),
            last: None,
        };
        for line in lines {
            if line == "end" {
                return (record.pid > 0).then_some(record);
            }
            let (key, value) = line.split_once('=')?;
            match key {
                "instance" => record.instance = value.to_owned(),
                "pid" => record.pid = value.parse().ok()?,
                "generation" => record.generation = value.parse().ok()?,
                "phase" => record.phase = value.to_owned(),
                "last" => record.last = Some(value.to_owned()),
                _ => {}
            }
        }
        None
    }
}

/// The records in `runtime_dir` whose process is still alive (a killed process leaves a stale
/// one behind, which huptime ignores too).
pub fn records(runtime_dir: &Path) -> Vec<Record> {
    let dir = runtime_dir.join("huptime");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<Record> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                return None;
            }
            Record::parse(&fs::read_to_string(entry.path()).ok()?)
        })
        .filter(|record| !pids_alive(&[record.pid]).is_empty())
        .collect();
    found.sort_by_key(|record| (record.generation, record.pid));
    found
}

/// What each thread of `pid` is doing: `<tid> <name>: <system call number and first argument>`
/// per line (from `/proc/<pid>/task/*/syscall`), to tell where a server that stopped answering
/// waits.
pub fn threads_waiting(pid: u32) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("no process {pid}");
    };
    let mut lines: Vec<String> = tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = fs::read_to_string(path.join("comm")).unwrap_or_default();
            let syscall = fs::read_to_string(path.join("syscall")).unwrap_or_default();
            let call: Vec<&str> = syscall.split_whitespace().take(2).collect();
            Some(format!(
                "{} {}: syscall {}",
                path.file_name()?.to_string_lossy(),
                name.trim(),
                call.join(" ")
            ))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}
