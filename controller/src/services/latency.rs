//! REST latency: a Prometheus histogram per route and method
//! (`ward_api_request_duration_seconds`), observed by the API's middleware.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds of the buckets, seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative here).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Latency histograms keyed by (method, route).
#[derive(Debug, Default)]
pub struct ApiLatency {
    #[allow(
        clippy::disallowed_types,
        reason = "one short lock per API request, never on the probe path"
    )]
    routes: std::sync::Mutex<BTreeMap<(String, String), Histogram>>,
}

impl ApiLatency {
    /// Counts one request to `route` that took `seconds`.
    pub fn observe(&self, method: &str, route: &str, seconds: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let histogram = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
    }

    /// `ward_api_request_duration_seconds` in Prometheus text.
    pub fn write_prometheus(&self, text: &mut String) {
        const NAME: &str = "ward_api_request_duration_seconds";
        let _ = writeln!(
            text,
            "# HELP {NAME} REST request latency to the response headers.\n# TYPE {NAME} histogram"
        );
        let routes = match self.routes.lock() {
            Ok(routes) => routes.clone(),
            Err(_) => return,
        };
        for ((method, route), histogram) in routes {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "{NAME}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "{NAME}_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(text, "{NAME}_sum{{{labels}}} {}", histogram.sum_seconds);
            let _ = writeln!(text, "{NAME}_count{{{labels}}} {}", histogram.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_every_observation() {
        let latency = ApiLatency::default();
        latency.observe("GET", "/api/v1/devices", 0.0004);
        latency.observe("GET", "/api/v1/devices", 0.02);
        latency.observe("GET", "/api/v1/devices", 9.0);
        let mut text = String::new();
        latency.write_prometheus(&mut text);
        let line = |suffix: &str| {
            text.lines()
                .find(|line| line.contains(suffix))
                .unwrap_or_else(|| panic!("{suffix} missing:\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("le=\"0.001\"}"), "1");
        assert_eq!(line("le=\"0.025\"}"), "2");
        assert_eq!(line("le=\"2.5\"}"), "2");
        assert_eq!(line("le=\"+Inf\"}"), "3");
        assert_eq!(line("_count{"), "3");
    }
}
