//! `huptime`: runs a program so that it can be restarted without dropping a connection, and
//! controls the instances already running.

mod cli;
mod control;
mod display;
mod error;
mod instances;
mod launch;
mod multi;
mod process;
mod records;
mod restart;
mod signal_name;
mod sigstate;
#[cfg(test)]
mod testutil;

use std::process::ExitCode;

use cli::{Action, RunConfig};
use error::Error;
use launch::Launch;
use records::RuntimeDir;

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
        Action::Status { command } => control::status(&command),
        Action::Restart { command, timeout } => control::restart(&command, timeout),
        Action::Stop { command, timeout } => control::stop(&command, timeout),
    }
}

/// Runs the program: in this process (its PID is the one the caller holds), or as `--multi`
/// copies under this process.
fn start(config: &RunConfig) -> Result<ExitCode, Error> {
    let launch = Launch::prepare(config)?;
    let dir = RuntimeDir::create()?;
    match config.copies {
        Some(copies) => multi::supervise(&launch, dir, copies, config.stop_timeout),
        None => {
            // SAFETY: getpid cannot fail.
            let pid = unsafe { libc::getpid() };
            let instance = launch::instance_name(pid, process::unix_now());
            Err(launch.exec(&dir, &instance))
        }
    }
}
