//! Keeps this master's instance record (see `huptime_handoff::record`) up to date, for
//! `huptime --status/--restart/--stop`. Written from the restart thread only.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use huptime_handoff::record::{InstanceRecord, Outcome, Phase, runtime_dir, stat_starttime};

use crate::log::warning;
use crate::process::{self, GENERATION, PID};
use crate::{retire, sockets};

fn directory(config: &process::Config) -> PathBuf {
    let xdg = config.environment.iter().find_map(|entry| {
        entry
            .as_bytes()
            .strip_prefix(b"XDG_RUNTIME_DIR=")
            .map(OsStr::from_bytes)
    });
    // SAFETY: getuid has no preconditions.
    runtime_dir(xdg, unsafe { libc::getuid() })
}

fn own_starttime() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_starttime(&stat))
        .unwrap_or(0)
}

/// Writes the record atomically (temporary file, then rename).
pub fn write(phase: Phase, last: Option<&Outcome>) {
    let Some(config) = process::config() else {
        return;
    };
    let record = InstanceRecord {
        instance: config.instance.clone(),
        pid: PID.load(Ordering::Relaxed),
        starttime: own_starttime(),
        generation: GENERATION.load(Ordering::Relaxed),
        mode: config.options.mode,
        phase,
        since: config.since,
        generation_since: config.generation_since,
        signal: config.options.signal,
        command: config.options.command.clone(),
        sockets: sockets::describe(),
        listeners: sockets::handover(),
        connections: retire::connections() as u64,
        last: last.cloned(),
    };
    let dir = directory(config);
    let result = std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
        .and_then(|()| {
            let target = dir.join(record.file_name());
            let temporary = dir.join(format!(".{}.tmp", record.file_name()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(record.encode().as_bytes())?;
            drop(file);
            std::fs::rename(&temporary, &target)
        });
    if let Err(error) = result {
        warning!(
            "cannot write the instance record in {}: {error}",
            dir.display()
        );
    }
}

/// Removes the record (the master is leaving).
pub fn remove() {
    let Some(config) = process::config() else {
        return;
    };
    let name = format!("{}.{}", config.instance, PID.load(Ordering::Relaxed));
    let _ = std::fs::remove_file(directory(config).join(name));
}
