//! `errno` access, and the guard that gives the program back exactly the `errno` the real call
//! left, whatever our own bookkeeping did afterwards.

use std::ffi::c_int;

/// The calling thread's `errno`.
pub fn get() -> c_int {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub fn set(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

/// Restores `errno` to its value at creation when dropped.
pub struct Preserve(c_int);

impl Preserve {
    /// Remembers the current `errno`.
    pub fn now() -> Self {
        Self(get())
    }
}

impl Drop for Preserve {
    fn drop(&mut self) {
        set(self.0);
    }
}
