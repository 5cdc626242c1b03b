//! Driving instances as a user does: `huptime --restart` and `huptime --status` with a runtime
//! directory of the test's own, so that tests running in parallel never see each other's
//! instances. Every command is bounded in time and its output kept for the failure message.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::binaries::huptime_binary;
use crate::sandbox::Sandbox;

/// `--restart --timeout`: how long huptime waits for the new generation.
const RESTART_TIMEOUT_ARG: &str = "--timeout=60";
/// How long a control command may run before the test gives up on it (beyond its own timeout).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const STATUS_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a finished command said.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Outcome {
    /// # Panics
    /// If the command did not exit with `code`, with `what` and its output.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: exit status; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A completed restart, as `huptime --restart` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarted {
    pub old_pid: u32,
    pub old_generation: u64,
    pub new_pid: u32,
    pub new_generation: u64,
}

/// One instance as `huptime --status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The current master.
    pub pid: u32,
    pub generation: u64,
    /// The `Last restart:` line as printed.
    pub last_restart: String,
}

/// The control side of the instances a test starts: their runtime directory, and the commands.
pub struct Controller<'a> {
    sandbox: &'a Sandbox,
    runtime_dir: PathBuf,
}

impl<'a> Controller<'a> {
    /// A controller with a private runtime directory in `sandbox`.
    pub fn new(sandbox: &'a Sandbox) -> Controller<'a> {
        Controller {
            sandbox,
            runtime_dir: private_dir(&sandbox.file("run")),
        }
    }

    /// The `XDG_RUNTIME_DIR` of the instances and of the control commands.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// `huptime` (no arguments yet), tagged, with this controller's runtime directory.
    pub fn huptime(&self) -> Command {
        let mut command = self.sandbox.command(huptime_binary());
        command.env("XDG_RUNTIME_DIR", &self.runtime_dir);
        command
    }

    /// Runs `huptime <args>` to its end; its output goes to log files in the sandbox.
    ///
    /// # Panics
    /// If it does not finish within 90 s.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        let mut command = self.huptime();
        command.args(args);
        run_bounded(self.sandbox, command, COMMAND_TIMEOUT)
    }

    /// `huptime --restart -- <words>`: the restart it reports, or what it said when it failed
    /// (exit status other than 0).
    ///
    /// # Panics
    /// If it exits 0 without reporting a restart.
    pub fn restart(&self, words: &[OsString]) -> Result<Restarted, Outcome> {
        let mut args: Vec<OsString> = vec!["--restart".into(), RESTART_TIMEOUT_ARG.into()];
        args.push("--".into());
        args.extend_from_slice(words);
        let outcome = self.run(&args);
        if outcome.code != Some(0) {
            return Err(outcome);
        }
        Ok(parse_restarted(&outcome.stdout).unwrap_or_else(|| {
            panic!("cannot read the outcome of huptime --restart: {outcome:#?}")
        }))
    }

    /// Polls `huptime --status -- <words>` until it finds the instance, and returns what it
    /// shows. A daemon's first process exits as soon as it forked, and the daemon records the
    /// instance a moment later.
    ///
    /// # Panics
    /// If no instance shows within `timeout`, with what huptime said last.
    pub fn wait_for_instance(&self, words: &[OsString], timeout: Duration) -> Status {
        let mut args: Vec<OsString> = vec!["--status".into(), "--".into()];
        args.extend_from_slice(words);
        let deadline = Instant::now() + timeout;
        loop {
            let outcome = self.run(&args);
            if outcome.code == Some(0) {
                return parse_status(&outcome.stdout)
                    .unwrap_or_else(|| panic!("cannot read huptime --status: {outcome:#?}"));
            }
            assert!(
                Instant::now() < deadline,
                "huptime --status found no instance within {timeout:?}: {outcome:#?}"
            );
            thread::sleep(STATUS_POLL_INTERVAL);
        }
    }

    /// `huptime --status -- <words>`, which must find exactly one instance.
    ///
    /// # Panics
    /// Otherwise, with what huptime said.
    pub fn status(&self, words: &[OsString]) -> Status {
        let mut args: Vec<OsString> = vec!["--status".into(), "--".into()];
        args.extend_from_slice(words);
        let outcome = self.run(&args);
        assert_eq!(
            outcome.code,
            Some(0),
            "huptime --status failed: {outcome:#?}"
        );
        parse_status(&outcome.stdout)
            .unwrap_or_else(|| panic!("cannot read huptime --status: {outcome:#?}"))
    }
}

/// Creates `path` as a directory only its owner can use, as `XDG_RUNTIME_DIR` must be.
pub fn private_dir(path: &Path) -> PathBuf {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    path.to_owned()
}

/// Runs `command` with its output going to files in the sandbox, and waits for it; prints what
/// it said, so that a failing test's output shows every command it ran.
///
/// # Panics
/// If it cannot be started or does not finish within `timeout` (it is killed then).
pub fn run_bounded(sandbox: &Sandbox, mut command: Command, timeout: Duration) -> Outcome {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let stdout_path = sandbox.file(&format!("command-{n}.stdout.out"));
    let stderr_path = sandbox.file(&format!("command-{n}.stderr.out"));
    let create = |path: &Path| {
        File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
    };
    let started = Instant::now();
    let mut child = command
        .stdout(create(&stdout_path))
        .stderr(create(&stderr_path))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(POLL_INTERVAL);
    };
    let outcome = Outcome {
        code: status.code(),
        stdout: read_output(&stdout_path),
        stderr: read_output(&stderr_path),
        took: started.elapsed(),
    };
    eprintln!("{command:?} -> {outcome:?}");
    outcome
}

/// What a command wrote to `path`, however it is encoded: a failure must show what was said.
fn read_output(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// `huptime: restarted <command>: pid A (generation N) -> pid B (generation M) in T ms`.
fn parse_restarted(stdout: &str) -> Option<Restarted> {
    let line = stdout.lines().rfind(|line| line.contains(": pid "))?;
    let (_, tail) = line.rsplit_once(": pid ")?;
    let words: Vec<&str> = tail
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|word| !word.is_empty())
        .collect();
    // A (generation N) -> pid B (generation M) in T ms
    match words.as_slice() {
        [
            old_pid,
            "generation",
            old_generation,
            "->",
            "pid",
            new_pid,
            "generation",
            new_generation,
            ..,
        ] => Some(Restarted {
            old_pid: old_pid.parse().ok()?,
            old_generation: old_generation.parse().ok()?,
            new_pid: new_pid.parse().ok()?,
            new_generation: new_generation.parse().ok()?,
        }),
        _ => None,
    }
}

/// The fields of the one instance block that `--status` printed.
fn parse_status(stdout: &str) -> Option<Status> {
    let field = |label: &str| {
        let mut values = stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix(label)?.strip_prefix(':'))
            .map(str::trim);
        let value = values.next()?;
        // More than one instance block: the caller asked about one.
        values.next().is_none().then_some(value)
    };
    Some(Status {
        pid: field("PID")?.parse().ok()?,
        generation: field("Generation")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?,
        last_restart: field("Last restart")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_restart() {
        let stdout = "huptime: restarted nginx -c /tmp/a: pid b.conf: pid 12 (generation 3) -> \
                      pid 40 (generation 4) in 150 ms\n";
        assert_eq!(
            parse_restarted(stdout),
            Some(Restarted {
                old_pid: 12,
                old_generation: 3,
                new_pid: 40,
                new_generation: 4,
            })
        );
        assert_eq!(parse_restarted("huptime: restarted x\n"), None);
    }

    #[test]
    fn reads_a_status() {
        let stdout = "● python3 -m http.server 8000 (instance 1-2)\n         PID: 22223\n  \
                      Generation: 1 (started 0s ago)\n        Mode: fork\n\
                      Last restart: ok (new pid 5), 50 ms, attempt 1\n";
        assert_eq!(
            parse_status(stdout),
            Some(Status {
                pid: 22223,
                generation: 1,
                last_restart: "ok (new pid 5), 50 ms, attempt 1".to_owned(),
            })
        );
        let two = format!("{stdout}\n{stdout}");
        assert_eq!(parse_status(&two), None);
    }
}
