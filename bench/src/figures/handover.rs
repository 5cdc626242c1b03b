//! Figure 6: restarts of `acceptbench` (one accepting thread, logs nothing), against the same
//! program's own bare start-up (spawn until a client is served), interleaved: in fork mode the
//! time from the restart signal until a client is served by the new generation; in exec mode
//! the pause clients see, from the old generation's last reply to the new one's first. And the
//! p99 latency of a steady, paced load in the two seconds around fork-mode restarts against
//! the two seconds before them.

use std::time::{Duration, Instant};

use super::{Context, Failure, Report};
use crate::generations::{self, Instance};
use crate::load::{Connections, Load, Outcome, Protocol};
use crate::report::{Row, Target, Unit};
use crate::servers::free_port;
use crate::setup::Variant;
use crate::stats::{Samples, interleave_samples, quantile};

/// The added time allowed, in ms.
const ADDED: f64 = 5.0;

fn instance(ctx: &Context<'_>, options: &[&str]) -> Result<Instance, String> {
    let port = free_port()?;
    let command = ctx.setup.command(
        Variant::Huptime(options),
        &ctx.setup.acceptbench,
        &generations::args(port),
    );
    let log = ctx
        .setup
        .scratch
        .dir("handover")?
        .join(format!("{port}.log"));
    Instance::start(command, port, log)
}

/// p99 latency in ms of the requests that started within `from..to` of the load's start.
fn p99(outcome: &Outcome, from: Duration, to: Duration) -> f64 {
    let mut took: Vec<f64> = outcome
        .latencies
        .iter()
        .filter(|l| l.at >= from && l.at < to)
        .map(|l| l.took.as_secs_f64() * 1e3)
        .collect();
    quantile(&mut took, 0.99)
}

/// Fork-mode restarts under a paced load: `half` is half the window around each restart.
/// Returns the p99 of the window before each restart and of the window around it, and what
/// the load got.
fn latency_around_restarts(
    ctx: &Context<'_>,
    rounds: usize,
    half: Duration,
) -> Result<(Samples, Samples, Outcome), String> {
    let mut instance = instance(ctx, &[])?;
    let load = Load {
        port: instance.port(),
        protocol: Protocol::Greeting,
        connections: Connections::Short,
        threads: 2,
        pace: Some(Duration::from_millis(1)),
    };
    let running = load.start(true);
    let mut signals = Vec::new();
    for _ in 0..rounds {
        // A steady window (2 × half), clear of the last restart's window, then the restart.
        std::thread::sleep(half * 3);
        signals.push(running.started().elapsed());
        let signalled = Instant::now();
        instance.restart()?;
        std::thread::sleep(half.saturating_sub(signalled.elapsed()));
    }
    let outcome = running.stop();
    let (mut steady, mut around) = (Samples::default(), Samples::default());
    for at in signals {
        steady.push(p99(
            &outcome,
            at.saturating_sub(half * 3),
            at.saturating_sub(half),
        ));
        around.push(p99(&outcome, at.saturating_sub(half), at + half));
    }
    Ok((steady, around, outcome))
}

pub fn run(ctx: &Context<'_>) -> Result<Report, Failure> {
    let setup = ctx.setup;
    let rounds = ctx.mode.pick(3, 21);
    let bare_port = free_port()?;
    let mut fork = instance(ctx, &[])?;
    let mut exec = instance(ctx, &["--exec"])?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let samples = interleave_samples(
        rounds,
        &mut [
            &mut || {
                let command = setup.command(
                    Variant::Bare,
                    &setup.acceptbench,
                    &generations::args(bare_port),
                );
                generations::time_to_serve(command, bare_port).map(ms)
            },
            &mut || fork.restart().map(|r| ms(r.serving)),
            &mut || exec.restart().map(|r| ms(r.pause)),
        ],
    )?;
    let mut notes: Vec<String> = generations::lingering_note(&[&fork, &exec], rounds * 2)
        .into_iter()
        .collect();
    drop((fork, exec));
    let mut rows = vec![
        Row::added(
            "fork mode: signal → new generation serving (reference: bare spawn → first client served)",
            Unit::Millis,
            &samples[0],
            &samples[1],
            Target::AddedAtMost(ADDED),
        ),
        Row::added(
            "exec mode: the pause, old generation's last reply → new generation's first (reference: bare start-up)",
            Unit::Millis,
            &samples[0],
            &samples[2],
            Target::AddedAtMost(ADDED),
        ),
    ];
    let half = ctx.mode.millis(250, 1000);
    let (steady, around, outcome) = latency_around_restarts(ctx, ctx.mode.pick(2, 6), half)?;
    rows.push(Row::ratio(
        format!(
            "fork mode: p99 latency in the {window} s around a restart (reference: the {window} s \
             before)",
            window = (half * 2).as_secs_f64()
        ),
        Unit::Millis,
        &steady,
        &around,
        Target::RatioAtMost(1.5),
    ));
    notes.push(format!(
        "latency load: 2 clients, each one new connection per ms; {} requests",
        outcome.requests
    ));
    if let Some(error) = outcome.first_error {
        notes.push(format!(
            "**{} requests failed around restarts** (first: {error})",
            outcome.errors
        ));
    }
    Ok(Report {
        reference: "reference",
        measured: "huptime",
        rows,
        notes,
    })
}
