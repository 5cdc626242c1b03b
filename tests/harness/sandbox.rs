//! One test's sandbox: a temporary directory and a process tag. Dropping it kills every process
//! the test started and removes the directory; when the test panicked, it first prints the
//! servers' logs (their ends), and with `HUPTIME_TEST_KEEP` set it leaves the directory in place.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::Endpoint;
use crate::process::{ProcessTag, ServerProcess, TAG_ENV, parent_pid};
use crate::protocol::Protocol;

/// How long a started server gets to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How much of each log a failed test prints (the end, where the trouble usually is).
const LOG_TAIL_BYTES: usize = 8 * 1024;
/// Set (to anything) to keep the directory of a test that failed, whole logs included.
pub const KEEP_ENV: &str = "HUPTIME_TEST_KEEP";
/// How many parents [`Sandbox::processes_outside`] follows at most from a process.
const MAX_ANCESTRY: usize = 1024;

pub struct Sandbox {
    tag: ProcessTag,
    dir: PathBuf,
    servers_started: Cell<u32>,
}

impl Sandbox {
    /// A fresh sandbox; `name` (e.g. the test's name) makes its directory easy to recognise.
    pub fn new(name: &str) -> Sandbox {
        let tag = ProcessTag::new();
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = std::env::temp_dir().join(format!("huptime-test-{name}-{}", tag.value()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Sandbox {
            tag,
            dir,
            servers_started: Cell::new(0),
        }
    }

    /// A path inside the sandbox directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A command for `program` that carries this sandbox's tag and reads no input.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env(TAG_ENV, self.tag.value()).stdin(Stdio::null());
        command
    }

    /// Spawns `command` (made by [`Sandbox::command`]) with stdout and stderr going to log files
    /// in the sandbox, and waits until it answers `GET` on `endpoint`.
    ///
    /// # Panics
    /// If it fails with an error status first, or does not answer within 20 s; with its stderr.
    pub fn start_server(&self, command: Command, endpoint: impl Into<Endpoint>) -> ServerProcess {
        self.start_server_speaking(command, endpoint, &Protocol::Line)
    }

    /// Like [`Sandbox::start_server`], for a server that speaks `protocol`: waits until it gives
    /// a complete reply.
    pub fn start_server_speaking(
        &self,
        command: Command,
        endpoint: impl Into<Endpoint>,
        protocol: &Protocol,
    ) -> ServerProcess {
        self.launch(command, endpoint.into(), protocol, None)
    }

    /// Like [`Sandbox::start_server`], with stderr going to `stderr` instead of a log file of
    /// the sandbox: a pipe the test reads, say, and copies to `stderr_log`, where
    /// [`ServerProcess::stderr`] reads it.
    pub fn start_server_with_stderr(
        &self,
        command: Command,
        endpoint: impl Into<Endpoint>,
        stderr: Stdio,
        stderr_log: PathBuf,
    ) -> ServerProcess {
        self.launch(
            command,
            endpoint.into(),
            &Protocol::Line,
            Some((stderr_log, stderr)),
        )
    }

    fn launch(
        &self,
        mut command: Command,
        endpoint: Endpoint,
        protocol: &Protocol,
        stderr: Option<(PathBuf, Stdio)>,
    ) -> ServerProcess {
        let n = self.servers_started.get() + 1;
        self.servers_started.set(n);
        let log = |stream: &str| {
            let path = self.file(&format!("server-{n}.{stream}.log"));
            let file =
                File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            (path, Stdio::from(file))
        };
        let (stdout_log, stdout) = log("stdout");
        let (stderr_log, stderr) = stderr.unwrap_or_else(|| log("stderr"));
        let child = command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let mut server = ServerProcess::new(child, stdout_log, stderr_log);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let last = match protocol.request(&endpoint) {
                Ok(_) => return server,
                Err(e) => e,
            };
            // An exit with success may be a daemon that forked away: keep waiting for it then.
            if let Some(status) = server.try_exit_status() {
                if !status.success() {
                    panic!(
                        "{command:?} exited ({status}) before answering on {endpoint}; stderr:\n{}",
                        server.stderr()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{command:?} did not answer on {endpoint} within {START_TIMEOUT:?}; last: {last}; stderr:\n{}",
                    server.stderr()
                );
            }
            thread::sleep(START_POLL_INTERVAL);
        }
    }

    /// Every live process started from this sandbox, however far it forked or daemonized away.
    pub fn processes(&self) -> Vec<u32> {
        self.tag.pids()
    }

    /// The live processes started from this sandbox that are neither `root` nor descend from it
    /// (through their parent pids as they are now).
    pub fn processes_outside(&self, root: u32) -> Vec<u32> {
        self.processes()
            .into_iter()
            .filter(|&pid| {
                let mut current = pid;
                // Bounded, in case the tree changes under the walk.
                for _ in 0..MAX_ANCESTRY {
                    if current == root {
                        return false;
                    }
                    match parent_pid(current) {
                        Some(parent) if parent > 1 => current = parent,
                        _ => return true,
                    }
                }
                true
            })
            .collect()
    }

    /// Waits until no process started from this sandbox is left; on timeout, returns the ones
    /// still there.
    pub fn wait_no_processes(&self, timeout: Duration) -> Result<(), Vec<u32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.processes();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(left);
            }
            thread::sleep(START_POLL_INTERVAL);
        }
    }

    fn print_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let data = fs::read(&path).unwrap_or_default();
            let tail = &data[data.len().saturating_sub(LOG_TAIL_BYTES)..];
            eprintln!(
                "----- {} ({} bytes) -----\n{}",
                path.display(),
                data.len(),
                String::from_utf8_lossy(tail)
            );
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Kill first, so the logs are complete and nothing writes into the directory any more.
        let survivors = self.tag.kill_all();
        if thread::panicking() {
            self.print_logs();
        }
        if thread::panicking() && std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("{KEEP_ENV} is set: leaving {}", self.dir.display());
        } else if survivors.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "processes {survivors:?} survived; leaving {}",
                self.dir.display()
            );
        }
    }
}
