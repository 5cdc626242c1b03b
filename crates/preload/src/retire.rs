//! Retiring a generation: its listening descriptors become ghosts, its workers are told to do
//! the same, and each process ends once its connections are done.
//!
//! Everything here is async-signal-safe (system calls on stack buffers, atomics, the lock-free
//! descriptor table): a worker retires from inside its signal handler, since it has no thread.
//!
//! A ghost is a listening Unix socket bound to an abstract name nobody knows, put in place of the
//! real socket with `dup3`: `accept` blocks (or says `EAGAIN`), `poll`/`select`/`epoll` never see
//! it readable. Before the swap the real socket leaves every epoll set of the process, or a
//! level-triggered loop would spin on an event for a descriptor that no longer has it.

use std::ffi::c_int;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::fdtable::{self, Kind};
use crate::process::{self, ACCEPTING, CONNECTIONS, PID, RETIRE_EPOCH, RETIRING};
use crate::{procfs, real, sys};

/// Payload of the restart signal sent to our own threads to get them out of a real `accept`.
pub const WAKE: usize = 0x6875_7077;
/// Payload of [`RETIRE_SIGNAL`] from a parent telling its workers to retire.
pub const RETIRE: usize = 0x6875_7072;
/// Carries retirement to workers. Its default action is to do nothing, so a child that has
/// since executed another program (and has no handler of ours) is not harmed by it.
pub const RETIRE_SIGNAL: c_int = libc::SIGURG;

const GHOST_PREFIX: &[u8] = b"huptime-ghost-";

/// Builds the abstract address of the ghost for `fd` in this process.
fn ghost_address(fd: RawFd) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain old data.
    let mut address: libc::sockaddr_un = unsafe { zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let mut name = [0u8; 64];
    let mut len = 1; // leading NUL: abstract namespace
    for &b in GHOST_PREFIX {
        name[len] = b;
        len += 1;
    }
    for number in [PID.load(Ordering::Relaxed), fd] {
        let mut digits = [0u8; 12];
        let mut count = 0;
        let mut n = number.unsigned_abs();
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in digits[..count].iter().rev() {
            name[len] = d;
            len += 1;
        }
        name[len] = b'-';
        len += 1;
    }
    len -= 1;
    for (slot, &b) in address.sun_path.iter_mut().zip(&name[..len]) {
        *slot = b as libc::c_char;
    }
    let total = size_of::<libc::sa_family_t>() + len;
    (address, total as libc::socklen_t)
}

/// A descriptor that behaves like an idle socket of the given type forever.
fn make_ghost(fd: RawFd, stream: bool) -> Option<RawFd> {
    let kind = if stream {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: plain socket creation.
    let ghost = sys::ok(unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) })?;
    if stream {
        let (address, len) = ghost_address(fd);
        // SAFETY: address is a valid sockaddr_un of length len.
        let bound = unsafe { real::bind(ghost, (&raw const address).cast(), len) } == 0;
        // SAFETY: listen on our own socket.
        if !bound || unsafe { real::listen(ghost, 4096) } != 0 {
            sys::close(ghost);
            return None;
        }
    }
    Some(ghost)
}

/// Whether an accepted descriptor is one of our own wake-up connections to a ghost.
pub fn is_poke(accepted: RawFd) -> bool {
    // SAFETY: sockaddr_storage is plain old data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let Some(len) = sys::local_address(accepted, &mut storage) else {
        return false;
    };
    // SAFETY: sockaddr_storage is large enough to be viewed as sockaddr_un.
    let unix: &libc::sockaddr_un = unsafe { &*(&raw const storage).cast() };
    let name_len = len.saturating_sub(size_of::<libc::sa_family_t>());
    i32::from(unix.sun_family) == libc::AF_UNIX
        && name_len > GHOST_PREFIX.len()
        && unix.sun_path[0] == 0
        && unix.sun_path[1..=GHOST_PREFIX.len()]
            .iter()
            .zip(GHOST_PREFIX)
            .all(|(&a, &b)| a as u8 == b)
}

/// Sends one connection to the ghost at `fd`, so a thread whose `accept` was restarted on it
/// by the kernel comes back to our hook.
fn poke(fd: RawFd) {
    let (address, len) = ghost_address(fd);
    // SAFETY: plain socket calls on our own descriptor.
    unsafe {
        let client = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if client >= 0 {
            libc::connect(client, (&raw const address).cast(), len);
            sys::close(client);
        }
    }
}

/// Whether a bound socket takes clients: a listening stream socket or an unconnected
/// datagram socket (not a socket bound to choose the local port of an outgoing connection).
/// Returns whether it is a stream-like socket, or `None` when it takes no clients.
pub fn serves_clients(fd: RawFd) -> Option<bool> {
    match sys::socket_type(fd)? {
        libc::SOCK_DGRAM if !sys::is_connected(fd) => Some(false),
        libc::SOCK_DGRAM => None,
        _ if sys::is_listening(fd) => Some(true),
        _ => None,
    }
}

/// Replaces every listening descriptor of this process with a ghost and gets threads out of
/// the real `accept`. Returns how many descriptors became ghosts.
pub fn ghost_all() -> usize {
    RETIRING.store(true, Ordering::SeqCst);
    let mut ghosted = 0;
    fdtable::for_each(Kind::Bound, |fd| {
        let Some(stream) = serves_clients(fd) else {
            return;
        };
        fdtable::for_each(Kind::Epoll, |epoll| {
            // SAFETY: EPOLL_CTL_DEL ignores the event argument.
            unsafe { real::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        });
        let Some(ghost) = make_ghost(fd, stream) else {
            return;
        };
        let nonblocking = sys::status_flags(fd).is_some_and(|f| f & libc::O_NONBLOCK != 0);
        let cloexec = sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC != 0);
        sys::set_nonblocking(ghost, nonblocking);
        if sys::move_onto(ghost, fd, cloexec) {
            fdtable::set_existing(fd, Kind::Ghost);
            ghosted += 1;
        }
        sys::close(ghost);
    });
    // After the swaps: a wait that began before this saw the real sockets (see RETIRE_EPOCH).
    RETIRE_EPOCH.fetch_add(1, Ordering::SeqCst);
    wake_accepting_threads();
    ghosted
}

/// Threads blocked in a real `accept` hold the real socket and could still be handed a client.
/// A signal makes the kernel restart their `accept` on the descriptor number, now a ghost, and
/// [`poke_ghosts`] then brings them back to our hook, which stops counting them.
fn wake_accepting_threads() {
    if ACCEPTING.load(Ordering::SeqCst) <= 0 {
        return;
    }
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let sig = process::restart_signal();
    procfs::for_each_thread(|tid| {
        if tid != me {
            procfs::queue_thread_signal(tid, sig, WAKE);
        }
    });
    poke_ghosts();
}

/// One connection per ghost and thread still counted as accepting. Threads that wait on a ghost
/// for good do so on a private socket (see [`sink`]), so only the counted ones take these; the
/// master repeats this while draining in case an event loop took one first.
pub fn poke_ghosts() {
    let waiting = ACCEPTING.load(Ordering::SeqCst);
    if waiting <= 0 {
        return;
    }
    fdtable::for_each(Kind::Ghost, |fd| {
        if sys::socket_type(fd) == Some(libc::SOCK_STREAM) {
            for _ in 0..waiting {
                poke(fd);
            }
        }
    });
}

static SINK: AtomicI32 = AtomicI32::new(-1);

/// A listening socket nobody connects to, where a blocking `accept` on a ghost waits for ever
/// (a real `accept`, so signals interrupt and restart it exactly as before) without taking the
/// wake-up connections meant for threads still counted as accepting.
pub fn sink() -> Option<RawFd> {
    let current = SINK.load(Ordering::Acquire);
    if current >= 0 {
        return Some(current);
    }
    let fresh = make_ghost(RawFd::MAX, true)?;
    fdtable::set(fresh, Kind::Internal);
    match SINK.compare_exchange(-1, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(fresh),
        Err(installed) => {
            fdtable::clear(fresh);
            sys::close(fresh);
            Some(installed)
        }
    }
}

/// Tells every child of this process (except `spare`, the new generation) to retire.
pub fn retire_children(spare: Option<i32>) -> usize {
    let mut told = 0;
    procfs::for_each_child(PID.load(Ordering::Relaxed), |child| {
        if Some(child) != spare && procfs::queue_signal(child, RETIRE_SIGNAL, RETIRE) {
            told += 1;
        }
    });
    told
}

/// Whether nothing is left to drain in this process.
pub fn drained() -> bool {
    // Order matters: an accept that got a client counts the connection before it stops
    // counting itself as accepting.
    ACCEPTING.load(Ordering::SeqCst) <= 0 && CONNECTIONS.load(Ordering::SeqCst) <= 0
}

/// Called whenever something that draining waits for ends. A worker leaves as soon as it is
/// drained; the master's restart thread is woken to decide.
pub fn on_drain_progress() {
    if !RETIRING.load(Ordering::SeqCst) || !drained() {
        return;
    }
    if process::is_master() {
        crate::restart::wake(crate::restart::Wake::Drained);
    } else {
        // SAFETY: _exit is async-signal-safe; a retired worker with nothing in flight is done.
        unsafe { libc::_exit(0) };
    }
}

/// The worker side: ghost, pass it on to our own children, and leave if nothing is in flight.
/// Runs in the [`RETIRE_SIGNAL`] handler.
pub fn retire_worker() {
    // A child forked before the program bound anything is not a member of the generation.
    if RETIRING.load(Ordering::SeqCst) || !fdtable::any(Kind::Bound) {
        return;
    }
    ghost_all();
    retire_children(None);
    on_drain_progress();
}
