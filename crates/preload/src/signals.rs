//! Our signal handlers. They only read atomics, write a byte to a pipe, or (in a worker that has
//! no thread of ours) run the async-signal-safe retire path.
//!
//! The restart signal: the master wakes its restart thread; a worker ignores it (only the
//! master restarts), but passes a child's "ready" news up. [`RETIRE_SIGNAL`] from the parent
//! retires a worker. Queued payloads (`sigqueue`) tell our own messages from a user's signal.

use std::ffi::c_int;
use std::sync::atomic::Ordering;

use crate::process::{self, PARENT, PID};
use crate::restart::{self, Wake};
use crate::retire::{self, RETIRE, RETIRE_SIGNAL, WAKE};
use crate::{errno, procfs, ready};

/// Installs both handlers.
pub fn install(restart_signal: c_int) -> Result<(), std::io::Error> {
    install_one(restart_signal, on_restart_signal)?;
    install_one(RETIRE_SIGNAL, on_retire_signal)
}

type Handler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn install_one(sig: c_int, handler: Handler) -> Result<(), std::io::Error> {
    // SAFETY: a zeroed sigaction with an empty mask and our handler is valid.
    let result = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The queued payload of a signal, if it was sent with `sigqueue`.
fn payload(info: &libc::siginfo_t) -> Option<(usize, i32)> {
    if info.si_code != libc::SI_QUEUE {
        return None;
    }
    // SAFETY: for SI_QUEUE the kernel filled the pid and value fields.
    unsafe { Some((info.si_value().sival_ptr as usize, info.si_pid())) }
}

extern "C" fn on_restart_signal(
    sig: c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let _errno = errno::Preserve::now();
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    let info = unsafe { &*info };
    match payload(info) {
        Some((WAKE, from)) if from == PID.load(Ordering::Relaxed) => {}
        Some((ready::READY_SIGNAL_PAYLOAD, _)) => {
            if process::is_master() {
                restart::wake(Wake::Ready);
            } else {
                procfs::queue_signal(
                    PARENT.load(Ordering::Relaxed),
                    sig,
                    ready::READY_SIGNAL_PAYLOAD,
                );
            }
        }
        _ if process::is_master() => restart::wake(Wake::Restart),
        _ => {}
    }
}

extern "C" fn on_retire_signal(
    _sig: c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let _errno = errno::Preserve::now();
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    let info = unsafe { &*info };
    if let Some((RETIRE, from)) = payload(info)
        && from == PARENT.load(Ordering::Relaxed)
        && !process::is_master()
    {
        retire::retire_worker();
    }
}
