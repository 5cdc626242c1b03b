//! What the bench needs and where it is: huptime and its library (from the profile directory of
//! this very executable unless `--huptime` says otherwise), our own bench programs beside it,
//! the original C huptime when `--original` names it, and the programs some figures run
//! (nginx, redis-server, python3, cc), each either found or with a clear reason why not.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
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
    /// The original C huptime as its launcher runs a program: its library preloaded with the
    /// environment the launcher sets, in exec mode when `exec` (else fork mode). The launcher
    /// only sets these and `exec`s the program, so its own start is not charged to the library.
    Original { library: &'a Path, exec: bool },
    /// The original's launcher itself, `python2 bin/huptime program`: how users start programs
    /// under it.
    OriginalLauncher(&'a Launcher),
}

/// The original C huptime (github.com/amscanne/huptime) as its `make build` leaves it: the
/// library `lib/huptime/huptime.so` and the launcher `bin/huptime` in one tree.
pub struct Original {
    pub library: PathBuf,
    /// The launcher and a Python 2 to run it (it is a Python 2 script), or why not.
    pub launcher: Result<Launcher, String>,
}

#[derive(Debug)]
pub struct Launcher {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Original {
    /// The original from `path`, its library or its launcher.
    fn find(path: &Path) -> Result<Self, String> {
        let (library, script) = original_tree(path)?;
        let launcher = if script.is_file() {
            python2().map(|python| Launcher { python, script })
        } else {
            Err(format!("no launcher at {}", script.display()))
        };
        Ok(Self { library, launcher })
    }
}

/// The library and the launcher of the original's tree that `path` (either of them) is in.
/// The launcher loads `../lib/huptime/huptime.so` from its own real path.
fn original_tree(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let path = path
        .canonicalize()
        .map_err(|e| format!("--original {}: {e}", path.display()))?;
    let mut start = [0; 2];
    fs::File::open(&path)
        .and_then(|mut file| file.read_exact(&mut start))
        .map_err(|e| format!("--original {}: {e}", path.display()))?;
    // The launcher is a script; anything else is taken for the library.
    let is_launcher = &start == b"#!";
    let tree = path
        .ancestors()
        .nth(if is_launcher { 2 } else { 3 })
        .ok_or_else(|| format!("--original {}: not in a built tree", path.display()))?;
    let (library, script) = (
        tree.join("lib/huptime/huptime.so"),
        tree.join("bin/huptime"),
    );
    if !is_launcher {
        return Ok((path, script));
    }
    if !library.is_file() {
        return Err(format!(
            "--original {}: its library {} is missing (run `make build` in its tree)",
            path.display(),
            library.display()
        ));
    }
    Ok((library, path))
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
    pub original: Option<Original>,
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
    /// Finds huptime (at `huptime`, or beside this executable), the bench programs, and the
    /// original C huptime at `original` when given.
    pub fn find(huptime: Option<PathBuf>, original: Option<PathBuf>) -> Result<Self, String> {
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
            original: original.as_deref().map(Original::find).transpose()?,
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
            Variant::Bare | Variant::Preload(_) | Variant::Original { .. } => Command::new(program),
            Variant::Huptime(options) => {
                let mut command = Command::new(&self.huptime);
                command.args(options).arg("--").arg(program);
                command
            }
            Variant::OriginalLauncher(launcher) => {
                let mut command = Command::new(&launcher.python);
                command.arg(&launcher.script).arg(program);
                command
            }
        };
        command
            .args(args)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match variant {
            Variant::Preload(library) => {
                command.env("LD_PRELOAD", library);
            }
            // What the original's launcher sets (its `--exec` gives exec mode).
            Variant::Original { library, exec } => {
                command.env("LD_PRELOAD", library).envs([
                    ("HUPTIME_DEBUG", "false"),
                    ("HUPTIME_MODE", if exec { "exec" } else { "fork" }),
                    ("HUPTIME_UNLINK", ""),
                    ("HUPTIME_MULTI", "false"),
                    ("HUPTIME_REVIVE", "false"),
                    ("HUPTIME_WAIT", "false"),
                ]);
            }
            _ => {}
        }
        command
    }

    /// The original as its launcher runs a program (fork mode), when `--original` was given.
    pub fn original(&self) -> Option<Variant<'_>> {
        self.original.as_ref().map(|original| Variant::Original {
            library: &original.library,
            exec: false,
        })
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
/// A shared library `lib<name>.so` built with `cc` in `dir` from `source` (C).
pub fn c_library(dir: &Path, name: &str, source: &str) -> Result<PathBuf, String> {
    let cc = program("cc", "gcc")?;
    let source_file = dir.join(format!("{name}.c"));
    let library = dir.join(format!("lib{name}.so"));
    fs::write(&source_file, source).map_err(|e| format!("{}: {e}", source_file.display()))?;
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-pthread", "-o"])
        .arg(&library)
        .arg(&source_file)
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if status.success() {
        Ok(library)
    } else {
        Err(format!("cc could not build lib{name}.so ({status})"))
    }
}

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

/// The real interpreter of the first Python 2 in `PATH` that runs (a pyenv shim for a version
/// not selected fails), for the original's launcher.
fn python2() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["python2.7", "python2"].map(|name| dir.join(name)))
        .filter(|candidate| is_executable(candidate))
        .find_map(|candidate| {
            let output = Command::new(candidate)
                .args(["-c", "import sys; print(sys.executable)"])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let real = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            (output.status.success() && is_executable(&real)).then_some(real)
        })
        .ok_or_else(|| "its launcher is a Python 2 script, and no python2 in PATH runs".into())
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
    fn the_original_is_found_from_its_library_or_its_launcher() {
        let tree = std::env::temp_dir().join(format!("huptime-bench-tree-{}", std::process::id()));
        let (library, script) = (
            tree.join("lib/huptime/huptime.so"),
            tree.join("bin/huptime"),
        );
        for (file, text) in [(&library, "\x7fELF"), (&script, "#!/usr/bin/env python\n")] {
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }
        let tree = tree.canonicalize().unwrap();
        let expected = (
            tree.join("lib/huptime/huptime.so"),
            tree.join("bin/huptime"),
        );
        assert_eq!(original_tree(&library), Ok(expected.clone()));
        assert_eq!(original_tree(&script), Ok(expected));
        fs::remove_file(&library).unwrap();
        assert!(
            original_tree(&script)
                .unwrap_err()
                .contains("run `make build`")
        );
        fs::remove_dir_all(&tree).unwrap();
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
