//! `--pidfile=FILE`: writing it when the program starts, and reading it to find the instance a
//! control command means.
//!
//! The launcher writes FILE before it executes the program (with one copy the PID is the
//! program's, since the launcher becomes it) and the preload library rewrites it, the same
//! atomic way, each time a new master of the instance is ready. With `--multi` or `--supervise`
//! FILE holds the launcher's PID, which does not change, and the launcher removes it when it
//! ends.
//!
//! Reading never trusts the number alone: it leads to an instance only through a live record
//! (or supervisor file) in the caller's own runtime directory whose process has the recorded
//! start time, so a stale file naming a recycled PID, or another user's process, is never
//! signalled.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::process::{self, Liveness};

/// Writes `pid` to `path` atomically: a temporary file in the same directory, renamed over it.
pub fn write(path: &Path, pid: i32) -> Result<(), Error> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{pid}.tmp"));
    let temporary = PathBuf::from(temporary);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(format!("{pid}\n").as_bytes())?;
        fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        Error::io(format!("cannot write the pid file {}", path.display()), e)
    })
}

/// Removes `path` if it still names `pid` (a newer instance may have taken it over).
pub fn remove_if_names(path: &Path, pid: i32) {
    if fs::read_to_string(path).is_ok_and(|text| text.trim() == pid.to_string()) {
        let _ = fs::remove_file(path);
    }
}

/// The PID a pid file holds, or why it holds none.
pub fn read(path: &Path) -> Result<i32, Error> {
    let bad = |reason: String, stale: bool| Error::BadPidFile {
        path: path.to_owned(),
        reason,
        stale,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad(
                "no such file: the instance is not running (or never wrote it)".into(),
                true,
            ));
        }
        Err(e) => return Err(bad(format!("cannot read it: {e}"), false)),
    };
    if meta.is_dir() {
        return Err(bad("it is a directory, not a pid file".into(), false));
    }
    if !meta.is_file() {
        return Err(bad("it is not a regular file".into(), false));
    }
    // A pid file is a line; anything much longer is not one.
    if meta.len() > 64 {
        return Err(bad(
            format!("it holds {} bytes, not a PID", meta.len()),
            false,
        ));
    }
    let text = fs::read(path).map_err(|e| bad(format!("cannot read it: {e}"), false))?;
    let text = String::from_utf8_lossy(&text);
    parse(&text).ok_or_else(|| {
        let shown: String = text.trim().chars().take(32).collect();
        bad(format!("it holds {shown:?}, not a PID"), false)
    })
}

/// A positive decimal PID, alone on its line.
fn parse(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|pid| *pid > 0)
}

/// Why `pid`, named by the pid file at `path`, is no instance of ours: the message for a pid
/// file that leads nowhere.
pub fn stale(path: &Path, pid: i32, records: &Path) -> Error {
    let reason = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => format!("stale: it names pid {pid}, which is not running"),
        Ok(stat) => {
            let comm = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or("?", |(comm, _)| comm);
            let starttime = huptime_handoff::record::stat_starttime(&stat).unwrap_or(0);
            match process::liveness(pid, starttime, process::uid()) {
                Liveness::Foreign => format!(
                    "stale: it names pid {pid} ({comm}), a process of another user; \
                     huptime only acts on your own instances"
                ),
                Liveness::Gone => format!("stale: it names pid {pid}, which has exited"),
                Liveness::Live => format!(
                    "stale: it names pid {pid} ({comm}), which is not a huptime instance \
                     (no record of it in {})",
                    records.display()
                ),
            }
        }
    };
    Error::BadPidFile {
        path: path.to_owned(),
        reason,
        stale: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn parses_pids_only() {
        assert_eq!(parse("123\n"), Some(123));
        assert_eq!(parse("  77  "), Some(77));
        for bad in [
            "",
            "\n",
            "0",
            "-5",
            "+5",
            "12 13",
            "abc",
            "1e3",
            "99999999999",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn write_then_read() {
        let temp = TempDir::new();
        let path = temp.path().join("app.pid");
        write(&path, 4242).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242\n");
        assert_eq!(read(&path).unwrap(), 4242);
        remove_if_names(&path, 1);
        assert!(path.exists());
        remove_if_names(&path, 4242);
        assert!(!path.exists());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_files() {
        let temp = TempDir::new();
        let status = |path: &Path| read(path).unwrap_err().exit_status();
        assert_eq!(status(&temp.path().join("missing")), 3);
        assert_eq!(status(temp.path()), 1);
        let garbage = temp.path().join("garbage");
        fs::write(&garbage, "hello\n").unwrap();
        assert_eq!(status(&garbage), 1);
        let message = read(&garbage).unwrap_err().to_string();
        assert!(message.contains("\"hello\", not a PID"), "{message}");
        let huge = temp.path().join("huge");
        fs::write(&huge, "1".repeat(100)).unwrap();
        assert_eq!(status(&huge), 1);
    }

    #[test]
    fn stale_reasons() {
        let records = Path::new("/nowhere");
        let path = Path::new("/x.pid");
        let gone = stale(path, i32::MAX, records).to_string();
        assert!(gone.contains("not running"), "{gone}");
        let me = stale(path, std::process::id() as i32, records).to_string();
        assert!(me.contains("not a huptime instance"), "{me}");
    }
}
