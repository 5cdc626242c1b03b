//! The hooks, thin doors into the engine. `libhuptime.so` (crates/shim) exports the libc
//! symbols and calls these, exported as `huptime_hook_<name>`, once it has loaded the engine.
//!
//! Each door forwards straight to libc when the process does not take part in an instance or
//! when the call comes from inside the library; otherwise it runs our logic with panics caught
//! (a panic must never cross into the host program: the call then fails with `EIO`).

use std::ffi::{c_char, c_int, c_long, c_uint};
use std::panic::{AssertUnwindSafe, catch_unwind};

use libc::{
    epoll_event, fd_set, nfds_t, pid_t, pollfd, sigset_t, sockaddr, socklen_t, timespec, timeval,
};

use crate::binding::BindCase;
use crate::fdtable::Kind;
use crate::{
    accepting, binding, descriptors, errno, fdtable, lifecycle, process, ready, real, reentry,
    retire, signals, waits,
};

/// Runs `logic` inside the library, or `direct` when the library is not involved.
#[inline(always)]
fn door<T: From<i8>>(direct: impl FnOnce() -> T, logic: impl FnOnce() -> T) -> T {
    if !process::active() {
        return direct();
    }
    let Some(_inside) = reentry::enter() else {
        return direct();
    };
    catch_unwind(AssertUnwindSafe(logic)).unwrap_or_else(|_| {
        errno::set(libc::EIO);
        T::from(-1)
    })
}

/// The hot path's door, for a call about descriptor `fd`: a descriptor the library does not
/// track (files, pipes, client sockets) goes straight to libc after one table lookup, and the
/// logic gets the kind that lookup found. That logic (descriptor bookkeeping, accept, bind)
/// never calls back into our hooks, so it runs without the thread-local re-entry flag, which
/// costs a `__tls_get_addr` call in a preloaded library.
#[inline(always)]
fn door_for<T: From<i8>>(
    fd: c_int,
    direct: impl FnOnce() -> T,
    logic: impl FnOnce(Kind) -> T,
) -> T {
    if !process::active() {
        return direct();
    }
    match fdtable::get(fd) {
        Kind::Untracked => direct(),
        kind => unguarded(|| logic(kind)),
    }
}

/// [`door_for`] for `dup2`/`dup3`: only when one of the two descriptors is tracked.
#[inline(always)]
fn door_for_pair(
    old: c_int,
    new: c_int,
    direct: impl FnOnce() -> c_int,
    logic: impl FnOnce(Kind, Kind) -> c_int,
) -> c_int {
    if !process::active() {
        return direct();
    }
    match (fdtable::get(old), fdtable::get(new)) {
        (Kind::Untracked, Kind::Untracked) => direct(),
        (old_kind, new_kind) => unguarded(|| logic(old_kind, new_kind)),
    }
}

/// Runs hot-path logic with panics caught.
#[inline(always)]
fn unguarded<T: From<i8>>(logic: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(logic)).unwrap_or_else(|_| {
        errno::set(libc::EIO);
        T::from(-1)
    })
}

/// A plain bind keeps one frame of ours across the system call (see
/// [`descriptors::closing_connection`]).
#[unsafe(export_name = "huptime_hook_bind")]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if process::active() {
        match binding::classify(addr, len) {
            BindCase::Untracked => {}
            BindCase::Plain => {
                let result = unsafe { real::bind(fd, addr, len) };
                if result == 0 {
                    binding::bound_afresh(fd);
                }
                return result;
            }
            BindCase::Full => return unguarded(|| binding::bind(fd, addr, len)),
        }
    }
    unsafe { real::bind(fd, addr, len) }
}

#[unsafe(export_name = "huptime_hook_listen")]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    door_for(
        fd,
        || unsafe { real::listen(fd, backlog) },
        |_| binding::listen(fd, backlog),
    )
}

/// Accepting on a bound socket runs outside `catch_unwind` (see [`accepting::accept_bound`]).
#[unsafe(export_name = "huptime_hook_accept")]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if process::active() {
        match fdtable::get(fd) {
            Kind::Untracked => {}
            Kind::Bound => return accepting::accept_bound(fd, addr, len, None),
            kind => return unguarded(|| accepting::accept(fd, addr, len, None, kind)),
        }
    }
    unsafe { real::accept(fd, addr, len) }
}

#[unsafe(export_name = "huptime_hook_accept4")]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if process::active() {
        match fdtable::get(fd) {
            Kind::Untracked => {}
            Kind::Bound => return accepting::accept_bound(fd, addr, len, Some(flags)),
            kind => return unguarded(|| accepting::accept(fd, addr, len, Some(flags), kind)),
        }
    }
    unsafe { real::accept4(fd, addr, len, flags) }
}

/// A connection's close is the hot path: counted gone, then libc's `close` as a tail call
/// (see [`descriptors::closing_connection`]).
#[unsafe(export_name = "huptime_hook_close")]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if process::active() {
        match fdtable::get(fd) {
            Kind::Untracked => {}
            Kind::Connection => descriptors::closing_connection(fd),
            kind => return unguarded(|| descriptors::close(fd, kind)),
        }
    }
    unsafe { real::close(fd) }
}

/// A connection's `dup` keeps one frame of ours across the system call, not two (see
/// [`descriptors::closing_connection`]).
#[unsafe(export_name = "huptime_hook_dup")]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    if process::active() {
        match fdtable::get(fd) {
            Kind::Untracked => {}
            Kind::Connection => {
                let copy = unsafe { real::dup(fd) };
                if copy >= 0 {
                    descriptors::connection_copied(copy);
                }
                return copy;
            }
            kind => return unguarded(|| descriptors::dup(fd, kind)),
        }
    }
    unsafe { real::dup(fd) }
}

#[unsafe(export_name = "huptime_hook_dup2")]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    door_for_pair(
        old,
        new,
        || unsafe { real::dup2(old, new) },
        |old_kind, new_kind| descriptors::dup_onto(old, new, None, old_kind, new_kind),
    )
}

#[unsafe(export_name = "huptime_hook_dup3")]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    door_for_pair(
        old,
        new,
        || unsafe { real::dup3(old, new, flags) },
        |old_kind, new_kind| descriptors::dup_onto(old, new, Some(flags), old_kind, new_kind),
    )
}

/// `fcntl` is variadic in C; its third argument, when there is one, is an `int` or a pointer,
/// both passed in the same register on the platforms we support.
#[unsafe(export_name = "huptime_hook_fcntl")]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    if cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC {
        return unsafe { real::fcntl(fd, cmd, arg) };
    }
    door_for(
        fd,
        || unsafe { real::fcntl(fd, cmd, arg) },
        |kind| descriptors::duplicate(fd, cmd, arg, kind),
    )
}

/// `fcntl64`: what programs built with 64-bit `off_t` call (python, node); the same as `fcntl`
/// on 64-bit platforms.
#[unsafe(export_name = "huptime_hook_fcntl64")]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    if cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC {
        return unsafe { real::fcntl64(fd, cmd, arg) };
    }
    door_for(
        fd,
        || unsafe { real::fcntl64(fd, cmd, arg) },
        |kind| descriptors::duplicate(fd, cmd, arg, kind),
    )
}

#[unsafe(export_name = "huptime_hook_close_range")]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    door(
        || unsafe { real::close_range(first, last, flags) },
        || descriptors::close_range(first, last, flags),
    )
}

#[unsafe(export_name = "huptime_hook_closefrom")]
pub unsafe extern "C" fn closefrom(first: c_int) {
    let first = c_uint::try_from(first).unwrap_or(0);
    door(
        || {
            unsafe { real::close_range(first, c_uint::MAX, 0) };
            0i8
        },
        || {
            descriptors::close_range(first, c_uint::MAX, 0);
            0i8
        },
    );
}

#[unsafe(export_name = "huptime_hook_fork")]
pub unsafe extern "C" fn fork() -> pid_t {
    let pid = unsafe { real::fork() };
    if pid > 0 && process::active() {
        if let Some(_inside) = reentry::enter() {
            let _errno = errno::Preserve::now();
            let _ = catch_unwind(|| lifecycle::forked(pid));
        }
    }
    pid
}

#[unsafe(export_name = "huptime_hook_sigaction")]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    door(
        || unsafe { real::sigaction(sig, act, old) },
        || signals::sigaction(sig, act, old),
    )
}

#[unsafe(export_name = "huptime_hook_signal")]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let direct = || unsafe { real::signal(sig, handler) };
    if !process::active() {
        return direct();
    }
    let Some(_inside) = reentry::enter() else {
        return direct();
    };
    catch_unwind(|| signals::signal(sig, handler)).unwrap_or_else(|_| {
        errno::set(libc::EINVAL);
        libc::SIG_ERR
    })
}

#[unsafe(export_name = "huptime_hook_setsid")]
pub unsafe extern "C" fn setsid() -> pid_t {
    let session = unsafe { real::setsid() };
    if session >= 0 && process::active() {
        if let Some(_inside) = reentry::enter() {
            let _errno = errno::Preserve::now();
            let _ = catch_unwind(lifecycle::became_session_leader);
        }
    }
    session
}

#[unsafe(export_name = "huptime_hook_exit")]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    if process::active() {
        if let Some(_inside) = reentry::enter() {
            let _ = catch_unwind(|| lifecycle::exiting(status));
        }
    }
    unsafe { real::exit(status) };
    // Only reached if libc's exit could not be found.
    unsafe { libc::_exit(status) }
}

#[unsafe(export_name = "huptime_hook_unlink")]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    door(
        || unsafe { real::unlink(path) },
        || {
            if binding::keeps_path(path) {
                0
            } else {
                unsafe { real::unlink(path) }
            }
        },
    )
}

#[unsafe(export_name = "huptime_hook_unlinkat")]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    door(
        || unsafe { real::unlinkat(dirfd, path, flags) },
        || {
            let relative_to_cwd =
                dirfd == libc::AT_FDCWD || (!path.is_null() && unsafe { *path } == b'/' as c_char);
            if relative_to_cwd && flags & libc::AT_REMOVEDIR == 0 && binding::keeps_path(path) {
                0
            } else {
                unsafe { real::unlinkat(dirfd, path, flags) }
            }
        },
    )
}

/// The descriptor a datagram must really be sent on: the real socket when `fd` is a retired
/// datagram socket. One table lookup on the hot path.
#[inline(always)]
fn sending_descriptor(fd: c_int) -> c_int {
    if process::active() && fdtable::get(fd) == Kind::Ghost {
        retire::replies_through(fd).unwrap_or(fd)
    } else {
        fd
    }
}

#[unsafe(export_name = "huptime_hook_sendto")]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const libc::c_void,
    len: libc::size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> libc::ssize_t {
    unsafe { real::sendto(sending_descriptor(fd), buf, len, flags, addr, addrlen) }
}

#[unsafe(export_name = "huptime_hook_sendmsg")]
pub unsafe extern "C" fn sendmsg(
    fd: c_int,
    msg: *const libc::msghdr,
    flags: c_int,
) -> libc::ssize_t {
    unsafe { real::sendmsg(sending_descriptor(fd), msg, flags) }
}

#[unsafe(export_name = "huptime_hook_sendmmsg")]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    count: c_uint,
    flags: c_int,
) -> c_int {
    unsafe { real::sendmmsg(sending_descriptor(fd), msgs, count, flags) }
}

#[unsafe(export_name = "huptime_hook_epoll_create")]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    door(
        || unsafe { real::epoll_create(size) },
        || {
            let fd = unsafe { real::epoll_create(size) };
            waits::created_epoll(fd);
            fd
        },
    )
}

#[unsafe(export_name = "huptime_hook_epoll_create1")]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    door(
        || unsafe { real::epoll_create1(flags) },
        || {
            let fd = unsafe { real::epoll_create1(flags) };
            waits::created_epoll(fd);
            fd
        },
    )
}

#[unsafe(export_name = "huptime_hook_epoll_ctl")]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut epoll_event,
) -> c_int {
    // Only a generation that is not ready yet has anything to learn here; once it is, this
    // costs one load.
    if !ready::pending() {
        return unsafe { real::epoll_ctl(epfd, op, fd, event) };
    }
    door(
        || unsafe { real::epoll_ctl(epfd, op, fd, event) },
        || {
            waits::before_epoll_ctl(op, fd);
            unsafe { real::epoll_ctl(epfd, op, fd, event) }
        },
    )
}

/// The waits keep no frame of ours across the system call (see [`waits::before_poll`]).
#[unsafe(export_name = "huptime_hook_poll")]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    if process::active() {
        waits::before_poll(fds, nfds);
    }
    unsafe { real::poll(fds, nfds, timeout) }
}

/// `poll` as compiled with `_FORTIFY_SOURCE`.
#[unsafe(export_name = "huptime_hook___poll_chk")]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    length: libc::size_t,
) -> c_int {
    if process::active() {
        waits::before_poll(fds, nfds);
    }
    unsafe { real::__poll_chk(fds, nfds, timeout, length) }
}

#[unsafe(export_name = "huptime_hook_ppoll")]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if process::active() {
        waits::before_poll(fds, nfds);
    }
    unsafe { real::ppoll(fds, nfds, timeout, mask) }
}

#[unsafe(export_name = "huptime_hook_select")]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    if process::active() {
        waits::before_select(nfds, r);
    }
    unsafe { real::select(nfds, r, w, e, timeout) }
}

#[unsafe(export_name = "huptime_hook_pselect")]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if process::active() {
        waits::before_select(nfds, r);
    }
    unsafe { real::pselect(nfds, r, w, e, timeout, mask) }
}

/// `syscall` is variadic in C; six `long` arguments cover every system call on x86_64 and
/// aarch64, where variadic and fixed integer arguments travel in the same registers. The
/// calls we care about go to the hooks of their libc wrappers (node's libuv closes
/// connections with `syscall(SYS_close)`); everything else, including the futex calls of our
/// own locks, goes straight through without a lock or an allocation.
#[unsafe(export_name = "huptime_hook_syscall")]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let direct = || unsafe { real::syscall(n, a1, a2, a3, a4, a5, a6) };
    if !matches!(
        n,
        libc::SYS_close
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_dup
            | libc::SYS_dup2
            | libc::SYS_dup3
            | libc::SYS_close_range
            | libc::SYS_bind
            | libc::SYS_listen
    ) {
        return direct();
    }
    let fd = a1 as c_int;
    let ours = process::active()
        && match n {
            libc::SYS_close
            | libc::SYS_dup
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_listen => fdtable::get(fd) != Kind::Untracked,
            _ => true,
        };
    if !ours {
        return direct();
    }
    // The same hooks as the libc wrappers: one logic, one hot path.
    c_long::from(unsafe {
        match n {
            libc::SYS_close => close(fd),
            libc::SYS_accept => accept(fd, a2 as *mut sockaddr, a3 as *mut socklen_t),
            libc::SYS_accept4 => {
                accept4(fd, a2 as *mut sockaddr, a3 as *mut socklen_t, a4 as c_int)
            }
            libc::SYS_dup => dup(fd),
            libc::SYS_dup2 => dup2(fd, a2 as c_int),
            libc::SYS_dup3 => dup3(fd, a2 as c_int, a3 as c_int),
            libc::SYS_close_range => close_range(a1 as c_uint, a2 as c_uint, a3 as c_int),
            libc::SYS_bind => bind(fd, a2 as *const sockaddr, a3 as socklen_t),
            _ => listen(fd, a2 as c_int),
        }
    })
}
