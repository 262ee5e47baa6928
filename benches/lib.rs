//! Shared inputs for ward's benchmarks, so every bench measures the same
//! realistic messages. Benchmarks never touch the network beyond loopback
//! and namespaces they create.
#![forbid(unsafe_code)]

pub mod fleet_agent;

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
