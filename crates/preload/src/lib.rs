//! `libhuptime_engine.so`: the engine that keeps a server's listening sockets open across
//! restarts. The preloaded `libhuptime.so` (crates/shim) loads it into a process that takes
//! part in an instance and routes its hooks here. See `DESIGN.md` for the behaviour; this
//! crate is laid out as:
//!
//! - [`hooks`]: the hooks the shim calls, thin doors into the rest;
//! - [`real`], [`sys`], [`procfs`]: the only places that call into libc and the kernel;
//! - [`fdtable`], [`sockets`], [`process`]: what the library knows (lock-free where the hot path
//!   reads it);
//! - [`binding`], [`accepting`], [`descriptors`], [`waits`], [`lifecycle`]: the logic behind
//!   each group of hooks;
//! - [`ready`], [`retire`], [`restart`], [`signals`], [`record`]: generations coming and going;
//! - [`announce`]: systemd notifications and the pid file.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]

mod accepting;
mod announce;
mod binding;
mod descriptors;
mod epoll;
mod errno;
mod fdtable;
mod hooks;
mod internal;
mod lifecycle;
mod lock;
mod log;
mod process;
mod procfs;
mod ready;
mod real;
mod record;
mod reentry;
mod restart;
mod retire;
mod signals;
mod sockets;
mod sys;
mod waits;
