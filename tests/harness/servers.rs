//! The test servers (`servers/*.py`, `hup-testserver`) and their command lines, bare or under
//! huptime.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::binaries::huptime_binary;
use crate::sandbox::Sandbox;

/// The Python interpreter that runs the test servers, looked up through `PATH`.
const PYTHON: &str = "python3";

/// The concurrency styles of the Python test servers, one program each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One thread, blocking accept loop, one client at a time.
    Blocking,
    /// `select()` loop, blocking listening socket.
    Select,
    /// `poll()` loop, non-blocking listening socket.
    Poll,
    /// Edge-triggered `epoll` loop, non-blocking listening socket.
    Epoll,
    /// A thread per connection.
    Threaded,
    /// A process per connection, reaped from a SIGCHLD handler.
    Forking,
    /// A pool of threads all blocking in `accept()`.
    Threadpool,
    /// A master that forks worker processes which block in `accept()`.
    Prefork,
    /// `asyncio.start_server`.
    Asyncio,
}

impl Style {
    pub fn script(self) -> &'static str {
        match self {
            Style::Blocking => "blocking.py",
            Style::Select => "select_server.py",
            Style::Poll => "poll_server.py",
            Style::Epoll => "epoll_server.py",
            Style::Threaded => "threaded.py",
            Style::Forking => "forking.py",
            Style::Threadpool => "threadpool.py",
            Style::Prefork => "prefork.py",
            Style::Asyncio => "asyncio_server.py",
        }
    }

    /// Whether replies carry the pid of the main process (the one in the pid file), rather than
    /// that of a worker or per-connection child.
    pub fn replies_from_master(self) -> bool {
        !matches!(self, Style::Forking | Style::Prefork)
    }

    /// Whether a client waiting for a `HOLD` reply leaves the server free to answer others.
    pub fn serves_concurrently(self) -> bool {
        self != Style::Blocking
    }

    /// The server listening on 127.0.0.1:`port`, reading its version from `version_file` and
    /// writing its main pid to `pid_file`.
    pub fn command(self, port: u16, version_file: &Path, pid_file: &Path) -> ServerCommand {
        ServerCommand::python(self.script()).serving(port, version_file, pid_file)
    }
}

/// A server's command line, to be run bare or under huptime.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    program: OsString,
    args: Vec<OsString>,
}

impl ServerCommand {
    pub fn new(program: impl AsRef<OsStr>) -> ServerCommand {
        ServerCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
        }
    }

    /// `python3 <this package>/servers/<script>`.
    pub fn python(script: &str) -> ServerCommand {
        let path = servers_dir().join(script);
        assert!(path.is_file(), "no test server {}", path.display());
        ServerCommand::new(PYTHON).arg(path)
    }

    /// Like [`ServerCommand::python`], but runs the interpreter's own executable rather than
    /// whatever `python3` is in `PATH`, which may be a wrapper script that execs several
    /// programs in turn on its way to the interpreter (pyenv's shims do). For tests that count
    /// what each program image in the launched process does, e.g. the warnings it prints, and
    /// for those that want each start to be one program image: it starts faster and keeps the
    /// process tree simple.
    pub fn python_direct(script: &str) -> ServerCommand {
        let mut command = ServerCommand::python(script);
        command.program = python_executable().into();
        command
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServerCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// `--port <port> --version-file <version_file> --pid-file <pid_file>`: the options with
    /// which a test server listens on 127.0.0.1:`port`, reads its version at start-up and
    /// writes its main pid.
    pub fn serving(self, port: u16, version_file: &Path, pid_file: &Path) -> ServerCommand {
        self.arg("--port")
            .arg(port.to_string())
            .arg("--version-file")
            .arg(version_file)
            .arg("--pid-file")
            .arg(pid_file)
    }

    /// The command line as words, program first: what `huptime --restart -- <words>` and
    /// `--status` are given to find the instance this command started.
    pub fn words(&self) -> Vec<OsString> {
        let mut words = vec![self.program.clone()];
        words.extend(self.args.iter().cloned());
        words
    }

    /// This command run through `wrapper` (a start script that sets things up and then `exec`s
    /// its arguments): `<wrapper> <wrapper_args...> <program> <args...>`.
    pub fn wrapped_in(&self, wrapper: impl AsRef<OsStr>, wrapper_args: &[&str]) -> ServerCommand {
        let mut args: Vec<OsString> = wrapper_args.iter().map(OsString::from).collect();
        args.push(self.program.clone());
        args.extend(self.args.iter().cloned());
        ServerCommand {
            program: wrapper.as_ref().to_owned(),
            args,
        }
    }

    /// The server on its own, as it would run without huptime.
    pub fn bare(&self, sandbox: &Sandbox) -> Command {
        let mut command = sandbox.command(&self.program);
        command.args(&self.args);
        command
    }

    /// `huptime <huptime_args> -- <server command line>`.
    pub fn under_huptime(&self, sandbox: &Sandbox, huptime_args: &[&str]) -> Command {
        let mut command = sandbox.command(huptime_binary());
        command
            .args(huptime_args)
            .arg("--")
            .arg(&self.program)
            .args(&self.args);
        command
    }
}

/// The interpreter that `python3` in `PATH` runs in the end (`sys.executable`), found once.
pub fn python_executable() -> &'static Path {
    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
    EXECUTABLE.get_or_init(|| {
        let output = Command::new(PYTHON)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {PYTHON}: {e}"));
        let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            output.status.success() && Path::new(&path).is_absolute(),
            "{PYTHON} does not tell its executable ({}): {path:?}",
            output.status
        );
        PathBuf::from(path)
    })
}

fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("servers")
}
