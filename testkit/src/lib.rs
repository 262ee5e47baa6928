//! Test harness for ward: real services and real networks, never mocks.
//!
//! - [`services`]: PostgreSQL, Redis and VictoriaMetrics servers started from
//!   the Debian packages on free loopback ports in temporary directories,
//!   stopped and removed when dropped (also when a test panics). A server
//!   that was already running is never used.
//! - [`browser`]: headless Chromium driven over the DevTools protocol, for
//!   end-to-end tests of the dashboard on loopback.
//! - [`lab`]: network-namespace "sites" in 198.18.0.0/15 and 2001:2::/48
//!   whose hosts can be taken down and brought back, with `tc netem`
//!   impairments, removed when dropped.
//!
//! Nothing here skips: a missing package, missing root or a namespace that
//! cannot be created is a test failure with a message saying what to install
//! or how to run (`testkit/run-tests.sh` installs everything). This crate
//! must never send traffic outside loopback and the namespaces it creates.
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the harness waits for real processes with blocking sleeps and is never on the probe hot path"
)]

pub mod browser;
pub mod lab;
pub mod ports;
mod process;
pub mod services;

/// Prefix of every namespace, temporary directory and process name the
/// harness creates, so a run can check that nothing was left behind.
pub const RESOURCE_PREFIX: &str = "ward-test-";

/// Fails the calling test unless it runs as root.
///
/// Lab namespaces, nftables and raw sockets need root; under `CI=true` as
/// everywhere else this is a failure, never a skip.
pub fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (network namespaces, nftables, raw ICMP sockets). \
         Run the suite as root: `sudo testkit/run-tests.sh`."
    );
}
