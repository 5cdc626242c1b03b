//! `bind` and `listen`: where a new generation gets its inherited sockets back.
//!
//! A bind whose identity matches an inherited socket is not made: the inherited socket is put
//! behind the program's descriptor instead, with the program's descriptor flags, file status
//! flags and the options it set on its fresh socket.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::panic::catch_unwind;

use huptime_handoff::{Address, SockKind, SocketIdentity};

use crate::fdtable::{self, Kind};
use crate::log::{debug, warning};
use crate::{errno, process, ready, real, restart, sockets, sys};

/// Options a program commonly sets before `bind` that matter for the sockets it accepts; they
/// are copied onto the inherited socket so the new configuration takes effect.
const COPIED_OPTIONS: [(c_int, c_int); 6] = [
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
    (libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
];

/// The identity of socket `fd` bound (or about to be bound) to `address`.
fn identity_at(fd: RawFd, address: Address) -> Option<SocketIdentity> {
    let kind = SockKind::from_so_type(sys::socket_type(fd)?)?;
    let inet = matches!(address, Address::V4(..) | Address::V6(..));
    let v6only = matches!(address, Address::V6(..))
        && sys::get_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Some(1);
    let reuseport =
        inet && sys::get_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT) == Some(1);
    Some(SocketIdentity {
        kind,
        address,
        v6only,
        reuseport,
    })
}

/// The identity of a bound socket, from the kernel (`getsockname`). Worked out only when it is
/// needed (a handover, the instance record), so that a plain `bind` costs one system call.
pub fn identity_of_bound(fd: RawFd) -> Option<SocketIdentity> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = sys::local_address(fd, &mut storage)?;
    // SAFETY: the kernel filled `len` bytes of `storage`.
    let raw = unsafe { std::slice::from_raw_parts((&raw const storage).cast::<u8>(), len) };
    identity_at(fd, Address::from_sockaddr(raw)?)
}

/// Puts the inherited socket `inherited` behind the program's descriptor `fd`.
fn adopt(fd: RawFd, inherited: RawFd) -> bool {
    let cloexec = sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC != 0);
    let nonblocking = sys::status_flags(fd).is_some_and(|f| f & libc::O_NONBLOCK != 0);
    let tcp =
        sys::get_int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP);
    for (level, name) in COPIED_OPTIONS {
        if level == libc::IPPROTO_TCP && !tcp {
            continue;
        }
        if let Some(value) = sys::get_int_option(fd, level, name) {
            sys::set_int_option(inherited, level, name, value);
        }
    }
    sys::set_nonblocking(inherited, nonblocking);
    sys::move_onto(inherited, fd, cloexec)
}

/// What a `bind` needs from us, told before the call.
pub enum BindCase {
    /// An address family we never track (netlink, packet, ...): libc's call alone.
    Untracked,
    /// Nothing inherited to match, no `--multi` or `--debug`: the real call, then
    /// [`bound_afresh`]. The address is not even parsed.
    Plain,
    /// Anything else: [`bind`].
    Full,
}

#[inline(always)]
pub fn classify(addr: *const libc::sockaddr, len: libc::socklen_t) -> BindCase {
    if !Address::is_tracked(raw_address(addr, len)) {
        return BindCase::Untracked;
    }
    let plain = !sockets::has_unclaimed()
        && process::config().is_some_and(|c| !c.options.debug && !c.options.reuseport);
    if plain {
        BindCase::Plain
    } else {
        BindCase::Full
    }
}

#[inline(always)]
fn raw_address<'a>(addr: *const libc::sockaddr, len: libc::socklen_t) -> &'a [u8] {
    if addr.is_null() {
        &[]
    } else {
        // SAFETY: the caller passes an address of `len` bytes.
        unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) }
    }
}

/// `fd` was bound in the [`BindCase::Plain`] case. Cannot panic and leaves `errno` alone, so
/// the hook calls it outside `catch_unwind`, keeping one frame across the system call.
#[inline(always)]
pub fn bound_afresh(fd: RawFd) {
    sockets::add(fd);
    after_bind(fd);
}

/// `bind(fd, addr, len)` in the [`BindCase::Full`] case: a bind whose identity matches an
/// inherited socket gets it.
pub fn bind(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    let raw = raw_address(addr, len);
    let Some(address) = Address::from_sockaddr(raw) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real::bind(fd, addr, len) };
    };
    let inet = matches!(address, Address::V4(..) | Address::V6(..));
    if inet && process::config().is_some_and(|c| c.options.reuseport) {
        // --multi: every copy binds its own socket on the shared port.
        let _errno = errno::Preserve::now();
        sys::set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
    }
    if !address.is_ephemeral() && sockets::has_unclaimed() {
        let _errno = errno::Preserve::now();
        if let Some(identity) = identity_at(fd, address.clone())
            && let Some(inherited) = sockets::claim(&identity)
        {
            if adopt(fd, inherited) {
                fdtable::clear(inherited);
                sys::close(inherited);
                debug!("bind {identity} on fd {fd}: given the inherited socket");
                sockets::add_claimed(fd, identity);
                after_bind(fd);
                return 0;
            }
            debug!(
                "bind {identity} on fd {fd}: could not adopt the inherited socket, binding afresh"
            );
            fdtable::clear(inherited);
            sys::close(inherited);
        }
    }
    // SAFETY: forwarding the caller's arguments.
    let result = unsafe { real::bind(fd, addr, len) };
    if result == 0 {
        let _errno = errno::Preserve::now();
        debug!("bind {address} on fd {fd}: new socket");
        sockets::add(fd);
        after_bind(fd);
    }
    result
}

/// Leaves `errno` alone; cannot panic.
#[inline(always)]
fn after_bind(fd: RawFd) {
    if restart::needs_thread() || ready::pending() {
        first_binds(fd);
    }
}

/// What only the first binds of a process or generation do.
#[cold]
fn first_binds(fd: RawFd) {
    let _errno = errno::Preserve::now();
    let started = catch_unwind(|| {
        restart::start_thread();
        // A datagram socket counts as served once bound: both generations read one buffer.
        if ready::pending() && sys::socket_type(fd) == Some(libc::SOCK_DGRAM) {
            ready::served(fd);
        }
    });
    if started.is_err() {
        warning!("setting up restarts failed after bind on fd {fd}");
    }
}

/// `listen(fd, backlog)`: on an inherited socket it only adjusts the backlog (the kernel
/// accepts `listen` on a listening socket), so the program's own value takes effect again.
pub fn listen(fd: RawFd, backlog: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let result = unsafe { real::listen(fd, backlog) };
    if result == 0 && fdtable::get(fd) == Kind::Bound {
        debug!("listen on fd {fd} (backlog {backlog})");
    }
    result
}

/// `unlink`/`unlinkat` of a path: refused quietly (success, nothing removed) when it is the
/// address of an inherited Unix socket the program has not claimed yet — the "unlink, then
/// bind" idiom would otherwise cut that socket off from its clients.
pub fn keeps_path(path: *const libc::c_char) -> bool {
    if path.is_null() || !sockets::has_unclaimed() {
        return false;
    }
    // SAFETY: the caller passes a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
    let keep = sockets::is_unclaimed_path(path);
    if keep {
        debug!(
            "unlink {}: kept, it is an inherited socket",
            String::from_utf8_lossy(path)
        );
    }
    keep
}
