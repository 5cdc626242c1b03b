//! `poll`, `select` and epoll: how a quiet new generation shows it serves its sockets without
//! any client (readiness), and what lets a ghost tell a stale readiness report from a real wait.

use std::cell::Cell;
use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use crate::fdtable::{self, Kind};
use crate::process::RETIRE_EPOCH;
use crate::ready;

thread_local! {
    /// The retire epoch when this thread last began waiting in `poll`/`select` (0: never).
    static WAIT_BEGAN_AT: Cell<u32> = const { Cell::new(0) };
}

/// Called as a `poll`/`select` begins.
fn note_wait() {
    WAIT_BEGAN_AT.with(|began| began.set(RETIRE_EPOCH.load(Ordering::Relaxed)));
}

/// Whether this thread's last wait began before the sockets became ghosts, so its result may
/// have named a socket that is a ghost now. True once per such wait, and whenever swaps are
/// under way (the table may already say "ghost" for a socket the wait saw as real).
pub fn began_before_retirement() -> bool {
    let current = RETIRE_EPOCH.load(Ordering::SeqCst);
    WAIT_BEGAN_AT.with(|began| is_stale(began, current))
}

fn is_stale(began: &Cell<u32>, current: u32) -> bool {
    let swapping = current % 2 == 1;
    let stale = began.get() != 0 && (began.get() < current || swapping);
    if stale {
        began.set(current);
    }
    stale
}

/// Before `poll`/`ppoll`: notes the wait, and until the generation is ready, every bound
/// socket polled for input is served. Once ready, a thread-local store and a load: it cannot
/// panic and leaves `errno` alone, so the hooks call it outside `catch_unwind` and keep no
/// frame of theirs across the wait (see [`crate::descriptors::closing_connection`]).
#[inline(always)]
pub fn before_poll(fds: *const libc::pollfd, count: libc::nfds_t) {
    note_wait();
    if ready::pending() && !fds.is_null() {
        // SAFETY: the caller passes `count` pollfds.
        let fds = unsafe { std::slice::from_raw_parts(fds, count as usize) };
        let polled = fds.iter().filter(|entry| entry.events & libc::POLLIN != 0);
        ready::served_from_hook("poll", polled.map(|entry| entry.fd));
    }
}

/// Before `select`/`pselect`: as [`before_poll`], for the bound sockets in the read set.
#[inline(always)]
pub fn before_select(nfds: c_int, read: *const libc::fd_set) {
    note_wait();
    if ready::pending() && !read.is_null() {
        let in_set = (0..nfds.clamp(0, libc::FD_SETSIZE as c_int))
            // SAFETY: read points at a valid fd_set and fd is below FD_SETSIZE.
            .filter(|&fd| unsafe { libc::FD_ISSET(fd, read) });
        ready::served_from_hook("select", in_set);
    }
}

/// Before `epoll_ctl`: adding a bound socket to an epoll set is serving it.
pub fn before_epoll_ctl(op: c_int, fd: RawFd) {
    if ready::pending() && (op == libc::EPOLL_CTL_ADD || op == libc::EPOLL_CTL_MOD) {
        ready::served(fd);
    }
}

/// After `epoll_create*`: remember the epoll instance, to take our sockets out of it when
/// retiring.
pub fn created_epoll(fd: RawFd) {
    if fd >= 0 {
        fdtable::set(fd, Kind::Epoll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_stale_once_after_a_retirement_and_throughout_one() {
        let began = Cell::new(0);
        assert!(!is_stale(&began, 2), "never waited");
        began.set(2);
        assert!(!is_stale(&began, 2), "nothing retired since the wait began");
        // The swaps began after the wait did, or a wait began while they run: the accept may
        // be about a socket the wait saw as real.
        assert!(is_stale(&began, 3));
        assert!(is_stale(&began, 3), "still swapping");
        assert!(is_stale(&began, 4), "began during the swaps");
        assert!(!is_stale(&began, 4), "once per wait");
        began.set(4);
        assert!(!is_stale(&began, 4));
        assert!(is_stale(&began, 6), "a later retirement");
    }
}
