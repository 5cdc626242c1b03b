//! Keeps our own calls out of our hooks.
//!
//! std's `File` drop, `fs::read` and the futex path of a contended lock call `close`/`syscall`,
//! which bind to the hooks this library exports. A hook that finds the flag set forwards to the
//! real function untouched. The flag is a const-initialised `Cell` without a destructor, so it is
//! safe to touch from signal handlers and from C thread-exit destructors.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Proof that the current thread is inside the library; cleared on drop.
pub struct Inside(());

/// Marks the thread as inside the library, or `None` if it already is (a nested call that
/// must go straight to libc).
pub fn enter() -> Option<Inside> {
    INSIDE.with(|inside| {
        if inside.get() {
            None
        } else {
            inside.set(true);
            Some(Inside(()))
        }
    })
}

/// Marks the calling thread as ours for good (the restart thread): every hook it reaches
/// forwards to libc.
pub fn enter_for_good() {
    INSIDE.with(|inside| inside.set(true));
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|inside| inside.set(false));
    }
}
