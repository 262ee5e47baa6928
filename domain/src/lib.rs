//! `ward-domain`: the rules that decide what ward says, free of I/O. Given
//! a change (an agent's report, an inventory write, the clock) and the
//! current rows, they say what to write: statuses, alerts, notifications,
//! owners. The controller's store reads the rows and executes the result.
//!
//! Invariants: no tokio, no SQL, no network or file I/O (the dependency
//! list says so); every rule here is tested by plain unit and property
//! tests with times given, never read from a clock. No `unsafe`.
#![forbid(unsafe_code)]

pub mod agent_clock;
pub mod availability;
pub mod check;
pub mod field;
pub mod flap;
pub mod groups;
pub mod maintenance;
pub mod model;
pub mod natural;
pub mod plan;
pub mod quality;
pub mod routing;
pub mod sight;
pub mod trace;

/// A stored value the rules cannot read back (a bug or manual tampering);
/// the store reports it as a corrupt row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);
