//! What crosses `execve` between huptime generations, shared by the launcher and the preload
//! library: the launcher's options, the handover state of one generation, the identity of a bound
//! socket, and the per-instance record that `--status`/`--restart`/`--stop` read.
//!
//! Everything here is plain data with a text encoding, so it can travel in an environment
//! variable or a small file and be unit-tested without `LD_PRELOAD`.

#![warn(missing_docs, rust_2018_idioms)]

pub mod hex;
pub mod identity;
pub mod options;
pub mod record;
pub mod state;

pub use identity::{Address, SockKind, SocketIdentity};
pub use options::{Mode, Options};
pub use record::{InstanceRecord, Phase};
pub use state::HandoverState;

/// Environment variable holding the launcher's [`Options`].
pub const OPTIONS_ENV: &str = "HUPTIME_OPTIONS";
/// Environment variable holding the [`HandoverState`] for the process about to start.
pub const STATE_ENV: &str = "HUPTIME_STATE";
/// Environment variable that overrides where the launcher looks for `libhuptime.so`.
pub const LIB_ENV: &str = "HUPTIME_LIB";
/// File name of the preload library.
pub const LIB_NAME: &str = "libhuptime.so";
/// File name of the engine the preload library loads, from the same directory, in a process
/// that takes part in an instance (crates/shim says why they are two).
pub const ENGINE_NAME: &str = "libhuptime_engine.so";
