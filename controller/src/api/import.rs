//! `POST /api/v1/devices/import`: a JSON array of devices (as in `POST
//! /api/v1/devices`) or CSV with a header row (`Content-Type: text/csv`;
//! columns name, address, site, and optionally parent_id, interval_ms,
//! timeout_ms, down_after, up_after, tags (separated by `;`), enabled,
//! severity, profile, check, rst_alive). All or nothing: the first bad
//! entry is named, e.g. `devices[3].address` (with its `line` in a CSV).
//!
//! `?mode=create` (the default) creates every device. `?mode=sync` makes
//! the inventory equal to the list, keyed by name within a site: creates,
//! updates, and with `delete_missing=true` deletes, in one transaction;
//! `dry_run=true` returns the same diff and writes nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::devices::DeviceInput;
use super::{ApiError, Caller, now_ms};
use crate::services::Inventory;
use crate::store::{SyncDiff, SyncMode, SyncedDevice};

/// Largest import accepted at once.
const MAX_DEVICES: usize = 100_000;

/// `?mode=create|sync&delete_missing=&dry_run=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    mode: Option<String>,
    delete_missing: Option<bool>,
    dry_run: Option<bool>,
}

impl ImportQuery {
    /// `None` to create every device; the sync's mode otherwise.
    fn sync(&self) -> Result<Option<SyncMode>, ApiError> {
        match self.mode.as_deref() {
            None | Some("create") => {
                for (given, name) in [
                    (self.delete_missing, "delete_missing"),
                    (self.dry_run, "dry_run"),
                ] {
                    if given.is_some() {
                        return Err(ApiError::field(name, "only with mode=sync"));
                    }
                }
                Ok(None)
            }
            Some("sync") => Ok(Some(SyncMode {
                delete_missing: self.delete_missing.unwrap_or(false),
                dry_run: self.dry_run.unwrap_or(false),
            })),
            Some(other) => Err(ApiError::field(
                "mode",
                format!("`{other}`: use create or sync"),
            )),
        }
    }
}

fn synced_json(devices: &[SyncedDevice]) -> Value {
    devices
        .iter()
        .map(|device| {
            let mut shown = json!({"id": device.id, "name": device.name, "site": device.site});
            if !device.changed.is_empty() {
                shown["changed"] = json!(device.changed);
            }
            shown
        })
        .collect()
}

fn diff_json(diff: &SyncDiff, mode: SyncMode) -> Value {
    json!({
        "dry_run": mode.dry_run,
        "created": synced_json(&diff.created),
        "updated": synced_json(&diff.updated),
        "deleted": synced_json(&diff.deleted),
        "unchanged": synced_json(&diff.unchanged),
    })
}

/// `POST /api/v1/devices/import`.
pub async fn import(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let sync = query.sync()?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/csv"));
    let (inputs, lines, mut errors) = if csv {
        let Parsed { entries, errors } = parse_csv(&body)?;
        let lines = entries
            .iter()
            .map(|(index, _, line)| (*index, *line))
            .collect();
        let inputs = entries
            .into_iter()
            .map(|(index, input, _)| (index, input))
            .collect();
        (inputs, lines, errors)
    } else {
        let Parsed { entries, errors } = parse_json(&body)?;
        (entries, std::collections::HashMap::new(), errors)
    };
    // A CSV entry's error also names its line.
    let located = |error: ApiError| match error.entry().and_then(|index| lines.get(&index)) {
        Some(&line) => error.at_line(line),
        None => error,
    };
    if inputs.len() + errors.len() > MAX_DEVICES {
        return Err(ApiError::field(
            "devices",
            format!("at most {MAX_DEVICES} devices per import"),
        ));
    }
    // Every bad entry is named, not only the first.
    let mut specs = Vec::with_capacity(inputs.len());
    for (index, input) in inputs {
        match input.into_spec().and_then(|spec| {
            spec.validate()
                .map_err(|error| ApiError::field(error.field, error.message))?;
            Ok(spec)
        }) {
            Ok(spec) => specs.push(spec),
            Err(error) => errors.push(located(error.within(index))),
        }
    }
    errors.sort_by_key(|error| error.entry());
    if let Some(error) = ApiError::entries(errors) {
        return Err(error);
    }
    if let Some(mode) = sync {
        let diff = inventory
            .sync_devices(&specs, mode, &actor, now_ms())
            .await
            .map_err(|error| located(error.into()))?;
        return Ok((StatusCode::OK, Json(diff_json(&diff, mode))));
    }
    let devices = inventory
        .import_devices(&specs, &actor, now_ms())
        .await
        .map_err(|error| located(error.into()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "imported": devices.len() })),
    ))
}

/// What a body's entries were read as: the good ones, and an error for
/// each bad one.
struct Parsed<T> {
    entries: Vec<T>,
    errors: Vec<ApiError>,
}

/// The entries of a JSON array, each with its position, and the entries
/// that are not devices.
fn parse_json(body: &[u8]) -> Result<Parsed<(usize, DeviceInput)>, ApiError> {
    let values: Vec<Value> = serde_json::from_slice(body).map_err(|error| {
        ApiError::field("body", format!("expected a JSON array of devices: {error}"))
    })?;
    let mut inputs = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match serde_path_to_error::deserialize(value) {
            Ok(input) => inputs.push((index, input)),
            Err(error) => errors.push(ApiError::json_value(&error).within(index)),
        }
    }
    Ok(Parsed {
        entries: inputs,
        errors,
    })
}

/// One CSV row; empty cells take defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    name: String,
    address: String,
    site: String,
    parent_id: Option<i64>,
    interval_ms: Option<u32>,
    timeout_ms: Option<u32>,
    down_after: Option<u8>,
    up_after: Option<u8>,
    tags: Option<String>,
    enabled: Option<bool>,
    severity: Option<String>,
    profile: Option<String>,
    check: Option<String>,
    rst_alive: Option<bool>,
}

/// The CSV's rows, each with its position and line (the header is line
/// 1), and the rows that could not be read. Comma- or semicolon-separated
/// (as European spreadsheets write it): the header line says which; tags
/// within a cell are separated by whichever of `;` and `,` the file does
/// not use.
fn parse_csv(body: &[u8]) -> Result<Parsed<(usize, DeviceInput, u64)>, ApiError> {
    let header = body.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let semicolons = header.contains(&b';') && !header.contains(&b',');
    let (delimiter, tag_separator) = if semicolons { (b';', ',') } else { (b',', ';') };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|error| ApiError::field("devices", format!("CSV header: {error}")))?
        .clone();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let fail = |error: csv::Error| {
            let line = error
                .position()
                .map_or(index as u64 + 2, csv::Position::line);
            ApiError::field(format!("devices[{index}]"), format!("CSV: {error}")).at_line(line)
        };
        let read = record.map_err(fail).and_then(|record| {
            let line = record
                .position()
                .map_or(index as u64 + 2, csv::Position::line);
            let row: CsvRow = record.deserialize(Some(&headers)).map_err(fail)?;
            Ok((row.into_input(tag_separator), line))
        });
        match read {
            Ok((input, line)) => rows.push((index, input, line)),
            Err(error) => errors.push(error),
        }
    }
    Ok(Parsed {
        entries: rows,
        errors,
    })
}

impl CsvRow {
    /// The row as a device's input, its tags split at `tag_separator`.
    fn into_input(self, tag_separator: char) -> DeviceInput {
        DeviceInput {
            name: self.name,
            address: self.address,
            site: self.site,
            parent_id: self.parent_id,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            down_after: self.down_after,
            up_after: self.up_after,
            tags: self
                .tags
                .map(|tags| {
                    tags.split(tag_separator)
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            enabled: self.enabled,
            severity: self.severity.filter(|severity| !severity.is_empty()),
            profile: self.profile,
            check: self.check,
            rst_alive: self.rst_alive,
        }
    }
}
