//! Readiness: a generation is ready once it serves the sockets it claimed (it accepted on them,
//! polled them or put them in an epoll set), which a quiet service does without any traffic.
//! The old generation learns it over the channel it handed down; the master of this generation
//! learns it from whichever of its processes got there first, through its restart channel (a
//! signal would not do: nginx workers run as another user than their master).
//!
//! Once ready, the hooks' check costs one relaxed atomic load.

use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::errno;
use crate::fdtable::{self, Kind};
use crate::log::{debug, warning};
use crate::process::{self, READY_PENDING};
use crate::restart::{self, Wake};
use crate::sockets::{self, Served};
use crate::sys;

/// The byte that says "ready" on the readiness channel.
pub const READY: u8 = b'R';

/// The master named in a readiness report: [`READY`], then its PID (4 bytes, little-endian).
pub fn reported_master(message: &[u8]) -> Option<i32> {
    let pid: [u8; 4] = message.get(1..5)?.try_into().ok()?;
    Some(i32::from_le_bytes(pid)).filter(|&pid| pid > 0)
}

/// Our end of the channel to the previous generation, until we report on it.
static CHANNEL: AtomicI32 = AtomicI32::new(-1);

/// The channel's descriptor, for [`crate::internal::relocate`].
pub fn channel_slot() -> &'static AtomicI32 {
    &CHANNEL
}

/// Remembers the readiness channel handed down by the previous generation.
pub fn set_channel(fd: RawFd) {
    fdtable::set(fd, Kind::Internal);
    CHANNEL.store(fd, Ordering::Release);
}

/// Whether readiness is still being watched for (hot path).
#[inline]
pub fn pending() -> bool {
    READY_PENDING.load(Ordering::Relaxed)
}

/// The program serves `fd`.
pub fn served(fd: RawFd) {
    if fdtable::get(fd) != Kind::Bound {
        return;
    }
    if let Served::All = sockets::mark_served(fd) {
        become_ready();
    }
}

/// [`served`] for each of `fds`, from a hook that runs outside `catch_unwind`: leaves `errno`
/// alone, and reports a panic instead of passing it on.
#[cold]
pub fn served_from_hook(call: &str, fds: impl Iterator<Item = RawFd>) {
    let _errno = errno::Preserve::now();
    if catch_unwind(AssertUnwindSafe(|| fds.for_each(served))).is_err() {
        warning!("readiness bookkeeping failed in {call}");
    }
}

/// Declares this process's generation ready: closes the inherited sockets nobody claimed and
/// lets the master know. The master reports to the previous generation only once its record and
/// pid file name it (see [`report_to_previous`]), so whoever acts on the report finds them.
pub fn become_ready() {
    if !READY_PENDING.swap(false, Ordering::SeqCst) {
        return;
    }
    for identity in sockets::close_unclaimed() {
        debug!("closed inherited socket {identity}: the new generation did not bind it");
    }
    // The saved stdio copies had to survive the execs up to the program; from now on they
    // must not leak into the program's own children.
    if let Some(stdio) = process::stdio() {
        for fd in stdio {
            sys::set_cloexec(fd, true);
        }
    }
    debug!("ready: serving every socket it claimed");
    if !process::is_master() {
        close_channel();
        restart::tell_master(Wake::Ready);
    } else if restart::has_thread() {
        restart::wake(Wake::Ready);
    } else {
        report_to_previous();
    }
}

/// Tells the previous generation that this one is ready, naming its master.
pub fn report_to_previous() {
    let channel = CHANNEL.swap(-1, Ordering::AcqRel);
    if channel < 0 {
        return;
    }
    let master = process::MASTER_PID.load(Ordering::Relaxed).to_le_bytes();
    let message = [READY, master[0], master[1], master[2], master[3]];
    // SAFETY: send on our own descriptor; MSG_NOSIGNAL because the old generation may be gone.
    unsafe {
        libc::send(
            channel,
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    fdtable::clear(channel);
    sys::close(channel);
}

/// A worker's copy of the channel: only the master reports on it.
fn close_channel() {
    let channel = CHANNEL.swap(-1, Ordering::AcqRel);
    if channel >= 0 {
        fdtable::clear(channel);
        sys::close(channel);
    }
}
