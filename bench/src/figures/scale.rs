//! Figure 8: the library's work at start-up and at a restart must not grow with
//! `RLIMIT_NOFILE`. The same runs with the descriptor limit (soft and hard) at 1024 and at the
//! highest the machine allows: `huptime -- /bin/true` from spawn to exit, and a fork-mode
//! restart of `acceptbench` from the signal until the new generation serves. The original C
//! huptime, when given, the same way in the same rounds (its acceptbench stopped outside its
//! own: under it acceptbench spins).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{Context, Failure, Report, beside, original_failed, original_samples};
use crate::generations::{self, Instance};
use crate::report::{Row, Target, Unit};
use crate::servers::free_port;
use crate::setup::Variant;
use crate::stats::{Samples, interleave_samples_beside};

const LOW: u64 = 1024;
const TRUE: &str = "/bin/true";

/// Makes `command` run with the descriptor limit (soft and hard) at `limit`.
fn with_limit(mut command: Command, limit: u64) -> Command {
    // SAFETY: setrlimit is async-signal-safe, as required between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

/// The highest descriptor limit a child may have: the kernel's ceiling (`fs.nr_open`) when we
/// may raise the hard limit to it, else our own hard limit.
fn highest_limit() -> u64 {
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) };
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(own.rlim_max);
    let allowed = with_limit(Command::new(TRUE), ceiling)
        .status()
        .is_ok_and(|status| status.success());
    if allowed { ceiling } else { own.rlim_max }
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let setup = ctx.setup;
    if !Path::new(TRUE).is_file() {
        return Err(Failure::Skipped(format!("{TRUE} not found")));
    }
    let high = highest_limit();
    if high <= LOW {
        return Err(Failure::Skipped(format!(
            "the highest descriptor limit allowed here is {high}, not above {LOW}"
        )));
    }
    let rounds = ctx.mode.pick(3, 21);
    let runs = ctx.mode.pick(10, 50);
    let start_up = |variant: Variant<'_>, limit: u64| -> Result<f64, String> {
        let command = setup.command(variant, Path::new(TRUE), &[] as &[&str]);
        let mut command = with_limit(command, limit);
        let start = Instant::now();
        for _ in 0..runs {
            let status = command
                .status()
                .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
            if !status.success() {
                return Err(format!("{TRUE} failed: {status}"));
            }
        }
        Ok(start.elapsed().as_secs_f64() * 1e3 / runs as f64)
    };
    let huptime = Variant::Huptime(&[]);
    let mut notes = Vec::new();
    let mut start_low = setup
        .original()
        .map(|variant| move || start_up(variant, LOW));
    let mut start_high = setup
        .original()
        .map(|variant| move || start_up(variant, high));
    let mut original_start_up = beside(&mut start_low);
    original_start_up.extend(beside(&mut start_high));
    let (start_ups, original_results) = interleave_samples_beside(
        rounds,
        &mut [&mut || start_up(huptime, LOW), &mut || {
            start_up(huptime, high)
        }],
        &mut original_start_up,
    )?;
    let original_start_ups = original_samples(original_results, "start-up", &mut notes);
    let instance = |variant: Variant<'_>, limit: u64| -> Result<Instance, String> {
        let port = free_port()?;
        let command = setup.command(variant, &setup.acceptbench, &generations::args(port));
        let log = setup.scratch.dir("scale")?.join(format!("{port}.log"));
        Instance::start(with_limit(command, limit), port, log)
    };
    let (mut low, mut highest) = (instance(huptime, LOW)?, instance(huptime, high)?);
    // The original's instances, stopped outside their own rounds.
    let originals = setup.original().and_then(|variant| {
        let instances = instance(variant, LOW).and_then(|low| Ok((low, instance(variant, high)?)));
        instances
            .inspect(|(low, high)| [low, high].iter().for_each(|i| i.pause()))
            .map_err(|error| notes.push(original_failed("restart", &error)))
            .ok()
    });
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (mut original_low, mut original_high) = originals.unzip();
    let mut restart_low = original_low
        .as_mut()
        .map(|instance| || instance.restart_paused().map(|r| ms(r.serving)));
    let mut restart_high = original_high
        .as_mut()
        .map(|instance| || instance.restart_paused().map(|r| ms(r.serving)));
    let mut original_restart = beside(&mut restart_low);
    original_restart.extend(beside(&mut restart_high));
    let (restarts, original_results) = interleave_samples_beside(
        rounds,
        &mut [&mut || low.restart().map(|r| ms(r.serving)), &mut || {
            highest.restart().map(|r| ms(r.serving))
        }],
        &mut original_restart,
    )?;
    let original_restarts = original_samples(original_results, "restart", &mut notes);
    notes.extend(generations::lingering_note(&[&low, &highest], rounds * 2));
    if setup.original.is_some() {
        notes.push(
            "the original's columns: its run at the highest limit, and its measure against its \
             own run at 1024; its start-up is `/bin/true` with its library preloaded (the \
             environment its launcher sets)"
                .into(),
        );
    }
    let limits = format!("limit {} vs {LOW}", crate::report::thousands(high as f64));
    // The original's measure is against its own run at the low limit.
    let with_original = |row: Row, original: &[Samples]| match original {
        [low, high] => row.beside(low, Some(high)),
        _ => row,
    };
    Ok(Report {
        reference: "limit 1024",
        measured: "highest limit",
        rows: vec![
            with_original(
                Row::ratio(
                    format!("start-up: `huptime -- /bin/true`, {limits}"),
                    Unit::Millis,
                    &start_ups[0],
                    &start_ups[1],
                    Target::RatioAtMost(1.10),
                ),
                &original_start_ups,
            ),
            with_original(
                Row::ratio(
                    format!(
                        "fork-mode restart of `acceptbench`, signal → new generation serving, {limits}"
                    ),
                    Unit::Millis,
                    &restarts[0],
                    &restarts[1],
                    Target::RatioAtMost(1.10),
                ),
                &original_restarts,
            ),
        ],
        notes,
    })
}
