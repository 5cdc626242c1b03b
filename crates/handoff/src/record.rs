//! Instance records: one small file per master process, kept by the preload library in a
//! directory only its user can read (`$XDG_RUNTIME_DIR/huptime` or `/tmp/huptime-<uid>`,
//! mode 0700). `huptime --status/--restart/--stop` find instances through them, so a program
//! that rewrites its own command line (nginx, redis) is still found by the command the user gave.
//!
//! A file is named `<instance>.<pid>`: during a fork-mode restart the old and the new master of
//! one instance both have one. The `starttime` field (from `/proc/<pid>/stat`) guards against a
//! recycled PID: a record whose process has a different start time is stale.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::hex;
use crate::options::Mode;
use crate::state::InheritedSocket;

const FORMAT: &str = "huptime-record/1";

/// What a master is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Started, not yet serving its sockets.
    Starting,
    /// Serving.
    Serving,
    /// A restart is under way; still serving.
    Restarting,
    /// Retired: finishing the connections it had, no longer accepting.
    Draining,
}

impl Phase {
    /// Name used in the file and in `--status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Serving => "serving",
            Self::Restarting => "restarting",
            Self::Draining => "draining",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "starting" => Self::Starting,
            "serving" => Self::Serving,
            "restarting" => Self::Restarting,
            "draining" => Self::Draining,
            _ => return None,
        })
    }
}

/// The outcome of the last restart attempt a master made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Attempt counter of this master, starting at 1.
    pub attempt: u64,
    /// Whether the new generation took over.
    pub ok: bool,
    /// The new generation's PID (fork mode) when it took over.
    pub new_pid: Option<i32>,
    /// Why it failed, or a short description of success.
    pub detail: String,
    /// How long the attempt took, in milliseconds.
    pub millis: u64,
}

/// One master's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Instance name, the same for every generation.
    pub instance: String,
    /// The master's PID.
    pub pid: i32,
    /// Start time of that PID in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub starttime: u64,
    /// Generation number.
    pub generation: u64,
    /// Fork or exec restarts.
    pub mode: Mode,
    /// What the master is doing.
    pub phase: Phase,
    /// When the instance first started (seconds since the epoch).
    pub since: u64,
    /// When this generation started (seconds since the epoch).
    pub generation_since: u64,
    /// The restart signal.
    pub signal: i32,
    /// The command as the user gave it.
    pub command: Vec<OsString>,
    /// Human-readable bound sockets.
    pub sockets: Vec<String>,
    /// The master's descriptors of the sockets it would hand over, with their identities: a
    /// supervisor (`--supervise`) takes copies of them (`pidfd_getfd`) to start the program again
    /// on the same sockets if it crashes.
    pub listeners: Vec<InheritedSocket>,
    /// Tracked connections open when the record was written.
    pub connections: u64,
    /// The last restart attempt, if any.
    pub last: Option<Outcome>,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord(pub String);

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad instance record: {}", self.0)
    }
}

impl std::error::Error for BadRecord {}

impl InstanceRecord {
    /// File name of this record inside the runtime directory.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.instance, self.pid)
    }

    /// Encodes the record as `key=value` lines.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{FORMAT}\ninstance={}\npid={}\nstarttime={}\ngeneration={}\nmode={}\nphase={}\nsince={}\ngeneration_since={}\nsignal={}\nconnections={}\n",
            self.instance,
            self.pid,
            self.starttime,
            self.generation,
            self.mode.name(),
            self.phase.name(),
            self.since,
            self.generation_since,
            self.signal,
            self.connections,
        );
        for word in &self.command {
            out.push_str(&format!("arg={}\n", hex::encode(word.as_bytes())));
        }
        for socket in &self.sockets {
            out.push_str(&format!("socket={}\n", hex::encode(socket.as_bytes())));
        }
        for listener in &self.listeners {
            out.push_str(&format!(
                "listener={},{}\n",
                listener.fd,
                listener.identity.encode()
            ));
        }
        if let Some(last) = &self.last {
            out.push_str(&format!(
                "last={},{},{},{},{}\n",
                last.attempt,
                if last.ok { "ok" } else { "failed" },
                last.new_pid.unwrap_or(0),
                last.millis,
                hex::encode(last.detail.as_bytes())
            ));
        }
        out.push_str("end\n");
        out
    }

    /// Decodes a record; a truncated or foreign file is an error.
    pub fn decode(text: &str) -> Result<Self, BadRecord> {
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT) {
            return Err(BadRecord("unknown format".into()));
        }
        let mut record = Self {
            instance: String::new(),
            pid: 0,
            starttime: 0,
            generation: 0,
            mode: Mode::Fork,
            phase: Phase::Starting,
            since: 0,
            generation_since: 0,
            signal: libc::SIGHUP,
            command: Vec::new(),
            sockets: Vec::new(),
            listeners: Vec::new(),
            connections: 0,
            last: None,
        };
        for line in lines {
            if line == "end" {
                if record.pid <= 0 || record.instance.is_empty() {
                    return Err(BadRecord("pid or instance missing".into()));
                }
                return Ok(record);
            }
            let bad = || BadRecord(line.chars().take(64).collect());
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            let number = || value.parse::<u64>().map_err(|_| bad());
            match key {
                "instance" => record.instance = value.to_owned(),
                "pid" => record.pid = value.parse().map_err(|_| bad())?,
                "starttime" => record.starttime = number()?,
                "generation" => record.generation = number()?,
                "mode" => {
                    record.mode = match value {
                        "fork" => Mode::Fork,
                        "exec" => Mode::Exec,
                        _ => return Err(bad()),
                    }
                }
                "phase" => record.phase = Phase::parse(value).ok_or_else(bad)?,
                "since" => record.since = number()?,
                "generation_since" => record.generation_since = number()?,
                "signal" => record.signal = value.parse().map_err(|_| bad())?,
                "connections" => record.connections = number()?,
                "arg" => record
                    .command
                    .push(OsString::from_vec(hex::decode(value).ok_or_else(bad)?)),
                "socket" => record.sockets.push(
                    String::from_utf8(hex::decode(value).ok_or_else(bad)?).map_err(|_| bad())?,
                ),
                "listener" => {
                    let (fd, identity) = value.split_once(',').ok_or_else(bad)?;
                    record.listeners.push(InheritedSocket {
                        fd: fd.parse().map_err(|_| bad())?,
                        identity: identity.parse().map_err(|_| bad())?,
                    });
                }
                "last" => {
                    let parts: Vec<&str> = value.splitn(5, ',').collect();
                    if parts.len() != 5 {
                        return Err(bad());
                    }
                    let new_pid: i32 = parts[2].parse().map_err(|_| bad())?;
                    record.last = Some(Outcome {
                        attempt: parts[0].parse().map_err(|_| bad())?,
                        ok: match parts[1] {
                            "ok" => true,
                            "failed" => false,
                            _ => return Err(bad()),
                        },
                        new_pid: (new_pid > 0).then_some(new_pid),
                        millis: parts[3].parse().map_err(|_| bad())?,
                        detail: String::from_utf8(hex::decode(parts[4]).ok_or_else(bad)?)
                            .map_err(|_| bad())?,
                    });
                }
                _ => {}
            }
        }
        Err(BadRecord("truncated".into()))
    }
}

/// The per-user directory holding instance records (not created here).
///
/// `$XDG_RUNTIME_DIR/huptime` when that variable names an absolute path, else
/// `/tmp/huptime-<uid>`.
pub fn runtime_dir(xdg_runtime_dir: Option<&std::ffi::OsStr>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if Path::new(dir).is_absolute() => Path::new(dir).join("huptime"),
        _ => PathBuf::from(format!("/tmp/huptime-{uid}")),
    }
}

/// Reads field 22 (`starttime`) of a `/proc/<pid>/stat` line.
pub fn stat_starttime(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Reads field 4 (`ppid`) of a `/proc/<pid>/stat` line.
pub fn stat_ppid(stat: &str) -> Option<i32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InstanceRecord {
        InstanceRecord {
            instance: "8123-1".into(),
            pid: 8200,
            starttime: 123456,
            generation: 3,
            mode: Mode::Exec,
            phase: Phase::Draining,
            since: 1_700_000_000,
            generation_since: 1_700_000_500,
            signal: 10,
            command: vec!["python3".into(), "a b.py".into()],
            sockets: vec!["tcp 127.0.0.1:80".into()],
            listeners: vec![InheritedSocket {
                fd: 3,
                identity: "stream/in4/127.0.0.1/80/-".parse().unwrap(),
            }],
            connections: 4,
            last: Some(Outcome {
                attempt: 2,
                ok: false,
                new_pid: None,
                detail: "new generation exited with status 1, before it was ready".into(),
                millis: 35,
            }),
        }
    }

    #[test]
    fn round_trip() {
        let record = sample();
        assert_eq!(InstanceRecord::decode(&record.encode()).unwrap(), record);
        let mut ok = sample();
        ok.last = Some(Outcome {
            attempt: 1,
            ok: true,
            new_pid: Some(99),
            detail: String::new(),
            millis: 3,
        });
        ok.phase = Phase::Serving;
        assert_eq!(InstanceRecord::decode(&ok.encode()).unwrap(), ok);
    }

    #[test]
    fn truncated_is_rejected() {
        let text = sample().encode();
        assert!(InstanceRecord::decode(&text[..text.len() - 4]).is_err());
        assert!(InstanceRecord::decode("").is_err());
    }

    #[test]
    fn stat_fields() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(stat_ppid(stat), Some(1));
        assert_eq!(stat_starttime(stat), Some(98765));
    }

    #[test]
    fn runtime_dir_choice() {
        assert_eq!(
            runtime_dir(Some("/run/user/1000".as_ref()), 1000),
            PathBuf::from("/run/user/1000/huptime")
        );
        assert_eq!(
            runtime_dir(Some("relative".as_ref()), 5),
            PathBuf::from("/tmp/huptime-5")
        );
        assert_eq!(runtime_dir(None, 0), PathBuf::from("/tmp/huptime-0"));
    }
}
