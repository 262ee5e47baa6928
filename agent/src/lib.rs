//! `ward-agent`: probes devices with ICMP echo over raw sockets and tells
//! the controller which are up, down or unreachable.
//!
//! - [`packet`]: probe format and stateless reply validation (sans-IO).
//!
//! Invariants: only the `sys` module contains `unsafe`; the engine never
//! touches a socket or a clock of its own (time is passed in); a reply
//! counts only after its keyed tag validates.
#![deny(unsafe_code)]

pub mod engine;
pub mod packet;
