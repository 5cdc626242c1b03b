//! Figure 4: 1, 16 and 64 threads all blocking in `accept()` on one listening socket (the
//! `acceptbench` program), each answering a client and closing, served by our load generator.
//! A process-wide lock on the accept path would show here. A second bare copy, measured like
//! huptime, shows the noise floor.

use super::{Context, Failure, Report};
use crate::load::{Connections, Load, Protocol};
use crate::report::{self, Row, Target, Unit};
use crate::servers::{Server, free_port};
use crate::setup::Variant;
use crate::stats::interleave_samples;

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
        for server in [&bare, &huptime, &control] {
            measure(server)?;
        }
        let samples = interleave_samples(
            rounds,
            &mut [
                &mut || measure(&bare),
                &mut || measure(&huptime),
                &mut || measure(&control),
            ],
        )?;
        notes.push(report::control_note(&case, &samples[0], &samples[2]));
        rows.push(Row::ratio(
            format!("{case} blocking in `accept()`"),
            Unit::PerSecond,
            &samples[0],
            &samples[1],
            Target::RatioAtLeast(0.95),
        ));
    }
    Ok(Report {
        reference: "bare",
        measured: "huptime",
        rows,
        notes,
    })
}
