//! Probe statistics as VictoriaMetrics JSON-lines import rows, and the
//! gzip body they travel in. Pure: no I/O.

use std::collections::HashMap;
use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::DeviceSample;

/// Series names, as the spec fixes them.
pub const RTT: &str = "ward_probe_rtt_seconds";
pub const LOSS: &str = "ward_probe_loss_ratio";
pub const SENT: &str = "ward_probe_sent_total";
pub const UP: &str = "ward_device_up";

/// Import rows, one JSON object per line.
#[derive(Debug, Default)]
pub struct Rows {
    /// The lines, each ending in `\n`.
    pub text: Vec<u8>,
    /// How many lines.
    pub count: u64,
}

impl Rows {
    /// Appends one row: `prefix` is the metric object's shared labels
    /// (`{"device":…,"address":…,"site":…,"agent":…,`).
    fn push(&mut self, prefix: &[u8], name: &str, stat: Option<&str>, value: f64, at_ms: i64) {
        self.text.extend_from_slice(prefix);
        let _ = write!(self.text, "\"__name__\":\"{name}\"");
        if let Some(stat) = stat {
            let _ = write!(self.text, ",\"stat\":\"{stat}\"");
        }
        // `{}` on f64 is the shortest exact decimal (`0.25`, `1`), valid JSON.
        let _ = writeln!(
            self.text,
            "}},\"values\":[{value}],\"timestamps\":[{at_ms}]}}"
        );
        self.count += 1;
    }

    /// Appends the rows for one device's statistics over a period ending at
    /// `at_ms`. `sent_totals` carries `ward_probe_sent_total` across calls
    /// (a counter per device and agent, from this controller's start).
    pub fn push_sample(
        &mut self,
        sample: &DeviceSample,
        agent: &str,
        at_ms: i64,
        sent_totals: &mut HashMap<(i64, String), u64>,
    ) {
        let labels = &sample.labels;
        let mut prefix = Vec::with_capacity(160);
        prefix.extend_from_slice(b"{\"metric\":{");
        for (key, value) in [
            ("device", &*labels.name),
            ("address", &*labels.address),
            ("site", &*labels.site),
            ("agent", agent),
        ] {
            let _ = write!(prefix, "\"{key}\":");
            // A string always serialises.
            let _ = serde_json::to_writer(&mut prefix, value);
            prefix.push(b',');
        }
        let stats = &sample.statistics;
        if stats.received > 0 {
            let quantiles = stats
                .rtt_quantiles_us
                .map(|(p50, p90)| [("p50", p50), ("p90", p90)]);
            for (stat, micros) in [
                ("min", stats.rtt_min_us),
                ("avg", stats.rtt_avg_us),
                ("max", stats.rtt_max_us),
                ("jitter", stats.jitter_us),
            ]
            .into_iter()
            .chain(quantiles.into_iter().flatten())
            {
                self.push(&prefix, RTT, Some(stat), f64::from(micros) / 1e6, at_ms);
            }
        }
        if stats.sent > 0 {
            let lost = stats.sent.saturating_sub(stats.received);
            self.push(
                &prefix,
                LOSS,
                None,
                f64::from(lost) / f64::from(stats.sent),
                at_ms,
            );
        }
        let total = sent_totals
            .entry((sample.device_id, agent.to_owned()))
            .or_default();
        *total += u64::from(stats.sent);
        #[allow(clippy::cast_precision_loss, reason = "exact below 2^53 probes")]
        let total = *total as f64;
        self.push(&prefix, SENT, None, total, at_ms);
        self.push(&prefix, UP, None, f64::from(u8::from(labels.up)), at_ms);
    }

    /// The rows gzip-compressed, leaving `self` empty.
    pub fn take_gzip(&mut self) -> (Vec<u8>, u64) {
        let mut encoder =
            GzEncoder::new(Vec::with_capacity(self.text.len() / 4), Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(&self.text);
        let body = encoder.finish().unwrap_or_default();
        let count = self.count;
        *self = Self::default();
        (body, count)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::tsdb::DeviceStatistics;

    fn sample(sent: u32, received: u32) -> DeviceSample {
        DeviceSample {
            device_id: 7,
            labels: crate::tsdb::DeviceLabels {
                name: "atm \"lobby\"".into(),
                address: "198.18.1.7".into(),
                site: "branch-1".into(),
                up: received > 0,
            },
            statistics: DeviceStatistics {
                device_id: 7,
                sent,
                received,
                rtt_min_us: 1_000,
                rtt_avg_us: 1_500,
                rtt_max_us: 2_250,
                jitter_us: 125,
                rtt_quantiles_us: None,
            },
        }
    }

    fn lines(rows: &mut Rows) -> Vec<serde_json::Value> {
        let (body, count) = rows.take_gzip();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, count);
        lines
    }

    #[test]
    fn a_period_with_replies_gives_every_series_with_labels_in_seconds_and_ms() {
        let mut rows = Rows::default();
        let mut totals = HashMap::new();
        rows.push_sample(&sample(4, 3), "agent-1", 1_700_000_000_123, &mut totals);
        rows.push_sample(&sample(4, 3), "agent-1", 1_700_000_001_123, &mut totals);
        let lines = lines(&mut rows);
        assert_eq!(lines.len(), 14);
        let first = &lines[0];
        assert_eq!(first["metric"]["__name__"], RTT);
        assert_eq!(first["metric"]["stat"], "min");
        assert_eq!(first["metric"]["device"], "atm \"lobby\"");
        assert_eq!(first["metric"]["address"], "198.18.1.7");
        assert_eq!(first["metric"]["site"], "branch-1");
        assert_eq!(first["metric"]["agent"], "agent-1");
        assert_eq!(first["values"][0], 0.001);
        assert_eq!(first["timestamps"][0], 1_700_000_000_123_i64);
        let find = |name: &str, at: usize| {
            lines
                .iter()
                .filter(|line| line["metric"]["__name__"] == name)
                .nth(at)
                .unwrap()["values"][0]
                .clone()
        };
        assert_eq!(find(LOSS, 0), 0.25);
        assert_eq!(find(SENT, 0), 4.0);
        assert_eq!(find(SENT, 1), 8.0, "the sent counter accumulates");
        assert_eq!(find(UP, 0), 1.0);
    }

    #[test]
    fn a_silent_period_has_no_rtt_and_full_loss() {
        let mut rows = Rows::default();
        rows.push_sample(&sample(3, 0), "agent-1", 5, &mut HashMap::new());
        let lines = lines(&mut rows);
        let names: Vec<_> = lines
            .iter()
            .map(|l| l["metric"]["__name__"].clone())
            .collect();
        assert_eq!(names, [LOSS, SENT, UP]);
        assert_eq!(lines[0]["values"][0], 1.0);
        assert_eq!(lines[2]["values"][0], 0.0);
        assert!(rows.text.is_empty() && rows.count == 0);
    }

    #[test]
    fn an_agents_median_and_90th_percentile_are_rtt_stats_p50_and_p90() {
        let mut rows = Rows::default();
        let mut with = sample(4, 3);
        with.statistics.rtt_quantiles_us = Some((1_400, 2_100));
        rows.push_sample(&with, "agent-1", 9, &mut HashMap::new());
        let lines = lines(&mut rows);
        let stat = |name: &str| {
            lines
                .iter()
                .find(|line| line["metric"]["stat"] == name)
                .map(|line| line["values"][0].clone())
        };
        assert_eq!(stat("p50"), Some(serde_json::json!(0.0014)));
        assert_eq!(stat("p90"), Some(serde_json::json!(0.0021)));
        assert_eq!(
            lines.len(),
            9,
            "min, avg, max, jitter, p50, p90, loss, sent, up"
        );
    }
}
