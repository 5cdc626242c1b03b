//! What each descriptor number is to us, readable without a lock.
//!
//! The hot path (`accept`, `close`) asks "is this descriptor ours?" on every call, from any
//! thread, and the restart signal handler walks the table: so it is a two-level array of atomics
//! indexed by descriptor number. The top level lives in `.bss` (only the pages touched become
//! resident); a chunk of 4096 entries is allocated the first time a descriptor in its range is
//! marked, and never freed. Descriptors at or above 2^30 (beyond any `RLIMIT_NOFILE` Linux
//! allows) are never tracked.

use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

const CHUNK_BITS: u32 = 12;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
const MAX_FDS: usize = 1 << 30;
const CHUNKS: usize = MAX_FDS / CHUNK_LEN;

type Chunk = [AtomicU8; CHUNK_LEN];

static CHUNK_TABLE: [AtomicPtr<Chunk>; CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];
/// Highest descriptor ever marked: walks stop here instead of at `RLIMIT_NOFILE`.
static HIGHEST: AtomicI32 = AtomicI32::new(-1);

/// What a descriptor is to the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not ours to care about.
    Untracked = 0,
    /// The program's descriptor for a bound socket (see [`crate::sockets`]).
    Bound = 1,
    /// A connection accepted from a bound socket: the generation drains these.
    Connection = 2,
    /// A retired listening descriptor that never yields a client.
    Ghost = 3,
    /// An epoll instance: retiring removes our sockets from it first.
    Epoll = 4,
    /// The library's own descriptor (saved stdio, restart channel, inherited socket not yet
    /// claimed): kept open when the program closes it by number.
    Internal = 5,
}

impl Kind {
    #[inline(always)]
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Bound,
            2 => Self::Connection,
            3 => Self::Ghost,
            4 => Self::Epoll,
            5 => Self::Internal,
            _ => Self::Untracked,
        }
    }
}

#[inline(always)]
fn slot(fd: RawFd) -> Option<(&'static AtomicPtr<Chunk>, usize)> {
    let index = usize::try_from(fd).ok().filter(|&i| i < MAX_FDS)?;
    Some((&CHUNK_TABLE[index >> CHUNK_BITS], index & (CHUNK_LEN - 1)))
}

/// The entry of `fd` if its chunk exists (no descriptor in a missing chunk was ever marked).
#[inline(always)]
fn existing(fd: RawFd) -> Option<&'static AtomicU8> {
    let (chunk, offset) = slot(fd)?;
    let chunk = chunk.load(Ordering::Acquire);
    // SAFETY: chunks are leaked allocations, never freed once published.
    (!chunk.is_null()).then(|| unsafe { &(*chunk)[offset] })
}

/// What `fd` is. Lock-free and allocation-free: safe in signal handlers.
#[inline(always)]
pub fn get(fd: RawFd) -> Kind {
    existing(fd).map_or(Kind::Untracked, |entry| {
        Kind::from_u8(entry.load(Ordering::Acquire))
    })
}

/// Marks `fd`, allocating its chunk if needed (not for signal handlers: see [`set_existing`]).
/// Leaves `errno` alone, so hooks can call it after the real call without saving `errno`.
#[inline(always)]
pub fn set(fd: RawFd, kind: Kind) {
    let Some((chunk_slot, offset)) = slot(fd) else {
        return;
    };
    let mut chunk = chunk_slot.load(Ordering::Acquire);
    if chunk.is_null() {
        if kind == Kind::Untracked {
            return;
        }
        chunk = allocate(chunk_slot);
    }
    // SAFETY: chunks are never freed once published.
    let chunk = unsafe { &*chunk };
    chunk[offset].store(kind as u8, Ordering::Release);
    // A plain load first: the locked read-modify-write only when the mark is new.
    if kind != Kind::Untracked && fd > HIGHEST.load(Ordering::Relaxed) {
        raise_highest(fd);
    }
}

#[cold]
fn raise_highest(fd: RawFd) {
    HIGHEST.fetch_max(fd, Ordering::AcqRel);
}

/// Publishes a chunk in `chunk_slot` (ours, or one another thread published first).
#[cold]
fn allocate(chunk_slot: &AtomicPtr<Chunk>) -> *mut Chunk {
    // The allocator may set errno even when it succeeds.
    let _errno = crate::errno::Preserve::now();
    let fresh = Box::into_raw(Box::new([const { AtomicU8::new(0) }; CHUNK_LEN]));
    match chunk_slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(installed) => {
            // SAFETY: `fresh` was never published; we still own it.
            drop(unsafe { Box::from_raw(fresh) });
            installed
        }
    }
}

/// Marks `fd` if its chunk exists already, which is the case for every descriptor that was
/// marked before. Allocation-free: for signal handlers.
#[inline(always)]
pub fn set_existing(fd: RawFd, kind: Kind) {
    if let Some(entry) = existing(fd) {
        entry.store(kind as u8, Ordering::Release);
    }
}

/// Forgets `fd` and returns what it was, atomically: of two threads closing one descriptor at
/// once, only one learns that it was a connection. Sequentially consistent: a close that
/// then reads whether the process is retiring pairs with [`crate::retire::drained`].
#[inline(always)]
pub fn take(fd: RawFd) -> Kind {
    existing(fd).map_or(Kind::Untracked, |entry| {
        Kind::from_u8(entry.swap(Kind::Untracked as u8, Ordering::SeqCst))
    })
}

/// Forgets `fd`.
#[inline(always)]
pub fn clear(fd: RawFd) {
    set_existing(fd, Kind::Untracked);
}

/// Calls `visit` for every descriptor of `kind` up to the highest ever marked, until it
/// returns false. Allocation-free.
fn visit_each(kind: Kind, mut visit: impl FnMut(RawFd) -> bool) {
    let highest = HIGHEST.load(Ordering::Acquire);
    if highest < 0 {
        return;
    }
    let last_chunk = highest as usize >> CHUNK_BITS;
    for (index, chunk_slot) in CHUNK_TABLE[..=last_chunk].iter().enumerate() {
        let chunk = chunk_slot.load(Ordering::Acquire);
        if chunk.is_null() {
            continue;
        }
        // SAFETY: chunks are never freed once published.
        for (offset, entry) in unsafe { &*chunk }.iter().enumerate() {
            if entry.load(Ordering::Acquire) == kind as u8
                && !visit(((index << CHUNK_BITS) + offset) as RawFd)
            {
                return;
            }
        }
    }
}

/// Calls `visit` for every descriptor of `kind` up to the highest ever marked. Allocation-free.
pub fn for_each(kind: Kind, mut visit: impl FnMut(RawFd)) {
    visit_each(kind, |fd| {
        visit(fd);
        true
    });
}

/// Calls `visit` for every tracked descriptor in `first..=last`. Allocation-free.
pub fn for_each_tracked(first: RawFd, last: RawFd, mut visit: impl FnMut(RawFd, Kind)) {
    let last = last.min(HIGHEST.load(Ordering::Acquire));
    let mut fd = first.max(0);
    while fd <= last {
        let Some((chunk_slot, offset)) = slot(fd) else {
            return;
        };
        let chunk = chunk_slot.load(Ordering::Acquire);
        if chunk.is_null() {
            // Skip the whole unallocated chunk.
            fd += (CHUNK_LEN - offset) as RawFd;
            continue;
        }
        // SAFETY: chunks are never freed once published.
        let kind = Kind::from_u8(unsafe { &*chunk }[offset].load(Ordering::Acquire));
        if kind != Kind::Untracked {
            visit(fd, kind);
        }
        fd += 1;
    }
}

/// Whether any descriptor of `kind` exists: stops at the first. Allocation-free.
pub fn any(kind: Kind) -> bool {
    let mut found = false;
    visit_each(kind, |_| {
        found = true;
        false
    });
    found
}

/// How many descriptors of `kind` exist. Allocation-free.
pub fn count(kind: Kind) -> usize {
    let mut count = 0;
    for_each(kind, |_| count += 1);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_counts_connections() {
        // Far above what the test process has open, in two chunks.
        let fds = [70_000, 70_001, 74_100];
        for fd in fds {
            set(fd, Kind::Connection);
        }
        set(70_002, Kind::Bound);
        assert!(any(Kind::Connection));
        assert_eq!(count(Kind::Connection), 3);
        assert_eq!(take(70_000), Kind::Connection);
        assert_eq!(
            take(70_000),
            Kind::Untracked,
            "a second close learns nothing"
        );
        assert_eq!(count(Kind::Connection), 2);
        clear(70_001);
        clear(74_100);
        assert!(!any(Kind::Connection));
        assert_eq!(get(70_002), Kind::Bound);
        clear(70_002);
    }
}
