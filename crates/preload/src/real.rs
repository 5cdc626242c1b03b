//! The real libc functions behind our hooks: the one place where they are resolved.
//!
//! Each is looked up once with `dlsym(RTLD_NEXT, …)` and cached in an atomic. Hooks can run
//! before our constructor (another library's constructor may call `syscall()` first), so every
//! accessor resolves on first use; the constructor resolves them all up front so that the
//! signal handler and the forked restart child never call `dlsym`.
//!
//! Internal code must call these, never the libc symbols we export ourselves: `libc::close`
//! from inside this library would land in our own `close` hook.

use std::ffi::{CStr, c_int, c_long, c_uint};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    epoll_event, fd_set, nfds_t, pid_t, pollfd, sigset_t, sockaddr, socklen_t, timespec, timeval,
};

/// Looks up `name` in the libraries after ours, caching the address in `slot`.
/// Returns 0 when no later library defines it (the caller reports `ENOSYS`).
#[inline]
fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    let cached = slot.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    look_up(slot, name)
}

#[cold]
fn look_up(slot: &AtomicUsize, name: &CStr) -> usize {
    // SAFETY: dlsym with a valid NUL-terminated name is always safe to call.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    slot.store(found, Ordering::Relaxed);
    found
}

macro_rules! real_functions {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        #[allow(non_upper_case_globals, non_snake_case)]
        mod slots {
            use super::*;
            $( pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }

        /// Resolves every real function now (called from the constructor).
        pub fn resolve_all() {
            $( resolve(&slots::$name, concat_cstr!($name)); )*
        }

        $(
            $(#[$doc])*
            /// # Safety
            /// Same contract as the libc function of that name.
            #[allow(clippy::missing_safety_doc)]
            #[inline]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let address = resolve(&slots::$name, concat_cstr!($name));
                if address == 0 {
                    crate::errno::set(libc::ENOSYS);
                    return missing_result();
                }
                // SAFETY: `address` is libc's definition of this very symbol, whose C signature
                // is the one spelled out here.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(address) };
                unsafe { f($($arg),*) }
            }
        )*
    };
}

macro_rules! concat_cstr {
    ($name:ident) => {
        // SAFETY: the literal ends in exactly one NUL and contains no other.
        unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) }
    };
}

/// The failure value of a missing function: `-1` in the type it returns.
trait MissingResult {
    fn missing() -> Self;
}
impl MissingResult for c_int {
    fn missing() -> Self {
        -1
    }
}
impl MissingResult for c_long {
    fn missing() -> Self {
        -1
    }
}
impl MissingResult for isize {
    fn missing() -> Self {
        -1
    }
}
impl MissingResult for usize {
    fn missing() -> Self {
        libc::SIG_ERR
    }
}
impl MissingResult for () {
    fn missing() -> Self {}
}
fn missing_result<T: MissingResult>() -> T {
    T::missing()
}

real_functions! {
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    fn fork() -> pid_t;
    fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int;
    fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
    fn setsid() -> pid_t;
    fn exit(status: c_int) -> ();
    fn unlink(path: *const libc::c_char) -> c_int;
    fn unlinkat(dirfd: c_int, path: *const libc::c_char, flags: c_int) -> c_int;
    fn syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long;
    fn sendto(fd: c_int, buf: *const libc::c_void, len: libc::size_t, flags: c_int, addr: *const sockaddr, addrlen: socklen_t) -> libc::ssize_t;
    fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> libc::ssize_t;
    fn sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, count: c_uint, flags: c_int) -> c_int;
    fn epoll_create(size: c_int) -> c_int;
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int;
    fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int;
    fn __poll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: c_int, length: libc::size_t) -> c_int;
    fn ppoll(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn select(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int;
    fn pselect(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int;
}
