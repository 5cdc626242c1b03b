//! The per-user runtime directory and the instance records in it.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use huptime_handoff::InstanceRecord;
use huptime_handoff::record::runtime_dir;

use crate::error::Error;
use crate::process::{self, Liveness};

/// The runtime directory, checked to be private to the current user.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

/// The records found by one [`RuntimeDir::scan`].
#[derive(Debug, Default)]
pub struct Scan {
    /// Records whose process is running and ours.
    pub live: Vec<InstanceRecord>,
    /// Records whose process is gone; their files have been removed.
    pub stale: Vec<InstanceRecord>,
    /// Launchers (`--multi`, `--supervise`) that are running and ours.
    pub supervisors: Vec<SupervisorMark>,
}

/// Suffix of a supervisor's file: `<instance>.supervisor`, beside the records of the instance
/// (whose files end in `.<pid>`, so the names never clash).
const SUPERVISOR_SUFFIX: &str = ".supervisor";
const SUPERVISOR_FORMAT: &str = "huptime-supervisor/1";

/// A launcher that stays the parent of an instance (`--multi`, `--supervise`): written by it
/// beside the instance's records, so that `--pidfile` naming the launcher finds the instance,
/// `--status` shows it, and `--stop` of a `--supervise` instance goes through it (stopping the
/// program behind its back would look like a crash, and it would start it again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorMark {
    /// The instance it supervises.
    pub instance: String,
    /// The launcher's PID and start time.
    pub pid: i32,
    pub starttime: u64,
    /// `--supervise`: it starts the program again when it crashes.
    pub revives: bool,
}

impl SupervisorMark {
    fn file_name(&self) -> String {
        format!("{}{SUPERVISOR_SUFFIX}", self.instance)
    }

    fn encode(&self) -> String {
        format!(
            "{SUPERVISOR_FORMAT}\ninstance={}\npid={}\nstarttime={}\nrevives={}\nend\n",
            self.instance,
            self.pid,
            self.starttime,
            u8::from(self.revives)
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != SUPERVISOR_FORMAT {
            return None;
        }
        let (mut instance, mut pid, mut starttime, mut revives) = (None, None, None, false);
        for line in lines {
            if line == "end" {
                return Some(Self {
                    instance: instance?,
                    pid: pid?,
                    starttime: starttime?,
                    revives,
                });
            }
            let (key, value) = line.split_once('=')?;
            match key {
                "instance" if huptime_handoff::state::is_instance_name(value) => {
                    instance = Some(value.to_owned());
                }
                "pid" => pid = Some(value.parse().ok().filter(|pid: &i32| *pid > 0)?),
                "starttime" => starttime = Some(value.parse().ok()?),
                "revives" => revives = value == "1",
                _ => {}
            }
        }
        None
    }
}

impl RuntimeDir {
    /// Where the directory is for this user and environment.
    pub fn location() -> PathBuf {
        runtime_dir(
            std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
            process::uid(),
        )
    }

    /// Opens the directory, creating it (mode 0700) if it does not exist.
    pub fn create() -> Result<Self, Error> {
        let path = Self::location();
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot create runtime directory {}", path.display()),
                    e,
                ));
            }
        }
        check_private(&path, process::uid())?;
        Ok(Self { path })
    }

    /// Opens the directory if it exists; `None` means no instance has ever run.
    pub fn open() -> Result<Option<Self>, Error> {
        let path = Self::location();
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            _ => {
                check_private(&path, process::uid())?;
                Ok(Some(Self { path }))
            }
        }
    }

    /// Writes a record atomically (temporary file, then rename), readable by its owner only.
    pub fn write(&self, record: &InstanceRecord) -> Result<(), Error> {
        self.write_file(&record.file_name(), &record.encode())
    }

    fn write_file(&self, name: &str, contents: &str) -> Result<(), Error> {
        let temp = self.path.join(format!(".{name}.tmp"));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temp)?;
            file.write_all(contents.as_bytes())?;
            fs::rename(&temp, self.path.join(name))
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&temp);
            Error::io(
                format!("cannot write {}", self.path.join(name).display()),
                e,
            )
        })
    }

    /// Removes a record's file, if it is still there.
    pub fn remove(&self, record: &InstanceRecord) {
        let _ = fs::remove_file(self.path.join(record.file_name()));
    }

    /// Writes a supervisor's file, atomically and readable by its owner only.
    pub fn write_supervisor(&self, mark: &SupervisorMark) -> Result<(), Error> {
        self.write_file(&mark.file_name(), &mark.encode())
    }

    /// Removes a supervisor's file.
    pub fn remove_supervisor(&self, mark: &SupervisorMark) {
        let _ = fs::remove_file(self.path.join(mark.file_name()));
    }

    /// Reads every record, sorting live from stale and deleting the stale ones' files.
    /// Unreadable files, files of other formats and temporary files are skipped.
    pub fn scan(&self) -> Result<Scan, Error> {
        let uid = process::uid();
        let entries = fs::read_dir(&self.path)
            .map_err(|e| Error::io(format!("cannot read {}", self.path.display()), e))?;
        let mut scan = Scan::default();
        for entry in entries.flatten() {
            if let Some(mark) = read_supervisor(&entry.path(), &entry.file_name()) {
                match process::liveness(mark.pid, mark.starttime, uid) {
                    Liveness::Live => scan.supervisors.push(mark),
                    Liveness::Gone => self.remove_supervisor(&mark),
                    Liveness::Foreign => {}
                }
                continue;
            }
            let Some(record) = read_record(&entry.path(), &entry.file_name()) else {
                continue;
            };
            match process::liveness(record.pid, record.starttime, uid) {
                Liveness::Live => scan.live.push(record),
                Liveness::Gone => {
                    self.remove(&record);
                    scan.stale.push(record);
                }
                Liveness::Foreign => {}
            }
        }
        Ok(scan)
    }
}

fn read_record(path: &Path, name: &OsStr) -> Option<InstanceRecord> {
    if name.as_encoded_bytes().starts_with(b".") {
        return None;
    }
    let record = InstanceRecord::decode(&fs::read_to_string(path).ok()?).ok()?;
    // A file under another name was not written for this record: leave it alone.
    (record.file_name().as_str() == name).then_some(record)
}

fn read_supervisor(path: &Path, name: &OsStr) -> Option<SupervisorMark> {
    let name = name.to_str()?;
    if name.starts_with('.') || !name.ends_with(SUPERVISOR_SUFFIX) {
        return None;
    }
    let mark = SupervisorMark::decode(&fs::read_to_string(path).ok()?)?;
    (mark.file_name() == name).then_some(mark)
}

/// Refuses a directory someone else could plant records in or read them from.
fn check_private(path: &Path, uid: u32) -> Result<(), Error> {
    let refuse = |reason: String| Error::UnsafeRuntimeDir {
        path: path.to_owned(),
        reason,
    };
    let meta = fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("cannot inspect {}", path.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it belongs to uid {}, not {uid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "group or others can access it (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use huptime_handoff::{Mode, Phase};
    use std::os::unix::fs::PermissionsExt;

    fn record(instance: &str, pid: i32, starttime: u64) -> InstanceRecord {
        InstanceRecord {
            instance: instance.into(),
            pid,
            starttime,
            generation: 0,
            mode: Mode::Fork,
            phase: Phase::Serving,
            since: 1,
            generation_since: 1,
            signal: libc::SIGHUP,
            command: vec!["srv".into()],
            sockets: vec![],
            listeners: vec![],
            connections: 0,
            last: None,
        }
    }

    #[test]
    fn private_directory_checks() {
        let temp = TempDir::new();
        let uid = process::uid();
        let dir = temp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_private(&dir, uid).is_ok());
        assert!(check_private(&dir, uid + 1).is_err());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(check_private(&dir, uid).is_err());
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_private(&link, uid).is_err());
        let file = temp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(check_private(&file, uid).is_err());
    }

    #[test]
    fn scan_sorts_live_from_stale() {
        let temp = TempDir::new();
        let dir = RuntimeDir {
            path: temp.path().to_owned(),
        };
        let pid = std::process::id() as i32;
        let start = process::starttime(pid).unwrap();
        let live = record("live", pid, start);
        let stale = record("stale", pid, start + 1);
        dir.write(&live).unwrap();
        dir.write(&stale).unwrap();
        fs::write(temp.path().join("junk"), "not a record").unwrap();
        fs::write(temp.path().join("renamed.1"), live.encode()).unwrap();

        let scan = dir.scan().unwrap();
        assert_eq!(scan.live, vec![live.clone()]);
        assert_eq!(scan.stale, vec![stale.clone()]);
        assert!(!temp.path().join(stale.file_name()).exists());
        assert!(temp.path().join("junk").exists());
        let mode = fs::metadata(temp.path().join(live.file_name()))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        dir.remove(&live);
        assert!(dir.scan().unwrap().live.is_empty());
    }

    #[test]
    fn supervisor_marks() {
        let temp = TempDir::new();
        let dir = RuntimeDir {
            path: temp.path().to_owned(),
        };
        let pid = std::process::id() as i32;
        let mark = SupervisorMark {
            instance: "1-2".into(),
            pid,
            starttime: process::starttime(pid).unwrap(),
            revives: true,
        };
        assert_eq!(SupervisorMark::decode(&mark.encode()), Some(mark.clone()));
        assert_eq!(
            SupervisorMark::decode("huptime-supervisor/1\npid=1\n"),
            None
        );
        let stale = SupervisorMark {
            instance: "3-4".into(),
            starttime: mark.starttime + 1,
            ..mark.clone()
        };
        dir.write_supervisor(&mark).unwrap();
        dir.write_supervisor(&stale).unwrap();
        let scan = dir.scan().unwrap();
        assert_eq!(scan.supervisors, vec![mark.clone()]);
        assert!(scan.live.is_empty() && scan.stale.is_empty());
        assert!(!temp.path().join("3-4.supervisor").exists());
        dir.remove_supervisor(&mark);
        assert!(dir.scan().unwrap().supervisors.is_empty());
    }
}
