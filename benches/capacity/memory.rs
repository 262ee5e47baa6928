//! Memory: resident bytes per target with 100,000 and 1,000,000 targets
//! loaded into the engine (what the agent keeps per target, slack of its
//! growable tables included).

use ward_agent::engine::{Engine, EngineConfig, TargetSpec};
use ward_agent::packet::TagKey;

use crate::measure;
use crate::sustained::loopback_targets;

pub fn run() -> anyhow::Result<()> {
    println!("| targets loaded | RSS growth | bytes per target |");
    println!("|---|---|---|");
    for count in [100_000u32, 1_000_000] {
        let addresses = loopback_targets(count);
        let before = measure::own_rss()?;
        let config = EngineConfig {
            ident: Some(1),
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, TagKey::from_bytes([7; 16]), 0);
        for (i, address) in addresses.iter().enumerate() {
            engine.add_target(TargetSpec::with_defaults(*address), i as u64, 0)?;
        }
        drop(addresses);
        let grown = measure::own_rss()?.saturating_sub(before);
        println!(
            "| {count} | {:.1} MiB | {:.0} |",
            grown as f64 / (1 << 20) as f64,
            grown as f64 / f64::from(count)
        );
        drop(engine);
    }
    println!(
        "\n(Engine::bytes_per_target() = {} bytes: target record + schedule entry)",
        Engine::bytes_per_target()
    );
    Ok(())
}
