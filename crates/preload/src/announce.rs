//! Telling the outside world which process serves: systemd's notification socket
//! (`NOTIFY_SOCKET`) and the `--pidfile`.
//!
//! huptime owns the notification socket: the program does not see `NOTIFY_SOCKET` (the launcher
//! takes it out of the environment and hands it over in the options), so it cannot send a second
//! or contradictory `READY=1`.
//! The messages follow the generations: `READY=1` once the first generation (or an exec-mode
//! generation) serves its sockets; on a restart `RELOADING=1` with `MONOTONIC_USEC=`, then from
//! the old master `MAINPID=` with the new PID and `READY=1` once the new generation is ready (or
//! `READY=1` alone when the restart was rolled back); `STOPPING=1` when the master ends.
//! Called from the restart thread and the exit path, never from a signal handler.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use huptime_handoff::Mode;

use crate::log::{debug, warning};
use crate::process::{self, PID};
use crate::sys;

/// The notification socket's address, prepared once: the stop path sends from a signal handler.
static ADDRESS: OnceLock<Option<(libc::sockaddr_un, libc::socklen_t)>> = OnceLock::new();
static STOPPING_SENT: AtomicBool = AtomicBool::new(false);

fn address() -> Option<&'static (libc::sockaddr_un, libc::socklen_t)> {
    ADDRESS
        .get_or_init(|| {
            let path = process::config()?
                .options
                .notify_socket
                .as_ref()?
                .as_bytes();
            // SAFETY: sockaddr_un is plain data.
            let mut target: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            target.sun_family = libc::AF_UNIX as libc::sa_family_t;
            if path.is_empty() || path.len() >= target.sun_path.len() {
                return None;
            }
            for (slot, &byte) in target.sun_path.iter_mut().zip(path) {
                *slot = byte as libc::c_char;
            }
            // "@name" is the abstract namespace: a leading NUL instead of '@'.
            if path[0] == b'@' {
                target.sun_path[0] = 0;
            }
            let length = std::mem::size_of::<libc::sa_family_t>() + path.len();
            Some((target, length as libc::socklen_t))
        })
        .as_ref()
}

/// The pid file's path, prepared once: the stop path removes it from a signal handler.
static PIDFILE: OnceLock<Option<std::ffi::CString>> = OnceLock::new();

fn pidfile_path() -> Option<&'static std::ffi::CStr> {
    PIDFILE
        .get_or_init(|| {
            let path = process::config()?.options.pidfile.as_ref()?;
            std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
        })
        .as_deref()
}

/// Whether SIGTERM must pass through our handler: to notify a service manager or remove the
/// pid file. Prepares both (not in a signal handler).
pub fn watches_stop() -> bool {
    let notify = address().is_some();
    let pidfile = pidfile_path().is_some();
    notify || pidfile
}

/// Sends one datagram to the notification socket. Async-signal-safe once [`address`] was
/// prepared.
fn send(message: &[u8]) -> Option<std::io::Result<()>> {
    let (target, length) = ADDRESS.get()?.as_ref()?;
    // SAFETY: plain socket calls on our own descriptor with a valid address.
    unsafe {
        let socket = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Some(Err(std::io::Error::last_os_error()));
        }
        let sent = libc::sendto(
            socket,
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
            (target as *const libc::sockaddr_un).cast(),
            *length,
        );
        let error = std::io::Error::last_os_error();
        sys::close(socket);
        Some(if sent < 0 { Err(error) } else { Ok(()) })
    }
}

/// Sends one notification, if there is a notification socket.
fn notify(message: &str) {
    if address().is_none() {
        return;
    }
    match send(message.as_bytes()) {
        Some(Err(error)) => {
            warning!("cannot notify the service manager ({message:?}): {error}");
        }
        _ => debug!("told the service manager: {}", message.replace('\n', " ")),
    }
}

fn monotonic_micros() -> u64 {
    // SAFETY: clock_gettime fills a plain struct.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// This master's generation serves its sockets. In fork mode a later generation is announced
/// by the old master, which is the service's main process until it hands over.
pub fn ready(generation: u64) {
    let Some(config) = process::config() else {
        return;
    };
    if generation == 0 || config.options.mode == Mode::Exec {
        notify("READY=1");
    }
    write_pidfile();
}

/// A restart begins.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        monotonic_micros()
    ));
}

/// Fork mode: the new generation, whose master is `master`, took over. Under a supervisor the
/// main PID does not change.
pub fn handed_over(master: i32) {
    if process::config().is_some_and(|c| c.options.supervised) {
        notify("READY=1");
    } else {
        notify(&format!("MAINPID={master}\nREADY=1"));
    }
}

/// The restart failed and this generation goes on serving.
pub fn rolled_back(reason: &str) {
    let status: String = reason.chars().filter(|&c| c != '\n').take(200).collect();
    notify(&format!("READY=1\nSTATUS=restart failed: {status}"));
}

/// A forked child took over as master (a daemon).
pub fn became_master() {
    if !process::config().is_some_and(|c| c.options.supervised) {
        notify(&format!("MAINPID={}", PID.load(Ordering::Relaxed)));
    }
}

/// The master ends without handing over: the service stops.
pub fn stopping() {
    if !STOPPING_SENT.swap(true, Ordering::SeqCst) {
        notify("STOPPING=1");
    }
    let Some(path) = process::config().and_then(|c| c.options.pidfile.as_ref()) else {
        return;
    };
    let ours = PID.load(Ordering::Relaxed).to_string();
    if std::fs::read_to_string(path).is_ok_and(|content| content.trim() == ours) {
        let _ = std::fs::remove_file(path);
    }
}

/// The master is being stopped by a signal. Async-signal-safe.
pub fn stopping_from_signal() {
    if !STOPPING_SENT.swap(true, Ordering::SeqCst) {
        let _ = send(b"STOPPING=1");
    }
    if let Some(path) = PIDFILE.get().and_then(|p| p.as_deref()) {
        remove_pidfile_if_ours(path);
    }
}

/// Removes the pid file if it names this process, with system calls only.
fn remove_pidfile_if_ours(path: &std::ffi::CStr) {
    let mut content = [0u8; 32];
    // SAFETY: open/read/close on a NUL-terminated path and a stack buffer.
    let length = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return;
        }
        let n = libc::read(fd, content.as_mut_ptr().cast(), content.len());
        sys::close(fd);
        n
    };
    let Ok(length) = usize::try_from(length) else {
        return;
    };
    let digits = content[..length].iter().take_while(|b| b.is_ascii_digit());
    let named = digits.fold(0i64, |pid, &digit| pid * 10 + i64::from(digit - b'0'));
    if named == i64::from(PID.load(Ordering::Relaxed)) {
        // SAFETY: unlink of a NUL-terminated path; the real function, not our hook.
        unsafe { crate::real::unlink(path.as_ptr()) };
    }
}

/// Points the pid file at this master, atomically (a temporary file renamed over it).
fn write_pidfile() {
    let Some(path) = process::config().and_then(|c| c.options.pidfile.as_ref()) else {
        return;
    };
    let pid = PID.load(Ordering::Relaxed);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{pid}.tmp"));
    let result = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(format!("{pid}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, path));
    match result {
        Ok(()) => debug!(
            "pid file {} names pid {pid}",
            String::from_utf8_lossy(path.as_os_str().as_bytes())
        ),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            warning!("cannot write the pid file {}: {error}", path.display());
        }
    }
}
