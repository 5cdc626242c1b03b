//! Figure 6: restarts of `acceptbench` (one accepting thread, logs nothing), against the same
//! program's own bare start-up (spawn until a client is served), interleaved: in fork mode the
//! time from the restart signal until a client is served by the new generation; in exec mode
//! the pause clients see, from the old generation's last reply to the new one's first. And the
//! p99 latency of a steady, paced load in the two seconds around fork-mode restarts against
//! the two seconds before them. The original C huptime, when given, the same way: its restarts
//! in the same rounds (its acceptbench stopped outside its own: under it acceptbench spins),
//! its latency load after huptime's.

use std::time::{Duration, Instant};

use super::{Context, Failure, Report, beside, original_failed, original_samples};
use crate::generations::{self, Instance};
use crate::load::{Connections, Load, Outcome, Protocol};
use crate::report::{Row, Target, Unit};
use crate::servers::free_port;
use crate::setup::Variant;
use crate::stats::{Samples, interleave_samples_beside, quantile};

/// The added time allowed, in ms.
const ADDED: f64 = 5.0;

fn instance(ctx: &Context<'_>, variant: Variant<'_>) -> Result<Instance, String> {
    let port = free_port()?;
    let command = ctx
        .setup
        .command(variant, &ctx.setup.acceptbench, &generations::args(port));
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
    variant: Variant<'_>,
    rounds: usize,
    half: Duration,
) -> Result<(Samples, Samples, Outcome), String> {
    let mut instance = instance(ctx, variant)?;
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
    let mut fork = instance(ctx, Variant::Huptime(&[]))?;
    let mut exec = instance(ctx, Variant::Huptime(&["--exec"]))?;
    let mut notes = Vec::new();
    // The original's instances, stopped outside their own rounds.
    let originals = setup.original.as_ref().and_then(|original| {
        let variant = |exec| Variant::Original {
            library: &original.library,
            exec,
        };
        let instances = instance(ctx, variant(false))
            .and_then(|fork| Ok((fork, instance(ctx, variant(true))?)));
        instances
            .inspect(|(fork, exec)| [fork, exec].iter().for_each(|i| i.pause()))
            .map_err(|error| notes.push(original_failed("restarts", &error)))
            .ok()
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (mut original_fork, mut original_exec) = originals.unzip();
    let mut fork_restart = original_fork
        .as_mut()
        .map(|instance| || instance.restart_paused().map(|r| ms(r.serving)));
    let mut exec_restart = original_exec
        .as_mut()
        .map(|instance| || instance.restart_paused().map(|r| ms(r.pause)));
    let mut original_restarts = beside(&mut fork_restart);
    original_restarts.extend(beside(&mut exec_restart));
    let (samples, original_results) = interleave_samples_beside(
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
        &mut original_restarts,
    )?;
    let original = original_samples(original_results, "restarts", &mut notes);
    notes.extend(generations::lingering_note(&[&fork, &exec], rounds * 2));
    drop((fork, exec, original_fork, original_exec));
    let mut rows = vec![
        Row::added(
            "fork mode: signal → new generation serving (reference: bare spawn → first client served)",
            Unit::Millis,
            &samples[0],
            &samples[1],
            Target::AddedAtMost(ADDED),
        )
        .beside(&samples[0], original.first()),
        Row::added(
            "exec mode: the pause, old generation's last reply → new generation's first (reference: bare start-up)",
            Unit::Millis,
            &samples[0],
            &samples[2],
            Target::AddedAtMost(ADDED),
        )
        .beside(&samples[0], original.get(1)),
    ];
    let half = ctx.mode.millis(250, 1000);
    let restarts = ctx.mode.pick(2, 6);
    let (steady, around, outcome) =
        latency_around_restarts(ctx, Variant::Huptime(&[]), restarts, half)?;
    let mut row = Row::ratio(
        format!(
            "fork mode: p99 latency in the {window} s around a restart (reference: the {window} s \
             before)",
            window = (half * 2).as_secs_f64()
        ),
        Unit::Millis,
        &steady,
        &around,
        Target::RatioAtMost(1.5),
    );
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
    if let Some(variant) = setup.original() {
        match latency_around_restarts(ctx, variant, restarts, half) {
            Ok((steady, around, outcome)) => {
                // Against its own steady windows.
                row = row.beside(&steady, Some(&around));
                notes.push(format!(
                    "the original's latency load: {} requests, {} failed{}",
                    outcome.requests,
                    outcome.errors,
                    outcome
                        .first_error
                        .map(|error| format!(" (first: {error})"))
                        .unwrap_or_default()
                ));
            }
            Err(error) => notes.push(original_failed("latency around restarts", &error)),
        }
    }
    rows.push(row);
    Ok(Report {
        reference: "reference",
        measured: "huptime",
        rows,
        notes,
    })
}
