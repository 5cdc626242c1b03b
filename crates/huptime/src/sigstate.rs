//! The signal state the program must start with: the one the launcher was given, before the
//! Rust runtime ignored SIGPIPE and before a `--multi` launcher blocked the signals it waits for.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Highest signal number the handover bitmasks hold.
const LAST_SIGNAL: i32 = 64;

static SIGPIPE_IGNORED: AtomicBool = AtomicBool::new(false);

/// Runs before `main`, hence before the Rust runtime sets SIGPIPE to ignored, to learn whether
/// the caller had it ignored (`nohup`, some supervisors) so the program gets the same.
extern "C" fn note_sigpipe() {
    SIGPIPE_IGNORED.store(disposition_is_ignore(libc::SIGPIPE), Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_SIGPIPE: extern "C" fn() = note_sigpipe;

fn disposition_is_ignore(signal: i32) -> bool {
    let mut action = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `action` is writable for the old one.
    let queried = unsafe { libc::sigaction(signal, ptr::null(), action.as_mut_ptr()) } == 0;
    // SAFETY: written by the successful call above.
    queried && unsafe { action.assume_init() }.sa_sigaction == libc::SIG_IGN
}

fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// Blocked and ignored signals as bitmasks (bit `n - 1` for signal `n`), the handover's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inherited {
    pub blocked: u64,
    pub ignored: u64,
}

impl Inherited {
    /// The calling thread's current state, with SIGPIPE as the launcher's caller left it.
    pub fn capture() -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: a null new set only queries the mask into `set`.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), set.as_mut_ptr()) };
        // SAFETY: zero-initialized and possibly filled in by the kernel: a valid sigset_t.
        let set = unsafe { set.assume_init() };
        let mut state = Self {
            blocked: 0,
            ignored: 0,
        };
        for signal in 1..=LAST_SIGNAL {
            // SAFETY: `set` is a valid sigset_t.
            if unsafe { libc::sigismember(&set, signal) } == 1 {
                state.blocked |= bit(signal);
            }
            let ignored = if signal == libc::SIGPIPE {
                SIGPIPE_IGNORED.load(Ordering::Relaxed)
            } else {
                disposition_is_ignore(signal)
            };
            if ignored {
                state.ignored |= bit(signal);
            }
        }
        state
    }

    /// Puts this state back just before `execve`: the mask, and the two dispositions the
    /// launcher changes (SIGPIPE by the Rust runtime, SIGCHLD by a `--multi` supervisor).
    pub fn restore(&self) {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: sigemptyset/sigaddset initialize and fill the set; sigprocmask reads it.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for signal in (1..=LAST_SIGNAL).filter(|s| self.blocked & bit(*s) != 0) {
                libc::sigaddset(set.as_mut_ptr(), signal);
            }
            libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut());
        }
        for signal in [libc::SIGPIPE, libc::SIGCHLD] {
            let handler = if self.ignored & bit(signal) != 0 {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            // SAFETY: installing SIG_IGN or SIG_DFL has no handler code to be unsafe about.
            unsafe { libc::signal(signal, handler) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_mask_and_ignored() {
        let state = Inherited::capture();
        // SAFETY: only ignoring SIGURG in this test thread's process; restored below.
        let old = unsafe { libc::signal(libc::SIGURG, libc::SIG_IGN) };
        let with_ignored = Inherited::capture();
        // SAFETY: restores the previous disposition.
        unsafe { libc::signal(libc::SIGURG, old) };
        assert_eq!(with_ignored.ignored & bit(libc::SIGURG), bit(libc::SIGURG));
        assert_eq!(
            state.ignored & !bit(libc::SIGURG),
            with_ignored.ignored & !bit(libc::SIGURG)
        );
        // The Rust runtime ignores SIGPIPE; what counts is what the test runner was given.
        assert_eq!(
            state.ignored & bit(libc::SIGPIPE) != 0,
            SIGPIPE_IGNORED.load(Ordering::Relaxed)
        );
    }
}
