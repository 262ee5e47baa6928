//! `ward-agent`: probes devices with ICMP echo over raw sockets and tells
//! the controller which are up, down or unreachable.
//!
//! - [`packet`]: probe format and stateless reply validation (sans-IO,
//!   from the `ward-engine` crate).
//! - [`engine`]: scheduling, rate limit, timeouts, state machines (the
//!   `ward-engine` crate: sans-IO).
//! - [`sys`]: sockets and batched syscalls (the `ward-sys` crate: the
//!   only `unsafe` in ward).
//! - [`prober`]: engine and sockets on a receiver and an engine thread.
//! - [`targets`], [`probe_command`]: `ward-agent probe`.
//!
//! Invariants: no `unsafe` here (only `ward-sys` has any); the engine never
//! touches a socket or a clock of its own (time is passed in); a reply
//! counts only after its keyed tag validates.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod probe_command;
pub mod prober;
pub mod run;
pub mod send_path;
pub mod spool;
pub mod targets;
pub mod tracer;

pub use ward_engine::{self as engine, netlink, packet};
pub use ward_sys as sys;
