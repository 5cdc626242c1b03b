//! The library's own descriptors when the program closes or overwrites their numbers.
//!
//! Daemons close every descriptor from 3 up at start-up, and any program may `dup2` onto a
//! number it believes free. Our descriptor is then moved to another number first, and the
//! program's call goes ahead on the number it asked for: it sees exactly the semantics it
//! expects, and we keep the saved stdio, the restart channel, the readiness channel and the
//! inherited sockets not yet claimed.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::fdtable::{self, Kind};
use crate::{process, ready, restart, sockets, sys};

/// Moves our descriptor away from `fd`. Returns whether `fd` was ours (and is now free).
pub fn relocate(fd: RawFd) -> bool {
    if fdtable::get(fd) != Kind::Internal {
        return false;
    }
    let cloexec = sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC != 0);
    let Some(moved) = sys::duplicate_above(fd, 3) else {
        return false;
    };
    if !cloexec {
        sys::set_cloexec(moved, false);
    }
    fdtable::set(moved, Kind::Internal);
    let owners = process::STDIO
        .iter()
        .chain(restart::channel_slots())
        .chain([ready::channel_slot()]);
    let mut owned = replace_in(owners, fd, moved);
    owned |= sockets::renumber_unclaimed(fd, moved);
    if !owned {
        // A stale mark: nothing of ours lives there any more.
        fdtable::clear(moved);
        sys::close(moved);
    }
    fdtable::clear(fd);
    sys::close(fd);
    true
}

fn replace_in<'a>(slots: impl Iterator<Item = &'a AtomicI32>, from: RawFd, to: RawFd) -> bool {
    let mut replaced = false;
    for slot in slots {
        replaced |= slot
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
    }
    replaced
}
