//! The test servers (`servers/*.py`, `hup-testserver`) and their command lines, bare or under
//! huptime.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

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
        ServerCommand::python(self.script())
            .arg("--port")
            .arg(port.to_string())
            .arg("--version-file")
            .arg(version_file)
            .arg("--pid-file")
            .arg(pid_file)
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

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServerCommand {
        self.args.push(arg.as_ref().to_owned());
        self
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

fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("servers")
}
