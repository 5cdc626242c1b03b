//! What the bench needs and where it is: huptime and its library (from the profile directory of
//! this very executable unless `--huptime` says otherwise), our own bench programs beside it,
//! and the programs some figures run (nginx, redis-server, python3, cc), each either found or
//! with a clear reason why not.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// How a program is run.
#[derive(Clone, Copy, Debug)]
pub enum Variant<'a> {
    /// As it is.
    Bare,
    /// `huptime [options] -- program`: the library is active.
    Huptime(&'a [&'a str]),
    /// `LD_PRELOAD=library program`: a library is loaded, and `libhuptime.so` stays passive.
    Preload(&'a Path),
}

/// A directory of our own for configuration files, logs and sockets, removed at the end.
pub struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("huptime-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    /// A fresh subdirectory `name`.
    pub fn dir(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.0.join(name);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub struct Setup {
    pub huptime: PathBuf,
    pub library: PathBuf,
    pub fdbench: PathBuf,
    pub acceptbench: PathBuf,
    pub scratch: Scratch,
}

/// Directories searched for server programs besides `PATH` (nginx lives in `/usr/sbin`).
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn required(path: PathBuf, build: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `{build}` first",
            path.display()
        ))
    }
}

impl Setup {
    /// Finds huptime (at `huptime`, or beside this executable) and the bench programs.
    pub fn find(huptime: Option<PathBuf>) -> Result<Self, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let own_dir = exe.parent().ok_or("this executable has no directory")?;
        let build = build_command(own_dir);
        let huptime = match huptime {
            Some(path) => path,
            None => own_dir.join("huptime"),
        };
        let huptime = required(huptime, &build)?;
        // Where the launcher looks first, unless HUPTIME_LIB says otherwise.
        let library = match std::env::var_os("HUPTIME_LIB") {
            Some(path) => PathBuf::from(path),
            None => huptime.with_file_name("libhuptime.so"),
        };
        Ok(Self {
            library: required(library, &build)?,
            huptime,
            fdbench: required(own_dir.join("fdbench"), &build)?,
            acceptbench: required(own_dir.join("acceptbench"), &build)?,
            scratch: Scratch::create()?,
        })
    }

    /// Whether huptime comes from a release build (its figures mean something).
    pub fn is_release(&self) -> bool {
        self.huptime
            .parent()
            .is_some_and(|dir| dir.ends_with("release"))
    }

    /// A warning when the library or its engine is older than the sources it is built from
    /// (figures of a stale build would describe code that no longer exists).
    pub fn staleness(&self) -> Option<String> {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
        let engine = self.library.with_file_name("libhuptime_engine.so");
        let builds: [(&Path, &[&str]); 2] = [
            (&self.library, &["shim/src"]),
            (&engine, &["preload/src", "handoff/src"]),
        ];
        builds.iter().find_map(|(built, sources)| {
            let built_at = fs::metadata(built).and_then(|m| m.modified()).ok()?;
            let newest = sources
                .iter()
                .filter_map(|dir| newest_file(&crates.join(dir)))
                .max()?;
            (newest > built_at).then(|| {
                format!(
                    "warning: {} is older than its sources: rebuild it (`cargo build \
                     --workspace`, with --release for real figures)",
                    built.display()
                )
            })
        })
    }

    /// `program args…` run as `variant` says, with no stdio and none of our preloads.
    pub fn command<S: AsRef<OsStr>>(
        &self,
        variant: Variant<'_>,
        program: &Path,
        args: &[S],
    ) -> Command {
        let mut command = match variant {
            Variant::Bare | Variant::Preload(_) => Command::new(program),
            Variant::Huptime(options) => {
                let mut command = Command::new(&self.huptime);
                command.args(options).arg("--").arg(program);
                command
            }
        };
        command
            .args(args)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Variant::Preload(library) = variant {
            command.env("LD_PRELOAD", library);
        }
        command
    }
}

/// What to run to build what the bench needs, for the profile it was built with.
fn build_command(own_dir: &Path) -> String {
    if own_dir.file_name().is_some_and(|name| name == "release") {
        "cargo build --release --workspace".into()
    } else {
        "cargo build --workspace".into()
    }
}

fn newest_file(dir: &Path) -> Option<SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                newest_file(&entry.path())
            } else {
                meta.modified().ok()
            }
        })
        .max()
}

/// `name` from `PATH` or the sbin directories, or a message saying what to install.
pub fn program(name: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{name} not found (install the Debian package {package})"))
}

/// The real python3 interpreter: `python3` in `PATH` may be a wrapper script (a pyenv shim is
/// a bash script that costs more than Python's own start-up).
pub fn python() -> Result<PathBuf, String> {
    let found = program("python3", "python3")?;
    let output = Command::new(&found)
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", found.display()))?;
    let real = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && is_executable(&real) {
        Ok(real)
    } else {
        Err(format!(
            "{} does not say where its interpreter is",
            found.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_what_to_install() {
        let error = program("huptime-bench-no-such-program", "some-package").unwrap_err();
        assert_eq!(
            error,
            "huptime-bench-no-such-program not found (install the Debian package some-package)"
        );
    }

    #[test]
    fn a_missing_build_says_what_to_run() {
        let error = required(PathBuf::from("/nonexistent/huptime"), "cargo build").unwrap_err();
        assert_eq!(
            error,
            "/nonexistent/huptime is missing: run `cargo build` first"
        );
    }
}
