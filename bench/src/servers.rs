//! Servers the figures measure: started bare or under huptime on a port of their own, waited
//! for until they accept, and stopped. Each process is reaped by its PID rather than through a
//! `Child`, because after a fork-mode restart the server is a generation we never spawned
//! (it becomes our child when its parent retires, since the bench is a subreaper).

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to start (debug builds under huptime are slow).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes orphaned descendants (generations whose parent retired) our children, so that they
/// can be waited for and never outlive the bench.
pub fn adopt_orphans() {
    // SAFETY: plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// Ports handed out in this run: a port is not reused even after its server is gone.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A TCP port free on 127.0.0.1, below the ephemeral range so that no client connection's own
/// port can take it before the server binds it.
pub fn free_port() -> Result<u16, String> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(11_000));
    let span = u32::from(high - low);
    let start = std::process::id() * 7919 % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    (0..span)
        .map(|offset| low + ((start + offset) % span) as u16)
        .find(|port| {
            !handed_out.contains(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok()
        })
        .inspect(|&port| handed_out.push(port))
        .ok_or_else(|| format!("no free TCP port in {low}..{high}"))
}

/// Whether `pid` has ended; reaps it if it is our child.
pub fn has_exited(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: plain waitpid/kill on a PID.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => false,
        reaped if reaped == pid => true,
        // Not our child (yet): gone, or a zombie of another parent.
        _ => {
            // SAFETY: signal 0 only checks that the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0;
            gone || is_zombie(pid)
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may contain spaces.
        let after_name = stat.rsplit(')').next().unwrap_or("");
        after_name.trim_start().starts_with('Z')
    })
}

/// Waits until `pid` has ended, at most `timeout`.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if has_exited(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Stops `pid`: SIGTERM (and SIGCONT, should it be paused), then SIGKILL if it does not exit
/// in time.
pub fn stop(pid: i32) {
    // SAFETY: signalling a process we started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
    }
    if !wait_exit(pid, STOP_TIMEOUT) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_exit(pid, STOP_TIMEOUT);
    }
}

/// The PIDs whose parent is `parent`, from `/proc`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // After the command name (in parentheses): state, then the parent's PID.
                let after_name = stat.rsplit(')').next().unwrap_or("");
                after_name.split_whitespace().nth(1) == Some(&parent.to_string())
            })
        })
        .collect()
}

/// Stops every process that is still our child: whatever a figure left behind (generations
/// that retired but did not exit become our children when their parent does). Each round may
/// make grandchildren ours. Returns how many there were.
pub fn end_children() -> usize {
    let me = std::process::id() as i32;
    let mut ended = 0;
    for _ in 0..10 {
        let children = children_of(me);
        if children.is_empty() {
            break;
        }
        ended += children.len();
        children.into_iter().for_each(stop);
    }
    ended
}

/// A running server, stopped when dropped.
pub struct Server {
    /// The serving process: the program itself (huptime executes it in place), or after a
    /// fork-mode restart the current generation.
    pub pid: i32,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `command`, which must listen on 127.0.0.1:`port`, and waits until it accepts;
    /// its stderr goes to `log`.
    pub fn start(mut command: Command, port: u16, log: PathBuf) -> Result<Self, String> {
        let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let server = Self {
            pid: child.id() as i32,
            port,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{program} exited ({status}) before listening on port {port}: {}",
                    server.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{program} did not start listening on port {port}: {}",
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(server)
    }

    /// Stops the server's process where it is (SIGSTOP) until [`Server::resume`]: a server that
    /// burns CPU while idle (the original C huptime makes acceptbench spin) must not slow the
    /// variants measured beside it.
    pub fn pause(&self) {
        // SAFETY: signalling the process we run.
        unsafe { libc::kill(self.pid, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: signalling the process we run.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }

    /// The last lines the server wrote on stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_children_left_behind() {
        // Reaped by end_children, not through the Child.
        let pid = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep")
            .id() as i32;
        assert!(children_of(std::process::id() as i32).contains(&pid));
        assert!(end_children() >= 1);
        assert!(!children_of(std::process::id() as i32).contains(&pid));
    }
}
