//! Helpers shared by the safe-handover tests (`rollback`, `draining`, `unclaimed`, `storm`,
//! `udp`): the Python interpreter and server scripts, an instance's private runtime directory,
//! `huptime --restart/--status` runs, the instance records, and process states beyond "alive".
//!
//! Included with `mod safe_handover;` by each of those test files; not every file uses every
//! helper.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{Endpoint, Sandbox, ServerCommand, ServerProcess, free_port, huptime_binary};

/// How long a control command (`huptime --restart ...`) may take before the test gives up.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// `--timeout` given to `huptime --restart`, well below [`CONTROL_TIMEOUT`].
pub const RESTART_TIMEOUT_ARG: &str = "--timeout=40";
const POLL: Duration = Duration::from_millis(20);

/// The interpreter's own executable (`sys.executable`), not a `python3` wrapper such as pyenv's
/// shim: each start of a server is then one program image, which starts faster and keeps the
/// process tree simple.
pub fn python() -> &'static Path {
    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
    EXECUTABLE.get_or_init(|| {
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run python3: {e}"));
        let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            output.status.success() && Path::new(&path).is_absolute(),
            "python3 does not tell its executable ({}): {path:?}",
            output.status
        );
        PathBuf::from(path)
    })
}

/// A test server script in `tests/servers/`, by absolute path.
pub fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(name);
    assert!(path.is_file(), "no test server {}", path.display());
    path
}

/// A command line as words, so that the same words start the instance and find it again.
#[derive(Clone, Debug)]
pub struct Words(pub Vec<OsString>);

impl Words {
    /// `<python> <tests/servers/script>`.
    pub fn python(script_name: &str) -> Words {
        Words(vec![
            python().as_os_str().to_owned(),
            script(script_name).into_os_string(),
        ])
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Words {
        self.0.push(arg.as_ref().to_owned());
        self
    }

    /// These words run through `wrapper`: `<wrapper> <words...>`.
    pub fn wrapped_in(&self, wrapper: &Path) -> Words {
        let mut words = vec![wrapper.as_os_str().to_owned()];
        words.extend(self.0.iter().cloned());
        Words(words)
    }

    pub fn command(&self) -> ServerCommand {
        self.0[1..]
            .iter()
            .fold(ServerCommand::new(&self.0[0]), |command, word| {
                command.arg(word)
            })
    }
}

/// `servers/flaky.py` on a free port: the files it reads at start-up and writes.
pub struct Flaky {
    pub port: u16,
    pub version: PathBuf,
    pub behaviour: PathBuf,
    pub pid: PathBuf,
    pub starts: PathBuf,
}

impl Flaky {
    pub fn new(sandbox: &Sandbox) -> Flaky {
        Flaky {
            port: free_port(),
            version: sandbox.file("version"),
            behaviour: sandbox.file("behaviour"),
            pid: sandbox.file("server.pid"),
            starts: sandbox.file("starts"),
        }
    }

    pub fn words(&self) -> Words {
        Words::python("flaky.py")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--version-file")
            .arg(&self.version)
            .arg("--behaviour-file")
            .arg(&self.behaviour)
            .arg("--pid-file")
            .arg(&self.pid)
            .arg("--starts-file")
            .arg(&self.starts)
    }

    /// The next start behaves like `behaviour` and answers with `version`.
    pub fn deploy(&self, behaviour: &str, version: &str) {
        write_file(&self.version, version);
        write_file(&self.behaviour, behaviour);
    }

    /// Whether a start as `behaviour` with `version` has begun.
    pub fn started(&self, behaviour: &str, version: &str) -> bool {
        let text = fs::read_to_string(&self.starts).unwrap_or_default();
        text.lines().any(|line| {
            let mut fields = line.split(' ').skip(1);
            fields.next() == Some(behaviour) && fields.next() == Some(version)
        })
    }

    /// The pids of the starts that behaved like `behaviour`, in order.
    pub fn started_as(&self, behaviour: &str) -> Vec<u32> {
        let text = fs::read_to_string(&self.starts).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let pid = fields.next()?.parse().ok()?;
                (fields.next()? == behaviour).then_some(pid)
            })
            .collect()
    }
}

/// Writes `text` so that a starting server never reads half of it.
pub fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{text}\n")).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// A private `XDG_RUNTIME_DIR` inside the sandbox, so that tests running in parallel never see
/// each other's instances.
pub fn runtime_dir(sandbox: &Sandbox) -> PathBuf {
    let path = sandbox.file("run");
    DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    path
}

/// An instance under test: the server's words, its runtime directory, the launched process.
pub struct Instance {
    pub words: Words,
    pub runtime_dir: PathBuf,
    pub launched: ServerProcess,
}

/// Starts `huptime <huptime_args> -- <words>` with its own runtime directory, and waits until
/// it answers on `endpoint`.
pub fn start(
    sandbox: &Sandbox,
    huptime_args: &[&str],
    words: Words,
    endpoint: impl Into<Endpoint>,
) -> Instance {
    let runtime_dir = runtime_dir(sandbox);
    let mut command = words.command().under_huptime(sandbox, huptime_args);
    command.env("XDG_RUNTIME_DIR", &runtime_dir);
    let launched = sandbox.start_server(command, endpoint);
    Instance {
        words,
        runtime_dir,
        launched,
    }
}

/// What a finished control command said.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Instance {
    /// `huptime --restart --timeout=... -- <words>`; returns what it said.
    pub fn restart(&self, sandbox: &Sandbox) -> Outcome {
        self.control(sandbox, &["--restart", RESTART_TIMEOUT_ARG])
    }

    /// `huptime --status -- <words>`.
    pub fn status(&self, sandbox: &Sandbox) -> Outcome {
        self.control(sandbox, &["--status"])
    }

    fn control(&self, sandbox: &Sandbox, args: &[&str]) -> Outcome {
        let mut command = sandbox.command(huptime_binary());
        command
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .args(args)
            .arg("--")
            .args(&self.words.0);
        run(sandbox, command)
    }

    /// The live instance records in this instance's runtime directory.
    pub fn records(&self) -> Vec<Record> {
        records(&self.runtime_dir)
    }
}

/// Runs `command` with its output going to log files in the sandbox (printed if the test
/// fails), and waits for it, at most [`CONTROL_TIMEOUT`].
pub fn run(sandbox: &Sandbox, mut command: Command) -> Outcome {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let stdout_path = sandbox.file(&format!("control-{n}.stdout.log"));
    let stderr_path = sandbox.file(&format!("control-{n}.stderr.log"));
    let started = Instant::now();
    let mut child = command
        .stdout(File::create(&stdout_path).expect("create a log"))
        .stderr(File::create(&stderr_path).expect("create a log"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a control command") {
            break status;
        }
        if started.elapsed() >= CONTROL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {CONTROL_TIMEOUT:?}");
        }
        thread::sleep(POLL);
    };
    let outcome = Outcome {
        code: status.code(),
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        took: started.elapsed(),
    };
    eprintln!("{command:?} -> {outcome:?}");
    outcome
}

/// One instance record (`$XDG_RUNTIME_DIR/huptime/<instance>.<pid>`), the fields tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub instance: String,
    pub pid: u32,
    pub generation: u64,
    pub phase: String,
    /// `attempt,ok|failed,new_pid,millis,<hex detail>` as written, if any.
    pub last: Option<String>,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != "huptime-record/1" {
            return None;
        }
        let mut record = Record {
            instance: String::new(),
            pid: 0,
            generation: 0,
            phase: String::new(),
            last: None,
        };
        for line in lines {
            if line == "end" {
                return (record.pid > 0).then_some(record);
            }
            let (key, value) = line.split_once('=')?;
            match key {
                "instance" => record.instance = value.to_owned(),
                "pid" => record.pid = value.parse().ok()?,
                "generation" => record.generation = value.parse().ok()?,
                "phase" => record.phase = value.to_owned(),
                "last" => record.last = Some(value.to_owned()),
                _ => {}
            }
        }
        None
    }
}

/// The records in `runtime_dir` whose process is still alive (a killed process leaves a stale
/// one behind, which huptime ignores too).
pub fn records(runtime_dir: &Path) -> Vec<Record> {
    let dir = runtime_dir.join("huptime");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<Record> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                return None;
            }
            Record::parse(&fs::read_to_string(entry.path()).ok()?)
        })
        .filter(|record| state(record.pid).is_some_and(|s| s != 'Z' && s != 'X'))
        .collect();
    found.sort_by_key(|record| (record.generation, record.pid));
    found
}

/// The state letter of a process (`R`, `S`, `Z`, ...), or `None` if there is no such process
/// (not even a zombie).
pub fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// The children of `pid` that are zombies: exited, never reaped.
pub fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .collect()
}

/// What each thread of `pid` is doing: `<tid> <name>: <system call number and first argument>`
/// per line (from `/proc/<pid>/task/*/syscall`), to tell where a server that stopped answering
/// waits.
pub fn threads_waiting(pid: u32) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("no process {pid}");
    };
    let mut lines: Vec<String> = tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = fs::read_to_string(path.join("comm")).unwrap_or_default();
            let syscall = fs::read_to_string(path.join("syscall")).unwrap_or_default();
            let call: Vec<&str> = syscall.split_whitespace().take(2).collect();
            Some(format!(
                "{} {}: syscall {}",
                path.file_name()?.to_string_lossy(),
                name.trim(),
                call.join(" ")
            ))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Waits until `check` holds, at most `timeout`; returns whether it did.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}
