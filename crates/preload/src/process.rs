//! This process's place in the instance: whether it takes part at all, its role and generation,
//! and the counters the hot path keeps. Everything a hook reads on every call is an atomic here.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use huptime_handoff::Options;

/// Whether this process belongs to a huptime instance. Processes the program starts with
/// `exec` inherit the environment but not the role: they stay passive and every hook forwards.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether this process is the generation's master (it restarts on the signal); otherwise it is
/// a member forked by the master (a worker) or by another member.
pub static MASTER: AtomicBool = AtomicBool::new(false);

/// Our PID, kept current across `fork` (the signal handler reads it).
pub static PID: AtomicI32 = AtomicI32::new(0);

/// The generation's master as this process knows it: itself, or for a worker the master at
/// the time it was forked (a daemon's workers are forked after it took over).
pub static MASTER_PID: AtomicI32 = AtomicI32::new(0);

/// For a member, the PID of the process that forked it: the only one allowed to retire it.
pub static PARENT: AtomicI32 = AtomicI32::new(0);

/// Generation number.
pub static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Threads inside a real `accept` on a bound socket. A thread blocked there can still be handed
/// a client after its descriptor became a ghost, so draining waits for it.
pub static ACCEPTING: AtomicIsize = AtomicIsize::new(0);

/// The generation has not yet reported that it serves its sockets.
pub static READY_PENDING: AtomicBool = AtomicBool::new(false);

/// This process stopped accepting and is finishing its connections.
pub static RETIRING: AtomicBool = AtomicBool::new(false);

/// Bumped as this process starts ghosting its sockets (odd: swapping) and again when every
/// swap is done (even); `poll`/`select` remember the value they started with, so an `accept`
/// after a wait that began before a swap can tell stale readiness from a real wait on a ghost.
/// 0 means "never waited", so it starts at 2.
pub static RETIRE_EPOCH: AtomicU32 = AtomicU32::new(2);

/// A restart signal arrived before the restart thread existed.
pub static RESTART_PENDING: AtomicBool = AtomicBool::new(false);

/// Copies of descriptors 0, 1, 2 as at the first start (-1: none). Atomics, because the copies
/// move when the program closes their numbers (see [`crate::internal`]).
pub static STDIO: [AtomicI32; 3] = [const { AtomicI32::new(-1) }; 3];

/// The saved copies of descriptors 0, 1, 2, if there are any.
pub fn stdio() -> Option<[RawFd; 3]> {
    let fds = STDIO.each_ref().map(|fd| fd.load(Ordering::Acquire));
    fds.iter().all(|&fd| fd >= 0).then_some(fds)
}

/// Settings fixed at activation.
pub struct Config {
    /// The launcher's options.
    pub options: Options,
    /// Instance name.
    pub instance: String,
    /// When the instance first started (seconds since the epoch).
    pub since: u64,
    /// When this generation started.
    pub generation_since: u64,
    /// Signal mask and ignored signals of the first start.
    pub first_sigmask: u64,
    /// Signals ignored at the first start.
    pub first_ignored: u64,
    /// The environment this process started with, for the next generation.
    pub environment: Vec<CString>,
    /// When the restart that started this generation began (ms since the epoch), if one did.
    pub restart_began_ms: Option<u64>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration, once the process is active.
pub fn config() -> Option<&'static Config> {
    CONFIG.get()
}

/// Records the configuration and makes the process active.
pub fn activate(config: Config, generation: u64) {
    GENERATION.store(generation, Ordering::Relaxed);
    PID.store(crate::sys::getpid(), Ordering::Relaxed);
    MASTER_PID.store(crate::sys::getpid(), Ordering::Relaxed);
    MASTER.store(true, Ordering::Relaxed);
    if CONFIG.set(config).is_ok() {
        ACTIVE.store(true, Ordering::Release);
    }
}

/// Whether hooks should do more than forward.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether `--debug` is on.
pub fn debug() -> bool {
    config().is_some_and(|c| c.options.debug)
}

/// The restart signal.
pub fn restart_signal() -> i32 {
    config().map_or(libc::SIGHUP, |c| c.options.signal)
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether this process is the master.
#[inline]
pub fn is_master() -> bool {
    MASTER.load(Ordering::Relaxed)
}
