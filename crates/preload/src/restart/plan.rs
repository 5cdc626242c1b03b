//! What the next generation is started with: the command the user gave huptime, looked up anew;
//! the environment of the first start with the new handover state; the directory it was started
//! in, re-entered by path; descriptors 0, 1, 2, the signal mask and ignored signals of the first
//! start; and the sockets.
//!
//! Everything is prepared here, with allocation allowed, so that the step right before `execve`
//! (in a `vfork`-style child sharing our memory, or in our own thread) is system calls only.

use std::ffi::{CString, OsStr, c_char, c_int};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use huptime_handoff::STATE_ENV;
use huptime_handoff::state::{HandoverState, InheritedSocket};

use crate::process::Config;

/// A fixed-width PID placeholder in the encoded state, overwritten by the child with its own
/// PID (zero-padded) before it executes: the PID is not known before the child exists.
const PID_PLACEHOLDER: i32 = 1_999_999_999;
const PID_DIGITS: usize = 10;

/// A ready-to-execute next generation.
pub struct Plan {
    pub path: CString,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    pub argv_ptrs: Vec<*const c_char>,
    /// Owns the strings `shell_argv_ptrs` points into.
    _shell_argv: Vec<CString>,
    /// Arguments for `/bin/sh` when the file has no `#!` line (what `execvp` does).
    pub shell_argv_ptrs: Vec<*const c_char>,
    env: Vec<CString>,
    pub env_ptrs: Vec<*const c_char>,
    pub cwd: CString,
    /// Descriptors that must survive `execve`.
    pub keep: Vec<RawFd>,
    pub stdio: Option<[RawFd; 3]>,
    /// Mask the new image starts with: the first start's, plus [`exec_blocked`].
    pub sigmask: libc::sigset_t,
    /// Signals to put back to their first-start disposition.
    pub dispositions: Vec<(c_int, libc::sighandler_t)>,
    /// Where the child writes its PID into the state, if it is a new process.
    pub pid_slot: Option<(*mut u8, usize)>,
}

/// Looks `command` up like a shell: a name with a slash is taken relative to `cwd`, anything
/// else is searched in `PATH`.
pub fn resolve_command(
    command: &OsStr,
    cwd: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, String> {
    let name = Path::new(command);
    if command.as_bytes().contains(&b'/') {
        let full = cwd.join(name);
        return if is_executable(&full) {
            Ok(full)
        } else if full.exists() {
            Err(format!("{} is not executable", full.display()))
        } else {
            Err(format!("{} does not exist", full.display()))
        };
    }
    let search = path_var.map_or_else(
        || OsStr::new("/usr/local/bin:/usr/bin:/bin").to_owned(),
        |p| p.to_owned(),
    );
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("{} not found in PATH", command.to_string_lossy()))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is NUL-terminated.
    path.is_file() && unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
}

fn c_string(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "a command word contains a NUL byte".to_owned())
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Signals blocked across the `execve`: the restart signal, so one sent during the switch stays
/// pending until the new generation has its handler; SIGIO and SIGPIPE, so one the old image's
/// I/O raises during the switch (nginx's worker channels are O_ASYNC) does not kill the new
/// program before it has a handler (the new generation discards those).
pub fn exec_blocked(restart_signal: c_int) -> u64 {
    [restart_signal, libc::SIGIO, libc::SIGPIPE]
        .into_iter()
        .filter(|sig| (1..=64).contains(sig))
        .fold(0, |bits, sig| bits | 1u64 << (sig - 1))
}

/// The signal set with bit `n - 1` of `bits` for signal `n`.
pub fn sigset_from_bits(bits: u64) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset on a local set.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for sig in 1..=64 {
            if bits & (1u64 << (sig - 1)) != 0 {
                libc::sigaddset(&mut set, sig);
            }
        }
        set
    }
}

/// Signals whose disposition differs from the first start and must be put back: ignored now
/// but not then (python ignores `SIGPIPE`), or ignored then but not now. Handled signals are
/// reset by `execve` itself.
fn disposition_changes(first_ignored: u64) -> Vec<(c_int, libc::sighandler_t)> {
    let mut changes = Vec::new();
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: querying a disposition with a null new action.
        let current = unsafe {
            let mut old = std::mem::zeroed::<libc::sigaction>();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            old.sa_sigaction
        };
        let ignored_then = first_ignored & (1u64 << (sig - 1)) != 0;
        let ignored_now = current == libc::SIG_IGN;
        if ignored_now != ignored_then {
            changes.push((
                sig,
                if ignored_then {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                },
            ));
        }
    }
    changes
}

impl Plan {
    /// Prepares the start of generation `next` with `sockets`; `pid` is the process that will
    /// adopt the state, or `None` for a child not created yet.
    pub fn new(
        config: &Config,
        next: u64,
        pid: Option<i32>,
        sockets: Vec<InheritedSocket>,
        ready_fd: Option<RawFd>,
        restart_signal: c_int,
    ) -> Result<Self, String> {
        let options = &config.options;
        let path_var = config.environment.iter().find_map(|entry| {
            entry
                .as_bytes()
                .strip_prefix(b"PATH=")
                .map(OsStr::from_bytes)
        });
        let command = options.command.first().ok_or("no command")?;
        let path = resolve_command(command, &options.cwd, path_var)?;

        let mut keep: Vec<RawFd> = sockets.iter().map(|s| s.fd).collect();
        let stdio = crate::process::stdio();
        keep.extend(stdio.iter().flatten());
        keep.extend(ready_fd);

        let state = HandoverState {
            generation: next,
            pid: pid.unwrap_or(PID_PLACEHOLDER),
            instance: config.instance.clone(),
            stdio,
            sigmask: config.first_sigmask,
            ignored: config.first_ignored,
            ready_fd,
            since: config.since,
            restart_began_ms: Some(crate::process::now_millis()),
            sockets,
        };
        let state_entry = format!("{STATE_ENV}={}", state.encode());
        let mut env: Vec<CString> = config
            .environment
            .iter()
            .filter(|entry| {
                !entry
                    .as_bytes()
                    .starts_with(format!("{STATE_ENV}=").as_bytes())
            })
            .cloned()
            .collect();
        env.push(c_string(state_entry.as_bytes())?);

        let argv = options
            .command
            .iter()
            .map(|word| c_string(word.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut shell_argv = vec![c_string(b"sh")?, c_string(path.as_os_str().as_bytes())?];
        shell_argv.extend(argv.iter().skip(1).cloned());

        let mut plan = Self {
            path: c_string(path.as_os_str().as_bytes())?,
            argv_ptrs: pointers(&argv),
            _argv: argv,
            shell_argv_ptrs: pointers(&shell_argv),
            _shell_argv: shell_argv,
            env_ptrs: pointers(&env),
            env,
            cwd: c_string(options.cwd.as_os_str().as_bytes())?,
            keep,
            stdio,
            sigmask: sigset_from_bits(config.first_sigmask | exec_blocked(restart_signal)),
            dispositions: disposition_changes(config.first_ignored),
            pid_slot: None,
        };
        if pid.is_none() {
            plan.pid_slot = plan.find_pid_placeholder();
        }
        Ok(plan)
    }

    fn find_pid_placeholder(&mut self) -> Option<(*mut u8, usize)> {
        let needle = format!("pid={PID_PLACEHOLDER};");
        let entry = self.env.last()?;
        let offset = entry
            .as_bytes()
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())?;
        // The CString's buffer does not move while the plan lives; the child writes only the
        // digits, keeping the length and the terminating NUL.
        let start = entry.as_ptr() as *mut u8;
        // SAFETY: offset + 4 is inside the entry.
        Some((unsafe { start.add(offset + 4) }, PID_DIGITS))
    }
}

/// Writes `pid` zero-padded into the placeholder. System calls only: runs in the child.
pub fn write_pid(slot: (*mut u8, usize), pid: i32) {
    let (start, width) = slot;
    let mut n = pid.unsigned_abs();
    for i in (0..width).rev() {
        // SAFETY: the slot covers `width` bytes of the state string.
        unsafe { *start.add(i) = b'0' + (n % 10) as u8 };
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        let cwd = Path::new("/");
        assert_eq!(
            resolve_command("sh".as_ref(), cwd, Some("/nonexistent:/bin".as_ref())).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(
            resolve_command("no-such-program-here".as_ref(), cwd, Some("/bin".as_ref())).is_err()
        );
        assert_eq!(
            resolve_command("bin/sh".as_ref(), Path::new("/"), None).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let plain = std::env::temp_dir().join(format!("huptime-plan-test-{}", std::process::id()));
        std::fs::write(&plain, "data").unwrap();
        let error = resolve_command(plain.as_os_str(), cwd, None).unwrap_err();
        std::fs::remove_file(&plain).unwrap();
        assert!(error.contains("not executable"), "{error}");
    }

    #[test]
    fn pid_is_written_zero_padded() {
        let mut text = *b"pid=1999999999;";
        write_pid((text[4..].as_mut_ptr(), PID_DIGITS), 4321);
        assert_eq!(&text, b"pid=0000004321;");
        assert_eq!("0000004321".parse::<i32>().unwrap(), 4321);
    }
}
