//! `GET /api/v1/reports/availability?from=&to=&by=device|site|tag
//! [&site=&tag=&device=][&format=csv]` (viewer): per row the time up,
//! down, unreachable, unknown and in maintenance, outages, MTTR, the
//! longest outage and availability = (up + degraded) / (up + degraded +
//! down + unreachable), degraded time apart (`degraded_s`, last),
//! computed exactly from the recorded changes (see `availability`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, instant, now_ms, rfc3339};
use crate::services::Maintenance;
use ward_domain::availability::{By, ReportFilter, RowKey, Totals};

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    site: Option<String>,
    tag: Option<String>,
    device: Option<i64>,
    format: Option<String>,
}

/// The figures of a row, seconds, in column order.
const FIGURES: [&str; 10] = [
    "up_s",
    "down_s",
    "unreachable_s",
    "unknown_s",
    "maintenance_s",
    "outages",
    "mttr_s",
    "longest_outage_s",
    "availability",
    "degraded_s",
];

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn figures(totals: &Totals) -> [Value; 10] {
    [
        seconds(totals.up_ms),
        seconds(totals.down_ms),
        seconds(totals.unreachable_ms),
        seconds(totals.unknown_ms),
        seconds(totals.maintenance_ms),
        json!(totals.outages),
        json!(totals.mttr_ms().map(|ms| ms / 1000.0)),
        seconds(totals.longest_outage_ms),
        json!(totals.availability()),
        seconds(totals.degraded_ms),
    ]
}

/// The key columns of a row (names and values).
fn key(key: &RowKey) -> Vec<(&'static str, Value)> {
    match key {
        RowKey::Device { site, name, id } => {
            vec![
                ("device", json!(id)),
                ("name", json!(name)),
                ("site", json!(site)),
            ]
        }
        RowKey::Site(site) => vec![("site", json!(site))],
        RowKey::Tag(tag) => vec![("tag", json!(tag))],
    }
}

fn csv(rows: &[(RowKey, Totals)], by: By) -> Result<Vec<u8>, ApiError> {
    let failed = |error: csv::Error| ApiError::unavailable(format!("writing the CSV: {error}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: &[&str] = match by {
        By::Device => &["device", "name", "site"],
        By::Site => &["site"],
        By::Tag => &["tag"],
    };
    writer
        .write_record(header.iter().chain(FIGURES.iter()))
        .map_err(failed)?;
    let cell = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    for (row_key, totals) in rows {
        let record: Vec<String> = key(row_key)
            .iter()
            .map(|(_, value)| cell(value))
            .chain(figures(totals).iter().map(cell))
            .collect();
        writer.write_record(&record).map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|error| ApiError::unavailable(format!("writing the CSV: {error}")))
}

/// `GET /api/v1/reports/availability`.
pub async fn availability(
    State(maintenance): State<Arc<Maintenance>>,
    Query(query): Query<AvailabilityQuery>,
) -> Result<Response, ApiError> {
    let to = instant("to", query.to.as_deref())?.unwrap_or_else(now_ms);
    let from = instant("from", query.from.as_deref())?
        .unwrap_or(to - ward_domain::availability::DEFAULT_RANGE_MS);
    if to <= from {
        return Err(ApiError::field("to", "must be after from"));
    }
    let by = match query.by.as_deref() {
        None | Some("device") => By::Device,
        Some("site") => By::Site,
        Some("tag") => By::Tag,
        Some(other) => {
            return Err(ApiError::field(
                "by",
                format!("`{other}`: use device, site or tag"),
            ));
        }
    };
    let as_csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::field(
                "format",
                format!("`{other}`: use json or csv"),
            ));
        }
    };
    let filter = ReportFilter {
        site: query.site,
        tag: query.tag,
        device: query.device,
    };
    let rows = maintenance.availability((from, to), by, &filter).await?;
    if as_csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&rows, by)?,
        )
            .into_response());
    }
    let shown: Vec<Value> = rows
        .iter()
        .map(|(row_key, totals)| {
            let mut row = serde_json::Map::new();
            for (name, value) in key(row_key) {
                row.insert(name.to_owned(), value);
            }
            for (name, value) in FIGURES.iter().zip(figures(totals)) {
                row.insert((*name).to_owned(), value);
            }
            Value::Object(row)
        })
        .collect();
    let by_name = match by {
        By::Device => "device",
        By::Site => "site",
        By::Tag => "tag",
    };
    Ok(Json(json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "by": by_name,
        "rows": shown,
    }))
    .into_response())
}
