//! Our signal handlers. They only read atomics, write a byte to a socket, or (in a worker that has
//! no thread of ours) run the async-signal-safe retire path.
//!
//! The restart signal: the master wakes its restart thread; a worker ignores it (only the
//! master restarts). [`RETIRE_SIGNAL`] from the parent
//! retires a worker. Queued payloads (`sigqueue`) tell our own messages from a user's signal.
//!
//! The program keeps its own view of these two signals: what it installs with `sigaction` or
//! `signal` is remembered and reported back by later queries, but our handlers stay in force
//! (the JVM and nginx install a SIGHUP handler, redis ignores SIGHUP). The restart signal is
//! huptime's; for [`RETIRE_SIGNAL`] the program's own handler still runs for every signal that
//! is not one of our messages.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::process::{self, PARENT, PID};
use crate::restart::{self, Wake};
use crate::retire::{self, DRAIN_DEADLINE, RETIRE, RETIRE_SIGNAL, WAKE};
use crate::{announce, errno, real};

/// A disposition as the program believes it is. Atomics: the handler reads it.
struct ProgramView {
    handler: AtomicUsize,
    flags: AtomicI32,
    mask: AtomicU64,
}

impl ProgramView {
    const fn default_action() -> Self {
        Self {
            handler: AtomicUsize::new(libc::SIG_DFL),
            flags: AtomicI32::new(0),
            mask: AtomicU64::new(0),
        }
    }

    fn store(&self, action: &libc::sigaction) {
        let mut mask = 0u64;
        for sig in 1..=64 {
            // SAFETY: sigismember on a valid set.
            if unsafe { libc::sigismember(&action.sa_mask, sig) } == 1 {
                mask |= 1 << (sig - 1);
            }
        }
        self.mask.store(mask, Ordering::Relaxed);
        self.flags.store(action.sa_flags, Ordering::Relaxed);
        self.handler.store(action.sa_sigaction, Ordering::Release);
    }

    fn load(&self, action: &mut libc::sigaction) {
        // SAFETY: sigaction is plain data; the set functions get a valid set.
        unsafe {
            *action = std::mem::zeroed();
            libc::sigemptyset(&mut action.sa_mask);
            let mask = self.mask.load(Ordering::Relaxed);
            for sig in 1..=64 {
                if mask & (1 << (sig - 1)) != 0 {
                    libc::sigaddset(&mut action.sa_mask, sig);
                }
            }
        }
        action.sa_flags = self.flags.load(Ordering::Relaxed);
        action.sa_sigaction = self.handler.load(Ordering::Acquire);
    }
}

static RESTART_VIEW: ProgramView = ProgramView::default_action();
static RETIRE_VIEW: ProgramView = ProgramView::default_action();
static STOP_VIEW: ProgramView = ProgramView::default_action();
/// SIGTERM passes through our handler (to send `STOPPING=1`, remove the pid file) only under a
/// service manager or with a pid file.
static STOP_WATCHED: AtomicBool = AtomicBool::new(false);

/// The program's view of `sig`, when it is one of ours.
fn view_of(sig: c_int) -> Option<&'static ProgramView> {
    if sig == process::restart_signal() {
        Some(&RESTART_VIEW)
    } else if sig == RETIRE_SIGNAL {
        Some(&RETIRE_VIEW)
    } else if sig == libc::SIGTERM && STOP_WATCHED.load(Ordering::Acquire) {
        Some(&STOP_VIEW)
    } else {
        None
    }
}

/// `sigaction(sig, act, old)`: ours are answered from, and recorded in, the program's view.
pub fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let Some(view) = view_of(sig) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real::sigaction(sig, act, old) };
    };
    // SAFETY: the caller passes valid or null pointers.
    let (act, old) = unsafe { (act.as_ref(), old.as_mut()) };
    if let Some(old) = old {
        view.load(old);
    }
    if let Some(act) = act {
        view.store(act);
    }
    0
}

/// `signal(sig, handler)`: glibc's BSD semantics (`SA_RESTART`), same view.
pub fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let Some(view) = view_of(sig) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real::signal(sig, handler) };
    };
    let previous = view.handler.load(Ordering::Acquire);
    view.flags.store(libc::SA_RESTART, Ordering::Relaxed);
    view.mask.store(0, Ordering::Relaxed);
    view.handler.store(handler, Ordering::Release);
    previous
}

/// Installs both handlers. `restart_ignored`: the first start ignored the restart signal
/// (`nohup`), which is then what the program sees.
/// `first_ignored`: the signals ignored at the first start (`nohup` ignores SIGHUP), which is
/// then what the program sees for the ones we take.
pub fn install(restart_signal: c_int, first_ignored: u64) -> Result<(), std::io::Error> {
    let ignored = |sig: c_int| (1..=64).contains(&sig) && first_ignored & (1 << (sig - 1)) != 0;
    if ignored(restart_signal) {
        RESTART_VIEW.handler.store(libc::SIG_IGN, Ordering::Release);
    }
    install_one(restart_signal, on_restart_signal)?;
    install_one(RETIRE_SIGNAL, on_retire_signal)?;
    if announce::watches_stop() && restart_signal != libc::SIGTERM {
        if ignored(libc::SIGTERM) {
            STOP_VIEW.handler.store(libc::SIG_IGN, Ordering::Release);
        }
        STOP_WATCHED.store(true, Ordering::Release);
        install_one(libc::SIGTERM, on_stop_signal)?;
    }
    Ok(())
}

type Handler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn install_one(sig: c_int, handler: Handler) -> Result<(), std::io::Error> {
    // SAFETY: a zeroed sigaction with an empty mask and our handler is valid.
    let result = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        real::sigaction(sig, &action, std::ptr::null_mut())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The payload of a signal sent with `sigqueue`, and its sender; or of one of our timers
/// (sender 0).
fn payload(info: &libc::siginfo_t) -> Option<(usize, i32)> {
    if info.si_code == libc::SI_TIMER {
        // SAFETY: for SI_TIMER the kernel filled the value field.
        return Some((unsafe { info.si_value().sival_ptr as usize }, 0));
    }
    if info.si_code != libc::SI_QUEUE {
        return None;
    }
    // SAFETY: for SI_QUEUE the kernel filled the pid and value fields.
    unsafe { Some((info.si_value().sival_ptr as usize, info.si_pid())) }
}

/// Runs the program's own handler for a signal that was not one of our messages.
fn chain(view: &ProgramView, sig: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let handler = view.handler.load(Ordering::Acquire);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    let flags = view.flags.load(Ordering::Relaxed);
    if flags & libc::SA_RESETHAND != 0 {
        view.handler.store(libc::SIG_DFL, Ordering::Release);
    }
    // SAFETY: the program installed this address as a handler of the signature its flags say.
    unsafe {
        if flags & libc::SA_SIGINFO != 0 {
            let f: Handler = std::mem::transmute(handler);
            f(sig, info, context);
        } else {
            let f: extern "C" fn(c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

extern "C" fn on_restart_signal(
    _sig: c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let _errno = errno::Preserve::now();
    if process::is_master() {
        restart::wake(Wake::Restart);
    }
}

/// SIGTERM under a service manager or with a pid file: `STOPPING=1` and the pid file removed by
/// the master, then what the program asked for (the default action kills the process, as it
/// would have).
extern "C" fn on_stop_signal(sig: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let _errno = errno::Preserve::now();
    if process::is_master() && !crate::process::RETIRING.load(Ordering::SeqCst) {
        announce::stopping_from_signal();
    }
    if STOP_VIEW.handler.load(Ordering::Acquire) == libc::SIG_DFL {
        // SAFETY: back to the default action, then the signal again: it is blocked while this
        // handler runs, so it is delivered (and kills) right after we return.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            real::sigaction(sig, &default, std::ptr::null_mut());
            libc::raise(sig);
        }
    } else {
        chain(&STOP_VIEW, sig, info, context);
    }
}

extern "C" fn on_retire_signal(sig: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let _errno = errno::Preserve::now();
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    let message = payload(unsafe { &*info });
    match message {
        // Only interrupts what the thread was doing (see retire::WAKE).
        Some((WAKE, from)) if from == PID.load(Ordering::Relaxed) => {}
        Some((RETIRE, from)) if from == PARENT.load(Ordering::Relaxed) => {
            if !process::is_master() {
                retire::retire_worker();
            }
        }
        Some((DRAIN_DEADLINE, 0)) => retire::drain_deadline_passed(),
        _ => chain(&RETIRE_VIEW, sig, info, context),
    }
}
