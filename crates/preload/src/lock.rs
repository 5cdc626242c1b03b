//! A small lock for the library's cold-path state, that `fork` can hold across the fork.
//!
//! std's `Mutex` cannot be released from a `pthread_atfork` child handler, so a fork that
//! happened while another thread held it would leave the child's copy locked for ever. This
//! lock is taken in the atfork "prepare" handler and released in "parent" and "child". Critical
//! sections are a few instructions to a few syscalls long and contention is rare, so waiting
//! threads yield instead of parking. Never taken on the hot path or in a signal handler.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A yielding spin lock.
pub struct ForkSafeLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for ForkSafeLock<T> {}

impl<T> ForkSafeLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, yielding while another thread holds it.
    pub fn lock(&self) -> Guard<'_, T> {
        self.acquire();
        Guard(self)
    }

    /// Takes the lock without a guard (the atfork "prepare" handler).
    pub fn acquire(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    /// Releases a lock taken with [`ForkSafeLock::acquire`] (atfork "parent" and "child").
    pub fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Access to the locked value; releases on drop.
pub struct Guard<'a, T>(&'a ForkSafeLock<T>);

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` makes access exclusive.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.0.release();
    }
}
