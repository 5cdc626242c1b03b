//! Test harness for running real server programs under huptime while clients keep hammering
//! them.
//!
//! Run the tests with `cargo build --workspace && cargo test -p huptime-tests`: the restart tests
//! use the `huptime` and `libhuptime.so` of that build; `--test servers_bare` needs neither.
//!
//! Every wait here is bounded and every process a test starts is tagged, so that it is killed
//! when the test ends, passes or panics, however far it forked or daemonized away.
//!
//! - [`binaries`]: the `huptime` launcher under test, and versioned copies of the Rust test server.
//! - [`ports`]: free TCP ports, and the listening sockets on a port or Unix path (count, inodes).
//! - [`sandbox`]: one test's temporary directory and process tag, and starting servers in it.
//! - [`process`]: tagged processes, liveness, `/proc` lookups, signals, pid files, a started
//!   server.
//! - [`client`]: the test protocol's client side (`GET`, `HOLD`), with failure categories.
//! - [`protocol`]: the protocols a load or a probe speaks: the test protocol, HTTP/1.0, redis,
//!   memcached, each mapped to the same reply (version, pid).
//! - [`load`]: client threads that send requests in a loop and count what happens.
//! - [`servers`]: the test servers and their command lines, bare or under huptime.
//! - [`restart`]: the restart-under-load scenario shared by the restart tests.
//! - [`control`]: `huptime --restart` and `--status` with a test's own runtime directory.
//! - [`installed`]: real programs on the machine (nginx, redis, ...) and their versions.
//! - [`compat`]: the results of the real-program tests and the README table made from them.
//! - [`json`]: a minimal reader for the JSON huptime writes.
//! - [`wait`]: bounded polling.

pub mod binaries;
pub mod client;
pub mod compat;
pub mod control;
pub mod installed;
pub mod json;
pub mod load;
pub mod ports;
pub mod process;
pub mod protocol;
pub mod restart;
pub mod sandbox;
pub mod servers;
pub mod wait;

pub use binaries::{huptime_binary, write_versioned_testserver};
pub use client::{ClientError, Endpoint, FailureKind, Reply, get, hold, wait_for_version};
pub use libc::{SIGHUP, SIGKILL, SIGTERM};
pub use load::{Load, LoadReport};
pub use ports::{free_port, listening_socket_inodes, listening_sockets, unix_listening_inodes};
pub use process::{
    ProcStat, ProcessTag, ServerProcess, environ, parent_pid, pids_alive, proc_stat, processes,
    read_pid_file, send_signal, wait_gone, zombie_children,
};
pub use protocol::{Protocol, memcached_add};
pub use restart::{Mode, RestartPlan, restart_under_load, signal_restart};
pub use sandbox::Sandbox;
pub use servers::{ServerCommand, Style};
pub use wait::{wait_for, wait_until};
