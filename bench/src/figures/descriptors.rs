//! Figure 3: the descriptor calls the library hooks, in a loop (the `fdbench` program), with
//! 10, 1 000 and 15 000 descriptors open, some of them listening sockets and accepted
//! connections the library tracks. Run bare and under `huptime --`, where the library is
//! active. "Flat" compares huptime's overhead at 15 000 descriptors with that at 10, so that
//! the kernel's own cost of a bigger descriptor table does not count against it. A bare run
//! with one idle thread says how much of the overhead is the kernel's: a process with a
//! second thread (huptime's restart thread) pays more for some calls (`bind` takes a
//! reference on the file, which a single-threaded process skips). The original C huptime, when
//! given, runs fdbench in the same rounds.

use std::collections::HashMap;
use std::process::Stdio;

use super::{Context, Failure, Report, beside, original_failed};
use crate::report::{Row, Target, Unit};
use crate::setup::Variant;
use crate::stats::{Samples, interleave_beside, paired_median};

const COUNTS: [usize; 3] = [10, 1_000, 15_000];

/// fdbench's operation names, and what the rows call them.
const OPERATIONS: [(&str, &str); 6] = [
    ("close-dup", "`close(dup(fd))`, fd untracked"),
    (
        "close-dup-tracked",
        "`close(dup(fd))`, fd an accepted connection",
    ),
    ("dup2", "`dup2(fd, other)`, fd untracked"),
    (
        "dup2-tracked",
        "`dup2(fd, other)`, fd an accepted connection",
    ),
    ("bind-tcp", "`bind()` of a fresh socket to 127.0.0.1:0"),
    (
        "bind-unix",
        "`bind()` of a fresh socket to an abstract Unix address",
    ),
];

const TARGET: f64 = 1.10;

/// ns per call by (operation, open descriptors), from one run of fdbench.
type Run = HashMap<(String, usize), f64>;

fn parse(output: &str) -> Result<Run, String> {
    output
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [operation, fds, ns] => Ok((
                    (
                        operation.to_string(),
                        fds.parse().map_err(|_| line.to_string())?,
                    ),
                    ns.parse().map_err(|_| line.to_string())?,
                )),
                _ => Err(format!("fdbench printed {line:?}")),
            }
        })
        .collect()
}

fn thousands(count: usize) -> String {
    crate::report::thousands(count as f64)
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let counts = COUNTS.map(|n| n.to_string()).join(",");
    let iterations = ctx.mode.pick(20_000, 400_000).to_string();
    let args = ["--fds", &counts, "--iterations", &iterations];
    let fdbench = |variant: Variant<'_>, idle_threads: &str| -> Result<Run, String> {
        let output = ctx
            .setup
            .command(variant, &ctx.setup.fdbench, &args)
            .args(["--idle-threads", idle_threads])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run fdbench: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "fdbench failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        parse(&String::from_utf8_lossy(&output.stdout))
    };
    let mut original = ctx
        .setup
        .original()
        .map(|variant| move || fdbench(variant, "0"));
    // The third variant is the bare program with one idle thread: what huptime's restart
    // thread alone costs the kernel's side of a call.
    let (runs, original_runs) = interleave_beside(
        ctx.mode.pick(2, 7),
        &mut [
            &mut || fdbench(Variant::Bare, "0"),
            &mut || fdbench(Variant::Huptime(&[]), "0"),
            &mut || fdbench(Variant::Bare, "1"),
        ],
        &mut beside(&mut original),
    )?;
    let mut notes = Vec::new();
    let original_runs = original_runs
        .map_err(|error| notes.push(original_failed("fdbench", &error)))
        .ok()
        .and_then(|runs| runs.into_iter().next());
    let samples = |runs: &[Run], key: (&str, usize)| -> Result<Samples, String> {
        runs.iter()
            .map(|run| {
                run.get(&(key.0.to_string(), key.1))
                    .copied()
                    .ok_or_else(|| format!("fdbench did not measure {} with {} open", key.0, key.1))
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (operation, case) in OPERATIONS {
        let fewest = (operation, COUNTS[0]);
        let (bare, idle) = (samples(&runs[0], fewest)?, samples(&runs[2], fewest)?);
        let threaded = paired_median(&bare, &idle, |bare, idle| idle / bare);
        notes.push(format!(
            "{case}, {} open: bare with one idle thread {threaded:.3}× bare",
            thousands(COUNTS[0])
        ));
        let mut ratios = Vec::new();
        let mut original_ratios = Vec::new();
        for fds in COUNTS {
            let key = (operation, fds);
            let (bare, huptime) = (samples(&runs[0], key)?, samples(&runs[1], key)?);
            ratios.push(paired_median(&bare, &huptime, |bare, huptime| {
                huptime / bare
            }));
            let row = Row::ratio(
                format!("{case}, {} open", thousands(fds)),
                Unit::Nanos,
                &bare,
                &huptime,
                Target::RatioAtMost(TARGET),
            );
            rows.push(match &original_runs {
                Some(original_runs) => {
                    let original = samples(original_runs, key)?;
                    original_ratios.push(paired_median(&bare, &original, |bare, original| {
                        original / bare
                    }));
                    row.beside(&bare, Some(&original))
                }
                None => row,
            });
        }
        let (low, high) = (COUNTS[0], COUNTS[COUNTS.len() - 1]);
        let (low, high) = (thousands(low), thousands(high));
        let row = Row::change(
            format!("{case}: flat (overhead at {high} open vs {low})"),
            (&low, ratios[0]),
            (&high, ratios[ratios.len() - 1]),
            Target::RatioAtMost(TARGET),
        );
        rows.push(match &original_ratios[..] {
            [first, .., last] => row.beside_change((&low, *first), (&high, *last)),
            _ => row,
        });
    }
    if original_runs.is_some() {
        notes.push(
            "under the original, fdbench's accepted connections are not tracked: Rust accepts \
             through `accept4`, whose hook the original exports under the wrong symbol version \
             on x86_64 (GLIBC_2.2.5, where programs ask for GLIBC_2.10)"
                .into(),
        );
    }
    Ok(Report {
        reference: "bare",
        measured: "huptime",
        rows,
        notes,
    })
}
