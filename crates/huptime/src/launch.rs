//! Starting a program under huptime: finding the preload library and the command, building the
//! environment that tells the library what to do, recording the instance, and `execve`.

use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use huptime_handoff::state::InheritedSocket;
use huptime_handoff::{
    ENGINE_NAME, HandoverState, InstanceRecord, LIB_ENV, LIB_NAME, OPTIONS_ENV, Options, Phase,
    STATE_ENV,
};

use crate::cli::RunConfig;
use crate::error::Error;
use crate::records::RuntimeDir;
use crate::sigstate::Inherited;
use crate::{activation, process, sockinfo};

/// Searched when `PATH` is unset, as shells do.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A program ready to be started, once, in several copies (`--multi`), or again after a crash
/// (`--supervise`).
pub struct Launch {
    /// Where the command was found; `options.command[0]` is what the user typed.
    program: PathBuf,
    library: PathBuf,
    options: Options,
    signals: Inherited,
    /// `--pidfile`, absolute.
    pidfile: Option<PathBuf>,
    /// Sockets passed by systemd (socket activation), for the first generation.
    activated: Vec<InheritedSocket>,
    /// `--pass-listen-fds`: the program gets `LISTEN_*` as they are (with its own PID).
    pass_listen_fds: bool,
}

/// One start of the program in the calling process: the first (generation 0), or a supervisor
/// starting it again after a crash.
pub struct Start<'a> {
    pub instance: &'a str,
    pub generation: u64,
    /// When the instance first started (seconds since the epoch).
    pub since: u64,
    /// Sockets the program gets back when it binds their addresses; their descriptors are made
    /// to survive the `execve`.
    pub sockets: &'a [InheritedSocket],
}

impl Launch {
    /// Finds the library and the command and fixes the options. Warns when the program is
    /// statically linked, since the preload library cannot work in it.
    pub fn prepare(config: &RunConfig) -> Result<Self, Error> {
        let exe = std::env::current_exe().ok();
        let library = find_library(std::env::var_os(LIB_ENV).as_deref(), exe.as_deref())?;
        let word = &config.command[0];
        let program = resolve_command(word, std::env::var_os("PATH").as_deref())?;
        if is_static_elf(&program) {
            eprintln!(
                "huptime: warning: {} is statically linked: LD_PRELOAD has no effect on it, \
                 so restarts will not keep its sockets",
                word.to_string_lossy()
            );
        }
        let real_cwd =
            std::env::current_dir().map_err(|e| Error::io("cannot get working directory", e))?;
        let cwd = choose_cwd(std::env::var_os("PWD").as_deref(), &real_cwd);
        let pidfile = config.pidfile.as_ref().map(|file| cwd.join(file));
        let supervised = config.copies.is_some() || config.supervise;
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        let activated = if config.pass_listen_fds {
            Vec::new()
        } else {
            activation::take(pid)
        };
        let options = Options {
            mode: config.mode,
            signal: config.signal.number(),
            debug: config.debug,
            wait: config.wait,
            revive: config.revive,
            reuseport: config.copies.is_some(),
            supervised,
            unlink: config.unlink.iter().map(|file| cwd.join(file)).collect(),
            // A supervising launcher keeps the pid file with its own, stable PID.
            pidfile: if supervised { None } else { pidfile.clone() },
            notify_socket: std::env::var_os(NOTIFY_ENV).filter(|v| !v.is_empty()),
            ready_timeout: config.ready_timeout,
            drain_timeout: Some(config.drain_timeout),
            command: config.command.clone(),
            cwd,
        };
        Ok(Self {
            program,
            library,
            options,
            signals: Inherited::capture(),
            pidfile,
            activated,
            pass_listen_fds: config.pass_listen_fds,
        })
    }

    /// The options every generation will run with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// `--pidfile`, made absolute.
    pub fn pidfile(&self) -> Option<&Path> {
        self.pidfile.as_deref()
    }

    /// The sockets systemd passed (socket activation), valid and close-on-exec.
    pub fn activated(&self) -> &[InheritedSocket] {
        &self.activated
    }

    /// Forks a child that records itself and executes the program; returns its PID.
    pub fn spawn(&self, dir: &RuntimeDir, start: &Start<'_>) -> io::Result<i32> {
        // SAFETY: the launcher is single-threaded, so the child may run ordinary code until it
        // execs or exits, and it never returns from this branch.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                let err = self.exec(dir, start);
                eprintln!("huptime: {err}");
                // SAFETY: leaves the forked child without running the parent's destructors.
                unsafe { libc::_exit(i32::from(err.exit_status())) }
            }
            pid => Ok(pid),
        }
    }

    /// Records the calling process as the given generation of its instance and replaces it with
    /// the program. Returns only on failure, with the record removed again.
    pub fn exec(&self, dir: &RuntimeDir, start: &Start<'_>) -> Error {
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        let starttime = match process::starttime(pid) {
            Ok(starttime) => starttime,
            Err(e) => return Error::io("cannot read the process start time", e),
        };
        let now = process::unix_now();
        let instance = start.instance;
        for socket in start.sockets {
            if let Err(e) = sockinfo::set_cloexec(socket.fd, false) {
                return Error::io(format!("cannot pass socket {}", socket.identity), e);
            }
        }
        let state = HandoverState {
            generation: start.generation,
            pid,
            instance: instance.to_owned(),
            stdio: None,
            sigmask: self.signals.blocked,
            ignored: self.signals.ignored,
            ready_fd: None,
            since: start.since,
            restart_began_ms: None,
            sockets: start.sockets.to_vec(),
        };
        let record = InstanceRecord {
            instance: instance.to_owned(),
            pid,
            starttime,
            generation: start.generation,
            mode: self.options.mode,
            phase: Phase::Starting,
            since: start.since,
            generation_since: now,
            signal: self.options.signal,
            command: self.options.command.clone(),
            sockets: start
                .sockets
                .iter()
                .map(|s| s.identity.to_string())
                .collect(),
            listeners: start.sockets.to_vec(),
            connections: 0,
            last: None,
        };
        if let Err(e) = dir.write(&record) {
            return e;
        }
        if self.options.debug {
            eprintln!(
                "huptime[{pid}] gen {}: exec {} as instance {instance} with {} socket(s), \
                 preloading {}, cwd {}",
                start.generation,
                self.program.display(),
                start.sockets.len(),
                self.library.display(),
                self.options.cwd.display()
            );
        }
        let listen = if self.pass_listen_fds {
            ListenEnv::Pass(pid)
        } else {
            ListenEnv::Remove
        };
        let env = program_env(
            std::env::vars_os(),
            &self.library,
            &self.options.encode(),
            &state.encode(),
            listen,
        );
        self.signals.restore();
        let Err(source) = execve(&self.program, &self.options.command, env);
        dir.remove(&record);
        Error::Exec {
            command: self.options.command[0].clone(),
            source,
        }
    }
}

/// The instance name of a first start: unique per boot and readable in `--status`.
pub fn instance_name(pid: i32, since: u64) -> String {
    format!("{pid}-{since}")
}

/// `$HUPTIME_LIB` if set, else `libhuptime.so` beside the launcher, else in `../lib/huptime/`
/// from it; made absolute, since the program may change directory before it restarts. The
/// engine must be beside it, or the program would run without restarts.
fn find_library(explicit: Option<&OsStr>, exe: Option<&Path>) -> Result<PathBuf, Error> {
    let candidates: Vec<PathBuf> = match explicit.filter(|path| !path.is_empty()) {
        Some(path) => vec![PathBuf::from(path)],
        None => {
            let dir = exe.and_then(Path::parent);
            let beside = dir.map(|dir| dir.join(LIB_NAME));
            let installed = dir
                .and_then(Path::parent)
                .map(|prefix| prefix.join("lib/huptime").join(LIB_NAME));
            beside.into_iter().chain(installed).collect()
        }
    };
    candidates
        .iter()
        .filter(|path| path.is_file() && path.with_file_name(ENGINE_NAME).is_file())
        .find_map(|path| fs::canonicalize(path).ok())
        .ok_or(Error::LibraryNotFound(candidates))
}

/// Finds the file to execute the way a shell does: a word with a `/` is a path, anything else
/// is searched in `PATH`, skipping directories and preferring an executable match.
fn resolve_command(word: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, Error> {
    if word.as_bytes().contains(&b'/') {
        let path = PathBuf::from(word);
        return match runnable(&path) {
            Runnable::Yes => Ok(path),
            Runnable::Missing => Err(Error::NotFound {
                command: word.to_owned(),
                searched: false,
            }),
            Runnable::Directory => Err(Error::NotExecutable {
                command: word.to_owned(),
                reason: "Is a directory",
            }),
            Runnable::Denied => Err(Error::NotExecutable {
                command: word.to_owned(),
                reason: "Permission denied",
            }),
        };
    }
    let mut denied = false;
    if !word.is_empty() {
        let search = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
        for dir in search.as_bytes().split(|b| *b == b':') {
            // An empty entry means the current directory.
            let dir = if dir.is_empty() { b"." } else { dir };
            let candidate = Path::new(OsStr::from_bytes(dir)).join(word);
            match runnable(&candidate) {
                Runnable::Yes => return Ok(candidate),
                Runnable::Denied => denied = true,
                Runnable::Missing | Runnable::Directory => {}
            }
        }
    }
    if denied {
        Err(Error::NotExecutable {
            command: word.to_owned(),
            reason: "Permission denied",
        })
    } else {
        Err(Error::NotFound {
            command: word.to_owned(),
            searched: true,
        })
    }
}

enum Runnable {
    Yes,
    Missing,
    Directory,
    Denied,
}

fn runnable(path: &Path) -> Runnable {
    match fs::metadata(path) {
        Err(_) => Runnable::Missing,
        Ok(meta) if meta.is_dir() => Runnable::Directory,
        Ok(_) => {
            let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
                return Runnable::Missing;
            };
            // access() also knows about ACLs and noexec mounts, unlike the mode bits.
            // SAFETY: `c_path` is a valid NUL-terminated string.
            if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0 {
                Runnable::Yes
            } else {
                Runnable::Denied
            }
        }
    }
}

/// Whether `path` is an ELF executable without an interpreter (`PT_INTERP`): statically
/// linked, so `LD_PRELOAD` is never applied. Scripts, dynamic executables and files that
/// cannot be read are not.
fn is_static_elf(path: &Path) -> bool {
    File::open(path)
        .ok()
        .and_then(|file| elf_lacks_interpreter(&file))
        .unwrap_or(false)
}

/// `None` when the file is not a well-formed ELF file.
fn elf_lacks_interpreter(file: &File) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    // Bounds the program header table we are willing to read.
    const MAX_TABLE: usize = 1 << 20;

    let mut header = [0u8; 64];
    let len = file.read_at(&mut header, 0).ok()?;
    if len < 52 || header[..4] != *b"\x7fELF" {
        return None;
    }
    let order = match header[5] {
        1 => ByteOrder::Little,
        2 => ByteOrder::Big,
        _ => return None,
    };
    let (table_offset, entry_size, entries) = match header[4] {
        // 32-bit
        1 => (
            u64::from(order.u32(&header, 0x1c)),
            order.u16(&header, 0x2a),
            order.u16(&header, 0x2c),
        ),
        // 64-bit
        2 if len == 64 => (
            order.u64(&header, 0x20),
            order.u16(&header, 0x36),
            order.u16(&header, 0x38),
        ),
        _ => return None,
    };
    let (entry_size, entries) = (usize::from(entry_size), usize::from(entries));
    if entry_size < 4 || entry_size * entries > MAX_TABLE {
        return None;
    }
    let mut table = vec![0u8; entry_size * entries];
    file.read_exact_at(&mut table, table_offset).ok()?;
    let has_interp = table
        .chunks_exact(entry_size)
        .any(|entry| order.u32(entry, 0) == PT_INTERP);
    Some(!has_interp)
}

/// Byte order of an ELF file's fields.
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(&self, bytes: &[u8], at: usize) -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        match self {
            Self::Little => u16::from_le_bytes(raw),
            Self::Big => u16::from_be_bytes(raw),
        }
    }

    fn u32(&self, bytes: &[u8], at: usize) -> u32 {
        let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        match self {
            Self::Little => u32::from_le_bytes(raw),
            Self::Big => u32::from_be_bytes(raw),
        }
    }

    fn u64(&self, bytes: &[u8], at: usize) -> u64 {
        let (high, low) = (
            u64::from(self.u32(bytes, at)),
            u64::from(self.u32(bytes, at + 4)),
        );
        match self {
            Self::Little => low << 32 | high,
            Self::Big => high << 32 | low,
        }
    }
}

/// The directory a restart re-enters: the logical `$PWD` (which keeps symlinks such as a
/// deploy's `current`) when it names the same directory as the real one, else the real one.
fn choose_cwd(pwd: Option<&OsStr>, real: &Path) -> PathBuf {
    let same_dir = |logical: &Path| match (fs::metadata(logical), fs::metadata(real)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    // `.` and `..` in it would be resolved physically, unlike the symlinks we keep it for.
    let normal = |path: &Path| {
        path.as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .all(|part| part != b"." && part != b"..")
    };
    match pwd.map(Path::new) {
        Some(logical) if logical.is_absolute() && normal(logical) && same_dir(logical) => {
            logical.to_owned()
        }
        _ => real.to_owned(),
    }
}

/// systemd's notification socket: huptime notifies for the program, which does not see it.
const NOTIFY_ENV: &str = "NOTIFY_SOCKET";

/// What becomes of systemd's socket activation variables in the program's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenEnv {
    /// Taken out: huptime turned the sockets into inherited ones.
    Remove,
    /// `--pass-listen-fds`: left as they are, `LISTEN_PID` naming the program (this PID).
    Pass(i32),
}

/// The program's environment: the launcher's, with the library prepended to `LD_PRELOAD`,
/// the huptime options and state set, `NOTIFY_SOCKET` taken out (it is in the options), and
/// the `LISTEN_*` variables taken out or pointed at the program.
fn program_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    library: &Path,
    options: &str,
    state: &str,
    listen: ListenEnv,
) -> Vec<(OsString, OsString)> {
    let mut preload = library.as_os_str().to_owned();
    let mut env = Vec::new();
    for (key, value) in vars {
        if key == "LD_PRELOAD" {
            if !value.is_empty() {
                preload.push(":");
                preload.push(&value);
            }
        } else if activation::VARIABLES.iter().any(|name| key == *name) {
            match listen {
                ListenEnv::Remove => {}
                ListenEnv::Pass(pid) if key == "LISTEN_PID" => {
                    env.push((key, pid.to_string().into()));
                }
                ListenEnv::Pass(_) => env.push((key, value)),
            }
        } else if key != OPTIONS_ENV && key != STATE_ENV && key != NOTIFY_ENV {
            env.push((key, value));
        }
    }
    env.push(("LD_PRELOAD".into(), preload));
    env.push((OPTIONS_ENV.into(), options.into()));
    env.push((STATE_ENV.into(), state.into()));
    env
}

fn execve(
    program: &Path,
    argv: &[OsString],
    env: Vec<(OsString, OsString)>,
) -> io::Result<Infallible> {
    // Strings from argv and environ cannot hold NUL bytes; this only guards the invariant.
    let c_string = |bytes: Vec<u8>| {
        CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let program = c_string(program.as_os_str().as_bytes().to_vec())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|word| c_string(word.as_bytes().to_vec()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = env
        .into_iter()
        .map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            c_string(entry)
        })
        .collect::<Result<_, _>>()?;
    let null_terminated = |strings: &[CString]| {
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        pointers
    };
    let (argv_ptrs, env_ptrs) = (null_terminated(&argv), null_terminated(&env));
    // SAFETY: all pointers point into CStrings alive until after the call, and both arrays
    // end with a null pointer.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn exit_status(result: Result<PathBuf, Error>) -> u8 {
        result.expect_err("resolved").exit_status()
    }

    #[test]
    fn path_search() {
        let temp = TempDir::new();
        let (a, b) = (temp.path().join("a"), temp.path().join("b"));
        fs::create_dir_all(a.join("tool")).unwrap();
        fs::create_dir(&b).unwrap();
        write_file(&a.join("plain"), b"data", 0o644);
        write_file(&b.join("tool"), b"#!/bin/sh\n", 0o755);
        write_file(&b.join("plain"), b"#!/bin/sh\n", 0o755);
        write_file(&a.join("noexec"), b"#!/bin/sh\n", 0o644);
        let path_var = OsString::from(format!("{}:{}", a.display(), b.display()));
        let resolve = |word: &str| resolve_command(OsStr::new(word), Some(&path_var));

        // A directory is skipped; a non-executable file loses to a later executable one.
        assert_eq!(resolve("tool").unwrap(), b.join("tool"));
        assert_eq!(resolve("plain").unwrap(), b.join("plain"));
        assert_eq!(exit_status(resolve("noexec")), 126);
        assert_eq!(exit_status(resolve("nothing-here")), 127);
        assert_eq!(exit_status(resolve("")), 127);
        let default = resolve_command(OsStr::new("sh"), None).unwrap();
        assert!(default.ends_with("bin/sh"), "{}", default.display());
    }

    #[test]
    fn paths_are_not_searched() {
        let temp = TempDir::new();
        let script = temp.path().join("script");
        write_file(&script, b"#!/bin/sh\n", 0o755);
        let data = temp.path().join("data");
        write_file(&data, b"x", 0o644);
        let resolve = |path: &Path| resolve_command(path.as_os_str(), Some(OsStr::new("")));
        assert_eq!(resolve(&script).unwrap(), script);
        assert_eq!(exit_status(resolve(&data)), 126);
        assert_eq!(exit_status(resolve(temp.path())), 126);
        assert_eq!(exit_status(resolve(&temp.path().join("missing"))), 127);
        let err = resolve(temp.path()).unwrap_err().to_string();
        assert!(err.ends_with("Is a directory"), "{err}");
    }

    /// A minimal 64-bit little-endian ELF header with the given program header types.
    fn fake_elf(types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[6] = 1;
        elf[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for kind in types {
            let mut entry = [0u8; 56];
            entry[..4].copy_from_slice(&kind.to_le_bytes());
            elf.extend_from_slice(&entry);
        }
        elf
    }

    /// A minimal 32-bit big-endian ELF header with the given program header types.
    fn fake_elf32_be(types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 52];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 1; // 32-bit
        elf[5] = 2; // big-endian
        elf[6] = 1;
        elf[0x1c..0x20].copy_from_slice(&52u32.to_be_bytes());
        elf[0x2a..0x2c].copy_from_slice(&32u16.to_be_bytes());
        elf[0x2c..0x2e].copy_from_slice(&(types.len() as u16).to_be_bytes());
        for kind in types {
            let mut entry = [0u8; 32];
            entry[..4].copy_from_slice(&kind.to_be_bytes());
            elf.extend_from_slice(&entry);
        }
        elf
    }

    #[test]
    fn static_elf_detection() {
        const PT_LOAD: u32 = 1;
        const PT_INTERP: u32 = 3;
        let temp = TempDir::new();
        let file = |name: &str, contents: &[u8]| {
            let path = temp.path().join(name);
            write_file(&path, contents, 0o755);
            path
        };
        assert!(!is_static_elf(Path::new("/bin/true")));
        assert!(is_static_elf(&file(
            "static",
            &fake_elf(&[PT_LOAD, PT_LOAD])
        )));
        assert!(!is_static_elf(&file(
            "dynamic",
            &fake_elf(&[PT_LOAD, PT_INTERP])
        )));
        assert!(is_static_elf(&file("static32", &fake_elf32_be(&[PT_LOAD]))));
        assert!(!is_static_elf(&file(
            "dynamic32",
            &fake_elf32_be(&[PT_INTERP, PT_LOAD])
        )));
        assert!(!is_static_elf(&file("script", b"#!/bin/sh\nexit 0\n")));
        let truncated = fake_elf(&[PT_LOAD]);
        assert!(!is_static_elf(&file("truncated", &truncated[..80])));
        assert!(!is_static_elf(Path::new("/nonexistent/x")));
    }

    #[test]
    fn cwd_prefers_logical_path_to_same_directory() {
        let temp = TempDir::new();
        let real = temp.path().join("release-1");
        let other = temp.path().join("release-0");
        fs::create_dir(&real).unwrap();
        fs::create_dir(&other).unwrap();
        let current = temp.path().join("current");
        std::os::unix::fs::symlink(&real, &current).unwrap();
        let choose = |pwd: Option<&Path>| choose_cwd(pwd.map(Path::as_os_str), &real);

        assert_eq!(choose(Some(&current)), current);
        assert_eq!(choose(Some(&other)), real);
        assert_eq!(choose(None), real);
        assert_eq!(choose(Some(Path::new("current"))), real);
        assert_eq!(choose(Some(&current.join("../current"))), real);
        assert_eq!(choose(Some(&temp.path().join("missing"))), real);
    }

    #[test]
    fn library_lookup() {
        let temp = TempDir::new();
        let bin = temp.path().join("bin");
        let installed = temp.path().join("lib/huptime");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&installed).unwrap();
        let exe = bin.join("huptime");
        let lookup =
            |explicit: Option<&Path>| find_library(explicit.map(Path::as_os_str), Some(&exe));

        let err = lookup(None).unwrap_err().to_string();
        assert!(
            err.contains(&bin.join(LIB_NAME).display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(&installed.join(LIB_NAME).display().to_string()),
            "{err}"
        );

        write_file(&installed.join(LIB_NAME), b"", 0o644);
        assert!(
            lookup(None).is_err(),
            "the engine must be beside the library"
        );
        write_file(&installed.join(ENGINE_NAME), b"", 0o644);
        let found = lookup(None).unwrap();
        assert_eq!(found, fs::canonicalize(installed.join(LIB_NAME)).unwrap());
        write_file(&bin.join(LIB_NAME), b"", 0o644);
        write_file(&bin.join(ENGINE_NAME), b"", 0o644);
        assert_eq!(
            lookup(None).unwrap(),
            fs::canonicalize(bin.join(LIB_NAME)).unwrap()
        );

        let explicit = temp.path().join("custom.so");
        assert!(
            lookup(Some(&explicit)).is_err(),
            "an explicit library must exist"
        );
        write_file(&explicit, b"", 0o644);
        write_file(&explicit.with_file_name(ENGINE_NAME), b"", 0o644);
        assert_eq!(
            lookup(Some(&explicit)).unwrap(),
            fs::canonicalize(&explicit).unwrap()
        );
    }

    #[test]
    fn environment() {
        let vars = [
            ("PATH", "/bin"),
            ("LD_PRELOAD", "/opt/other.so"),
            (STATE_ENV, "huptime/1;stale"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = program_env(
            vars,
            Path::new("/lib/libhuptime.so"),
            "OPTS",
            "STATE",
            ListenEnv::Remove,
        );
        let get = |key: &str| {
            let values: Vec<_> = env.iter().filter(|(k, _)| k == key).collect();
            assert_eq!(values.len(), 1, "{key} set once");
            values[0].1.clone()
        };
        assert_eq!(get("PATH"), "/bin");
        assert_eq!(get("LD_PRELOAD"), "/lib/libhuptime.so:/opt/other.so");
        assert_eq!(get(OPTIONS_ENV), "OPTS");
        assert_eq!(get(STATE_ENV), "STATE");

        let env = program_env([], Path::new("/l.so"), "O", "S", ListenEnv::Remove);
        assert!(env.contains(&("LD_PRELOAD".into(), "/l.so".into())));
    }

    #[test]
    fn socket_activation_variables() {
        let vars = || {
            [
                ("LISTEN_FDS", "2"),
                ("LISTEN_PID", "1"),
                ("LISTEN_FDNAMES", "a:b"),
                ("NOTIFY_SOCKET", "/run/n"),
                ("HOME", "/root"),
            ]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        };
        let keys = |env: &[(OsString, OsString)]| -> Vec<String> {
            env.iter()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect()
        };
        let removed = program_env(vars(), Path::new("/l.so"), "O", "S", ListenEnv::Remove);
        let removed = keys(&removed);
        assert!(
            removed.iter().all(|kv| !kv.starts_with("LISTEN_")),
            "{removed:?}"
        );
        assert!(removed.iter().all(|kv| !kv.starts_with("NOTIFY_SOCKET")));
        assert!(removed.contains(&"HOME=/root".to_owned()));
        let passed = program_env(vars(), Path::new("/l.so"), "O", "S", ListenEnv::Pass(42));
        let passed = keys(&passed);
        for kv in ["LISTEN_FDS=2", "LISTEN_PID=42", "LISTEN_FDNAMES=a:b"] {
            assert!(passed.contains(&kv.to_owned()), "{kv}: {passed:?}");
        }
    }
}
