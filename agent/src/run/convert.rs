//! Between the engine's types and the wire's.

use std::net::IpAddr;

use ward_proto::v1 as pb;

use crate::clock::Clock;
use crate::engine::quality::{Level, RttFigure, Thresholds};
use crate::engine::trace::TraceResult;
use crate::engine::{Cause, Check, PeriodStats, RttQuantiles, Status, TargetSpec, Transition};
use crate::prober::IoCounters;
use crate::tracer::TraceStats;

/// A transition as the controller gets it.
pub fn transition(clock: &Clock, transition: &Transition) -> pb::Transition {
    let state = match transition.status {
        Status::Up if transition.degraded.is_some() => pb::DeviceState::Degraded,
        Status::Up => pb::DeviceState::Up,
        Status::Down => pb::DeviceState::Down,
        Status::Unreachable => pb::DeviceState::Unreachable,
        Status::Unknown => pb::DeviceState::Unspecified,
    };
    let (reason, detail) = match transition.cause {
        Cause::Replies => (pb::TransitionReason::Replies, String::new()),
        Cause::Timeouts => (pb::TransitionReason::Timeouts, String::new()),
        Cause::Quality => (pb::TransitionReason::Quality, String::new()),
        Cause::IcmpError { kind, reporter } => (
            pb::TransitionReason::IcmpUnreachable,
            format!(
                "{}, from {reporter}",
                kind.describe(crate::packet::Family::of(reporter))
            ),
        ),
    };
    pb::Transition {
        device_id: transition.id,
        state: state.into(),
        probed_at_unix_us: clock.to_unix_us(transition.probed_at),
        last_rtt_us: transition.last_rtt_us,
        reason: reason.into(),
        detail,
        degraded: transition.degraded.map(|degradation| pb::Degradation {
            level: match degradation.level {
                Level::Warning => pb::DegradedLevel::Warning,
                Level::Critical => pb::DegradedLevel::Critical,
            }
            .into(),
            loss_permille: u32::from(degradation.loss_permille),
            rtt_us: degradation.rtt_us,
        }),
    }
}

/// One device's statistics for a period, with its RTT `quantiles`.
pub fn statistics(
    device_id: u64,
    stats: &PeriodStats,
    quantiles: RttQuantiles,
) -> pb::DeviceStatistics {
    pb::DeviceStatistics {
        device_id,
        sent: stats.sent,
        received: stats.received,
        rtt_min_us: stats.rtt_min_us,
        rtt_avg_us: stats.rtt_avg_us(),
        rtt_max_us: stats.rtt_max_us,
        jitter_us: stats.jitter_us(),
        rtt_p50_us: quantiles.map(|(p50, _)| p50),
        rtt_p90_us: quantiles.map(|(_, p90)| p90),
    }
}

/// Why a target from the controller cannot be probed.
#[derive(Debug, thiserror::Error)]
#[error("device {device_id}: {message}")]
pub struct TargetError {
    /// The device.
    pub device_id: u64,
    /// What is wrong.
    pub message: String,
}

/// The engine's spec for a target the controller assigned.
pub fn target_spec(target: &pb::ProbeTarget) -> Result<TargetSpec, TargetError> {
    let error = |message: String| TargetError {
        device_id: target.device_id,
        message,
    };
    let address: IpAddr = target
        .address
        .parse()
        .map_err(|_| error(format!("`{}` is not an IP address", target.address)))?;
    let threshold = |name: &str, value: u32| {
        u8::try_from(value)
            .ok()
            .filter(|&value| value > 0)
            .ok_or_else(|| error(format!("{name} {value} is not between 1 and 255")))
    };
    if target.interval_ms == 0 || target.timeout_ms == 0 {
        return Err(error("interval and timeout must be positive".into()));
    }
    let check = match &target.tcp {
        None => Check::Icmp,
        Some(tcp) => {
            let port = u16::try_from(tcp.port)
                .ok()
                .filter(|&port| port > 0)
                .ok_or_else(|| {
                    error(format!("TCP port {} is not between 1 and 65535", tcp.port))
                })?;
            let rst_alive = tcp.rst_alive;
            if tcp.icmp_too {
                Check::IcmpOrTcp { port, rst_alive }
            } else {
                Check::Tcp { port, rst_alive }
            }
        }
    };
    Ok(TargetSpec {
        source: None,
        check,
        address,
        interval_ms: target.interval_ms,
        timeout_ms: target.timeout_ms,
        down_after: threshold("down_after", target.down_after)?,
        up_after: threshold("up_after", target.up_after)?,
    })
}

/// How the controller asks a target's loss and RTT to be judged, if at
/// all; thresholds beyond the engine's range are taken at its most.
pub fn quality(target: &pb::ProbeTarget) -> Option<Thresholds> {
    let quality = target.quality.as_ref()?;
    let permille = |value: u32| u16::try_from(value.min(1000)).unwrap_or(1000);
    Some(Thresholds {
        window_ms: quality.window_ms,
        clear_window_ms: quality.clear_window_ms,
        loss_warn_permille: permille(quality.loss_warn_permille),
        loss_crit_permille: permille(quality.loss_crit_permille),
        rtt_warn_us: quality.rtt_warn_us,
        rtt_crit_us: quality.rtt_crit_us,
        rtt_figure: if quality.rtt_p90 {
            RttFigure::P90
        } else {
            RttFigure::Median
        },
    })
}

/// The level a newly assigned UP target starts degraded at, as the
/// controller holds it.
pub fn known_level(target: &pb::ProbeTarget) -> Option<Level> {
    match pb::DegradedLevel::try_from(target.known_level) {
        Ok(pb::DegradedLevel::Warning) => Some(Level::Warning),
        Ok(pb::DegradedLevel::Critical) => Some(Level::Critical),
        _ => None,
    }
}

/// Where a newly assigned target starts: UP or DOWN as the controller
/// holds it, else undecided (see `ProbeTarget.known_state`).
pub fn known_status(target: &pb::ProbeTarget) -> Status {
    match pb::DeviceState::try_from(target.known_state) {
        Ok(pb::DeviceState::Up | pb::DeviceState::Degraded) => Status::Up,
        Ok(pb::DeviceState::Down) => Status::Down,
        _ => Status::Unknown,
    }
}

/// A finished trace as reported.
pub fn trace(trace: &TraceResult, traced_at_unix_ms: i64) -> pb::Trace {
    pb::Trace {
        device_ids: trace.devices.clone(),
        target: trace.target.to_string(),
        hops: trace
            .hops
            .iter()
            .map(|hop| pb::TraceHop {
                ttl: u32::from(hop.ttl),
                address: hop
                    .address
                    .map(|address| address.to_string())
                    .unwrap_or_default(),
                rtt_us: hop
                    .rtt_ns
                    .map(|ns| u32::try_from(ns / 1000).unwrap_or(u32::MAX)),
            })
            .collect(),
        reached: trace.reached,
        traced_at_unix_ms,
    }
}

/// The heartbeat's counters.
pub fn counters(
    io: &IoCounters,
    traces: Option<&TraceStats>,
    spool_records: u64,
    spool_statistics_dropped: u64,
) -> pb::EngineCounters {
    use std::sync::atomic::Ordering::Relaxed;
    pb::EngineCounters {
        probes_sent: io.sent.load(Relaxed),
        send_errors: io.send_errors.load(Relaxed),
        replies_matched: io.matched.load(Relaxed),
        replies_invalid: io.bad_tag.load(Relaxed)
            + io.malformed.load(Relaxed)
            + io.engine.replies_invalid.load(Relaxed)
            + io.engine.tcp_unmatched.load(Relaxed),
        replies_duplicate: io.engine.replies_duplicate.load(Relaxed),
        replies_late: io.engine.replies_late.load(Relaxed),
        icmp_errors: io.engine.icmp_errors.load(Relaxed),
        rx_kernel_drops: io.kernel_drops.load(Relaxed) + io.queue_overflow.load(Relaxed),
        rate_limited: io.engine.rate_limited.load(Relaxed),
        spool_records,
        spool_statistics_dropped,
        targets: io.targets.load(Relaxed),
        traces_started: traces.map_or(0, |stats| stats.started.load(Relaxed)),
        traces_shared: traces.map_or(0, |stats| stats.shared.load(Relaxed)),
        traces_skipped: traces.map_or(0, |stats| {
            stats.skipped.load(Relaxed) + stats.no_socket.load(Relaxed)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::IcmpErrorKind;

    #[test]
    fn a_new_owner_starts_from_up_or_down_only() {
        let with = |state: pb::DeviceState| {
            known_status(&pb::ProbeTarget {
                known_state: state as i32,
                ..pb::ProbeTarget::default()
            })
        };
        assert_eq!(with(pb::DeviceState::Up), Status::Up);
        assert_eq!(with(pb::DeviceState::Down), Status::Down);
        // Unreachable may be the controller's word (a parent down), not a probe's.
        assert_eq!(with(pb::DeviceState::Unreachable), Status::Unknown);
        assert_eq!(with(pb::DeviceState::Unknown), Status::Unknown);
        assert_eq!(with(pb::DeviceState::Unspecified), Status::Unknown);
    }

    #[test]
    fn an_icmp_error_reaches_the_controller_in_words() {
        let clock = Clock::start();
        let reported = transition(
            &clock,
            &Transition {
                degraded: None,
                index: 0,
                id: 5,
                address: "2001:2:0:2::9".parse().expect("address"),
                previous: Status::Up,
                status: Status::Unreachable,
                probed_at: clock.now(),
                last_rtt_us: None,
                cause: Cause::IcmpError {
                    kind: IcmpErrorKind {
                        icmp_type: 1,
                        code: 3,
                    },
                    reporter: "fd00::2".parse().expect("address"),
                },
            },
        );
        assert_eq!(
            reported.detail,
            "ICMPv6 destination unreachable: address unreachable, from fd00::2"
        );
    }
}
