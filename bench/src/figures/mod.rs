//! The figures, one module each (figures 1 and 2 share the servers they load): each runs its
//! variants interleaved and returns the rows of its table.

mod contention;
mod descriptors;
mod handover;
mod memory;
mod scale;
mod startup;
mod traffic;

use std::time::Duration;

use crate::report::Row;
use crate::setup::Setup;
use crate::stats::Samples;

/// How long the figures run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A few seconds per figure: keeps the bench from rotting; its figures mean little.
    Short,
    /// The figures the README reports.
    Full,
}

impl Mode {
    pub fn pick<T>(self, short: T, full: T) -> T {
        match self {
            Mode::Short => short,
            Mode::Full => full,
        }
    }

    /// Milliseconds in short mode, or in full mode.
    pub fn millis(self, short: u64, full: u64) -> Duration {
        Duration::from_millis(self.pick(short, full))
    }
}

pub struct Context<'a> {
    pub setup: &'a Setup,
    pub mode: Mode,
}

/// A figure's table.
pub struct Report {
    /// What the reference column holds (`bare`, or what the rows say).
    pub reference: &'static str,
    /// What the measured column holds (`huptime`, unless the figure compares huptime with
    /// itself).
    pub measured: &'static str,
    pub rows: Vec<Row>,
    /// Lines printed under the table: parts skipped, errors seen.
    pub notes: Vec<String>,
}

/// Why a figure has no table.
pub enum Failure {
    /// Something it needs is missing here.
    Skipped(String),
    /// It could not be measured: a bug in the bench or in huptime.
    Failed(String),
}

/// The variant run beside the others (the original C huptime), if any, as
/// [`crate::stats::interleave_beside`] takes it.
pub fn beside<T>(
    run: &mut Option<impl FnMut() -> Result<T, String>>,
) -> Vec<&mut dyn FnMut() -> Result<T, String>> {
    run.iter_mut()
        .map(|run| run as &mut dyn FnMut() -> Result<T, String>)
        .collect()
}

/// The original C huptime's results from an interleaved run: its samples, or none and a note
/// saying why (it failed in `what`).
pub fn original_samples(
    results: Result<Vec<Samples>, String>,
    what: &str,
    notes: &mut Vec<String>,
) -> Vec<Samples> {
    results.unwrap_or_else(|error| {
        notes.push(original_failed(what, &error));
        Vec::new()
    })
}

/// A note that the original C huptime could not be measured in `what`.
pub fn original_failed(what: &str, error: &str) -> String {
    format!("**the original C huptime could not be measured ({what})**: {error}")
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

pub struct Figure {
    pub number: u8,
    /// The name it is selected by on the command line.
    pub name: &'static str,
    pub title: &'static str,
    pub run: fn(&Context<'_>) -> Result<Report, Failure>,
}

pub const FIGURES: [Figure; 8] = [
    Figure {
        number: 1,
        name: "short",
        title: "Short connections (connect, one request, close): requests per second",
        run: traffic::short_connections,
    },
    Figure {
        number: 2,
        name: "keepalive",
        title: "Keep-alive connections: requests per second",
        run: traffic::keep_alive,
    },
    Figure {
        number: 3,
        name: "descriptors",
        title: "Descriptor calls: time per call with 10, 1 000 and 15 000 descriptors open",
        run: descriptors::run,
    },
    Figure {
        number: 4,
        name: "contention",
        title: "Contention: threads blocking in accept() on one socket, connections per second",
        run: contention::run,
    },
    Figure {
        number: 5,
        name: "startup",
        title: "Start-up: time from spawn to exit",
        run: startup::run,
    },
    Figure {
        number: 6,
        name: "handover",
        title: "Handover: restart signal to the new generation serving, latency around restarts",
        run: handover::run,
    },
    Figure {
        number: 7,
        name: "memory",
        title: "Memory: resident memory per process, size of the library",
        run: memory::run,
    },
    Figure {
        number: 8,
        name: "scale",
        title: "Scale of restart work: hard RLIMIT_NOFILE at the machine's maximum vs 1024",
        run: scale::run,
    },
];
