//! Command-line options, checked and turned into one [`Action`].

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgGroup, CommandFactory, Parser};
use huptime_handoff::Mode;

use crate::signal_name::{self, Signal};

const RUN_HEADING: &str = "Running a program";
const CONTROL_HEADING: &str = "Controlling running instances";

/// How long `--stop` and a stopping `--multi` launcher wait between SIGTERM and SIGKILL.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `--restart` waits for the new generation.
const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new generation may take to become ready.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Long enough for the requests in flight of nearly every service; bounded, because idle
/// keep-alive connections would otherwise keep every old generation alive (see README).
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// `--supervise`: the longest delay before a crashing program is started again.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "huptime",
    version,
    about = "Zero-downtime restarts for unmodified Linux servers",
    long_about = "Runs COMMAND so that the restart signal (SIGHUP by default) starts it again \
                  from disk while its listening sockets stay open: no client notices.",
    override_usage = "huptime [OPTIONS] [--] COMMAND [ARGS...]\n       \
                      huptime --restart [--timeout=SECONDS] {--pidfile=FILE | [--] COMMAND [ARGS...]}\n       \
                      huptime --stop [--timeout=SECONDS] {--pidfile=FILE | [--] COMMAND [ARGS...]}\n       \
                      huptime --status [--json] [--pidfile=FILE | [--] COMMAND [ARGS...]]",
    group(ArgGroup::new("control").args(["restart", "stop", "status"])),
)]
struct Args {
    /// Restart by forking: the new generation starts while the old one serves (default)
    #[arg(long, help_heading = RUN_HEADING, conflicts_with_all = ["exec", "control"])]
    fork: bool,

    /// Restart in place: same PID, the old generation drains, then re-executes
    #[arg(long, help_heading = RUN_HEADING, conflicts_with = "control")]
    exec: bool,

    /// Run N copies sharing their ports with SO_REUSEPORT, restarted one after another
    #[arg(long, value_name = "N", help_heading = RUN_HEADING, conflicts_with = "control",
          value_parser = clap::value_parser!(u32).range(1..))]
    multi: Option<u32>,

    /// Stay the parent with a stable PID (PID 1 in a container): forward signals, reap orphans,
    /// and start the program again on the same sockets when it crashes
    #[arg(long, help_heading = RUN_HEADING, conflicts_with_all = ["control", "multi"])]
    supervise: bool,

    /// --supervise: the longest delay before a crashing program is started again [default: 10]
    #[arg(long, value_name = "SECONDS", help_heading = RUN_HEADING, requires = "supervise",
          value_parser = parse_seconds)]
    max_backoff: Option<Duration>,

    /// Leave sockets passed by systemd (LISTEN_FDS) to the program untouched instead of turning
    /// them into inherited sockets
    #[arg(long, help_heading = RUN_HEADING, conflicts_with = "control")]
    pass_listen_fds: bool,

    /// Start the program again, keeping its sockets, when it exits
    #[arg(long, help_heading = RUN_HEADING, conflicts_with = "control")]
    revive: bool,

    /// A retiring generation also waits for its child processes
    #[arg(long, help_heading = RUN_HEADING, conflicts_with = "control")]
    wait: bool,

    /// Remove FILE when a restart begins (a stale pid file); repeatable
    #[arg(long, value_name = "FILE", help_heading = RUN_HEADING, conflicts_with = "control")]
    unlink: Vec<PathBuf>,

    /// Log every decision to stderr
    #[arg(long, help_heading = RUN_HEADING, conflicts_with = "control")]
    debug: bool,

    /// The restart signal: a name (HUP, SIGUSR2, RTMIN+3) or a number [default: HUP]
    #[arg(long, value_name = "SIGNAL", help_heading = RUN_HEADING, conflicts_with = "control",
          value_parser = signal_name::parse)]
    signal: Option<Signal>,

    /// How long a new generation may take to become ready before it is rolled back [default: 60]
    #[arg(long, value_name = "SECONDS", help_heading = RUN_HEADING, conflicts_with = "control",
          value_parser = parse_seconds)]
    ready_timeout: Option<Duration>,

    /// How long a retiring generation waits for its connections [default: 300]
    #[arg(long, value_name = "SECONDS", help_heading = RUN_HEADING, conflicts_with = "control",
          value_parser = parse_seconds)]
    drain_timeout: Option<Duration>,

    /// Restart the running instances of COMMAND and report how it went
    #[arg(long, help_heading = CONTROL_HEADING)]
    restart: bool,

    /// Stop the running instances of COMMAND: SIGTERM, then SIGKILL after --timeout
    #[arg(long, help_heading = CONTROL_HEADING)]
    stop: bool,

    /// Show the running instances of COMMAND, or all of them
    #[arg(long, help_heading = CONTROL_HEADING)]
    status: bool,

    /// Running: keep FILE holding the PID of the current master (of the launcher with --multi
    /// or --supervise). --restart/--stop/--status: act on the instance FILE names, not COMMAND
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,

    /// --status: print the instances as JSON (see the README for the schema)
    #[arg(long, help_heading = CONTROL_HEADING)]
    json: bool,

    /// --stop, --multi and --supervise: delay from SIGTERM to SIGKILL [default: 10];
    /// --restart: how long to wait for the new generation [default: 120]
    #[arg(long, value_name = "SECONDS", help_heading = CONTROL_HEADING,
          conflicts_with = "status", value_parser = parse_seconds)]
    timeout: Option<Duration>,

    /// The program and its arguments; everything from COMMAND on is passed to it
    #[arg(value_name = "COMMAND", trailing_var_arg = true,
          value_parser = clap::value_parser!(OsString))]
    command: Vec<OsString>,
}

/// Which running instances a control action means.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Target {
    /// Those started as this command (see `instances::matches`); empty means all of them.
    Command(Vec<OsString>),
    /// Exactly the instance whose master (or supervisor) this pid file names.
    PidFile(PathBuf),
}

/// What the launcher was asked to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Run a program under huptime.
    Run(RunConfig),
    /// Describe running instances, as text or JSON.
    Status { target: Target, json: bool },
    /// Restart matching instances, waiting up to `timeout` for each.
    Restart { target: Target, timeout: Duration },
    /// Stop matching instances, escalating to SIGKILL after `timeout`.
    Stop { target: Target, timeout: Duration },
}

/// Everything needed to run a program.
#[derive(Debug, PartialEq)]
pub struct RunConfig {
    /// The command words as typed; never empty.
    pub command: Vec<OsString>,
    pub mode: Mode,
    /// `--multi`: how many copies a supervising launcher runs.
    pub copies: Option<NonZeroU32>,
    /// `--supervise`: stay the parent and start the program again when it crashes.
    pub supervise: bool,
    /// `--supervise`: the longest delay between two starts of a crashing program.
    pub max_backoff: Duration,
    /// `--pidfile`: as given; made absolute when the program starts.
    pub pidfile: Option<PathBuf>,
    /// `--pass-listen-fds`: leave systemd's `LISTEN_*` and their descriptors to the program.
    pub pass_listen_fds: bool,
    pub signal: Signal,
    pub debug: bool,
    pub wait: bool,
    pub revive: bool,
    /// As given; made absolute when the program starts.
    pub unlink: Vec<PathBuf>,
    pub ready_timeout: Duration,
    pub drain_timeout: Duration,
    /// `--multi`, `--supervise`: SIGTERM to SIGKILL delay when the launcher is told to stop.
    pub stop_timeout: Duration,
}

/// Parses the launcher's own argv (including argv[0]). Errors carry clap's usage text and exit
/// status 2; `--help` and `--version` come back as errors too, with status 0.
pub fn parse_from<I, T>(args: I) -> Result<Action, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    validate(Args::try_parse_from(args)?)
}

fn validate(args: Args) -> Result<Action, clap::Error> {
    let usage = |message: &str| Args::command().error(ErrorKind::MissingRequiredArgument, message);
    let control = args.status || args.restart || args.stop;
    if args.json && !args.status {
        return Err(Args::command().error(
            ErrorKind::ArgumentConflict,
            "--json applies to --status only",
        ));
    }
    if control && args.pidfile.is_some() && !args.command.is_empty() {
        return Err(Args::command().error(
            ErrorKind::ArgumentConflict,
            "give either --pidfile=FILE or COMMAND to say which instance, not both",
        ));
    }
    let target = match args.pidfile.clone() {
        Some(path) if control => Target::PidFile(path),
        _ => Target::Command(args.command.clone()),
    };
    if args.status {
        return Ok(Action::Status {
            target,
            json: args.json,
        });
    }
    if target == Target::Command(Vec::new()) {
        return Err(usage(if control {
            "COMMAND or --pidfile=FILE is required"
        } else {
            "COMMAND is required"
        }));
    }
    if args.restart {
        return Ok(Action::Restart {
            target,
            timeout: args.timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT),
        });
    }
    if args.stop {
        return Ok(Action::Stop {
            target,
            timeout: args.timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        });
    }
    let copies = args.multi.and_then(NonZeroU32::new);
    if args.timeout.is_some() && copies.is_none() && !args.supervise {
        return Err(Args::command().error(
            ErrorKind::ArgumentConflict,
            "--timeout applies to --multi, --supervise, --restart and --stop only",
        ));
    }
    Ok(Action::Run(RunConfig {
        command: args.command,
        mode: if args.exec { Mode::Exec } else { Mode::Fork },
        copies,
        supervise: args.supervise,
        max_backoff: args.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF),
        pidfile: args.pidfile,
        pass_listen_fds: args.pass_listen_fds,
        signal: args.signal.unwrap_or_default(),
        debug: args.debug,
        wait: args.wait,
        revive: args.revive,
        unlink: args.unlink,
        ready_timeout: args.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        drain_timeout: args.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        stop_timeout: args.timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
    }))
}

/// A non-negative decimal number of seconds: `10`, `0.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a number of seconds (like 10 or 0.5)");
    // f64's parser also takes signs, exponents, "inf" and "NaN": allow plain decimals only.
    let plain = text.bytes().any(|b| b.is_ascii_digit())
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !plain {
        return Err(bad());
    }
    let seconds: f64 = text.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text} seconds is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action, clap::Error> {
        parse_from(std::iter::once("huptime").chain(args.iter().copied()))
    }

    fn run(args: &[&str]) -> RunConfig {
        match parse(args) {
            Ok(Action::Run(config)) => config,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn words(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn usage_error(args: &[&str]) {
        let err = parse(args).expect_err(&format!("{args:?} was accepted"));
        assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
    }

    #[test]
    fn defaults() {
        let config = run(&["server"]);
        assert_eq!(config.command, words(&["server"]));
        assert_eq!(config.mode, Mode::Fork);
        assert_eq!(config.copies, None);
        assert_eq!(config.signal.number(), libc::SIGHUP);
        assert_eq!(config.ready_timeout, Duration::from_secs(60));
        assert_eq!(config.drain_timeout, Duration::from_secs(300));
        assert!(!config.debug && !config.wait && !config.revive);
    }

    #[test]
    fn everything_from_command_on_belongs_to_the_program() {
        let config = run(&["--", "python3", "-m", "http.server", "--bind", "127.0.0.1"]);
        assert_eq!(
            config.command,
            words(&["python3", "-m", "http.server", "--bind", "127.0.0.1"])
        );
        let config = run(&["--exec", "python3", "-u", "x.py", "--debug"]);
        assert_eq!(config.command, words(&["python3", "-u", "x.py", "--debug"]));
        assert_eq!(config.mode, Mode::Exec);
        assert!(!config.debug);
    }

    #[test]
    fn run_options() {
        let config = run(&[
            "--multi=3",
            "--signal=usr2",
            "--unlink=a.pid",
            "--unlink",
            "/b.pid",
            "--ready-timeout=1.5",
            "--drain-timeout=30",
            "--timeout=2",
            "--revive",
            "--wait",
            "--debug",
            "srv",
        ]);
        assert_eq!(config.copies, NonZeroU32::new(3));
        assert_eq!(config.signal.number(), libc::SIGUSR2);
        assert_eq!(config.unlink, vec![PathBuf::from("a.pid"), "/b.pid".into()]);
        assert_eq!(config.ready_timeout, Duration::from_millis(1500));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.stop_timeout, Duration::from_secs(2));
        assert!(config.revive && config.wait && config.debug);
    }

    #[test]
    fn control_forms() {
        assert_eq!(
            parse(&["--status"]).unwrap(),
            Action::Status {
                target: Target::Command(vec![]),
                json: false
            }
        );
        assert_eq!(
            parse(&["--restart", "python3", "a.py"]).unwrap(),
            Action::Restart {
                target: Target::Command(words(&["python3", "a.py"])),
                timeout: Duration::from_secs(120)
            }
        );
        assert_eq!(
            parse(&["--timeout=0", "--stop", "--", "-weird"]).unwrap(),
            Action::Stop {
                target: Target::Command(words(&["-weird"])),
                timeout: Duration::ZERO
            }
        );
    }

    #[test]
    fn pidfile_forms() {
        let file = || Target::PidFile("/run/app.pid".into());
        assert_eq!(
            parse(&["--status", "--json", "--pidfile=/run/app.pid"]).unwrap(),
            Action::Status {
                target: file(),
                json: true
            }
        );
        assert_eq!(
            parse(&["--restart", "--pidfile", "/run/app.pid", "--timeout=5"]).unwrap(),
            Action::Restart {
                target: file(),
                timeout: Duration::from_secs(5)
            }
        );
        assert_eq!(
            parse(&["--stop", "--pidfile=/run/app.pid"]).unwrap(),
            Action::Stop {
                target: file(),
                timeout: Duration::from_secs(10)
            }
        );
        let config = run(&["--pidfile=app.pid", "srv"]);
        assert_eq!(config.pidfile, Some(PathBuf::from("app.pid")));
    }

    #[test]
    fn supervise_options() {
        let config = run(&["--supervise", "--max-backoff=2", "--timeout=3", "srv"]);
        assert!(config.supervise);
        assert_eq!(config.max_backoff, Duration::from_secs(2));
        assert_eq!(config.stop_timeout, Duration::from_secs(3));
        let config = run(&["--pass-listen-fds", "srv"]);
        assert!(config.pass_listen_fds && !config.supervise);
        assert_eq!(config.max_backoff, Duration::from_secs(10));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        usage_error(&[]);
        usage_error(&["--bogus", "srv"]);
        usage_error(&["--debug"]);
        usage_error(&["--multi=0", "srv"]);
        usage_error(&["--multi=x", "srv"]);
        usage_error(&["--multi=-1", "srv"]);
        usage_error(&["--timeout=-1", "--stop", "srv"]);
        usage_error(&["--timeout=abc", "--stop", "srv"]);
        usage_error(&["--timeout=inf", "--stop", "srv"]);
        usage_error(&["--timeout=nan", "--stop", "srv"]);
        usage_error(&["--timeout=1e3", "--stop", "srv"]);
        usage_error(&["--ready-timeout=", "srv"]);
        usage_error(&["--drain-timeout=.", "srv"]);
        usage_error(&["--signal=KILL", "srv"]);
        usage_error(&["--signal=BOGUS", "srv"]);
        usage_error(&["--fork", "--exec", "srv"]);
        usage_error(&["--restart", "--stop", "srv"]);
        usage_error(&["--restart"]);
        usage_error(&["--stop"]);
        usage_error(&["--status", "--restart", "srv"]);
        usage_error(&["--multi=2", "--restart", "srv"]);
        usage_error(&["--timeout=5", "srv"]);
        usage_error(&["--timeout=5", "--status"]);
        usage_error(&["--restart", "--pidfile=a.pid", "srv"]);
        usage_error(&["--stop", "--pidfile=a.pid", "--", "srv"]);
        usage_error(&["--status", "--pidfile=a.pid", "srv"]);
        usage_error(&["--json", "srv"]);
        usage_error(&["--json", "--restart", "srv"]);
        usage_error(&["--supervise", "--multi=2", "srv"]);
        usage_error(&["--max-backoff=1", "srv"]);
        usage_error(&["--supervise", "--restart", "srv"]);
        usage_error(&["--pass-listen-fds", "--stop", "srv"]);
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("3."), Ok(Duration::from_secs(3)));
        for bad in ["", "-1", "-0", "1.2.3", "1e3", "inf", "NaN", " 1", "+1"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        assert!(parse_seconds(&"9".repeat(40)).is_err());
    }
}
