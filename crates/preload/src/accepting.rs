//! `accept`/`accept4`: the hot path. On a bound socket it counts the thread as accepting
//! around the real call and tracks the connection it returns; on a ghost it behaves like an
//! idle listening socket.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use crate::fdtable::{self, Kind};
use crate::process::ACCEPTING;
use crate::{errno, ready, real, retire, sys, waits};

fn call(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: Option<c_int>,
) -> c_int {
    match flags {
        // SAFETY: forwarding the caller's arguments.
        Some(flags) => unsafe { real::accept4(fd, addr, len, flags) },
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { real::accept(fd, addr, len) },
    }
}

/// Takes one of our wake-up connections queued on the ghost at `fd`, without blocking, so a
/// leftover does not keep the ghost readable. Returns whether there was one.
fn take_queued_poke(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    if unsafe { real::poll(&mut poll, 1, 0) } != 1 {
        return false;
    }
    let poke = call(
        fd,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        Some(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK),
    );
    if poke < 0 {
        return false;
    }
    sys::close(poke);
    true
}

/// `accept(fd, addr, len)` (`flags` is `None`) or `accept4(fd, addr, len, flags)`; `kind` is
/// what the table says `fd` is.
pub fn accept(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: Option<c_int>,
    kind: Kind,
) -> c_int {
    match kind {
        Kind::Bound => accept_bound(fd, addr, len, flags),
        Kind::Ghost => accept_ghost(fd, addr, len, flags),
        _ => call(fd, addr, len, flags),
    }
}

/// `accept`/`accept4` on a bound socket: the thread counts as accepting around the real call
/// (a thread blocked in it holds the real socket, whatever becomes of the descriptor), and the
/// connection it returns is tracked. The hot path of every server, so the hooks run it
/// outside `catch_unwind`, one frame across the system call (see
/// [`crate::descriptors::closing_connection`]): what could panic is in the cold paths, which
/// catch it themselves.
#[inline(always)]
pub fn accept_bound(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: Option<c_int>,
) -> c_int {
    if ready::pending() {
        ready::served_from_hook("accept", std::iter::once(fd));
    }
    ACCEPTING.fetch_add(1, Ordering::SeqCst);
    let connection = call(fd, addr, len, flags);
    if connection >= 0 && fdtable::get(fd) == Kind::Ghost {
        return accepted_on_ghost(fd, connection, addr, len, flags);
    }
    accepted(connection)
}

/// After the real call: tracks the connection, then stops counting the thread as accepting.
/// Leaves `errno` alone.
#[inline(always)]
fn accepted(connection: RawFd) -> c_int {
    if connection >= 0 {
        // A connection before it stops counting as accepting (see retire::drained).
        fdtable::set(connection, Kind::Connection);
    }
    ACCEPTING.fetch_sub(1, Ordering::SeqCst);
    if connection < 0 {
        retire::on_drain_progress();
    }
    connection
}

/// The socket became a ghost while this thread was in the real `accept`: if what it got is
/// our wake-up connection, it goes on as on any ghost; a client is served as usual.
#[cold]
fn accepted_on_ghost(
    fd: RawFd,
    connection: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: Option<c_int>,
) -> c_int {
    let poke = {
        let _errno = errno::Preserve::now();
        catch_unwind(|| retire::is_poke(connection, fd)).unwrap_or(false)
    };
    if !poke {
        return accepted(connection);
    }
    // Our wake-up: the kernel restarted this accept on the ghost.
    sys::close(connection);
    ACCEPTING.fetch_sub(1, Ordering::SeqCst);
    retire::on_drain_progress();
    catch_unwind(AssertUnwindSafe(|| accept_ghost(fd, addr, len, flags))).unwrap_or_else(|_| {
        errno::set(libc::EIO);
        -1
    })
}

/// An idle listening socket: `EAGAIN` when non-blocking, otherwise it blocks for ever — except
/// when the caller may have been told it was readable: by a `poll`/`select` that began before
/// the swap (and saw the real socket), or because one of our wake-up connections is queued on
/// the ghost. That `accept` takes the wake-up connection if there is one and gets
/// `ECONNABORTED` (the client is gone, as far as this process knows), which servers treat as
/// "try again", instead of blocking their event loop.
fn accept_ghost(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: Option<c_int>,
) -> c_int {
    let nonblocking = sys::status_flags(fd).is_some_and(|f| f & libc::O_NONBLOCK != 0);
    let took_poke = take_queued_poke(fd);
    if nonblocking {
        errno::set(libc::EAGAIN);
        return -1;
    }
    if took_poke || waits::began_before_retirement() {
        errno::set(libc::ECONNABORTED);
        return -1;
    }
    let Some(sink) = retire::sink() else {
        return call(fd, addr, len, flags);
    };
    loop {
        retire::SINK_WAITERS.fetch_add(1, Ordering::SeqCst);
        let stray = call(
            sink,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(libc::SOCK_CLOEXEC),
        );
        retire::SINK_WAITERS.fetch_sub(1, Ordering::SeqCst);
        if stray < 0 {
            return -1;
        }
        sys::close(stray);
        // Woken because the socket is real again (an exec-mode restart that failed).
        let kind = fdtable::get(fd);
        if kind != Kind::Ghost {
            return accept(fd, addr, len, flags, kind);
        }
    }
}
