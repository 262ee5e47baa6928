//! `ward-agent`: probes devices with ICMP echo over raw sockets and tells
//! the controller which are up, down or unreachable.
//!
//! - [`packet`]: probe format and stateless reply validation (sans-IO).
//! - [`engine`]: scheduling, rate limit, timeouts, state machines (sans-IO).
//! - [`sys`]: sockets and batched syscalls; the only `unsafe` in the agent.
//! - [`prober`]: engine and sockets on a receiver and an engine thread.
//! - [`targets`], [`probe_command`]: `ward-agent probe`.
//!
//! Invariants: only the `sys` module contains `unsafe`; the engine never
//! touches a socket or a clock of its own (time is passed in); a reply
//! counts only after its keyed tag validates.
#![deny(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod engine;
pub mod netlink;
pub mod packet;
pub mod probe_command;
pub mod prober;
pub mod run;
pub mod send_path;
pub mod spool;
pub mod sys;
pub mod targets;
