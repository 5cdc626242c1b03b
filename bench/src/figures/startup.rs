//! Figure 5: what a process pays at start-up for the library. `python3 -c pass` bare, with
//! `libhuptime.so` preloaded (passive: no instance, every hook forwards), with the library
//! active (the environment `huptime` hands a program, so the engine is loaded and set up in a
//! process that never binds; a shell `exec`s python with it, and the same shell hop without
//! it is the reference), and under `huptime --` (end to end: the launcher's own start too).
//! `/bin/true` with `libhuptime.so` preloaded, against the same with an empty library
//! preloaded: loading any library costs a process that small a few per cent, the floor. The
//! original C huptime, when given, beside the passive, end-to-end and `/bin/true` rows: its
//! library preloaded with the environment its launcher sets, and its launcher.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{Context, Failure, Report, beside, original_samples};
use crate::report::{Row, Target, Unit};
use crate::setup::{self, Variant};
use crate::stats::interleave_samples_beside;

const TRUE: &str = "/bin/true";
const SHELL: &str = "/bin/sh";

/// The handover environment this build's launcher gives a program: `(options, state)`, the
/// state with its `pid=` field left for the shell to fill in with its own (`$$`), which is
/// python's once the shell `exec`s it.
fn handover_environment(huptime: &Path) -> Result<(String, String), String> {
    let output = Command::new(huptime)
        .args(["--", "/usr/bin/env"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", huptime.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| format!("huptime -- env did not show {name}"))
    };
    let state = value("HUPTIME_STATE")?;
    let pid_field = state
        .split(';')
        .find(|field| field.starts_with("pid="))
        .ok_or("the handover state has no pid field")?;
    Ok((
        value("HUPTIME_OPTIONS")?,
        state.replacen(pid_field, "pid=$$", 1),
    ))
}

/// `sh -c 'exec python -c pass'`; with `active`, python gets the handover environment and
/// `libhuptime.so` (the shell preloads it too, passively).
fn shell_hop(python: &Path, active: Option<(&(String, String), &Path)>) -> Command {
    let mut command = Command::new(SHELL);
    match active {
        Some(((options, state), library)) => {
            command
                .arg("-c")
                .arg(format!("HUPTIME_STATE=\"{state}\" exec \"$0\" -c pass"))
                .env("HUPTIME_OPTIONS", options)
                .env("LD_PRELOAD", library);
        }
        None => {
            command.args(["-c", "exec \"$0\" -c pass"]);
        }
    }
    command.arg(python);
    command
}

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

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let setup = ctx.setup;
    let rounds = ctx.mode.pick(3, 21);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let python = setup::python().and_then(|python| {
        let handover = handover_environment(&setup.huptime)?;
        Ok((python, handover))
    });
    match python {
        Ok((python, handover)) => {
            let runs = ctx.mode.pick(3, 10);
            let args = ["-c", "pass"];
            let time = |variant| time_runs(setup.command(variant, &python, &args), runs);
            let mut preloaded = setup.original().map(|variant| move || time(variant));
            let launcher = setup.original.as_ref().map(|original| &original.launcher);
            let mut launched = launcher
                .and_then(|launcher| launcher.as_ref().ok())
                .map(|launcher| move || time(Variant::OriginalLauncher(launcher)));
            if let Some(Err(reason)) = launcher {
                notes.push(format!("no end-to-end run of the original: {reason}"));
            }
            let mut original = beside(&mut preloaded);
            original.extend(beside(&mut launched));
            let (samples, original_results) = interleave_samples_beside(
                rounds,
                &mut [
                    &mut || time(Variant::Bare),
                    &mut || time(Variant::Preload(&setup.library)),
                    &mut || time(Variant::Huptime(&[])),
                    &mut || time_runs(shell_hop(&python, None), runs),
                    &mut || time_runs(shell_hop(&python, Some((&handover, &setup.library))), runs),
                ],
                &mut original,
            )?;
            let original = original_samples(original_results, "python3 -c pass", &mut notes);
            rows.push(
                Row::ratio(
                    "`python3 -c pass`, `LD_PRELOAD=libhuptime.so` (passive)",
                    Unit::Millis,
                    &samples[0],
                    &samples[1],
                    Target::RatioAtMost(1.05),
                )
                .beside(&samples[0], original.first()),
            );
            rows.push(Row::ratio(
                "`python3 -c pass`, the library active (the environment huptime hands it, set by `sh -c 'exec'`; reference: the same `sh` hop without it)",
                Unit::Millis,
                &samples[3],
                &samples[4],
                Target::RatioAtMost(1.05),
            ));
            rows.push(
                Row::ratio(
                    "`python3 -c pass`, `huptime -- python3 -c pass` (end to end: the launcher's start too)",
                    Unit::Millis,
                    &samples[0],
                    &samples[2],
                    Target::RatioAtMost(1.05),
                )
                .beside(&samples[0], original.get(1)),
            );
        }
        Err(reason) => notes.push(format!("skipped python3: {reason}")),
    }
    let empty = setup
        .scratch
        .dir("startup")
        .and_then(|dir| setup::c_library(&dir, "empty", "void huptime_bench_empty(void) {}\n"));
    match empty {
        Ok(empty) if Path::new(TRUE).is_file() => {
            let runs = ctx.mode.pick(20, 100);
            let time = |variant| {
                time_runs(
                    setup.command(variant, Path::new(TRUE), &[] as &[&str]),
                    runs,
                )
            };
            let mut preloaded = setup.original().map(|variant| move || time(variant));
            let (samples, original_results) = interleave_samples_beside(
                rounds,
                &mut [
                    &mut || time(Variant::Bare),
                    &mut || time(Variant::Preload(&empty)),
                    &mut || time(Variant::Preload(&setup.library)),
                ],
                &mut beside(&mut preloaded),
            )?;
            let original = original_samples(original_results, "/bin/true", &mut notes);
            rows.push(
                Row::ratio(
                    "`/bin/true`, `LD_PRELOAD=libhuptime.so` (reference: an empty library preloaded)",
                    Unit::Millis,
                    &samples[1],
                    &samples[2],
                    Target::RatioAtMost(1.02),
                )
                .beside(&samples[1], original.first()),
            );
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
    if setup.original.is_some() {
        notes.push(
            "the original has no passive state: preloaded, it sets itself up in every process \
             (it calls `dup` on every descriptor number up to the hard RLIMIT_NOFILE, to keep a \
             copy of those open). Its columns: its library preloaded with the environment its \
             launcher sets, and in the end-to-end row its launcher (a Python 2 script)"
                .into(),
        );
    }
    Ok(Report {
        reference: "reference (bare unless said)",
        measured: "huptime",
        rows,
        notes,
    })
}
