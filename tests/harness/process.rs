//! Processes started by tests: tagging them so none outlives its test, liveness, signals, pid
//! files, and the handle of a started server.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that marks every process a test starts.
pub const TAG_ENV: &str = "HUPTIME_TEST_TAG";

/// How long cleanup waits for killed processes to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A unique value for [`TAG_ENV`]. Processes started with it are found through
/// `/proc/<pid>/environ`, which a forked child shares and a daemon that called `setsid()` keeps,
/// so dropping the tag kills a test's servers, their workers and all their generations.
#[derive(Debug)]
pub struct ProcessTag {
    value: String,
}

impl ProcessTag {
    pub fn new() -> ProcessTag {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let value = format!(
            "{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ProcessTag { value }
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Live processes carrying this tag (zombies have no environment left and do not count).
    pub fn pids(&self) -> Vec<u32> {
        let entry = format!("{TAG_ENV}={}", self.value);
        all_pids()
            .filter(|&pid| environ(pid).contains(&entry))
            .collect()
    }

    /// SIGKILLs every tagged process until none is left; returns the ones that would not go.
    /// Kills in rounds, because a process may fork while the previous round is being killed.
    pub fn kill_all(&self) -> Vec<u32> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                return pids;
            }
            for &pid in &pids {
                // It may have exited meanwhile: nothing to do then.
                let _ = send_signal(pid, libc::SIGKILL);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Default for ProcessTag {
    fn default() -> Self {
        ProcessTag::new()
    }
}

impl Drop for ProcessTag {
    fn drop(&mut self) {
        let survivors = self.kill_all();
        if !survivors.is_empty() {
            // No panic here: this may run while a test is already panicking.
            eprintln!(
                "test processes {survivors:?} (tag {}) survived SIGKILL for {KILL_TIMEOUT:?}",
                self.value
            );
        }
    }
}

fn all_pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
}

/// One process as `/proc/<pid>/stat` shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    pub ppid: u32,
    pub comm: String,
}

/// `/proc/<pid>/stat`, or `None` if there is no such process (not even a zombie).
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so the state follows the
    // last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        comm,
    })
}

/// Every process on the machine, zombies included.
pub fn processes() -> Vec<ProcStat> {
    all_pids().filter_map(proc_stat).collect()
}

/// The environment `pid` started with (empty if it is gone).
pub fn environ(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// True if `pid` exists and is not a zombie (a zombie has exited; only its parent's `wait` is
/// missing, e.g. the launched process of a test that has not reaped it yet).
fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

/// The parent of `pid` as `/proc` shows it now (after a parent's exit, the process that adopted
/// it); `None` if `pid` is gone.
pub fn parent_pid(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|stat| stat.ppid)
}

/// The children of `pid` that are zombies: exited, never reaped.
pub fn zombie_children(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|stat| stat.state == 'Z' && stat.ppid == pid)
        .map(|stat| stat.pid)
        .collect()
}

/// The pids among `pids` that are still alive.
pub fn pids_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|&pid| is_alive(pid)).collect()
}

/// Waits until none of `pids` is alive; on timeout, returns the ones still there.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = pids_alive(pids);
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(alive);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Sends `signal` (e.g. [`libc::SIGHUP`]) to `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill() has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The pid in a pid file the servers write at start-up (`--pid-file`).
pub fn read_pid_file(path: &Path) -> u32 {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read pid file {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file {} holds {text:?}, not a pid", path.display()))
}

/// A server process a test started, with its output going to log files. Dropping it kills the
/// process and reaps it; whatever it started is left to the sandbox's tag.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
}

impl ServerProcess {
    pub(crate) fn new(child: Child, stdout_log: PathBuf, stderr_log: PathBuf) -> ServerProcess {
        ServerProcess {
            child,
            stdout_log,
            stderr_log,
        }
    }

    /// The pid of the process the test launched.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process and its descendants wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_log(&self.stdout_log)
    }

    /// What the process and its descendants wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_log(&self.stderr_log)
    }

    /// Sends `signal` to the launched process; panics if it cannot be sent.
    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.pid(), signal)
            .unwrap_or_else(|e| panic!("signal {signal} to pid {}: {e}", self.pid()));
    }

    /// The exit status of the launched process, if it has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .expect("waitpid on the launched process")
    }

    /// Waits until the launched process exits; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Killing a live child as its parent cannot fail, so wait() returns promptly.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
