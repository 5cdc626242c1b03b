//! Closing and duplicating descriptors: a tracked connection is done when its last copy is
//! closed (by `close`, `dup2` over it, `close_range`, `closefrom`), and a duplicate of a bound
//! socket or a connection is tracked like the original.
//!
//! A descriptor is forgotten before the real close, never after: once closed its number can be
//! handed out again at once by another thread, whose new descriptor we must not forget.

use std::ffi::{c_int, c_uint};
use std::os::fd::RawFd;

use crate::fdtable::{self, Kind};
use crate::{errno, internal, real, retire, sockets};

/// Forgets `fd`; returns whether a connection is going away (then the caller counts it gone).
/// Leaves `errno` alone.
#[inline(always)]
fn forget(fd: RawFd, kind: Kind) -> bool {
    match kind {
        Kind::Connection => fdtable::take(fd) == Kind::Connection,
        Kind::Bound => {
            fdtable::clear(fd);
            forget_bound(fd);
            false
        }
        _ => {
            fdtable::clear(fd);
            false
        }
    }
}

#[cold]
fn forget_bound(fd: RawFd) {
    let _errno = errno::Preserve::now();
    sockets::remove_fd(fd);
}

/// A tracked connection descriptor is gone (the table says so already). Leaves `errno` alone.
#[inline(always)]
fn connection_gone() {
    retire::on_drain_progress();
}

/// The program is about to close `fd`, a connection: forgets it and counts it gone.
///
/// The hot path of every server, so the hook calls this outside `catch_unwind` (nothing here
/// can panic) and then tail-calls libc's `close`: on this kind of machine every return made
/// after a system call costs a misprediction (about 8 ns), so no frame of ours may stay on
/// the stack across it. Counting the connection gone a moment before the kernel closes it
/// changes nothing: the program is done with it, and a process that exits or executes the
/// next generation closes it in any case.
#[inline(always)]
pub fn closing_connection(fd: RawFd) {
    if fdtable::take(fd) == Kind::Connection {
        connection_gone();
    }
}

/// The program got `copy` by duplicating a connection: tracked like it. Cannot panic (see
/// [`closing_connection`]); leaves `errno` alone.
#[inline(always)]
pub fn connection_copied(copy: RawFd) {
    fdtable::set(copy, Kind::Connection);
}

/// Moves our own descriptor away from `fd` (see [`internal::relocate`]); returns whether `fd`
/// was ours. Leaves `errno` alone.
fn relocate(fd: RawFd) -> bool {
    let _errno = errno::Preserve::now();
    internal::relocate(fd)
}

/// `close(fd)`; `kind` is what the table says `fd` is.
pub fn close(fd: RawFd, kind: Kind) -> c_int {
    if kind == Kind::Untracked {
        // SAFETY: forwarding the caller's argument.
        return unsafe { real::close(fd) };
    }
    if kind == Kind::Internal && relocate(fd) {
        return 0;
    }
    let connection = forget(fd, kind);
    // SAFETY: forwarding the caller's argument.
    let result = unsafe { real::close(fd) };
    // Linux releases the descriptor even when close reports EINTR or EIO; EBADF means it was
    // closed behind our back, so it is gone all the same.
    if connection {
        connection_gone();
    }
    result
}

/// Tracks `copy` like `original` after a successful duplication. Leaves `errno` alone.
#[inline(always)]
fn track_copy(original: RawFd, copy: RawFd, kind: Kind) {
    match kind {
        Kind::Connection => connection_copied(copy),
        Kind::Untracked | Kind::Internal => {}
        _ => track_other_copy(original, copy, kind),
    }
}

#[cold]
fn track_other_copy(original: RawFd, copy: RawFd, kind: Kind) {
    if kind == Kind::Bound {
        let _errno = errno::Preserve::now();
        sockets::add_alias(original, copy);
    } else {
        fdtable::set(copy, kind);
    }
}

/// `dup(fd)`, and `fcntl(F_DUPFD*)` through `duplicate`; `kind` is what `fd` is.
pub fn dup(fd: RawFd, kind: Kind) -> c_int {
    // SAFETY: forwarding the caller's argument.
    let copy = unsafe { real::dup(fd) };
    if copy >= 0 {
        track_copy(fd, copy, kind);
    }
    copy
}

/// `fcntl(fd, F_DUPFD or F_DUPFD_CLOEXEC, min)`.
pub fn duplicate(fd: RawFd, cmd: c_int, min: libc::c_long, kind: Kind) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let copy = unsafe { real::fcntl(fd, cmd, min) };
    if copy >= 0 {
        track_copy(fd, copy, kind);
    }
    copy
}

/// `dup2`/`dup3(old, new, flags)`: whatever `new` was is closed by the kernel. The kinds are
/// what the table says the two descriptors are.
pub fn dup_onto(
    old: RawFd,
    new: RawFd,
    flags: Option<c_int>,
    old_kind: Kind,
    new_kind: Kind,
) -> c_int {
    let call = || match flags {
        // SAFETY: forwarding the caller's arguments.
        Some(flags) => unsafe { real::dup3(old, new, flags) },
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { real::dup2(old, new) },
    };
    // dup2 onto itself changes nothing; nor, for us, does replacing a connection (epoll
    // instance, ghost) with another: `new` stays one, counted once.
    if old == new
        || (old_kind == new_kind
            && matches!(new_kind, Kind::Connection | Kind::Epoll | Kind::Ghost))
    {
        return call();
    }
    let connection = if new_kind == Kind::Internal {
        relocate(new);
        false
    } else {
        forget(new, new_kind)
    };
    let result = call();
    if result < 0 {
        // Nothing changed (an invalid `old`): `new` is what it was.
        if matches!(new_kind, Kind::Connection | Kind::Ghost | Kind::Epoll) {
            fdtable::set(new, new_kind);
        }
        return result;
    }
    track_copy(old, result, old_kind);
    if connection {
        connection_gone();
    }
    result
}

/// `close_range(first, last, flags)`, also behind `closefrom`. Our own descriptors in the
/// range stay open (the range is closed around them); tracked ones are forgotten first.
pub fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let call = |from: c_uint, to: c_uint| {
        // SAFETY: plain system call with integer arguments.
        unsafe { real::close_range(from, to, flags) }
    };
    if flags as c_uint & libc::CLOSE_RANGE_CLOEXEC != 0 || first > last {
        return call(first, last);
    }
    let mut keep = Vec::new();
    let mut connections = false;
    fdtable::for_each_tracked(
        first as RawFd,
        last.min(i32::MAX as c_uint) as RawFd,
        |fd, kind| {
            if kind == Kind::Internal {
                keep.push(fd as c_uint);
            } else if forget(fd, kind) {
                connections = true;
            }
        },
    );
    let mut start = first;
    let mut result = 0;
    for fd in keep {
        if fd > start {
            result = result.min(call(start, fd - 1));
        }
        start = fd + 1;
    }
    if start <= last {
        result = result.min(call(start, last));
    }
    // One look at draining covers every connection the range closed.
    if connections {
        connection_gone();
    }
    result
}
