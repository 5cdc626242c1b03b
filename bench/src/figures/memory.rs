//! Figure 7: resident memory (VmRSS) of a process bare and under huptime, once it has settled:
//! an idle `python3` (never binds: the library is set up but has nothing to do) and
//! `acceptbench` after serving a client (a bound socket: the library's restart thread runs);
//! and the size on disk of `libhuptime.so` and the engine it loads. The original C huptime,
//! when given, in the same rounds, and the size of its library.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use super::{Context, Failure, Report, beside, original_samples};
use crate::generations;
use crate::report::{Row, Target, Unit};
use crate::servers::{self, Server, free_port};
use crate::setup::{self, Variant};
use crate::stats::interleave_samples_beside;

/// VmRSS of `pid`, in KiB.
fn resident(pid: i32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the status of pid {pid}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for pid {pid}"))
}

/// VmRSS of an idle python3 run as `variant`, once it said it is up.
fn python_resident(
    ctx: &Context<'_>,
    python: &std::path::Path,
    variant: Variant<'_>,
) -> Result<f64, String> {
    let script = "import time; print('up', flush=True); time.sleep(3600)";
    let mut child = ctx
        .setup
        .command(variant, python, &["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start python3: {e}"))?;
    let pid = child.id() as i32;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("python3 has no stdout")?;
    let read = BufReader::new(stdout).read_line(&mut line);
    let result = match read {
        Ok(_) if line.trim() == "up" => resident(pid),
        _ => Err("python3 did not start".to_string()),
    };
    servers::stop(pid);
    result
}

/// VmRSS of acceptbench run as `variant`, after it served a client.
fn acceptbench_resident(ctx: &Context<'_>, variant: Variant<'_>) -> Result<f64, String> {
    let port = free_port()?;
    let command = ctx
        .setup
        .command(variant, &ctx.setup.acceptbench, &generations::args(port));
    let log = ctx.setup.scratch.dir("memory")?.join(format!("{port}.log"));
    let server = Server::start(command, port, log)?;
    crate::load::greet(port).map_err(|e| format!("acceptbench did not greet: {e}"))?;
    resident(server.pid)
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let rounds = ctx.mode.pick(2, 7);
    let added = Target::AddedAtMost(512.0);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    match setup::python() {
        Ok(python) => {
            let python = &python;
            let mut original = ctx
                .setup
                .original()
                .map(|variant| move || python_resident(ctx, python, variant));
            let (samples, original_results) = interleave_samples_beside(
                rounds,
                &mut [
                    &mut || python_resident(ctx, python, Variant::Bare),
                    &mut || python_resident(ctx, python, Variant::Huptime(&[])),
                ],
                &mut beside(&mut original),
            )?;
            let original = original_samples(original_results, "idle python3", &mut notes);
            rows.push(
                Row::added(
                    "idle `python3` (never binds)",
                    Unit::KiB,
                    &samples[0],
                    &samples[1],
                    added,
                )
                .beside(&samples[0], original.first()),
            );
        }
        Err(reason) => notes.push(format!("skipped python3: {reason}")),
    }
    let mut original = ctx
        .setup
        .original()
        .map(|variant| move || acceptbench_resident(ctx, variant));
    let (samples, original_results) = interleave_samples_beside(
        rounds,
        &mut [
            &mut || acceptbench_resident(ctx, Variant::Bare),
            &mut || acceptbench_resident(ctx, Variant::Huptime(&[])),
        ],
        &mut beside(&mut original),
    )?;
    let original = original_samples(original_results, "acceptbench", &mut notes);
    rows.push(
        Row::added(
            "`acceptbench` serving (a bound socket, the restart thread)",
            Unit::KiB,
            &samples[0],
            &samples[1],
            added,
        )
        .beside(&samples[0], original.first()),
    );
    let engine = ctx.setup.library.with_file_name("libhuptime_engine.so");
    let mut size = 0;
    for file in [&ctx.setup.library, &engine] {
        size += std::fs::metadata(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .len();
    }
    let row = Row::value(
        "size of `libhuptime.so` and `libhuptime_engine.so` (stripped)",
        Unit::KiB,
        size as f64 / 1024.0,
        Target::AtMost(1024.0),
    );
    rows.push(match &ctx.setup.original {
        Some(original) => {
            notes.push(
                "the original's library is measured as its Makefile builds it (not stripped)"
                    .into(),
            );
            let size = std::fs::metadata(&original.library)
                .map_err(|e| format!("{}: {e}", original.library.display()))?
                .len();
            row.beside_value(size as f64 / 1024.0)
        }
        None => row,
    });
    Ok(Report {
        reference: "bare",
        measured: "huptime",
        rows,
        notes,
    })
}
