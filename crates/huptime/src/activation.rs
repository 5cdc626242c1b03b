//! Socket activation: sockets passed to huptime the systemd way (`LISTEN_FDS=N`,
//! `LISTEN_PID=<huptime's PID>`, descriptors 3 to 3+N-1, optional `LISTEN_FDNAMES`) become
//! inherited sockets of the first generation. When the program binds a matching address it gets
//! the activated socket, so even a full stop and start of the service refuses no connection:
//! the service manager keeps the socket, and clients wait in its queue meanwhile.
//!
//! The program does not see the `LISTEN_*` variables (the launcher takes them out of its
//! environment) unless `--pass-listen-fds` leaves the whole protocol to the program.
//!
//! Anything malformed is warned about, one line each, and ignored: a bad `LISTEN_FDS` or a
//! `LISTEN_PID` for another process ignores the variables (the descriptors are left alone, they
//! may be anything); a descriptor that is not a usable socket is skipped and kept from the
//! program (close-on-exec).

use std::ffi::OsStr;
use std::os::fd::RawFd;

use huptime_handoff::state::InheritedSocket;

use crate::sockinfo;

/// The variables of the protocol, all taken out of the program's environment.
pub const VARIABLES: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];
/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More than any service manager passes; bounds the work on a garbage value.
const MAX_FDS: usize = 4096;

/// One passed descriptor and its name from `LISTEN_FDNAMES`, if any.
#[derive(Debug, PartialEq, Eq)]
struct Passed {
    fd: RawFd,
    name: Option<String>,
}

/// Reads the variables as given; `Ok(vec![])` when there are none. Errors are the warning for
/// the whole set.
fn parse(
    fds: Option<&OsStr>,
    pid: Option<&OsStr>,
    names: Option<&OsStr>,
    own_pid: i32,
) -> Result<Vec<Passed>, String> {
    let Some(fds) = fds else {
        return Ok(Vec::new());
    };
    let fds_text = fds.to_string_lossy();
    let count: usize = fds_text
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| format!("ignoring LISTEN_FDS={fds_text:?}: not a number of descriptors"))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let pid_text = pid.map(OsStr::to_string_lossy);
    match pid_text.as_deref().map(|text| text.trim().parse::<i32>()) {
        None => {
            return Err(format!(
                "ignoring LISTEN_FDS={count}: LISTEN_PID is not set, so they may not be meant \
                 for huptime"
            ));
        }
        Some(Err(_)) => {
            return Err(format!(
                "ignoring LISTEN_FDS={count}: LISTEN_PID={:?} is not a PID",
                pid_text.unwrap_or_default()
            ));
        }
        Some(Ok(pid)) if pid != own_pid => {
            return Err(format!(
                "ignoring LISTEN_FDS={count}: LISTEN_PID={pid} names another process, not \
                 huptime (pid {own_pid})"
            ));
        }
        Some(Ok(_)) => {}
    }
    let mut names: Vec<Option<String>> = match names {
        Some(names) => names
            .to_string_lossy()
            .split(':')
            .map(|name| Some(name.to_owned()).filter(|n| !n.is_empty()))
            .collect(),
        None => Vec::new(),
    };
    if !names.is_empty() && names.len() != count {
        crate::warn(&format!(
            "LISTEN_FDNAMES has {} names for {count} descriptors; ignoring the names",
            names.len()
        ));
        names.clear();
    }
    names.resize(count, None);
    Ok(names
        .into_iter()
        .zip(FIRST_FD..)
        .map(|(name, fd)| Passed { fd, name })
        .collect())
}

/// Takes the sockets passed to this process (whose PID is `own_pid`), warning about whatever
/// is wrong with them. The valid ones are returned with close-on-exec set: whoever executes the
/// program clears it on the ones it hands over.
pub fn take(own_pid: i32) -> Vec<InheritedSocket> {
    let var = |name: &str| std::env::var_os(name);
    let passed = match parse(
        var(VARIABLES[0]).as_deref(),
        var(VARIABLES[1]).as_deref(),
        var(VARIABLES[2]).as_deref(),
        own_pid,
    ) {
        Ok(passed) => passed,
        Err(warning) => {
            crate::warn(&warning);
            return Vec::new();
        }
    };
    let mut sockets = Vec::new();
    for Passed { fd, name } in passed {
        let label = match &name {
            Some(name) => format!("descriptor {fd} ({name})"),
            None => format!("descriptor {fd}"),
        };
        match sockinfo::identity_of(fd) {
            Ok(identity) => {
                let _ = sockinfo::set_cloexec(fd, true);
                sockets.push(InheritedSocket { fd, identity });
            }
            Err(reason) => {
                crate::warn(&format!("ignoring LISTEN_FDS {label}: {reason}"));
                // Not ours to close, but not the program's either: it does not know about it.
                let _ = sockinfo::set_cloexec(fd, true);
            }
        }
    }
    sockets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        fds: Option<&str>,
        pid: Option<&str>,
        names: Option<&str>,
    ) -> Result<Vec<Passed>, String> {
        parse(
            fds.map(OsStr::new),
            pid.map(OsStr::new),
            names.map(OsStr::new),
            100,
        )
    }

    #[test]
    fn well_formed() {
        assert_eq!(run(None, None, None), Ok(vec![]));
        assert_eq!(run(Some("0"), Some("100"), None), Ok(vec![]));
        assert_eq!(
            run(Some("2"), Some("100"), Some("http:")),
            Ok(vec![
                Passed {
                    fd: 3,
                    name: Some("http".into())
                },
                Passed { fd: 4, name: None },
            ])
        );
        assert_eq!(run(Some("1"), Some("100"), Some("a:b")).unwrap().len(), 1);
    }

    #[test]
    fn malformed() {
        for (fds, pid) in [
            (Some("x"), Some("100")),
            (Some("-1"), Some("100")),
            (Some("99999999"), Some("100")),
            (Some("1"), None),
            (Some("1"), Some("abc")),
            (Some("1"), Some("101")),
        ] {
            let err = run(fds, pid, None).unwrap_err();
            assert!(err.starts_with("ignoring LISTEN_FDS"), "{err}");
        }
        assert!(
            run(Some("1"), Some("7"), None)
                .unwrap_err()
                .contains("another process")
        );
    }
}
