//! `ward-capacity`: the agent's capacity, measured side by side with fping
//! and zmap on the same targets in one run (figures go to
//! docs/BENCHMARKS.md).
//!
//! Every tool probes 127.0.0.0/8 addresses from a lab client namespace over
//! a veth to a lab site namespace that answers them (zmap cannot receive on
//! `lo`: its capture filter drops frames carrying the interface's own MAC,
//! which on `lo` is every frame). Nothing leaves the namespaces; every run
//! is bounded in count and time.
//!
//! ```text
//! cargo build --release -p ward-agent -p ward-benches
//! target/release/ward-capacity burst|sustained|memory|outage|all
//! ```
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "a measuring harness waits on wall-clock time"
)]

mod burst;
mod measure;
mod memory;
mod outage;
mod sustained;

use anyhow::bail;
use ward_testkit::lab::{Lab, SiteConfig};

fn main() -> anyhow::Result<()> {
    // Ctrl-C must not leave lab namespaces behind.
    ward_testkit::lab::remove_labs_on_signal()?;
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    ward_testkit::require_root("the capacity harness");
    let lab = || {
        Lab::start(&SiteConfig {
            loopback_via_site: true,
            ..SiteConfig::default()
        })
    };
    match what.as_str() {
        "burst" => burst::run(&lab()?),
        "sustained" => sustained::run(&lab()?),
        "memory" => memory::run(),
        "outage" => tokio::runtime::Runtime::new()?.block_on(outage::run()),
        "all" => {
            burst::run(&lab()?)?;
            sustained::run(&lab()?)?;
            memory::run()?;
            tokio::runtime::Runtime::new()?.block_on(outage::run())
        }
        other => bail!("unknown measurement `{other}`: burst, sustained, memory, outage or all"),
    }
}
