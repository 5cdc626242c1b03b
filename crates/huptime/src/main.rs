//! `huptime`: runs a program so that it can be restarted without dropping a connection, and
//! controls the instances already running.

mod activation;
mod cli;
mod control;
mod display;
mod error;
mod instances;
mod json;
mod launch;
mod pidfile;
mod process;
mod records;
mod restart;
mod signal_name;
mod signalfd;
mod sigstate;
mod sockinfo;
mod supervisor;
#[cfg(test)]
mod testutil;

use std::process::ExitCode;

use cli::{Action, RunConfig};
use error::Error;
use launch::{Launch, Start};
use records::RuntimeDir;
use supervisor::Kind;

/// Prints a warning: one line on stderr.
pub fn warn(message: &str) {
    eprintln!("huptime: warning: {message}");
}

fn main() -> ExitCode {
    let action = cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match run(action) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("huptime: {e}");
            e.exit_code()
        }
    }
}

fn run(action: Action) -> Result<ExitCode, Error> {
    match action {
        Action::Run(config) => start(&config),
        Action::Status { target, json } => control::status(&target, json),
        Action::Restart { target, timeout } => control::restart(&target, timeout),
        Action::Stop { target, timeout } => control::stop(&target, timeout),
    }
}

/// Runs the program: in this process (its PID is the one the caller holds), or under this
/// process (`--multi` copies, `--supervise`).
fn start(config: &RunConfig) -> Result<ExitCode, Error> {
    let launch = Launch::prepare(config)?;
    let dir = RuntimeDir::create()?;
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    if let Some(path) = launch.pidfile() {
        pidfile::write(path, pid)?;
    }
    let kind = match (config.copies, config.supervise) {
        (Some(copies), _) => Some(Kind::Multi(copies)),
        (None, true) => Some(Kind::Supervise {
            max_backoff: config.max_backoff,
        }),
        (None, false) => None,
    };
    let result = match kind {
        Some(kind) => supervisor::run(&launch, dir, kind, config.stop_timeout),
        None => {
            let since = process::unix_now();
            let instance = launch::instance_name(pid, since);
            let start = Start {
                instance: &instance,
                generation: 0,
                since,
                sockets: launch.activated(),
            };
            Err(launch.exec(&dir, &start))
        }
    };
    if let Some(path) = launch.pidfile() {
        pidfile::remove_if_names(path, pid);
    }
    result
}
