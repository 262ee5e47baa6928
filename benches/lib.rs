//! Shared inputs for ward's benchmarks, so every bench measures the same
//! realistic messages. Benchmarks never touch the network beyond loopback
//! and namespaces they create.
#![forbid(unsafe_code)]

pub mod fleet_agent;

/// Device `name` at `address` of `site` as the harnesses create them:
/// probed every second (500 ms timeout, down after 3 misses, up after 2
/// replies), no parent, tags or profile.
pub fn device_spec(
    name: String,
    address: std::net::IpAddr,
    site: String,
) -> ward_domain::model::DeviceSpec {
    ward_domain::model::DeviceSpec {
        rst_alive: true,
        check: Default::default(),
        profile: None,
        name,
        address,
        site,
        parent_id: None,
        interval_ms: 1000,
        timeout_ms: 500,
        down_after: 3,
        up_after: 2,
        tags: vec![],
        enabled: true,
        severity: Default::default(),
    }
}

use ward_proto::v1::{
    DeviceState, DeviceStatistics, StatisticsBatch, Transition, TransitionBatch, TransitionReason,
};

/// A site outage: `devices` transitions to DOWN in one batch.
pub fn outage_batch(devices: u64) -> TransitionBatch {
    TransitionBatch {
        traces: Vec::new(),
        seq: 1,
        transitions: (0..devices)
            .map(|device_id| Transition {
                device_id,
                state: DeviceState::Down.into(),
                probed_at_unix_us: 1_795_000_000_000_000 + i64::try_from(device_id).unwrap_or(0),
                last_rtt_us: Some(850),
                reason: TransitionReason::Timeouts.into(),
                detail: String::new(),
                degraded: None,
            })
            .collect(),
    }
}

/// One report period of statistics for `devices` devices.
pub fn statistics_batch(devices: u64) -> StatisticsBatch {
    StatisticsBatch {
        seq: 2,
        period_start_unix_ms: 1_795_000_000_000,
        period_ms: 10_000,
        devices: (0..devices)
            .map(|device_id| DeviceStatistics {
                device_id,
                sent: 10,
                received: 10,
                rtt_min_us: 400,
                rtt_avg_us: 520,
                rtt_max_us: 900,
                jitter_us: 60,
                rtt_p50_us: Some(400),
                rtt_p90_us: Some(900),
            })
            .collect(),
    }
}
