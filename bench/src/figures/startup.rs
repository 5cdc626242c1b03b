//! Figure 5: what a process pays at start-up for the library. `python3 -c pass` bare, with
//! `libhuptime.so` preloaded (passive: no instance, every hook forwards) and under
//! `huptime --` (active: the launcher, then the library set up in a process that never binds).
//! `/bin/true` with `libhuptime.so` preloaded, against the same with an empty library
//! preloaded: loading any library costs a process that small a few per cent, the floor.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{Context, Failure, Report};
use crate::report::{Row, Target, Unit};
use crate::setup::{self, Variant};
use crate::stats::interleave_samples;

const TRUE: &str = "/bin/true";

/// Milliseconds per run, averaged over `runs` runs of `command`.
fn time_runs(mut command: Command, runs: usize) -> Result<f64, String> {
    let start = Instant::now();
    for _ in 0..runs {
        let status = command
            .status()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
        if !status.success() {
            return Err(format!("{command:?} failed: {status}"));
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / runs as f64)
}

/// An empty shared library, built with `cc` in `dir`.
fn empty_library(dir: &Path) -> Result<PathBuf, String> {
    let cc = setup::program("cc", "gcc")?;
    let source = dir.join("empty.c");
    let library = dir.join("libempty.so");
    std::fs::write(&source, "void huptime_bench_empty(void) {}\n")
        .map_err(|e| format!("{}: {e}", source.display()))?;
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if status.success() {
        Ok(library)
    } else {
        Err(format!("cc could not build an empty library ({status})"))
    }
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let setup = ctx.setup;
    let rounds = ctx.mode.pick(3, 21);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    match setup::python() {
        Ok(python) => {
            let runs = ctx.mode.pick(3, 10);
            let args = ["-c", "pass"];
            let time = |variant| time_runs(setup.command(variant, &python, &args), runs);
            let samples = interleave_samples(
                rounds,
                &mut [
                    &mut || time(Variant::Bare),
                    &mut || time(Variant::Preload(&setup.library)),
                    &mut || time(Variant::Huptime(&[])),
                ],
            )?;
            rows.push(Row::ratio(
                "`python3 -c pass`, `LD_PRELOAD=libhuptime.so` (passive)",
                Unit::Millis,
                &samples[0],
                &samples[1],
                Target::RatioAtMost(1.05),
            ));
            rows.push(Row::ratio(
                "`python3 -c pass`, `huptime -- python3 -c pass` (active)",
                Unit::Millis,
                &samples[0],
                &samples[2],
                Target::RatioAtMost(1.05),
            ));
        }
        Err(reason) => notes.push(format!("skipped python3: {reason}")),
    }
    let empty = setup
        .scratch
        .dir("startup")
        .and_then(|dir| empty_library(&dir));
    match empty {
        Ok(empty) if Path::new(TRUE).is_file() => {
            let runs = ctx.mode.pick(20, 100);
            let time = |variant| {
                time_runs(
                    setup.command(variant, Path::new(TRUE), &[] as &[&str]),
                    runs,
                )
            };
            let samples = interleave_samples(
                rounds,
                &mut [
                    &mut || time(Variant::Bare),
                    &mut || time(Variant::Preload(&empty)),
                    &mut || time(Variant::Preload(&setup.library)),
                ],
            )?;
            rows.push(Row::ratio(
                "`/bin/true`, `LD_PRELOAD=libhuptime.so` (reference: an empty library preloaded)",
                Unit::Millis,
                &samples[1],
                &samples[2],
                Target::RatioAtMost(1.02),
            ));
            notes.push(format!(
                "the floor: an empty preloaded library costs `/bin/true` {:.3}× bare ({} vs {})",
                samples[1].median() / samples[0].median(),
                Unit::Millis.format(samples[1].median()),
                Unit::Millis.format(samples[0].median()),
            ));
        }
        Ok(_) => notes.push(format!("skipped /bin/true: {TRUE} not found")),
        Err(reason) => notes.push(format!("skipped /bin/true: {reason}")),
    }
    if rows.is_empty() {
        return Err(Failure::Skipped(notes.join("; ")));
    }
    Ok(Report {
        reference: "reference (bare unless said)",
        measured: "huptime",
        rows,
        notes,
    })
}
