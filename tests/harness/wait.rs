//! Bounded polling: every wait in a test has a deadline, so a broken promise fails the test
//! rather than hanging it.

use std::thread;
use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `check` until it holds, at most `timeout`; returns whether it did.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `check` until it returns `Some`, at most `timeout`.
///
/// # Panics
/// On timeout, with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    let done = wait_until(timeout, || {
        found = check();
        found.is_some()
    });
    assert!(done, "timed out after {timeout:?}: {what}");
    found.expect("checked above")
}
