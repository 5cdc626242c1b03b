//! Figure 8: the library's work at start-up and at a restart must not grow with
//! `RLIMIT_NOFILE`. The same runs with the descriptor limit (soft and hard) at 1024 and at the
//! highest the machine allows: `huptime -- /bin/true` from spawn to exit, and a fork-mode
//! restart of `acceptbench` from the signal until the new generation serves.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{Context, Failure, Report};
use crate::generations::{self, Instance};
use crate::report::{Row, Target, Unit};
use crate::servers::free_port;
use crate::setup::Variant;
use crate::stats::interleave_samples;

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
    let start_up = |limit: u64| -> Result<f64, String> {
        let command = setup.command(Variant::Huptime(&[]), Path::new(TRUE), &[] as &[&str]);
        let mut command = with_limit(command, limit);
        let start = Instant::now();
        for _ in 0..runs {
            let status = command
                .status()
                .map_err(|e| format!("cannot run huptime: {e}"))?;
            if !status.success() {
                return Err(format!("huptime -- {TRUE} failed: {status}"));
            }
        }
        Ok(start.elapsed().as_secs_f64() * 1e3 / runs as f64)
    };
    let start_ups =
        interleave_samples(rounds, &mut [&mut || start_up(LOW), &mut || start_up(high)])?;
    let instance = |limit: u64| -> Result<Instance, String> {
        let port = free_port()?;
        let command = setup.command(
            Variant::Huptime(&[]),
            &setup.acceptbench,
            &generations::args(port),
        );
        let log = setup.scratch.dir("scale")?.join(format!("{port}.log"));
        Instance::start(with_limit(command, limit), port, log)
    };
    let (mut low, mut highest) = (instance(LOW)?, instance(high)?);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let restarts = interleave_samples(
        rounds,
        &mut [&mut || low.restart().map(|r| ms(r.serving)), &mut || {
            highest.restart().map(|r| ms(r.serving))
        }],
    )?;
    let notes = generations::lingering_note(&[&low, &highest], rounds * 2)
        .into_iter()
        .collect();
    let limits = format!("limit {} vs {LOW}", crate::report::thousands(high as f64));
    Ok(Report {
        reference: "limit 1024",
        measured: "highest limit",
        rows: vec![
            Row::ratio(
                format!("start-up: `huptime -- /bin/true`, {limits}"),
                Unit::Millis,
                &start_ups[0],
                &start_ups[1],
                Target::RatioAtMost(1.10),
            ),
            Row::ratio(
                format!(
                    "fork-mode restart of `acceptbench`, signal → new generation serving, {limits}"
                ),
                Unit::Millis,
                &restarts[0],
                &restarts[1],
                Target::RatioAtMost(1.10),
            ),
        ],
        notes,
    })
}
