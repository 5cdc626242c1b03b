//! Processes as `/proc` shows them: whether a recorded PID is still the process that wrote the
//! record, and stopping processes with SIGTERM, then SIGKILL.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use huptime_handoff::InstanceRecord;
use huptime_handoff::record::stat_starttime;

/// How often waits re-check `/proc` and the records.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long to wait for processes to vanish after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The calling process's real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// What became of the process a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running, the same process (start time matches), and ours.
    Live,
    /// Exited (or a zombie), or the PID now belongs to another process: the record is stale.
    Gone,
    /// Running and the same process, but another user's: leave it alone.
    Foreign,
}

/// Checks PID `pid` against the start time its record gave, for user `uid`.
pub fn liveness(pid: i32, starttime: u64, uid: u32) -> Liveness {
    let Some(stat) = settled_stat(pid) else {
        return Liveness::Gone;
    };
    if stat_starttime(&stat) != Some(starttime) || is_zombie(&stat) {
        return Liveness::Gone;
    }
    // The real uid from status, not the owner of /proc/<pid>, which is root for a process
    // that made itself non-dumpable.
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) if real_uid(&status) == Some(uid) => Liveness::Live,
        Ok(_) => Liveness::Foreign,
        Err(_) => Liveness::Gone,
    }
}

/// `/proc/<pid>/stat`, read again while it shows a zombie for a moment: a process whose
/// restart thread calls `execve` (exec mode) looks like a zombie while the kernel ends its
/// other threads, and must not be taken for gone.
fn settled_stat(pid: i32) -> Option<String> {
    let path = format!("/proc/{pid}/stat");
    let mut stat = fs::read_to_string(&path).ok()?;
    for _ in 0..10 {
        if !is_zombie(&stat) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        stat = fs::read_to_string(&path).ok()?;
    }
    Some(stat)
}

/// The start time of a running process, to recognise it later.
pub fn starttime(pid: i32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    stat_starttime(&fs::read_to_string(&path)?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}")))
}

fn is_zombie(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X" | "x"))
}

fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One process to be signalled, recognised by its start time so a recycled PID is never hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub pid: i32,
    pub starttime: u64,
}

impl From<&InstanceRecord> for Target {
    fn from(record: &InstanceRecord) -> Self {
        Self {
            pid: record.pid,
            starttime: record.starttime,
        }
    }
}

impl Target {
    /// Whether the process is still the one meant and still ours.
    pub fn alive(&self) -> bool {
        liveness(self.pid, self.starttime, uid()) == Liveness::Live
    }

    /// Sends `signal` if the process is still the one meant.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if !self.alive() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(self.pid, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Sends SIGTERM to every target, waits up to `grace` for them to exit, then SIGKILLs the rest
/// and waits briefly again. `tick` runs at every poll (a supervisor reaps its children there).
/// Returns the targets still alive at the end.
pub fn terminate(targets: &[Target], grace: Duration, mut tick: impl FnMut()) -> Vec<Target> {
    for target in targets {
        // One that already exited is what we want anyway.
        let _ = target.signal(libc::SIGTERM);
    }
    let mut left = wait_for_exit(targets, grace, &mut tick);
    if left.is_empty() {
        return left;
    }
    for target in &left {
        let _ = target.signal(libc::SIGKILL);
    }
    left = wait_for_exit(&left, KILL_GRACE, &mut tick);
    left
}

fn wait_for_exit(targets: &[Target], limit: Duration, tick: &mut impl FnMut()) -> Vec<Target> {
    let deadline = Instant::now() + limit;
    loop {
        tick();
        let left: Vec<Target> = targets.iter().copied().filter(Target::alive).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn own_process_is_live() {
        let pid = std::process::id() as i32;
        let start = starttime(pid).unwrap();
        assert_eq!(liveness(pid, start, uid()), Liveness::Live);
        assert_eq!(liveness(pid, start + 1, uid()), Liveness::Gone);
        assert_eq!(liveness(pid, start, uid() + 1), Liveness::Foreign);
        assert_eq!(liveness(i32::MAX, 0, uid()), Liveness::Gone);
    }

    #[test]
    fn zombies_are_gone() {
        let mut child = Command::new("true").stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id() as i32;
        let start = starttime(pid).unwrap();
        let target = Target {
            pid,
            starttime: start,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while target.alive() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        assert!(!target.alive(), "an exited, unreaped child counts as gone");
        child.wait().unwrap();
    }

    #[test]
    fn terminate_escalates_to_kill() {
        // A shell that ignores SIGTERM needs the SIGKILL.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
        let pid = child.id() as i32;
        let target = Target {
            pid,
            starttime: starttime(pid).unwrap(),
        };
        let started = Instant::now();
        let left = terminate(&[target], Duration::from_millis(200), || {});
        assert!(left.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(child.wait().unwrap().code().is_none());
    }

    #[test]
    fn status_fields() {
        assert_eq!(real_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(1000));
        assert_eq!(real_uid("Name:\tx\n"), None);
        assert!(is_zombie("7 (a) b) Z 1 2"));
        assert!(!is_zombie("7 (Z) S 1 2"));
    }
}
