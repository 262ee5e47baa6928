//! Memory: resident bytes per target with 100,000 and 1,000,000 targets
//! loaded into the engine (what the agent keeps per target, slack of its
//! growable tables included); and the controller's built-in RTT history
//! (no VictoriaMetrics) full for 10,000 devices.

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

/// The controller's built-in RTT history with a full day of per-minute
/// periods for `DEVICES` devices: resident bytes per device and the time
/// one report of every device takes to record.
pub fn recent_history() -> anyhow::Result<()> {
    use ward_controller::tsdb::recent::RecentRtt;
    use ward_controller::tsdb::{DeviceStatistics, StatisticsReport};
    const DEVICES: i64 = 10_000;
    const DAY_OF_MINUTES: i64 = 24 * 60;
    let before = measure::own_rss()?;
    let recent = RecentRtt::default();
    let start_ms = 1_800_000_000_000;
    let mut slowest = std::time::Duration::ZERO;
    let mut total = std::time::Duration::ZERO;
    for minute in 0..DAY_OF_MINUTES {
        let report = StatisticsReport {
            agent_id: "capacity".into(),
            period_end_ms: start_ms + minute * 60_000,
            devices: (0..DEVICES)
                .map(|device_id| DeviceStatistics {
                    device_id,
                    sent: 60,
                    received: 59,
                    rtt_min_us: 200,
                    rtt_avg_us: 400,
                    rtt_max_us: 900,
                    jitter_us: 50,
                    rtt_quantiles_us: None,
                })
                .collect(),
        };
        let started = std::time::Instant::now();
        recent.record(&report);
        let took = started.elapsed();
        slowest = slowest.max(took);
        total += took;
    }
    let grown = measure::own_rss()?.saturating_sub(before);
    println!(
        "| devices | a day of minutes recorded | RSS growth | bytes per device | one report of every device: mean, slowest |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {DEVICES} | {DAY_OF_MINUTES} reports | {:.1} MiB | {:.0} | {:.1} ms, {:.1} ms |",
        grown as f64 / (1 << 20) as f64,
        grown as f64 / DEVICES as f64,
        total.as_secs_f64() * 1_000.0 / DAY_OF_MINUTES as f64,
        slowest.as_secs_f64() * 1_000.0
    );
    println!(
        "\n(RecentRtt::bytes_per_device() = {} bytes: both tiers full)",
        RecentRtt::bytes_per_device()
    );
    drop(recent);
    Ok(())
}
