//! Reading a device's RTT history back from VictoriaMetrics
//! (`/api/v1/query_range`), for the dashboard.

use std::time::Duration;

use serde_json::Value;

/// One point of a device's RTT history: the band over one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RttPoint {
    /// The step's end, Unix ms.
    pub at_ms: i64,
    /// Mean RTT over the step, ms.
    pub avg_ms: Option<f64>,
    /// Lowest RTT seen in the step, ms.
    pub min_ms: Option<f64>,
    /// Highest RTT seen in the step, ms.
    pub max_ms: Option<f64>,
    /// Median of the periods' exact medians in the step, ms (agents that
    /// send them).
    pub p50_ms: Option<f64>,
    /// Share of probes lost in the step (0 to 1).
    pub loss: Option<f64>,
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading RTT history from VictoriaMetrics: {0}")]
pub struct HistoryError(String);

/// PromQL string literal (escapes `\` and `"`).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The RTT band (min, mean, max) and loss of the device labelled `device`
/// at `site` from `start_ms` to `end_ms`, in about 120 steps, each the
/// aggregate over its step (so a month keeps its worst minute).
pub async fn rtt_history(
    http: &reqwest::Client,
    base_url: &str,
    device: &str,
    site: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<RttPoint>, HistoryError> {
    let step_s = ((end_ms - start_ms) / 120_000).max(1);
    let labels = format!("device={},site={}", quoted(device), quoted(site));
    let series = |function: &str, name: &str, stat: Option<&str>| {
        let stat = stat
            .map(|stat| format!("stat=\"{stat}\","))
            .unwrap_or_default();
        format!("{function}({name}{{{stat}{labels}}}[{step_s}s])")
    };
    let range = Range {
        http,
        base_url,
        start_ms,
        end_ms,
        step_s,
    };
    let queries = [
        series("avg_over_time", super::RTT, Some("avg")),
        series("min_over_time", super::RTT, Some("min")),
        series("max_over_time", super::RTT, Some("max")),
        series("avg_over_time", super::LOSS, None),
        series("median_over_time", super::RTT, Some("p50")),
    ];
    let (avg, min, max, loss, p50) = tokio::try_join!(
        range.query(&queries[0]),
        range.query(&queries[1]),
        range.query(&queries[2]),
        range.query(&queries[3]),
        range.query(&queries[4]),
    )?;
    let mut points: std::collections::BTreeMap<i64, RttPoint> = std::collections::BTreeMap::new();
    let mut put = |values: Vec<(i64, f64)>, field: fn(&mut RttPoint) -> &mut Option<f64>, scale| {
        for (at_ms, value) in values {
            let point = points.entry(at_ms).or_insert(RttPoint {
                at_ms,
                ..RttPoint::default()
            });
            *field(point) = Some(value * scale);
        }
    };
    put(avg, |point| &mut point.avg_ms, 1000.0);
    put(min, |point| &mut point.min_ms, 1000.0);
    put(max, |point| &mut point.max_ms, 1000.0);
    put(loss, |point| &mut point.loss, 1.0);
    put(p50, |point| &mut point.p50_ms, 1000.0);
    Ok(points.into_values().collect())
}

/// One `query_range` window.
struct Range<'a> {
    http: &'a reqwest::Client,
    base_url: &'a str,
    start_ms: i64,
    end_ms: i64,
    step_s: i64,
}

impl Range<'_> {
    /// The first series `query` returns over the window, as (Unix ms,
    /// value).
    async fn query(&self, query: &str) -> Result<Vec<(i64, f64)>, HistoryError> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/query_range",
                self.base_url.trim_end_matches('/')
            ))
            .query(&[
                ("query", query.to_owned()),
                ("start", format!("{:.3}", self.start_ms as f64 / 1000.0)),
                ("end", format!("{:.3}", self.end_ms as f64 / 1000.0)),
                ("step", format!("{}s", self.step_s)),
            ])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|error| HistoryError(error.to_string()))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|error| HistoryError(error.to_string()))?;
        if !status.is_success() {
            return Err(HistoryError(format!("HTTP {status}: {body}")));
        }
        let values = body["data"]["result"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(values
            .iter()
            .filter_map(|pair| {
                let at = pair[0].as_f64()?;
                let value: f64 = pair[1].as_str()?.parse().ok()?;
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "Unix seconds to ms fit i64"
                )]
                Some(((at * 1000.0) as i64, value))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_quoted_for_promql() {
        assert_eq!(
            super::quoted(r#"atm "lobby" \ 2"#),
            r#""atm \"lobby\" \\ 2""#
        );
    }
}
