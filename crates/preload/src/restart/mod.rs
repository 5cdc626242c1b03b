//! The restart thread of a master: the signal handler only writes a byte to a socket, and this
//! thread does the work. Restarts never overlap: signals that arrive while one is under way
//! are coalesced into one more, acted on when it has finished.
//!
//! Fork mode: start the next generation, wait until it is ready (or give up and keep serving),
//! then ghost, drain and exit. Exec mode: ghost, drain, then execute the next generation in
//! place, un-ghosting if that fails.

pub mod launch;
pub mod plan;

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use huptime_handoff::record::{Outcome, Phase};
use huptime_handoff::state::InheritedSocket;
use huptime_handoff::{Mode, Options};

use crate::fdtable::{self, Kind};
use crate::log::{debug, warning};
use crate::process::{self, Config, GENERATION, PID, READY_PENDING, RETIRING};
use crate::{announce, epoll, ready, record, reentry, retire, sockets, sys};

/// Why the restart thread is woken.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Wake {
    /// The restart signal arrived.
    Restart = b'R',
    /// This generation (or one of its workers) became ready.
    Ready = b'Y',
    /// Something draining waits for has ended.
    Drained = b'D',
}

static CHANNEL_READ: AtomicI32 = AtomicI32::new(-1);
static CHANNEL_WRITE: AtomicI32 = AtomicI32::new(-1);
static STARTED: AtomicBool = AtomicBool::new(false);
/// In a worker: the write end of its master's restart channel.
static UPSTREAM: AtomicI32 = AtomicI32::new(-1);

/// The restart channel's descriptors, for [`crate::internal::relocate`].
pub fn channel_slots() -> [&'static AtomicI32; 3] {
    [&CHANNEL_READ, &CHANNEL_WRITE, &UPSTREAM]
}

/// Wakes the restart thread. Async-signal-safe. Before the thread exists a restart request is
/// remembered; a full channel drops the byte, which is fine since requests coalesce anyway.
pub fn wake(reason: Wake) {
    let fd = CHANNEL_WRITE.load(Ordering::Acquire);
    if fd >= 0 {
        send_byte(fd, reason);
    } else if matches!(reason, Wake::Restart) {
        process::RESTART_PENDING.store(true, Ordering::SeqCst);
    }
}

/// Whether this process is a master whose restart thread is not started yet: what every bind
/// asks, with plain loads.
#[inline]
pub fn needs_thread() -> bool {
    process::is_master() && !STARTED.load(Ordering::Relaxed)
}

/// Starts the restart thread of a master, once. Created with every signal blocked, then it
/// unblocks only the restart signal: it must not steal signals the program waits for.
pub fn start_thread() {
    if !needs_thread() || STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    // A worker that became the master (a daemon) no longer reports to its former master.
    close_slot(&UPSTREAM);
    let mut fds = [-1; 2];
    // SAFETY: socketpair fills two descriptors. A socket rather than a pipe: workers write to
    // it too, and a send with MSG_NOSIGNAL cannot kill one with SIGPIPE once the master is gone.
    let created = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if created != 0 {
        warning!(
            "cannot create the restart channel: {}",
            std::io::Error::last_os_error()
        );
        STARTED.store(false, Ordering::SeqCst);
        return;
    }
    fdtable::set(fds[0], Kind::Internal);
    fdtable::set(fds[1], Kind::Internal);
    CHANNEL_READ.store(fds[0], Ordering::Release);
    CHANNEL_WRITE.store(fds[1], Ordering::Release);

    // SAFETY: masks are plain sets; the old mask is restored right after spawning.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let spawned = std::thread::Builder::new()
        .name("huptime".into())
        .stack_size(256 * 1024)
        .spawn(run);
    // SAFETY: restoring the caller's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if let Err(error) = spawned {
        warning!("cannot start the restart thread: {error}");
    }
}

/// Whether this master's restart thread runs.
pub fn has_thread() -> bool {
    STARTED.load(Ordering::SeqCst)
}

/// In a forked child: the thread is gone and the channel belongs to the parent. Its write end
/// stays with the worker, which tells the master through it that the generation is ready.
/// Async-signal-safe.
pub fn forget_after_fork() {
    close_slot(&CHANNEL_READ);
    let write = CHANNEL_WRITE.swap(-1, Ordering::AcqRel);
    if write >= 0 {
        let previous = UPSTREAM.swap(write, Ordering::AcqRel);
        if previous >= 0 && previous != write {
            fdtable::clear(previous);
            sys::close(previous);
        }
    }
    STARTED.store(false, Ordering::SeqCst);
}

fn close_slot(slot: &AtomicI32) {
    let fd = slot.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        fdtable::clear(fd);
        sys::close(fd);
    }
}

/// From a worker: wakes its master's restart thread.
pub fn tell_master(reason: Wake) {
    let fd = UPSTREAM.load(Ordering::Acquire);
    if fd >= 0 {
        send_byte(fd, reason);
    }
}

/// Async-signal-safe; never blocks, never raises SIGPIPE.
fn send_byte(fd: RawFd, reason: Wake) {
    let byte = reason as u8;
    // SAFETY: send of one byte from a valid buffer.
    unsafe {
        libc::send(
            fd,
            (&raw const byte).cast(),
            1,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
}

fn run() {
    reentry::enter_for_good();
    let sig = process::restart_signal();
    // SAFETY: building and applying a mask on our own thread.
    unsafe {
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut only);
        libc::sigdelset(&mut only, sig);
        libc::pthread_sigmask(libc::SIG_SETMASK, &only, std::ptr::null_mut());
    }
    let Some(config) = process::config() else {
        return;
    };
    let mut restarter = Restarter {
        config,
        attempts: 0,
        last: None,
        requested: process::RESTART_PENDING.swap(false, Ordering::SeqCst),
        announced: false,
    };
    restarter.publish();
    // Ready before this thread could be woken: report now.
    if !READY_PENDING.load(Ordering::SeqCst) {
        ready::report_to_previous();
    }
    loop {
        // Not as soon as READY_PENDING clears but once readiness was handled here (`announced`):
        // the program's thread clears the flag before it sends 'Y', and a restart begun in
        // between swallows the byte, so the previous generation never hears that this one is
        // ready and stays.
        if restarter.requested && restarter.announced {
            restarter.requested = false;
            restarter.restart();
            continue;
        }
        let events = read_events(None);
        restarter.absorb(&events);
    }
}

/// Reads what woke us, waiting at most `timeout` (for ever with `None`).
fn read_events(timeout: Option<Duration>) -> Vec<u8> {
    let fd = CHANNEL_READ.load(Ordering::Acquire);
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as c_int);
    // SAFETY: one valid pollfd.
    if unsafe { crate::real::poll(&mut poll, 1, millis) } <= 0 {
        return Vec::new();
    }
    let mut buffer = [0u8; 256];
    // SAFETY: buffer is writable; the channel's read end is blocking but readable now.
    let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    buffer[..usize::try_from(n).unwrap_or(0)].to_vec()
}

/// Why an attempt failed, in words for the log and the instance record.
type Failure = String;

struct Restarter {
    config: &'static Config,
    attempts: u64,
    last: Option<Outcome>,
    requested: bool,
    /// This generation's readiness was announced (and reported to the previous one).
    announced: bool,
}

impl Restarter {
    fn options(&self) -> &'static Options {
        &self.config.options
    }

    /// Writes the record, and announces readiness the first time it is seen.
    fn publish(&mut self) {
        let ready = !READY_PENDING.load(Ordering::SeqCst);
        if ready && !self.announced {
            // The restart that started this generation ends here: say how long it took. It was
            // the previous master's attempt: this master's own attempts count from 1.
            if let Some(began) = self.config.restart_began_ms {
                self.last = Some(Outcome {
                    attempt: 0,
                    ok: true,
                    new_pid: Some(PID.load(Ordering::Relaxed)),
                    detail: String::new(),
                    millis: process::now_millis().saturating_sub(began),
                });
            }
        }
        let phase = if ready {
            Phase::Serving
        } else {
            Phase::Starting
        };
        record::write(phase, self.last.as_ref());
        if ready && !self.announced {
            self.announced = true;
            announce::ready(GENERATION.load(Ordering::Relaxed));
        }
    }

    fn absorb(&mut self, events: &[u8]) {
        for &event in events {
            match event {
                b'R' => self.requested = true,
                b'Y' => {
                    ready::become_ready();
                    self.publish();
                    ready::report_to_previous();
                }
                _ => {}
            }
        }
    }

    fn restart(&mut self) {
        self.attempts += 1;
        let started = Instant::now();
        let generation = GENERATION.load(Ordering::Relaxed);
        debug!(
            "restart signal: starting generation {} ({} mode)",
            generation + 1,
            self.options().mode.name()
        );
        record::write(Phase::Restarting, self.last.as_ref());
        announce::reloading();
        for path in &self.options().unlink {
            match std::fs::remove_file(path) {
                Ok(()) => debug!("removed {}", path.display()),
                Err(error) => debug!("did not remove {}: {error}", path.display()),
            }
        }
        let failure = match self.options().mode {
            Mode::Fork => self.fork_restart(started),
            Mode::Exec => self.exec_restart(started),
        };
        warning!("restart failed, generation {generation} goes on serving: {failure}");
        announce::rolled_back(&failure);
        self.last = Some(Outcome {
            attempt: self.attempts,
            ok: false,
            new_pid: None,
            detail: failure,
            millis: started.elapsed().as_millis() as u64,
        });
        record::write(Phase::Serving, self.last.as_ref());
    }

    fn succeeded(&mut self, started: Instant, new_pid: Option<i32>) {
        self.last = Some(Outcome {
            attempt: self.attempts,
            ok: true,
            new_pid,
            detail: String::new(),
            millis: started.elapsed().as_millis() as u64,
        });
    }

    /// Returns only on failure, with the old generation still serving.
    fn fork_restart(&mut self, started: Instant) -> Failure {
        let mut channel = [-1; 2];
        // SAFETY: socketpair fills two descriptors. SEQPACKET keeps the child's report whole,
        // and gives end-of-file once every copy of the child's end is closed.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                channel.as_mut_ptr(),
            )
        } != 0
        {
            return format!(
                "cannot create the readiness channel: {}",
                std::io::Error::last_os_error()
            );
        }
        let [ours, theirs] = channel;
        // Every process of the new generation holds a copy of `theirs` until it is ready: the
        // way to find them all if they have to be stopped, daemons included.
        let marker = socket_inode(theirs);
        let next = GENERATION.load(Ordering::Relaxed) + 1;
        let spawned = plan::Plan::new(
            self.config,
            next,
            None,
            sockets::handover(),
            Some(theirs),
            self.options().signal,
        )
        .and_then(|plan| {
            let child = launch::spawn(&plan, theirs);
            child.map(|child| (child, plan.path.to_string_lossy().into_owned()))
        });
        sys::close(theirs);
        let (child, path) = match spawned {
            Ok(spawned) => spawned,
            Err(reason) => {
                sys::close(ours);
                return reason;
            }
        };
        debug!(
            "generation {next} started as pid {}; waiting until it serves its sockets",
            child.pid
        );
        let verdict = self.await_ready(&child, ours, &path);
        sys::close(ours);
        match verdict {
            Ok(master) => {
                debug!(
                    "generation {next} (pid {master}) is ready after {} ms; this one retires",
                    started.elapsed().as_millis()
                );
                sys::close(child.pidfd);
                self.succeeded(started, Some(master));
                announce::handed_over(master);
                self.retire_and_exit(child.pid, master)
            }
            Err(reason) => {
                end_generation(&child, marker);
                reason
            }
        }
    }

    /// Waits for the new generation's readiness report (which names its master), a failure
    /// report, or the ready timeout. The process we started exiting is not a failure by itself:
    /// a daemon's parent exits once its child runs. It is when no process of the generation is
    /// left to report (every copy of the channel closed).
    fn await_ready(
        &mut self,
        child: &launch::Child,
        channel: RawFd,
        path: &str,
    ) -> Result<i32, Failure> {
        let deadline = Instant::now() + self.options().ready_timeout;
        let mut channel_open = true;
        let mut child_exited = false;
        loop {
            if !channel_open && child_exited {
                return Err(format!(
                    "the new generation {} before it was ready",
                    exit_description(child.pid)
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "the new generation was not ready within {} s; it was stopped",
                    self.options().ready_timeout.as_secs_f64()
                ));
            }
            let watch = |fd: RawFd, on: bool| libc::pollfd {
                fd: if on { fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            };
            let mut polls = [
                watch(channel, channel_open),
                watch(child.pidfd, !child_exited),
                watch(CHANNEL_READ.load(Ordering::Acquire), true),
            ];
            let wait = (deadline - now).as_millis().min(i32::MAX as u128) as c_int;
            // SAFETY: three valid pollfds.
            if unsafe { crate::real::poll(polls.as_mut_ptr(), 3, wait) } < 0 {
                continue;
            }
            if polls[0].revents != 0 {
                let mut message = [0u8; 64];
                // SAFETY: message is writable.
                let n = unsafe {
                    libc::recv(
                        channel,
                        message.as_mut_ptr().cast(),
                        message.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                let message = &message[..usize::try_from(n).unwrap_or(0)];
                match message.first() {
                    Some(&ready::READY) => {
                        return Ok(ready::reported_master(message).unwrap_or(child.pid));
                    }
                    Some(&launch::FAILED) => return Err(launch::describe_failure(message, path)),
                    None if n == 0 => channel_open = false,
                    _ => {}
                }
            }
            if polls[1].revents != 0 {
                child_exited = true;
                debug!(
                    "pid {} {}; waiting for the rest of its generation",
                    child.pid,
                    exit_description(child.pid)
                );
            }
            if polls[2].revents != 0 {
                let events = read_events(Some(Duration::ZERO));
                if events.contains(&b'R') {
                    self.requested = true;
                }
            }
        }
    }

    /// Ghosts this generation's sockets, tells its workers, drains, and exits.
    fn retire_and_exit(&mut self, started_child: i32, successor: i32) -> ! {
        crate::lifecycle::begin_retiring();
        let ghosts = retire::ghost_all();
        let mut workers = Vec::new();
        retire::retire_children(Some(started_child), |pid| workers.push(pid));
        debug!(
            "ghosted {ghosts} listening descriptor(s), told {} worker(s) to retire",
            workers.len()
        );
        record::write(Phase::Draining, self.last.as_ref());
        // A signal that came while the new generation was starting is its to act on.
        self.pass_on_requests(successor);
        self.drain(Some(successor), Some(started_child), &workers);
        self.pass_on_requests(successor);
        record::remove();
        // SAFETY: flushing the program's stdio buffers before leaving; fflush(NULL) is safe here
        // because no program thread is inside stdio on our behalf.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::_exit(0)
        }
    }

    /// Waits until the connections are done, and the children this process must wait for, or
    /// the drain timeout passes. Restart signals meanwhile belong to `successor`.
    ///
    /// With `--wait` those are all its children but `spare` (the new generation). In exec mode
    /// they are at least the `workers` told to retire: the PID is about to be the new
    /// program's, whose children they would otherwise become (nginx workers would even signal
    /// it through their channel to the old master).
    fn drain(&mut self, successor: Option<i32>, spare: Option<i32>, workers: &[i32]) {
        let started = Instant::now();
        let deadline = self.options().drain_timeout.map(|t| started + t);
        let me = PID.load(Ordering::Relaxed);
        let watch_children = self.options().wait || self.options().mode == Mode::Exec;
        loop {
            let children_done = if self.options().wait {
                !has_children(me, spare)
            } else if self.options().mode == Mode::Exec {
                !workers
                    .iter()
                    .filter(|&&pid| !crate::lifecycle::is_late_child(pid))
                    .any(|&pid| crate::procfs::is_live_child(pid, me))
            } else {
                true
            };
            if retire::drained() && children_done {
                debug!("drained after {} ms", started.elapsed().as_millis());
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                warning!(
                    "drain timeout: {} connection(s) still open after {} s, ending them",
                    retire::connections(),
                    started.elapsed().as_secs()
                );
                return;
            }
            // Children are not announced through the channel, and a thread still in a real accept
            // may need another wake-up connection: look again every 100 ms.
            let mut wait = deadline.map(|d| d - now);
            let accepting = process::ACCEPTING.load(Ordering::SeqCst) > 0;
            if watch_children || accepting {
                retire::poke_ghosts();
                let tick = Duration::from_millis(100);
                wait = Some(wait.map_or(tick, |w| w.min(tick)));
            }
            let events = read_events(wait);
            if events.contains(&b'R') {
                self.requested = true;
            }
            if let Some(pid) = successor {
                self.pass_on_requests(pid);
            }
        }
    }

    /// Passes restart requests this retiring master received on to its successor (which
    /// coalesces them itself if it is restarting already).
    fn pass_on_requests(&mut self, successor: i32) {
        // Also the ones still in the channel: `await_ready` returns on the report without
        // reading it, and `drain` may return without waiting.
        if read_events(Some(Duration::ZERO)).contains(&b'R') {
            self.requested = true;
        }
        if std::mem::take(&mut self.requested) {
            debug!("restart signal while retiring: passed on to pid {successor}");
            // SAFETY: plain kill of our successor.
            unsafe { libc::kill(successor, process::restart_signal()) };
        }
    }

    /// Returns only on failure, with the old image serving again.
    fn exec_restart(&mut self, started: Instant) -> Failure {
        let next = GENERATION.load(Ordering::Relaxed) + 1;
        let pid = PID.load(Ordering::Relaxed);
        // Our own copies of the real sockets: the program's descriptors are about to be ghosts.
        let originals = sockets::handover();
        let mut copies = Vec::with_capacity(originals.len());
        for socket in &originals {
            match sys::duplicate_above(socket.fd, 3) {
                Some(copy) => {
                    fdtable::set(copy, Kind::Internal);
                    copies.push(InheritedSocket {
                        fd: copy,
                        identity: socket.identity.clone(),
                    });
                }
                None => {
                    close_copies(&copies);
                    return format!(
                        "cannot keep socket {}: {}",
                        socket.identity,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        let plan = match plan::Plan::new(
            self.config,
            next,
            Some(pid),
            copies.clone(),
            None,
            self.options().signal,
        ) {
            Ok(plan) => plan,
            Err(reason) => {
                close_copies(&copies);
                return reason;
            }
        };
        // No generation accepts until the new image does: let the kernel queue as many
        // clients as it allows meanwhile (the new generation's own listen() sets it back).
        for copy in &copies {
            if sys::is_listening(copy.fd) {
                // SAFETY: listen on a socket we hold.
                unsafe { crate::real::listen(copy.fd, c_int::MAX) };
            }
        }
        let registrations = epoll::registrations_of_bound_sockets();
        crate::lifecycle::begin_retiring();
        let ghosts = retire::ghost_all();
        let mut workers = Vec::new();
        retire::retire_children(None, |pid| workers.push(pid));
        debug!(
            "ghosted {ghosts} listening descriptor(s), told {} worker(s) to retire; draining",
            workers.len()
        );
        record::write(Phase::Draining, self.last.as_ref());
        self.drain(None, None, &workers);
        // No fork from here to the exec (a fork waits in our atfork handler): a pool refilling
        // itself would otherwise start children the next program inherits.
        sockets::lock_for_fork();
        crate::lifecycle::end_late_children();
        self.succeeded(started, Some(pid));
        debug!("executing generation {next}");
        let failure = launch::execute_in_place(&plan);
        sockets::unlock_after_fork();
        restore_ghosts(&originals, &copies);
        epoll::restore(&registrations);
        close_copies(&copies);
        failure
    }
}

/// Puts the real sockets back behind the program's descriptors after a failed exec.
fn restore_ghosts(originals: &[InheritedSocket], copies: &[InheritedSocket]) {
    let mut ghosts = Vec::new();
    for (original, copy) in originals.iter().zip(copies) {
        for fd in sockets::aliases(original.fd) {
            if fdtable::get(fd) != Kind::Ghost {
                continue;
            }
            let cloexec = sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC != 0);
            let nonblocking = sys::status_flags(fd).is_some_and(|f| f & libc::O_NONBLOCK != 0);
            sys::set_nonblocking(copy.fd, nonblocking);
            // Keep the ghost alive a moment: threads waiting in poll on it must be woken.
            ghosts.extend(sys::duplicate_above(fd, 3));
            if sys::move_onto(copy.fd, fd, cloexec) {
                fdtable::set(fd, Kind::Bound);
            }
        }
    }
    RETIRING.store(false, Ordering::SeqCst);
    retire::drop_reply_sockets();
    for ghost in ghosts {
        if sys::socket_type(ghost) == Some(libc::SOCK_STREAM) {
            retire::poke(ghost);
        }
        sys::close(ghost);
    }
    retire::wake_sink_waiters();
}

fn close_copies(copies: &[InheritedSocket]) {
    for copy in copies {
        fdtable::clear(copy.fd);
        sys::close(copy.fd);
    }
}

/// The inode of a socket, which `/proc/<pid>/fd` shows as `socket:[inode]`.
fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat fills a plain struct.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut stat) } == 0).then_some(stat.st_ino)
}

/// Stops a generation that did not become ready: the process we started, its descendants, and
/// every process still holding its end of the readiness channel (a daemon that left its
/// parent); then reaps our child.
fn end_generation(child: &launch::Child, marker: Option<u64>) {
    let mut doomed = vec![child.pid];
    let mut index = 0;
    while index < doomed.len() {
        crate::procfs::for_each_child(doomed[index], |grandchild| doomed.push(grandchild));
        index += 1;
    }
    if let Some(inode) = marker {
        doomed.extend(crate::procfs::holders_of_socket(inode));
    }
    for pid in doomed {
        // SAFETY: plain kill of processes of the generation we started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our child (__WALL: a clone child until it executes, an ordinary one after).
    unsafe { libc::waitpid(child.pid, &mut status, libc::__WALL) };
    sys::close(child.pidfd);
}

/// "exited with status 1" or "was killed by signal 11 (Segmentation fault)", peeked without
/// reaping (end_child reaps).
fn exit_description(pid: i32) -> String {
    // SAFETY: siginfo_t is plain data; WNOWAIT leaves the child to be reaped later.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::__WALL,
        )
    };
    if ret != 0 {
        return "exited".into();
    }
    // SAFETY: waitid filled a CLD_* record.
    let status = unsafe { info.si_status() };
    if info.si_code == libc::CLD_EXITED {
        format!("exited with status {status}")
    } else {
        // SAFETY: strsignal returns a static string for any number.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(status)) };
        format!("was killed by signal {status} ({})", name.to_string_lossy())
    }
}

/// Whether this process still has a live child other than `spare` and the ones it started
/// while retiring.
fn has_children(me: i32, spare: Option<i32>) -> bool {
    let mut found = false;
    crate::procfs::for_each_child(me, |child| {
        if Some(child) != spare && !crate::lifecycle::is_late_child(child) {
            found = true;
        }
    });
    found
}

/// Exits through `--revive`: executes the program again with its sockets instead of leaving.
/// Returns if reviving is not wanted or not possible.
pub fn revive(status: c_int) {
    let Some(config) = process::config() else {
        return;
    };
    if !config.options.revive || !process::is_master() || RETIRING.load(Ordering::SeqCst) {
        return;
    }
    let pid = PID.load(Ordering::Relaxed);
    let next = GENERATION.load(Ordering::Relaxed) + 1;
    let sockets = sockets::handover();
    // A program that dies right after starting would otherwise spin.
    if process::now_secs().saturating_sub(config.generation_since) < 1 {
        std::thread::sleep(Duration::from_secs(1));
    }
    match plan::Plan::new(
        config,
        next,
        Some(pid),
        sockets,
        None,
        config.options.signal,
    ) {
        Ok(plan) => {
            debug!("program exited with status {status}; --revive starts generation {next}");
            let failure = launch::execute_in_place(&plan);
            warning!("cannot revive the program: {failure}");
        }
        Err(reason) => warning!("cannot revive the program: {reason}"),
    }
}
