//! A process's life with the library: activation in the constructor, `fork` (a child is a
//! worker of its parent's generation), `setsid` (a daemon's child takes over as master), and
//! the end (`exit`, or returning from `main`).

use std::ffi::{CStr, CString, c_char, c_int};
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use huptime_handoff::state::{HandoverState, InheritedSocket};
use huptime_handoff::{OPTIONS_ENV, Options, STATE_ENV, SockKind};

use crate::fdtable::{self, Kind};
use crate::log::{debug, warning};
use crate::process::{self, Config, MASTER, PARENT, PID, READY_PENDING, RETIRING, STDIO};
use crate::{announce, ready, real, record, restart, retire, signals, sockets, sys};

/// The value of `name` in a NULL-terminated `envp`.
fn env_value<'a>(envp: *const *const c_char, name: &str) -> Option<&'a str> {
    if envp.is_null() {
        return None;
    }
    let mut entry = envp;
    // SAFETY: envp is the NULL-terminated array the loader gives constructors.
    unsafe {
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if let Some(value) = bytes
                .strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                return std::str::from_utf8(value).ok();
            }
            entry = entry.add(1);
        }
    }
    None
}

fn capture_environment(envp: *const *const c_char) -> Vec<CString> {
    let mut environment = Vec::new();
    let mut entry = envp;
    // SAFETY: as above.
    unsafe {
        while !entry.is_null() && !(*entry).is_null() {
            environment.push(CStr::from_ptr(*entry).to_owned());
            entry = entry.add(1);
        }
    }
    environment
}

/// Writes a warning before the configuration exists (so without PID/generation context).
fn early_warning(message: &str) {
    sys::write_all(
        libc::STDERR_FILENO,
        format!("huptime[{}]: {message}\n", sys::getpid()).as_bytes(),
    );
}

/// Where saved stdio copies go: high, out of the way of numbers programs expect to get.
fn saved_descriptor_floor() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let soft = RawFd::try_from(limit.rlim_cur).unwrap_or(RawFd::MAX);
    soft.saturating_sub(64).clamp(3, 1000)
}

/// Saves descriptors 0, 1, 2 as they are now (the first start).
fn save_stdio() -> Option<[RawFd; 3]> {
    let floor = saved_descriptor_floor();
    let mut saved = [-1; 3];
    for (index, slot) in saved.iter_mut().enumerate() {
        match sys::duplicate_above(index as RawFd, floor) {
            Some(copy) => *slot = copy,
            None => {
                saved
                    .iter()
                    .filter(|&&fd| fd >= 0)
                    .for_each(|&fd| sys::close(fd));
                return None;
            }
        }
    }
    Some(saved)
}

/// Keeps the inherited sockets that are what the state says they are.
fn validate_sockets(sockets: Vec<InheritedSocket>) -> Vec<InheritedSocket> {
    sockets
        .into_iter()
        .filter(|socket| {
            let kind = sys::socket_type(socket.fd).and_then(SockKind::from_so_type);
            let valid = kind == Some(socket.identity.kind);
            if !valid {
                early_warning(&format!(
                    "ignoring inherited descriptor {} ({}): not that socket",
                    socket.fd, socket.identity
                ));
            }
            valid
        })
        .collect()
}

/// The constructor's work: decide whether this process takes part, and set it up if so.
pub fn activate(envp: *const *const c_char) {
    let (Some(state_text), Some(options_text)) =
        (env_value(envp, STATE_ENV), env_value(envp, OPTIONS_ENV))
    else {
        return;
    };
    let pid = sys::getpid();
    let state = match HandoverState::decode(state_text) {
        Ok(state) if state.pid != pid => return, // a program the instance runs: not ours
        Ok(state) => state,
        Err(error) => {
            early_warning(&format!(
                "ignoring the handover state ({error}); starting as a first generation"
            ));
            let fresh = HandoverState {
                pid,
                instance: format!("{pid}-{}", process::now_secs()),
                since: process::now_secs(),
                ..HandoverState::default()
            };
            // Programs we start must see a state that is not theirs.
            if let Ok(value) = CString::new(fresh.encode()) {
                // SAFETY: setenv with NUL-terminated strings, before main runs.
                unsafe { libc::setenv(c"HUPTIME_STATE".as_ptr(), value.as_ptr(), 1) };
            }
            fresh
        }
    };
    // From here this process takes part: resolve every real function now, so the signal
    // handlers and the restart child never call dlsym. (A passive process resolves only the
    // ones it calls, on first use.)
    real::resolve_all();
    let options = match Options::decode(options_text) {
        Ok(options) => options,
        Err(error) => {
            early_warning(&format!("{error}; restarts are disabled"));
            return;
        }
    };
    let stdio = match state.stdio {
        Some(fds) if fds.iter().all(|&fd| sys::is_open(fd)) => Some(fds),
        _ => save_stdio(),
    };
    let environment = capture_environment(envp);
    let config = Config {
        options,
        instance: state.instance.clone(),
        since: state.since,
        generation_since: process::now_secs(),
        first_sigmask: state.sigmask,
        first_ignored: state.ignored,
        environment,
        restart_began_ms: state.restart_began_ms,
    };
    let signal = config.options.signal;
    READY_PENDING.store(true, Ordering::SeqCst);
    process::activate(config, state.generation);
    if let Some(fds) = stdio {
        for (slot, fd) in STDIO.iter().zip(fds) {
            fdtable::set(fd, Kind::Internal);
            slot.store(fd, Ordering::Release);
        }
    }
    let inherited = validate_sockets(state.sockets);
    let count = inherited.len();
    sockets::inherit(inherited);
    if let Some(fd) = state.ready_fd.filter(|&fd| sys::socket_type(fd).is_some()) {
        ready::set_channel(fd);
    }
    if let Err(error) = signals::install(signal, state.ignored) {
        warning!("cannot install the restart signal handler: {error}");
    }
    if state.generation > 0 {
        // Signals were blocked across the exec (see plan::exec_blocked): a pending restart
        // signal waits for our handler, stale SIGIO and SIGPIPE of the old image are dropped,
        // and from here the program runs with the mask of its first start.
        discard_pending(&[libc::SIGIO, libc::SIGPIPE], state.sigmask);
        restore_first_mask(state.sigmask);
    }
    // SAFETY: registering plain extern "C" functions.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        );
        libc::atexit(at_exit);
    }
    debug!("started as pid {pid} with {count} inherited socket(s)");
    if count == 0 && state.generation > 0 {
        // Nothing to claim: nothing for the old generation to wait for.
        ready::become_ready();
    }
}

/// Takes `signals` off the pending sets, unless the first start blocked them (then they are
/// the program's own to receive).
fn discard_pending(signals: &[c_int], first_mask: u64) {
    // SAFETY: sigtimedwait with a zero timeout on a valid set of signals blocked in this thread;
    // it never blocks.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            if first_mask & (1 << (sig - 1)) == 0 {
                libc::sigaddset(&mut set, sig);
            }
        }
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) > 0 {}
    }
}

fn restore_first_mask(bits: u64) {
    let set = restart::plan::sigset_from_bits(bits);
    // SAFETY: applying a valid set to the calling (main) thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// Our signals that `before_fork` blocked in the forking thread (bit `sig - 1`): only the ones
/// the thread did not block already. Written and read under the fork lock, which serialises
/// forks; the child gets the parent's value with its copy of memory.
static BLOCKED_FOR_FORK: AtomicU64 = AtomicU64::new(0);

/// Blocks the restart signal and [`retire::RETIRE_SIGNAL`] in the forking thread, so that the
/// child starts with them blocked until `after_fork_in_child` has made it a worker (and the
/// parent until the fork is done). The kernel delivers a signal pending for a new child as soon
/// as it first runs, before any fork handler: the retire message of a master that found the
/// child among its children (a pool forking right then, the child still waiting for a CPU on a
/// busy machine) met the parent's `PARENT` and `PID` there and was dropped as not ours, so that
/// worker never retired and an exec-mode master drained for ever. Blocked, it stays pending.
/// Async-signal-safe.
fn block_our_signals() {
    let ours = [retire::RETIRE_SIGNAL, process::restart_signal()];
    let bits = ours.iter().fold(0u64, |bits, &sig| bits | 1 << (sig - 1));
    let set = restart::plan::sigset_from_bits(bits);
    // SAFETY: sigset_t is plain data; pthread_sigmask and sigismember get valid sets.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) } != 0 {
        return;
    }
    let added = ours
        .iter()
        .filter(|&&sig| unsafe { libc::sigismember(&old, sig) } == 0)
        .fold(0u64, |bits, &sig| bits | 1 << (sig - 1));
    BLOCKED_FOR_FORK.store(added, Ordering::Relaxed);
}

/// Undoes [`block_our_signals`]: a signal that came meanwhile is delivered now. Async-signal-safe.
fn unblock_our_signals() {
    let added = BLOCKED_FOR_FORK.swap(0, Ordering::Relaxed);
    if added != 0 {
        let set = restart::plan::sigset_from_bits(added);
        // SAFETY: unblocking a valid set in the calling thread.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

thread_local! {
    /// Whether this thread's last fork began while the process was retiring: a child forked
    /// then is late (see [`forked`]). Taken under the fork lock, under which the master's
    /// restart thread also starts retiring, so the child's own view is the same.
    static FORKED_WHILE_RETIRING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

extern "C" fn before_fork() {
    sockets::lock_for_fork();
    block_our_signals();
    FORKED_WHILE_RETIRING.with(|late| late.set(RETIRING.load(Ordering::SeqCst)));
}

extern "C" fn after_fork_in_parent() {
    unblock_our_signals();
    sockets::unlock_after_fork();
}

/// The master starts retiring between forks, never during one: a child is then either a
/// worker of the generation, which is told to retire, or late, never counted as both.
pub fn begin_retiring() {
    sockets::lock_for_fork();
    RETIRING.store(true, Ordering::SeqCst);
    sockets::unlock_after_fork();
}

/// The child of any fork (ours via `fork`, or libc's own as in `daemon(3)`): a worker of the
/// parent's generation. Only async-signal-safe work here.
extern "C" fn after_fork_in_child() {
    sockets::unlock_after_fork();
    if !process::active() {
        unblock_our_signals();
        return;
    }
    PARENT.store(PID.load(Ordering::Relaxed), Ordering::Relaxed);
    PID.store(sys::getpid(), Ordering::Relaxed);
    MASTER.store(false, Ordering::Relaxed);
    process::RESTART_PENDING.store(false, Ordering::Relaxed);
    restart::forget_after_fork();
    // A worker a retiring process starts (a pool refilling itself) has nothing to serve: it
    // ends with its parent. Exiting at once would only make the pool start another.
    if RETIRING.load(Ordering::SeqCst) && retire::drained() {
        // SAFETY: prctl and getppid are plain system calls.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != PARENT.load(Ordering::Relaxed) {
                libc::_exit(0);
            }
        }
    }
    // Last: a retire message already queued for this child is handled as a worker's.
    unblock_our_signals();
}

/// Children a retiring process started: not worth waiting for (see `after_fork_in_child`).
static LATE_CHILDREN: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// After the program's `fork`: the parent notes which worker it started.
pub fn forked(pid: libc::pid_t) {
    if pid <= 0 {
        return;
    }
    if FORKED_WHILE_RETIRING.with(|late| late.get()) {
        LATE_CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
    } else if process::debug() && sockets::any_bound() {
        debug!("forked pid {pid}: a worker of this generation");
    }
}

/// Ends the children started while retiring, before the PID becomes the next generation's
/// (exec mode): they serve nothing, and their parent-death signal does not fire on an exec.
/// Waits (briefly) until they are gone, so nothing of theirs reaches the new program.
pub fn end_late_children() {
    let late = std::mem::take(&mut *LATE_CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    let me = PID.load(Ordering::Relaxed);
    let live: Vec<libc::pid_t> = late
        .into_iter()
        .filter(|&pid| crate::procfs::is_live_child(pid, me))
        .collect();
    for &pid in &live {
        // SAFETY: plain kill of our own live child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while live
        .iter()
        .any(|&pid| crate::procfs::is_live_child(pid, me))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether `pid` was started after this process began retiring.
pub fn is_late_child(pid: libc::pid_t) -> bool {
    LATE_CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&pid)
}

/// After a successful `setsid` in a worker: the usual daemon start (fork, parent exits, child
/// calls setsid) hands the instance to the child.
pub fn became_session_leader() {
    if process::is_master() {
        return;
    }
    MASTER.store(true, Ordering::SeqCst);
    process::MASTER_PID.store(PID.load(Ordering::Relaxed), Ordering::Relaxed);
    debug!("setsid in a forked child: it is the master now (a daemon)");
    announce::became_master();
    if sockets::any_bound() || sockets::has_unclaimed() {
        restart::start_thread();
    }
}

static ENDING: AtomicBool = AtomicBool::new(false);

/// `exit(status)`, and returning from `main` through [`at_exit`]: with `--revive` the program
/// starts again on its sockets instead.
pub fn exiting(status: c_int) {
    if !process::active() || ENDING.swap(true, Ordering::SeqCst) {
        return;
    }
    restart::revive(status);
    if process::is_master() && !RETIRING.load(Ordering::SeqCst) {
        // Under a supervisor a program that exits is started again: not a stop of the service.
        if !process::config().is_some_and(|c| c.options.supervised) {
            announce::stopping();
        }
        record::remove();
    }
}

extern "C" fn at_exit() {
    let Some(_inside) = crate::reentry::enter() else {
        return;
    };
    let _ = std::panic::catch_unwind(|| exiting(0));
}

/// The constructor: runs before `main` with the program's argc, argv and envp.
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = constructor;

extern "C" fn constructor(_argc: c_int, _argv: *const *const c_char, envp: *const *const c_char) {
    let Some(_inside) = crate::reentry::enter() else {
        return;
    };
    let _ = std::panic::catch_unwind(|| activate(envp));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sig: c_int) -> bool {
        // SAFETY: sigpending fills a plain set.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::sigpending(&mut set) == 0 && libc::sigismember(&set, sig) == 1 }
    }

    fn blocked(sig: c_int) -> bool {
        // SAFETY: reading the calling thread's mask into a plain set.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) == 0
                && libc::sigismember(&set, sig) == 1
        }
    }

    /// A retire message queued for a child before its fork handler ran (the kernel would deliver
    /// it the moment the child first runs, when the child still has its parent's PARENT and
    /// PID) waits, pending, until `after_fork_in_child` has made the child a worker.
    #[test]
    fn a_retire_message_to_a_new_child_waits_for_its_fork_handler() {
        let sig = retire::RETIRE_SIGNAL;
        assert!(!blocked(sig), "the test thread must not block {sig} itself");
        before_fork();
        // SAFETY: the child makes only async-signal-safe calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // The parent queues the message now; the handler has not run yet.
            let mut waited = 0;
            while !pending(sig) && waited < 5_000 {
                // SAFETY: a short sleep.
                unsafe { libc::usleep(1_000) };
                waited += 1;
            }
            let was_pending = pending(sig);
            after_fork_in_child();
            let code = if !was_pending {
                1
            } else if blocked(sig) {
                2
            } else {
                0
            };
            // SAFETY: leaving the child.
            unsafe { libc::_exit(code) };
        }
        after_fork_in_parent();
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        assert!(!blocked(sig), "the parent's mask is put back");
        assert!(crate::procfs::queue_signal(pid, sig, retire::RETIRE));
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        match libc::WEXITSTATUS(status) {
            0 => {}
            1 => panic!("the message was not kept pending for the child's fork handler"),
            code => panic!("the child's handler left the signal blocked ({code})"),
        }
    }
}
