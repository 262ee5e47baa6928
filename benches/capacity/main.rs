//! `ward-capacity`: the agent's capacity, measured side by side with fping,
//! zmap and a minimal raw-socket blaster (the kernel's ceiling) on the
//! same targets in one run, each tool as a whole process (figures go to
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
//! target/release/ward-capacity sweep|tcp-sweep|burst|sustained|memory|recent-history|outage|reports|idle-agent|all
//! target/release/ward-capacity fleet [--agents N --devices N …]   # see fleet/mod.rs
//! target/release/ward-capacity blast FILE   # the blaster alone
//! ```
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "a measuring harness waits on wall-clock time"
)]

mod blast;
mod burst;
mod fleet;
mod idle;
mod measure;
mod memory;
mod outage;
mod reports;
mod sustained;
mod sweep;
mod table;
mod tools;

use anyhow::{Context as _, bail};
use ward_testkit::lab::{Lab, SiteConfig};

fn main() -> anyhow::Result<()> {
    // Ctrl-C must not leave lab namespaces behind.
    ward_testkit::lab::remove_labs_on_signal()?;
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "blast" {
        // Spawned by the harness inside a namespace; measured from outside.
        let file = std::env::args()
            .nth(2)
            .context("usage: ward-capacity blast FILE")?;
        return blast::run(&file);
    }
    ward_testkit::require_root("the capacity harness");
    let lab = || {
        Lab::start(&SiteConfig {
            loopback_via_site: true,
            ..SiteConfig::default()
        })
    };
    match what.as_str() {
        "sweep" => sweep::run(&lab()?),
        "tcp-sweep" => sweep::run_tcp(&lab()?),
        "burst" => burst::run(&lab()?),
        "sustained" => sustained::run(&lab()?),
        "memory" => memory::run(),
        "recent-history" => memory::recent_history(),
        "outage" => tokio::runtime::Runtime::new()?.block_on(outage::run()),
        "reports" => tokio::runtime::Runtime::new()?.block_on(reports::run()),
        "idle-agent" => tokio::runtime::Runtime::new()?.block_on(idle::run()),
        "fleet" => tokio::runtime::Runtime::new()?
            .block_on(fleet::run(fleet::Params::parse(std::env::args().skip(2))?)),
        "all" => {
            sweep::run(&lab()?)?;
            burst::run(&lab()?)?;
            sustained::run(&lab()?)?;
            memory::run()?;
            memory::recent_history()?;
            tokio::runtime::Runtime::new()?.block_on(outage::run())?;
            tokio::runtime::Runtime::new()?.block_on(reports::run())?;
            tokio::runtime::Runtime::new()?.block_on(idle::run())
        }
        other => bail!(
            "unknown measurement `{other}`: sweep, tcp-sweep, burst, sustained, memory, recent-history, outage, reports, idle-agent, fleet, all or blast FILE"
        ),
    }
}
