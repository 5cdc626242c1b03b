//! Errors that end the launcher, each with the exit status a caller can rely on.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::display;

/// Something went wrong that is not one of the statuses below.
pub const EXIT_FAILURE: u8 = 1;
/// `--status`, `--restart` or `--stop` found no instance of the command.
pub const EXIT_NO_INSTANCE: u8 = 3;
/// The command exists but cannot be executed (as a shell reports it).
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The command does not exist (as a shell reports it).
pub const EXIT_NOT_FOUND: u8 = 127;

/// Why the launcher stops. `Display` is the message after `huptime: `.
#[derive(Debug)]
pub enum Error {
    /// `libhuptime.so` is in none of the places looked at.
    LibraryNotFound(Vec<PathBuf>),
    /// The command does not exist; `searched` when it was looked up through `PATH`.
    NotFound { command: OsString, searched: bool },
    /// The command exists but is a directory or lacks execute permission.
    NotExecutable {
        command: OsString,
        reason: &'static str,
    },
    /// `execve` of the resolved command failed.
    Exec {
        command: OsString,
        source: io::Error,
    },
    /// The runtime directory exists but could be tampered with by someone else.
    UnsafeRuntimeDir { path: PathBuf, reason: String },
    /// A system call the launcher needs failed.
    Io { what: String, source: io::Error },
    /// No running instance matches the command words (empty: no instance at all).
    NoInstance(Vec<OsString>),
    /// A pid file that does not lead to a running instance of ours. `stale`: it could be read
    /// but names no live instance (exit status 3, like [`Error::NoInstance`]); otherwise it
    /// could not be read or holds no PID (exit status 1).
    BadPidFile {
        path: PathBuf,
        reason: String,
        stale: bool,
    },
}

impl Error {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::NotFound { .. } => EXIT_NOT_FOUND,
            Self::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
            Self::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            Self::Exec { .. } => EXIT_NOT_EXECUTABLE,
            Self::NoInstance(_) | Self::BadPidFile { stale: true, .. } => EXIT_NO_INSTANCE,
            Self::BadPidFile { stale: false, .. } => EXIT_FAILURE,
            Self::LibraryNotFound(_) | Self::UnsafeRuntimeDir { .. } | Self::Io { .. } => {
                EXIT_FAILURE
            }
        }
    }

    /// The exit status as returned from `main`.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LibraryNotFound(places) => {
                let places: Vec<_> = places.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "cannot find {} with {} beside it (looked in: {})",
                    huptime_handoff::LIB_NAME,
                    huptime_handoff::ENGINE_NAME,
                    places.join(", ")
                )
            }
            Self::NotFound {
                command,
                searched: true,
            } => write!(f, "{}: command not found", command.to_string_lossy()),
            Self::NotFound {
                command,
                searched: false,
            } => write!(
                f,
                "{}: No such file or directory",
                command.to_string_lossy()
            ),
            Self::NotExecutable { command, reason } => {
                write!(f, "{}: {reason}", command.to_string_lossy())
            }
            Self::Exec { command, source } if source.kind() == io::ErrorKind::NotFound => write!(
                f,
                "{}: cannot execute: its interpreter or loader was not found",
                command.to_string_lossy()
            ),
            Self::Exec { command, source } => {
                write!(f, "{}: cannot execute: {source}", command.to_string_lossy())
            }
            Self::UnsafeRuntimeDir { path, reason } => write!(
                f,
                "refusing to use runtime directory {}: {reason}",
                path.display()
            ),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::NoInstance(words) if words.is_empty() => f.write_str("no running instance"),
            Self::NoInstance(words) => {
                write!(f, "no running instance of {}", display::command_line(words))
            }
            Self::BadPidFile { path, reason, .. } => {
                write!(f, "pid file {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Exec { source, .. } | Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
