//! `--status`, `--restart` and `--stop`: find the instances meant (by command, or by the pid
//! file one of them keeps) and act on them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use huptime_handoff::{Address, InstanceRecord, SockKind};

use crate::cli::Target;
use crate::display;
use crate::error::Error;
use crate::instances::{self, Instance};
use crate::json::Value;
use crate::pidfile;
use crate::process::{self, POLL_INTERVAL};
use crate::records::{RuntimeDir, SupervisorMark};
use crate::restart::{Progress, RestartWatch, Restarted};
use crate::signal_name;

/// Version of the `--status --json` schema (see the README).
const JSON_SCHEMA: u64 = 1;

/// What a target leads to.
struct Found {
    dir: RuntimeDir,
    instances: Vec<Instance>,
    /// The launchers (`--multi`, `--supervise`) of those instances, or the one the pid file
    /// names when its program is not running at the moment.
    supervisors: Vec<SupervisorMark>,
}

impl Found {
    fn supervisor_of(&self, instance: &Instance) -> Option<&SupervisorMark> {
        self.supervisors
            .iter()
            .find(|mark| mark.instance == instance.master().instance)
    }
}

/// The runtime directory and the instances `target` means, or why there are none.
fn lookup(target: &Target) -> Result<Found, Error> {
    match target {
        Target::Command(words) => {
            let no_instance = || Error::NoInstance(words.clone());
            let dir = RuntimeDir::open()?.ok_or_else(no_instance)?;
            let scan = dir.scan()?;
            let instances = instances::find(scan.live, words);
            if instances.is_empty() {
                return Err(no_instance());
            }
            let supervisors = relevant(scan.supervisors, &instances);
            Ok(Found {
                dir,
                instances,
                supervisors,
            })
        }
        Target::PidFile(path) => lookup_pidfile(path),
    }
}

fn relevant(marks: Vec<SupervisorMark>, instances: &[Instance]) -> Vec<SupervisorMark> {
    marks
        .into_iter()
        .filter(|mark| {
            instances
                .iter()
                .any(|i| i.master().instance == mark.instance)
        })
        .collect()
}

/// The instance a pid file names: through a live record of that PID (a master, current or
/// still draining) or a launcher's file (`--multi`, `--supervise`), never by the PID alone.
fn lookup_pidfile(path: &Path) -> Result<Found, Error> {
    let pid = pidfile::read(path)?;
    let location = RuntimeDir::location();
    let Some(dir) = RuntimeDir::open()? else {
        return Err(pidfile::stale(path, pid, &location));
    };
    let scan = dir.scan()?;
    let mut names: BTreeSet<String> = scan
        .live
        .iter()
        .filter(|record| record.pid == pid)
        .map(|record| record.instance.clone())
        .collect();
    let named_supervisors: Vec<SupervisorMark> = scan
        .supervisors
        .iter()
        .filter(|mark| mark.pid == pid)
        .cloned()
        .collect();
    names.extend(named_supervisors.iter().map(|mark| mark.instance.clone()));
    if names.is_empty() {
        return Err(pidfile::stale(path, pid, &location));
    }
    let instances: Vec<Instance> = instances::group(scan.live)
        .into_iter()
        .filter(|instance| names.contains(&instance.master().instance))
        .collect();
    let mut supervisors = relevant(scan.supervisors, &instances);
    for mark in named_supervisors {
        if !supervisors.contains(&mark) {
            supervisors.push(mark);
        }
    }
    Ok(Found {
        dir,
        instances,
        supervisors,
    })
}

/// `--status`: one block per instance, or the JSON document.
pub fn status(target: &Target, json: bool) -> Result<ExitCode, Error> {
    let found = lookup(target)?;
    let now = process::unix_now();
    if json {
        let instances = found
            .instances
            .iter()
            .map(|i| instance_json(i, found.supervisor_of(i), now))
            .collect();
        let document = Value::Object(vec![
            ("huptime_status", JSON_SCHEMA.into()),
            ("instances", Value::Array(instances)),
        ]);
        println!("{}", document.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    if found.instances.is_empty() {
        for mark in &found.supervisors {
            println!(
                "● instance {}: its program is not running; supervisor pid {} starts it again",
                mark.instance, mark.pid
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let blocks: Vec<String> = found
        .instances
        .iter()
        .map(|i| describe(i, found.supervisor_of(i), now))
        .collect();
    print!("{}", blocks.join("\n"));
    Ok(ExitCode::SUCCESS)
}

/// The listening sockets of a record, for people.
fn socket_list(record: &InstanceRecord) -> String {
    let listening: Vec<String> = record
        .listeners
        .iter()
        .map(|l| format!("{} (fd {})", l.identity, l.fd))
        .collect();
    if !listening.is_empty() {
        listening.join(", ")
    } else if !record.sockets.is_empty() {
        record.sockets.join(", ")
    } else {
        "none yet".to_owned()
    }
}

/// A `systemctl status`-like description of one instance.
fn describe(instance: &Instance, supervisor: Option<&SupervisorMark>, now: u64) -> String {
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
    if let Some(mark) = supervisor {
        let role = if mark.revives {
            "--supervise, starts it again if it crashes"
        } else {
            "--multi"
        };
        field("Supervisor", &format!("pid {} ({role})", mark.pid));
    }
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
    field("Sockets", &socket_list(master));
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
    let _ = write!(text, ", {} ms", last.millis);
    // Attempt 0 is the restart that started this master (made by the one before it).
    if last.attempt == 0 {
        text.push_str(", the restart that started this generation");
    } else {
        let _ = write!(text, ", attempt {}", last.attempt);
    }
    text
}

fn socket_json(fd: i32, identity: &huptime_handoff::SocketIdentity) -> Value {
    let family = match identity.address {
        Address::V4(..) => "ipv4",
        Address::V6(..) => "ipv6",
        Address::UnixPath(_) => "unix",
        Address::UnixAbstract(_) => "unix-abstract",
    };
    let kind = match identity.kind {
        SockKind::Stream => "stream",
        SockKind::Datagram => "dgram",
        SockKind::SeqPacket => "seqpacket",
    };
    Value::Object(vec![
        ("fd", fd.into()),
        ("family", family.into()),
        ("type", kind.into()),
        ("address", identity.address.to_string().into()),
        ("port", identity.address.port().map(u64::from).into()),
        ("v6only", identity.v6only.into()),
        ("reuseport", identity.reuseport.into()),
        ("description", identity.to_string().into()),
    ])
}

/// One instance in `--status --json`; see the README for the schema.
fn instance_json(instance: &Instance, supervisor: Option<&SupervisorMark>, now: u64) -> Value {
    let master = instance.master();
    let last = master.last.as_ref().map_or(Value::Null, |last| {
        Value::Object(vec![
            ("ok", last.ok.into()),
            ("attempt", last.attempt.into()),
            ("new_pid", last.new_pid.into()),
            ("duration_ms", last.millis.into()),
            ("detail", last.detail.as_str().into()),
        ])
    });
    let supervisor = supervisor.map_or(Value::Null, |mark| {
        Value::Object(vec![
            ("pid", mark.pid.into()),
            ("revives", mark.revives.into()),
        ])
    });
    let draining = instance
        .draining()
        .iter()
        .map(|old| {
            Value::Object(vec![
                ("pid", old.pid.into()),
                ("generation", old.generation.into()),
                ("state", old.phase.name().into()),
                ("connections", old.connections.into()),
            ])
        })
        .collect();
    Value::Object(vec![
        ("instance", master.instance.as_str().into()),
        (
            "command",
            Value::Array(
                master
                    .command
                    .iter()
                    .map(|word| word.to_string_lossy().into_owned().into())
                    .collect(),
            ),
        ),
        ("pid", master.pid.into()),
        ("generation", master.generation.into()),
        ("mode", master.mode.name().into()),
        ("state", master.phase.name().into()),
        ("signal", signal_name::name(master.signal).into()),
        ("started_at", master.since.into()),
        ("uptime_seconds", now.saturating_sub(master.since).into()),
        ("generation_started_at", master.generation_since.into()),
        (
            "generation_uptime_seconds",
            now.saturating_sub(master.generation_since).into(),
        ),
        ("connections", master.connections.into()),
        (
            "sockets",
            Value::Array(
                master
                    .listeners
                    .iter()
                    .map(|l| socket_json(l.fd, &l.identity))
                    .collect(),
            ),
        ),
        ("last_restart", last),
        ("supervisor", supervisor),
        ("draining", Value::Array(draining)),
    ])
}

/// `--restart`: restarts every instance meant, one after another, each within `timeout`.
pub fn restart(target: &Target, timeout: Duration) -> Result<ExitCode, Error> {
    let found = lookup(target)?;
    if found.instances.is_empty() {
        return Err(not_running(target, &found));
    }
    let mut all_ok = true;
    for instance in &found.instances {
        let label = display::command_line(&instance.master().command);
        match restart_one(&found.dir, instance.master(), timeout) {
            Ok(done) => println!("huptime: restarted {label}: {done}"),
            Err(detail) => {
                eprintln!("huptime: restart of {label} failed: {detail}");
                all_ok = false;
            }
        }
    }
    Ok(exit_code(all_ok))
}

/// A pid file names a supervisor whose program is not running right now (between a crash and
/// its next start).
fn not_running(target: &Target, found: &Found) -> Error {
    let reason = match found.supervisors.first() {
        Some(mark) => format!(
            "it names supervisor pid {}, whose program is not running at the moment",
            mark.pid
        ),
        None => "it names no running instance".to_owned(),
    };
    match target {
        Target::PidFile(path) => Error::BadPidFile {
            path: path.clone(),
            reason,
            stale: true,
        },
        Target::Command(words) => Error::NoInstance(words.clone()),
    }
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

/// `--stop`: stops every process of every instance meant: SIGTERM, then SIGKILL after
/// `timeout`. An instance under `--supervise` is stopped through its supervisor (which would
/// otherwise start the program again), then whatever of it is left directly.
pub fn stop(target: &Target, timeout: Duration) -> Result<ExitCode, Error> {
    let found = lookup(target)?;
    let revivers: Vec<&SupervisorMark> = found.supervisors.iter().filter(|m| m.revives).collect();
    let mut targets: Vec<process::Target> = Vec::new();
    for mark in &revivers {
        let supervisor = process::Target {
            pid: mark.pid,
            starttime: mark.starttime,
        };
        if !targets.contains(&supervisor) {
            targets.push(supervisor);
        }
    }
    for instance in &found.instances {
        if !revivers
            .iter()
            .any(|m| m.instance == instance.master().instance)
        {
            targets.extend(instance.records().iter().map(process::Target::from));
        }
    }
    let mut survivors = process::terminate(&targets, timeout, || {});
    // What a supervisor left behind (it was killed, or did not get to it).
    if !revivers.is_empty() {
        let names: BTreeSet<&str> = revivers.iter().map(|m| m.instance.as_str()).collect();
        let left: Vec<process::Target> = found
            .dir
            .scan()?
            .live
            .iter()
            .filter(|r| names.contains(r.instance.as_str()))
            .map(process::Target::from)
            .collect();
        if !left.is_empty() {
            survivors.extend(process::terminate(&left, timeout, || {}));
        }
    }
    // Removes the records of every process that is gone.
    found.dir.scan()?;
    // The master cannot remove its pid file when SIGTERM or SIGKILL ends it: we do, if it still
    // names a process we stopped.
    if let Target::PidFile(path) = target
        && let Ok(pid) = pidfile::read(path)
        && targets
            .iter()
            .any(|t| t.pid == pid && !survivors.iter().any(|s| s.pid == pid))
    {
        pidfile::remove_if_names(path, pid);
    }
    let mut all_stopped = true;
    let report = |label: String, pids: Vec<i32>| -> bool {
        let (left, gone): (Vec<i32>, Vec<i32>) = pids
            .into_iter()
            .partition(|pid| survivors.iter().any(|s| s.pid == *pid));
        let list = |pids: &[i32]| -> String {
            let words: Vec<String> = pids.iter().map(i32::to_string).collect();
            words.join(", ")
        };
        if left.is_empty() {
            println!("huptime: stopped {label} (pid {})", list(&gone));
            true
        } else {
            eprintln!(
                "huptime: could not stop {label}: pid {} still running",
                list(&left)
            );
            false
        }
    };
    for instance in &found.instances {
        let label = display::command_line(&instance.master().command);
        let mut pids: Vec<i32> = instance.records().iter().map(|r| r.pid).collect();
        if let Some(mark) = found.supervisor_of(instance).filter(|m| m.revives) {
            pids.insert(0, mark.pid);
        }
        all_stopped &= report(label, pids);
    }
    for mark in &found.supervisors {
        let running = found
            .instances
            .iter()
            .any(|i| i.master().instance == mark.instance);
        if mark.revives && !running {
            all_stopped &= report(format!("instance {}", mark.instance), vec![mark.pid]);
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
