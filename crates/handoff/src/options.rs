//! The launcher's options, as the preload library reads them from the environment.
//!
//! They stay the same for the life of the instance, across every generation.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::hex;

/// How a restart replaces the running generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The master forks; the child runs the new generation while the old one drains.
    #[default]
    Fork,
    /// Same PID: stop accepting, drain, then re-execute.
    Exec,
}

impl Mode {
    /// Name used in the encoding, logs and `--status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fork => "fork",
            Self::Exec => "exec",
        }
    }
}

/// Options shared by every generation of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Fork or exec restarts.
    pub mode: Mode,
    /// The restart signal number.
    pub signal: i32,
    /// Log every decision to stderr.
    pub debug: bool,
    /// A retiring generation also waits for its child processes.
    pub wait: bool,
    /// Start the program again when it exits.
    pub revive: bool,
    /// Set `SO_REUSEPORT` on every internet socket before it is bound (`--multi`).
    pub reuseport: bool,
    /// A supervisor (`--supervise`, `--multi`) is the service's stable main process: the
    /// library never announces a new main PID.
    pub supervised: bool,
    /// Files removed when a restart begins.
    pub unlink: Vec<PathBuf>,
    /// Kept holding the PID of the current master (`--pidfile`).
    pub pidfile: Option<PathBuf>,
    /// systemd's `NOTIFY_SOCKET`, which the launcher takes out of the program's environment
    /// so that only huptime notifies.
    pub notify_socket: Option<OsString>,
    /// How long a new generation may take to become ready.
    pub ready_timeout: Duration,
    /// How long a retiring generation waits for its connections; `None` waits for ever.
    pub drain_timeout: Option<Duration>,
    /// The command as the user gave it; run again, looked up anew, at every restart.
    pub command: Vec<OsString>,
    /// The directory it was started in, re-entered by this path at every restart.
    pub cwd: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Fork,
            signal: libc::SIGHUP,
            debug: false,
            wait: false,
            revive: false,
            reuseport: false,
            supervised: false,
            unlink: Vec::new(),
            pidfile: None,
            notify_socket: None,
            ready_timeout: Duration::from_secs(60),
            drain_timeout: None,
            command: Vec::new(),
            cwd: PathBuf::from("/"),
        }
    }
}

/// Why options could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOptions(pub String);

impl fmt::Display for BadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed huptime options: {}", self.0)
    }
}

impl std::error::Error for BadOptions {}

fn flag(on: bool) -> u8 {
    u8::from(on)
}

fn hex_os(value: &OsStr) -> String {
    hex::encode(value.as_bytes())
}

impl Options {
    /// Encodes the options for the environment.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "v1;mode={};signal={};debug={};wait={};revive={};reuseport={};supervised={};ready={}",
            self.mode.name(),
            self.signal,
            flag(self.debug),
            flag(self.wait),
            flag(self.revive),
            flag(self.reuseport),
            flag(self.supervised),
            self.ready_timeout.as_millis(),
        );
        if let Some(drain) = self.drain_timeout {
            out.push_str(&format!(";drain={}", drain.as_millis()));
        }
        out.push_str(&format!(";cwd={}", hex_os(self.cwd.as_os_str())));
        for path in &self.unlink {
            out.push_str(&format!(";unlink={}", hex_os(path.as_os_str())));
        }
        if let Some(path) = &self.pidfile {
            out.push_str(&format!(";pidfile={}", hex_os(path.as_os_str())));
        }
        if let Some(address) = &self.notify_socket {
            out.push_str(&format!(";notify={}", hex_os(address)));
        }
        for word in &self.command {
            out.push_str(&format!(";arg={}", hex_os(word)));
        }
        out
    }

    /// Decodes options written by [`Options::encode`].
    pub fn decode(text: &str) -> Result<Self, BadOptions> {
        let mut fields = text.split(';');
        if fields.next() != Some("v1") {
            return Err(BadOptions("unknown version".into()));
        }
        let mut options = Self::default();
        for field in fields {
            let bad = || BadOptions(field.chars().take(64).collect());
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            let bool_value = || match value {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(bad()),
            };
            let bytes = || hex::decode(value).ok_or_else(bad);
            match key {
                "mode" => {
                    options.mode = match value {
                        "fork" => Mode::Fork,
                        "exec" => Mode::Exec,
                        _ => return Err(bad()),
                    }
                }
                "signal" => options.signal = value.parse().map_err(|_| bad())?,
                "debug" => options.debug = bool_value()?,
                "wait" => options.wait = bool_value()?,
                "revive" => options.revive = bool_value()?,
                "reuseport" => options.reuseport = bool_value()?,
                "supervised" => options.supervised = bool_value()?,
                "ready" => {
                    options.ready_timeout = Duration::from_millis(value.parse().map_err(|_| bad())?)
                }
                "drain" => {
                    options.drain_timeout =
                        Some(Duration::from_millis(value.parse().map_err(|_| bad())?))
                }
                "cwd" => options.cwd = PathBuf::from(OsString::from_vec(bytes()?)),
                "unlink" => options
                    .unlink
                    .push(PathBuf::from(OsString::from_vec(bytes()?))),
                "pidfile" => options.pidfile = Some(PathBuf::from(OsString::from_vec(bytes()?))),
                "notify" => options.notify_socket = Some(OsString::from_vec(bytes()?)),
                "arg" => options.command.push(OsString::from_vec(bytes()?)),
                _ => {}
            }
        }
        if options.command.is_empty() {
            return Err(BadOptions("no command".into()));
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let options = Options {
            mode: Mode::Exec,
            signal: libc::SIGUSR2,
            debug: true,
            wait: true,
            revive: false,
            reuseport: true,
            supervised: true,
            unlink: vec!["/run/a;b.pid".into(), "rel".into()],
            pidfile: Some("/run/app.pid".into()),
            notify_socket: Some("@/org/freedesktop/systemd1/notify/123".into()),
            ready_timeout: Duration::from_millis(1500),
            drain_timeout: Some(Duration::from_secs(30)),
            command: vec![
                "python3".into(),
                "-m".into(),
                "http.server".into(),
                "".into(),
            ],
            cwd: "/srv/app/current".into(),
        };
        assert_eq!(Options::decode(&options.encode()).unwrap(), options);
    }

    #[test]
    fn defaults_survive() {
        let options = Options {
            command: vec!["x".into()],
            ..Default::default()
        };
        let decoded = Options::decode(&options.encode()).unwrap();
        assert_eq!(decoded, options);
        assert_eq!(decoded.drain_timeout, None);
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "v2;arg=78",
            "v1",
            "v1;mode=spawn;arg=78",
            "v1;debug=yes;arg=78",
            "v1;arg=7",
        ] {
            assert!(Options::decode(text).is_err(), "{text}");
        }
    }
}
