//! Diagnostics on stderr, one line each, prefixed with PID and generation.
//!
//! They go to the copy of stderr saved at the first start when there is one, so a daemon that
//! pointed its own descriptor 2 at `/dev/null` still lets `--debug` be read; never to stdout.
//! Not for signal handlers (formatting allocates).

use std::fmt;
use std::sync::atomic::Ordering;

use crate::process;

/// Writes one line: always for warnings, with `--debug` for decisions.
pub fn line(args: fmt::Arguments<'_>) {
    let _errno = crate::errno::Preserve::now();
    let text = format!(
        "huptime[{}] gen {}: {args}\n",
        process::PID.load(Ordering::Relaxed),
        process::GENERATION.load(Ordering::Relaxed)
    );
    let fd = process::stdio().map_or(libc::STDERR_FILENO, |[_, _, err]| err);
    crate::sys::write_all(fd, text.as_bytes());
}

/// Logs a decision when `--debug` is on.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::process::debug() {
            $crate::log::line(format_args!($($arg)*));
        }
    };
}

/// Logs a warning or error (always).
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}

pub(crate) use {debug, warning};
