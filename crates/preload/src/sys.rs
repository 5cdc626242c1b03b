//! Thin, allocation-free wrappers over the system calls the library makes for itself.
//!
//! Every call that has a hook of ours goes through [`crate::real`]; the others go to libc
//! directly. All of them are async-signal-safe, so the retire path can run in a signal handler.

use std::ffi::c_int;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::RawFd;

use crate::real;

/// `Some(value)` for a non-negative return, `None` for -1 (with `errno` set).
pub fn ok(ret: c_int) -> Option<c_int> {
    (ret >= 0).then_some(ret)
}

/// An integer socket option.
pub fn get_int_option(fd: RawFd, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    let ret = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    ok(ret).map(|_| value)
}

/// Sets an integer socket option.
pub fn set_int_option(fd: RawFd, level: c_int, name: c_int, value: c_int) -> bool {
    // SAFETY: value is valid for reads of its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    ret == 0
}

/// `SO_TYPE`, or `None` when `fd` is not a socket.
pub fn socket_type(fd: RawFd) -> Option<c_int> {
    get_int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// Whether a stream socket is listening.
pub fn is_listening(fd: RawFd) -> bool {
    get_int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
}

/// Whether a socket has a peer (connected).
pub fn is_connected(fd: RawFd) -> bool {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len describe a writable buffer of that size.
    unsafe { libc::getpeername(fd, storage.as_mut_ptr().cast(), &mut len) == 0 }
}

/// The local address of a socket, in a caller-provided buffer; returns its length.
pub fn local_address(fd: RawFd, buffer: &mut libc::sockaddr_storage) -> Option<usize> {
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: buffer and len describe a writable buffer of that size.
    let ret =
        unsafe { libc::getsockname(fd, (buffer as *mut libc::sockaddr_storage).cast(), &mut len) };
    ok(ret).map(|_| (len as usize).min(size_of::<libc::sockaddr_storage>()))
}

/// The descriptor flags (`FD_CLOEXEC`), or `None` if `fd` is not open.
pub fn descriptor_flags(fd: RawFd) -> Option<c_int> {
    // SAFETY: F_GETFD takes no argument.
    ok(unsafe { real::fcntl(fd, libc::F_GETFD, 0) })
}

/// Whether `fd` is an open descriptor.
pub fn is_open(fd: RawFd) -> bool {
    descriptor_flags(fd).is_some()
}

/// Sets or clears `FD_CLOEXEC`.
pub fn set_cloexec(fd: RawFd, on: bool) -> bool {
    let Some(flags) = descriptor_flags(fd) else {
        return false;
    };
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: F_SETFD takes an int argument.
    wanted == flags || unsafe { real::fcntl(fd, libc::F_SETFD, wanted.into()) } == 0
}

/// The file status flags (`O_NONBLOCK`…).
pub fn status_flags(fd: RawFd) -> Option<c_int> {
    // SAFETY: F_GETFL takes no argument.
    ok(unsafe { real::fcntl(fd, libc::F_GETFL, 0) })
}

/// Sets or clears a file status flag (`O_NONBLOCK`, `O_ASYNC`) on the open file description.
pub fn set_status_flag(fd: RawFd, flag: c_int, on: bool) -> bool {
    let Some(flags) = status_flags(fd) else {
        return false;
    };
    let wanted = if on { flags | flag } else { flags & !flag };
    // SAFETY: F_SETFL takes an int argument.
    wanted == flags || unsafe { real::fcntl(fd, libc::F_SETFL, wanted.into()) } == 0
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub fn set_nonblocking(fd: RawFd, on: bool) -> bool {
    set_status_flag(fd, libc::O_NONBLOCK, on)
}

/// Duplicates `fd` to the lowest free number at or above `min`, close-on-exec.
pub fn duplicate_above(fd: RawFd, min: RawFd) -> Option<RawFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an int argument.
    ok(unsafe { real::fcntl(fd, libc::F_DUPFD_CLOEXEC, min.into()) })
}

/// Closes one of our own descriptors.
pub fn close(fd: RawFd) {
    // SAFETY: only called on descriptors the library owns.
    unsafe { real::close(fd) };
}

/// Places `fd` at `target` (replacing whatever was there), with or without close-on-exec.
pub fn move_onto(fd: RawFd, target: RawFd, cloexec: bool) -> bool {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 on two descriptor numbers; the caller owns both.
    let result = unsafe { real::dup3(fd, target, flags) };
    result == target
}

/// The calling process's PID, straight from the kernel.
pub fn getpid() -> libc::pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

/// Writes all of `bytes` to `fd`, ignoring failures (diagnostics and wake-ups only).
pub fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && crate::errno::get() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}
