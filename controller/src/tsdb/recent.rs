//! A short RTT history kept in memory when VictoriaMetrics is not
//! configured (the embedded defaults, a pilot): each device's last hour
//! by the minute and last day by the quarter hour, enough for the device
//! page's chart. Bounded: 156 buckets of 32 bytes per device (5 KiB; with
//! the tables' slack 6.2 KiB resident: 10,000 devices 61 MiB, in
//! docs/BENCHMARKS.md). It is lost
//! when the controller restarts and is this controller's alone;
//! VictoriaMetrics stays the production store.

use std::collections::{HashMap, VecDeque};

use super::{DeviceStatistics, StatisticsReport, history::RttPoint};

/// One resolution: buckets of `width_ms`, `kept` of them.
#[derive(Clone, Copy)]
struct Tier {
    width_ms: i64,
    kept: usize,
}

/// By the minute for an hour.
const FINE: Tier = Tier {
    width_ms: 60_000,
    kept: 60,
};

/// By the quarter hour for a day.
const COARSE: Tier = Tier {
    width_ms: 15 * 60_000,
    kept: 96,
};

/// How far back the built-in history reaches, minutes.
pub const KEPT_MINUTES: u32 = 24 * 60;

/// The periods that ended within one bucket, summed.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    start_ms: i64,
    sent: u32,
    received: u32,
    min_us: u32,
    max_us: u32,
    /// Σ mean × replies, µs: the bucket's mean is this over `received`.
    weighted_us: u64,
}

impl Bucket {
    fn add(&mut self, statistics: &DeviceStatistics) {
        if statistics.received > 0 {
            self.min_us = if self.received == 0 {
                statistics.rtt_min_us
            } else {
                self.min_us.min(statistics.rtt_min_us)
            };
            self.max_us = self.max_us.max(statistics.rtt_max_us);
            self.weighted_us += u64::from(statistics.rtt_avg_us) * u64::from(statistics.received);
        }
        self.sent = self.sent.saturating_add(statistics.sent);
        self.received = self.received.saturating_add(statistics.received);
    }

    fn point(&self, width_ms: i64) -> RttPoint {
        let ms = |us: u64| us as f64 / 1_000.0;
        let answered = self.received > 0;
        RttPoint {
            at_ms: self.start_ms + width_ms,
            avg_ms: answered.then(|| ms(self.weighted_us / u64::from(self.received))),
            min_ms: answered.then(|| ms(u64::from(self.min_us))),
            max_ms: answered.then(|| ms(u64::from(self.max_us))),
            p50_ms: None,
            loss: (self.sent > 0)
                .then(|| 1.0 - f64::from(self.received.min(self.sent)) / f64::from(self.sent)),
        }
    }
}

/// One device's buckets at both resolutions, oldest first.
#[derive(Default)]
struct DeviceHistory {
    fine: VecDeque<Bucket>,
    coarse: VecDeque<Bucket>,
}

fn add_to(buckets: &mut VecDeque<Bucket>, tier: Tier, at_ms: i64, statistics: &DeviceStatistics) {
    let start_ms = at_ms - at_ms.rem_euclid(tier.width_ms);
    match buckets.back_mut() {
        Some(last) if last.start_ms == start_ms => last.add(statistics),
        // A period older than the newest bucket (a replay) is left out:
        // the built-in history is a chart, not a record.
        Some(last) if last.start_ms > start_ms => {}
        _ => {
            let mut bucket = Bucket {
                start_ms,
                ..Bucket::default()
            };
            bucket.add(statistics);
            buckets.push_back(bucket);
            while buckets.len() > tier.kept {
                buckets.pop_front();
            }
        }
    }
}

/// Reports between two looks for devices no longer reported (deleted,
/// disabled): their history goes once it is a day old.
const REPORTS_BETWEEN_PRUNES: u32 = 1_000;

/// Every device's recent history.
#[derive(Default)]
pub struct RecentRtt {
    #[allow(
        clippy::disallowed_types,
        reason = "one short lock per statistics report or chart read, on the controller, never on the probe path"
    )]
    devices: std::sync::Mutex<Devices>,
}

#[derive(Default)]
struct Devices {
    by_id: HashMap<i64, DeviceHistory>,
    reports_since_prune: u32,
}

impl RecentRtt {
    /// Takes in one report's periods.
    pub fn record(&self, report: &StatisticsReport) {
        self.record_periods(report.period_end_ms, &report.devices);
    }

    /// Takes in the periods of `devices_reported` that ended at
    /// `period_end_ms`.
    pub fn record_periods<'a>(
        &self,
        period_end_ms: i64,
        devices_reported: impl IntoIterator<Item = &'a DeviceStatistics>,
    ) {
        let mut devices = self
            .devices
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for statistics in devices_reported {
            let history = devices.by_id.entry(statistics.device_id).or_default();
            add_to(&mut history.fine, FINE, period_end_ms, statistics);
            add_to(&mut history.coarse, COARSE, period_end_ms, statistics);
        }
        devices.reports_since_prune += 1;
        if devices.reports_since_prune >= REPORTS_BETWEEN_PRUNES {
            devices.reports_since_prune = 0;
            let oldest = period_end_ms - i64::from(KEPT_MINUTES) * 60_000;
            devices.by_id.retain(|_, history| {
                history
                    .coarse
                    .back()
                    .is_some_and(|last| last.start_ms >= oldest)
            });
        }
    }

    /// Device `id`'s points from `start_ms` to `end_ms`: by the minute
    /// when the hour holds the window, else by the quarter hour.
    pub fn points(&self, id: i64, start_ms: i64, end_ms: i64) -> Vec<RttPoint> {
        let devices = self
            .devices
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(history) = devices.by_id.get(&id) else {
            return Vec::new();
        };
        let fine_reach = FINE.width_ms * i64::try_from(FINE.kept).unwrap_or(i64::MAX);
        let (buckets, tier) = if end_ms - start_ms <= fine_reach {
            (&history.fine, FINE)
        } else {
            (&history.coarse, COARSE)
        };
        buckets
            .iter()
            .filter(|bucket| {
                bucket.start_ms + tier.width_ms > start_ms && bucket.start_ms <= end_ms
            })
            .map(|bucket| bucket.point(tier.width_ms))
            .collect()
    }

    /// Bytes held per device at most (both tiers full).
    pub const fn bytes_per_device() -> usize {
        (FINE.kept + COARSE.kept) * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(device_id: i64, sent: u32, received: u32, avg_us: u32) -> DeviceStatistics {
        DeviceStatistics {
            device_id,
            sent,
            received,
            rtt_min_us: avg_us / 2,
            rtt_avg_us: avg_us,
            rtt_max_us: avg_us * 2,
            jitter_us: 0,
            rtt_quantiles_us: None,
        }
    }

    fn report(at_ms: i64, devices: Vec<DeviceStatistics>) -> StatisticsReport {
        StatisticsReport {
            agent_id: "a".into(),
            period_end_ms: at_ms,
            devices,
        }
    }

    #[test]
    fn periods_within_a_minute_make_one_point_with_the_weighted_mean() {
        let recent = RecentRtt::default();
        let t = 1_800_000_000_000; // a whole minute (and quarter hour)
        recent.record(&report(t + 10_000, vec![period(1, 10, 10, 1_000)]));
        recent.record(&report(t + 40_000, vec![period(1, 10, 5, 4_000)]));
        let points = recent.points(1, t + 60_000 - 3_600_000, t + 60_000);
        assert_eq!(points.len(), 1, "{points:?}");
        let point = points[0];
        assert_eq!(point.at_ms, t + 60_000);
        assert_eq!(point.avg_ms, Some(2.0), "(10 × 1 ms + 5 × 4 ms) / 15");
        assert_eq!((point.min_ms, point.max_ms), (Some(0.5), Some(8.0)));
        assert_eq!(point.loss, Some(0.25));
    }

    #[test]
    fn an_hour_by_the_minute_a_day_by_the_quarter_hour_and_no_more() {
        let recent = RecentRtt::default();
        let t = 1_800_000_000_000;
        for minute in 0..(2 * 24 * 60) {
            recent.record(&report(t + minute * 60_000, vec![period(7, 1, 1, 500)]));
        }
        let end = t + 2 * 24 * 60 * 60_000;
        assert_eq!(recent.points(7, end - 3_600_000, end).len(), 60);
        assert_eq!(recent.points(7, end - 86_400_000, end).len(), 96);
        assert_eq!(recent.points(7, end - 7 * 86_400_000, end).len(), 96);
        assert!(recent.points(8, end - 3_600_000, end).is_empty());
        assert!(RecentRtt::bytes_per_device() <= 6 * 1024);
    }
}
