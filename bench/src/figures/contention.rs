//! Figure 4: 1, 16 and 64 threads all blocking in `accept()` on one listening socket (the
//! `acceptbench` program), each answering a client and closing, served by our load generator.
//! A process-wide lock on the accept path would show here. A second bare copy, measured like
//! huptime, shows the noise floor. The original C huptime, when given, runs in the same
//! rounds, stopped (SIGSTOP) outside its own: under it acceptbench's threads spin.

use super::{Context, Failure, Report, beside, original_failed, original_samples};
use crate::load::{Connections, Load, Protocol};
use crate::report::{self, Row, Target, Unit};
use crate::servers::{Server, free_port};
use crate::setup::Variant;
use crate::stats::interleave_samples_beside;

const THREADS: [usize; 3] = [1, 16, 64];

/// Client threads: enough to keep every accepting thread of the server fed on a small machine.
const CLIENTS: usize = 4;

fn start(ctx: &Context<'_>, variant: Variant<'_>, threads: usize) -> Result<Server, String> {
    let port = free_port()?;
    let args = [
        "--port".into(),
        port.to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    let command = ctx.setup.command(variant, &ctx.setup.acceptbench, &args);
    let log = ctx
        .setup
        .scratch
        .dir("contention")?
        .join(format!("{port}.log"));
    Server::start(command, port, log)
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let rounds = ctx.mode.pick(2, 20);
    let window = ctx.mode.millis(300, 500);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for threads in THREADS {
        let case = match threads {
            1 => "1 thread".to_string(),
            n => format!("{n} threads"),
        };
        let bare = start(ctx, Variant::Bare, threads)?;
        let huptime = start(ctx, Variant::Huptime(&[]), threads)?;
        let control = start(ctx, Variant::Bare, threads)?;
        let original = ctx.setup.original().and_then(|variant| {
            start(ctx, variant, threads)
                .map_err(|error| notes.push(original_failed(&case, &error)))
                .ok()
        });
        let measure = |server: &Server| -> Result<f64, String> {
            let load = Load {
                port: server.port,
                protocol: Protocol::Greeting,
                connections: Connections::Short,
                threads: CLIENTS,
                pace: None,
            };
            Ok(load.run_for(window).checked("acceptbench")?.rate())
        };
        // The original runs only in its own windows (its warm-up included).
        let measure_paused = |server: &Server| {
            server.resume();
            let rate = measure(server);
            server.pause();
            rate
        };
        let original = original.filter(|server| {
            measure_paused(server)
                .map_err(|error| notes.push(original_failed(&case, &error)))
                .is_ok()
        });
        for server in [&bare, &huptime, &control] {
            measure(server)?;
        }
        let mut measure_original = original
            .as_ref()
            .map(|server| move || measure_paused(server));
        let (samples, original_results) = interleave_samples_beside(
            rounds,
            &mut [
                &mut || measure(&bare),
                &mut || measure(&huptime),
                &mut || measure(&control),
            ],
            &mut beside(&mut measure_original),
        )?;
        notes.push(report::control_note(&case, &samples[0], &samples[2]));
        let row = Row::ratio(
            format!("{case} blocking in `accept()`"),
            Unit::PerSecond,
            &samples[0],
            &samples[1],
            Target::RatioAtLeast(0.95),
        );
        let original_rates = original_samples(original_results, &case, &mut notes);
        rows.push(row.beside(&samples[0], original_rates.first()));
    }
    if ctx.setup.original.is_some() {
        notes.push(
            "under the original, acceptbench's threads spin: its `bind` makes the listening \
             socket non-blocking for its `accept` hook, which Rust's `accept4` does not reach, \
             so `accept4` fails with EAGAIN at once and is called again"
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
