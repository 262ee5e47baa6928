//! Reading a device's RTT history back from VictoriaMetrics
//! (`/api/v1/query_range`), for the dashboard.

use std::time::Duration;

use serde_json::Value;

/// One point: Unix ms and the mean RTT in ms.
pub type Point = (i64, f64);

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading RTT history from VictoriaMetrics: {0}")]
pub struct HistoryError(String);

/// PromQL string literal (escapes `\` and `"`).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Mean RTT of the device labelled `device` at `site` from `start_ms` to
/// `end_ms`, about 120 points.
pub async fn rtt_history(
    http: &reqwest::Client,
    base_url: &str,
    device: &str,
    site: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Point>, HistoryError> {
    let query = format!(
        "{}{{stat=\"avg\",device={},site={}}}",
        super::RTT,
        quoted(device),
        quoted(site)
    );
    let step_s = ((end_ms - start_ms) / 120_000).max(1);
    let response = http
        .get(format!(
            "{}/api/v1/query_range",
            base_url.trim_end_matches('/')
        ))
        .query(&[
            ("query", query),
            ("start", format!("{:.3}", start_ms as f64 / 1000.0)),
            ("end", format!("{:.3}", end_ms as f64 / 1000.0)),
            ("step", format!("{step_s}s")),
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
            let seconds: f64 = pair[1].as_str()?.parse().ok()?;
            #[allow(
                clippy::cast_possible_truncation,
                reason = "Unix seconds to ms fit i64"
            )]
            Some(((at * 1000.0) as i64, seconds * 1000.0))
        })
        .collect())
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
