//! Signals delivered as readable events (a signalfd) instead of to handlers, for the launcher
//! that stays the parent (`--multi`, `--supervise`): no work happens in a signal handler, and it
//! works as PID 1, where the kernel drops signals that have no handler unless they are blocked.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::time::Duration;

use crate::error::Error;

/// Signals delivered as readable events instead of to handlers.
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks `signals` and opens a descriptor that reports them. SIGCHLD gets its default
    /// disposition: ignored, the kernel would reap children without telling us. (The copies
    /// get the launcher's original mask and dispositions back before they exec.)
    pub fn new(signals: &[i32]) -> Result<Self, Error> {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: the set is initialized by sigemptyset before use; the other calls take
        // valid pointers or plain integers.
        let fd = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for signal in signals {
                libc::sigaddset(set.as_mut_ptr(), *signal);
            }
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            if libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), ptr::null_mut()) != 0 {
                return Err(Error::io(
                    "cannot block signals",
                    io::Error::last_os_error(),
                ));
            }
            libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        if fd < 0 {
            return Err(Error::io(
                "cannot create signalfd",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Waits up to `timeout` and returns the signals that arrived, if any.
    pub fn wait(&self, timeout: Duration) -> Result<Vec<i32>, Error> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, millis) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(Error::io("cannot wait for signals", err));
        }
        let mut signals = Vec::new();
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
            let size = size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most `size` bytes into `info`.
            let read = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            // Anything but a whole record (EAGAIN when drained) ends the batch.
            if usize::try_from(read) != Ok(size) {
                return Ok(signals);
            }
            // SAFETY: the kernel filled the whole record.
            let signal = unsafe { info.assume_init() }.ssi_signo;
            signals.push(i32::try_from(signal).unwrap_or_default());
        }
    }
}
