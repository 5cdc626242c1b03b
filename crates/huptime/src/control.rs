//! `--status`, `--restart` and `--stop`: find the instances of a command and act on them.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use huptime_handoff::InstanceRecord;

use crate::display;
use crate::error::Error;
use crate::instances::{self, Instance};
use crate::process::{self, POLL_INTERVAL, Target};
use crate::records::RuntimeDir;
use crate::restart::{Progress, RestartWatch, Restarted};
use crate::signal_name;

/// The runtime directory and the instances matching `words`, or [`Error::NoInstance`].
fn lookup(words: &[OsString]) -> Result<(RuntimeDir, Vec<Instance>), Error> {
    let no_instance = || Error::NoInstance(words.to_vec());
    let dir = RuntimeDir::open()?.ok_or_else(no_instance)?;
    let found = instances::find(dir.scan()?.live, words);
    if found.is_empty() {
        return Err(no_instance());
    }
    Ok((dir, found))
}

/// Prints one block per matching instance.
pub fn status(words: &[OsString]) -> Result<ExitCode, Error> {
    let (_, found) = lookup(words)?;
    let now = process::unix_now();
    let blocks: Vec<String> = found.iter().map(|i| describe(i, now)).collect();
    print!("{}", blocks.join("\n"));
    Ok(ExitCode::SUCCESS)
}

/// A `systemctl status`-like description of one instance.
fn describe(instance: &Instance, now: u64) -> String {
    let master = instance.master();
    let mut out = format!(
        "● {} (instance {})\n",
        display::command_line(&master.command),
        master.instance
    );
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:>12}: {value}");
    };
    field("PID", &master.pid.to_string());
    field(
        "Generation",
        &format!(
            "{} (started {} ago)",
            master.generation,
            display::span(now.saturating_sub(master.generation_since))
        ),
    );
    field("Mode", master.mode.name());
    field("Phase", master.phase.name());
    field("Uptime", &display::span(now.saturating_sub(master.since)));
    field("Connections", &master.connections.to_string());
    field("Signal", &signal_name::name(master.signal));
    let sockets = if master.sockets.is_empty() {
        "none yet".to_owned()
    } else {
        master.sockets.join(", ")
    };
    field("Sockets", &sockets);
    field("Last restart", &last_restart(master));
    for old in instance.draining() {
        field(
            "Draining",
            &format!(
                "pid {} (generation {}, {} connections, {})",
                old.pid,
                old.generation,
                old.connections,
                old.phase.name()
            ),
        );
    }
    out
}

fn last_restart(record: &InstanceRecord) -> String {
    let Some(last) = &record.last else {
        return "none".to_owned();
    };
    let mut text = if last.ok { "ok" } else { "failed" }.to_owned();
    if !last.detail.is_empty() {
        let _ = write!(text, ": {}", last.detail);
    }
    if let Some(pid) = last.new_pid {
        let _ = write!(text, " (new pid {pid})");
    }
    let _ = write!(text, ", {} ms, attempt {}", last.millis, last.attempt);
    text
}

/// Restarts every matching instance, one after another, each within `timeout`.
pub fn restart(words: &[OsString], timeout: Duration) -> Result<ExitCode, Error> {
    let (dir, found) = lookup(words)?;
    let mut all_ok = true;
    for instance in &found {
        let label = display::command_line(&instance.master().command);
        match restart_one(&dir, instance.master(), timeout) {
            Ok(done) => println!("huptime: restarted {label}: {done}"),
            Err(detail) => {
                eprintln!("huptime: restart of {label} failed: {detail}");
                all_ok = false;
            }
        }
    }
    Ok(exit_code(all_ok))
}

fn restart_one(
    dir: &RuntimeDir,
    master: &InstanceRecord,
    timeout: Duration,
) -> Result<Restarted, String> {
    let watch = RestartWatch::begin(master, timeout)?;
    loop {
        thread::sleep(POLL_INTERVAL);
        let live = dir.scan().map_err(|e| e.to_string())?.live;
        match watch.check(&live) {
            Progress::Waiting => {}
            Progress::Done(done) => return Ok(done),
            Progress::Failed(detail) => return Err(detail),
        }
    }
}

/// Stops every process of every matching instance: SIGTERM, then SIGKILL after `timeout`.
pub fn stop(words: &[OsString], timeout: Duration) -> Result<ExitCode, Error> {
    let (dir, found) = lookup(words)?;
    let targets: Vec<Target> = found
        .iter()
        .flat_map(Instance::records)
        .map(Target::from)
        .collect();
    let survivors = process::terminate(&targets, timeout, || {});
    // Removes the records of every process that is gone.
    dir.scan()?;
    let mut all_stopped = true;
    for instance in &found {
        let label = display::command_line(&instance.master().command);
        let pids = |alive: bool| -> Vec<String> {
            instance
                .records()
                .iter()
                .filter(|r| survivors.iter().any(|s| s.pid == r.pid) == alive)
                .map(|r| r.pid.to_string())
                .collect()
        };
        let left = pids(true);
        if left.is_empty() {
            println!("huptime: stopped {label} (pid {})", pids(false).join(", "));
        } else {
            eprintln!(
                "huptime: could not stop {label}: pid {} still running",
                left.join(", ")
            );
            all_stopped = false;
        }
    }
    Ok(exit_code(all_stopped))
}

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::EXIT_FAILURE)
    }
}
