//! Retiring a generation: its listening descriptors become ghosts, its workers are told to do
//! the same, and each process ends once its connections are done.
//!
//! Everything here is async-signal-safe (system calls on stack buffers, atomics, the lock-free
//! descriptor table): a worker retires from inside its signal handler, since it has no thread.
//!
//! A ghost is a listening Unix socket on an abstract name nobody knows, put in place of the
//! real socket with `dup3`: `accept` blocks (or says `EAGAIN`), `poll`/`select`/`epoll` never see
//! it readable. Before the swap the real socket leaves every epoll set of the process, or a
//! level-triggered loop would spin on an event for a descriptor that no longer has it.

use std::ffi::c_int;
use std::mem::zeroed;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicIsize, Ordering, fence};

use crate::fdtable::{self, Kind};
use crate::process::{self, ACCEPTING, PID, RETIRE_EPOCH, RETIRING};
use crate::{procfs, real, sys};

/// Payload of [`RETIRE_SIGNAL`] sent to our own threads to get them out of a real `accept` or
/// `recvfrom` (that signal, rather than the restart signal, which programs block in their
/// threads more often).
pub const WAKE: usize = 0x6875_7077;
/// Payload of [`RETIRE_SIGNAL`] from a parent telling its workers to retire.
pub const RETIRE: usize = 0x6875_7072;
/// Payload of the [`RETIRE_SIGNAL`] timer that ends a retiring worker's drain.
pub const DRAIN_DEADLINE: usize = 0x6875_7064;
/// Carries retirement to workers. Its default action is to do nothing, so a child that has
/// since executed another program (and has no handler of ours) is not harmed by it.
pub const RETIRE_SIGNAL: c_int = libc::SIGURG;

/// A descriptor that behaves like an idle socket of the given type forever. A stream ghost
/// listens on a name the kernel picks (autobind in the abstract namespace), unique even while
/// ghosts of earlier generations of this PID live on in their workers.
fn make_ghost(stream: bool) -> Option<RawFd> {
    let kind = if stream {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: plain socket creation.
    let ghost = sys::ok(unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) })?;
    if stream {
        // A bind with only the family asks the kernel for a unique abstract name.
        let family = libc::AF_UNIX as libc::sa_family_t;
        // SAFETY: binding and listening on our own socket; the address is the family alone.
        let ready = unsafe {
            real::bind(
                ghost,
                (&raw const family).cast(),
                std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
            ) == 0
                && real::listen(ghost, 4096) == 0
        };
        if !ready {
            sys::close(ghost);
            return None;
        }
    }
    Some(ghost)
}

/// Whether two sockets have the same local address.
fn same_local_address(a: RawFd, b: RawFd) -> bool {
    // SAFETY: sockaddr_storage is plain old data.
    let (mut first, mut second): (libc::sockaddr_storage, libc::sockaddr_storage) =
        unsafe { (zeroed(), zeroed()) };
    let (Some(first_len), Some(second_len)) = (
        sys::local_address(a, &mut first),
        sys::local_address(b, &mut second),
    ) else {
        return false;
    };
    // SAFETY: both buffers are initialised up to their lengths.
    let bytes = |storage: &libc::sockaddr_storage, len: usize| unsafe {
        std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast::<u8>(), len)
    };
    bytes(&first, first_len) == bytes(&second, second_len)
}

/// Whether `accepted`, returned by an `accept` on the ghost at `listener`, is one of our own
/// wake-up connections (rather than a real client accepted just before the swap).
pub fn is_poke(accepted: RawFd, listener: RawFd) -> bool {
    same_local_address(accepted, listener)
}

/// Sends one connection to the ghost at `fd`, so a thread whose `accept` was restarted on it
/// by the kernel comes back to our hook (or one waiting in `poll` on it looks again).
pub fn poke(fd: RawFd) {
    // SAFETY: sockaddr_storage is plain old data.
    let mut address: libc::sockaddr_storage = unsafe { zeroed() };
    let Some(len) = sys::local_address(fd, &mut address) else {
        return;
    };
    // SAFETY: plain socket calls on our own descriptor, with the address the kernel gave.
    unsafe {
        let client = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if client >= 0 {
            libc::connect(client, (&raw const address).cast(), len as libc::socklen_t);
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
    // Before the first swap: an accept that finds a ghost from here on may follow a wait that
    // saw the real socket (see RETIRE_EPOCH).
    RETIRE_EPOCH.fetch_add(1, Ordering::SeqCst);
    let mut ghosted = 0;
    let mut datagram = false;
    fdtable::for_each(Kind::Bound, |fd| {
        let Some(stream) = serves_clients(fd) else {
            return;
        };
        fdtable::for_each(Kind::Epoll, |epoll| {
            // SAFETY: EPOLL_CTL_DEL ignores the event argument.
            unsafe { real::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        });
        let Some(ghost) = make_ghost(stream) else {
            return;
        };
        if !stream {
            // A reply to a datagram read just before the swap must still leave from the real
            // socket (see `replies_through`).
            keep_reply_socket(fd);
            datagram = true;
        }
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
    if datagram || ACCEPTING.load(Ordering::SeqCst) > 0 {
        wake_threads();
    }
    poke_ghosts();
    ghosted
}

/// Real datagram sockets behind ghosts, by the program's descriptor number: a fixed table of
/// atomics, since a worker retires in its signal handler.
static REPLY_SOCKETS: [(AtomicI32, AtomicI32); 64] =
    [const { (AtomicI32::new(-1), AtomicI32::new(-1)) }; 64];

/// Keeps a copy of the real datagram socket at `fd`, about to become a ghost.
fn keep_reply_socket(fd: RawFd) {
    let Some(copy) = sys::duplicate_above(fd, 3) else {
        return;
    };
    fdtable::set_existing(copy, Kind::Internal);
    for (program_fd, real_fd) in &REPLY_SOCKETS {
        if program_fd
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            real_fd.store(copy, Ordering::Release);
            return;
        }
    }
    sys::close(copy);
}

/// Where a datagram sent on `fd` must go out: the real socket behind a ghost. A server that
/// read a datagram just before its socket became a ghost answers through the same number.
pub fn replies_through(fd: RawFd) -> Option<RawFd> {
    REPLY_SOCKETS.iter().find_map(|(program_fd, real_fd)| {
        (program_fd.load(Ordering::Acquire) == fd).then(|| real_fd.load(Ordering::Acquire))
    })
}

/// Forgets the copies (the ghosts are real sockets again after a failed exec).
pub fn drop_reply_sockets() {
    for (program_fd, real_fd) in &REPLY_SOCKETS {
        let copy = real_fd.swap(-1, Ordering::AcqRel);
        if copy >= 0 {
            fdtable::clear(copy);
            sys::close(copy);
        }
        program_fd.store(-1, Ordering::Release);
    }
}

/// Threads blocked in a real `accept` or `recvfrom` hold the real socket and could still be
/// handed a client or a datagram. A signal makes the kernel restart their call on the
/// descriptor number, now a ghost; for `accept`, [`poke_ghosts`] then brings them back to our
/// hook, which stops counting them.
fn wake_threads() {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    procfs::for_each_thread(|tid| {
        if tid != me {
            procfs::queue_thread_signal(tid, RETIRE_SIGNAL, WAKE);
        }
    });
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
/// Threads waiting on the sink, to wake if the sockets become real again.
pub static SINK_WAITERS: AtomicIsize = AtomicIsize::new(0);

/// A listening socket nobody connects to, where a blocking `accept` on a ghost waits for ever
/// (a real `accept`, so signals interrupt and restart it exactly as before) without taking the
/// wake-up connections meant for threads still counted as accepting.
pub fn sink() -> Option<RawFd> {
    let current = SINK.load(Ordering::Acquire);
    if current >= 0 {
        return Some(current);
    }
    let fresh = make_ghost(true)?;
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

/// Wakes the threads waiting on the sink, once the ghosts are real sockets again, until none
/// is left (bounded: a thread may be slow to get there).
pub fn wake_sink_waiters() {
    let sink = SINK.load(Ordering::Acquire);
    if sink < 0 {
        return;
    }
    for _ in 0..100 {
        let waiting = SINK_WAITERS.load(Ordering::SeqCst);
        if waiting <= 0 {
            return;
        }
        for _ in 0..waiting {
            poke(sink);
        }
        // SAFETY: a short sleep on our own thread.
        unsafe { libc::usleep(10_000) };
    }
}

/// Tells every child of this process (except `spare`, the new generation) to retire, and
/// passes each one told to `told`.
pub fn retire_children(spare: Option<i32>, mut told: impl FnMut(i32)) {
    procfs::for_each_child(PID.load(Ordering::Relaxed), |child| {
        if Some(child) != spare && procfs::queue_signal(child, RETIRE_SIGNAL, RETIRE) {
            told(child);
        }
    });
}

/// Whether nothing is left to drain in this process. Async-signal-safe.
///
/// The descriptor table is the count of connections: the hot path then marks and unmarks
/// entries and keeps no counter, whose locked increments would cost every accept, dup and
/// close. The walk stops at the first connection, so it is long only once nearly drained.
pub fn drained() -> bool {
    // Order matters: an accept that got a client marks the connection before it stops
    // counting itself as accepting. The fence pairs with the swap a close makes before it
    // reads RETIRING: either that close sees RETIRING set, or this walk sees its entry gone.
    if ACCEPTING.load(Ordering::SeqCst) > 0 {
        return false;
    }
    fence(Ordering::SeqCst);
    !fdtable::any(Kind::Connection)
}

/// Tracked connections open in this process (for reports: walks the whole table).
pub fn connections() -> usize {
    fdtable::count(Kind::Connection)
}

/// Called whenever something that draining waits for ends. A worker leaves as soon as it is
/// drained; the master's restart thread is woken to decide. Leaves `errno` alone.
#[inline]
pub fn on_drain_progress() {
    if RETIRING.load(Ordering::SeqCst) {
        drain_progressed();
    }
}

#[cold]
fn drain_progressed() {
    if !drained() {
        return;
    }
    let _errno = crate::errno::Preserve::now();
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
    if RETIRING.load(Ordering::SeqCst) {
        // Forked by a parent that was retiring already: nothing of its own to ghost.
        on_drain_progress();
        return;
    }
    // A child forked before the program bound anything is not a member of the generation.
    if !fdtable::any(Kind::Bound) {
        return;
    }
    ghost_all();
    retire_children(None, |_| {});
    arm_drain_deadline();
    on_drain_progress();
}

/// `--drain-timeout` for a worker, which has no thread of ours to watch the time: a
/// one-shot kernel timer that sends [`RETIRE_SIGNAL`] with [`DRAIN_DEADLINE`] when it is over.
/// Raw system calls, as this runs in a signal handler.
fn arm_drain_deadline() {
    let Some(timeout) = process::config().and_then(|c| c.options.drain_timeout) else {
        return;
    };
    // SAFETY: sigevent and itimerspec are plain data filled in below; the kernel reads them.
    unsafe {
        let mut event: libc::sigevent = zeroed();
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = RETIRE_SIGNAL;
        event.sigev_value = libc::sigval {
            sival_ptr: DRAIN_DEADLINE as *mut libc::c_void,
        };
        let mut timer: libc::c_int = 0;
        let created = real::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC.into(),
            (&raw mut event) as libc::c_long,
            (&raw mut timer) as libc::c_long,
            0,
            0,
            0,
        );
        if created != 0 {
            return;
        }
        let mut when: libc::itimerspec = zeroed();
        when.it_value.tv_sec = timeout.as_secs() as libc::time_t;
        when.it_value.tv_nsec = libc::c_long::from(timeout.subsec_nanos());
        real::syscall(
            libc::SYS_timer_settime,
            timer.into(),
            0,
            (&raw const when) as libc::c_long,
            0,
            0,
            0,
        );
    }
}

/// The worker's drain deadline passed: whatever is still open ends with it.
pub fn drain_deadline_passed() {
    if RETIRING.load(Ordering::SeqCst) && !process::is_master() {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
}
