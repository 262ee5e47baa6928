//! Devices and the summary.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, now_ms, rfc3339};
use crate::services::{
    Core, DEVICE_PAGE_DEFAULT, DEVICE_PAGE_MAX, DeviceCursor, DeviceFilter, Inventory, Maintenance,
    Reports, UNPAGED_MAX,
};
use crate::store::{Device, DeviceSpec, Severity, Status};
use ward_domain::check::Check;
use ward_domain::maintenance::OpenWindow;

/// Device as the API shows it, with the `open` maintenance windows that
/// apply to it.
pub(super) fn device_json(device: &Device, open: &[OpenWindow]) -> Value {
    let maintenance = ward_domain::maintenance::covering(open, device);
    json!({
        "id": device.id,
        "name": device.spec.name,
        "address": device.spec.address.to_string(),
        "site": device.spec.site,
        "agent": device.agent,
        "parent_id": device.spec.parent_id,
        "status": device.status.as_str(),
        "down_since": device.down_since_ms.map(rfc3339),
        "last_change": rfc3339(device.status_changed_at_ms),
        "last_rtt_ms": device.current_rtt_us().map(|us| f64::from(us) / 1000.0),
        "interval_ms": device.spec.interval_ms,
        "timeout_ms": device.spec.timeout_ms,
        "down_after": device.spec.down_after,
        "up_after": device.spec.up_after,
        "tags": device.spec.tags,
        "enabled": device.spec.enabled,
        "severity": device.spec.severity.as_str(),
        "profile": device.spec.profile,
        "check": device.spec.check.to_string(),
        "rst_alive": device.spec.rst_alive,
        "in_maintenance": !maintenance.is_empty(),
        "maintenance": maintenance,
        "flapping": device.flapping,
        "degraded": device.degraded.map(|degraded| json!({
            "level": degraded.level.as_str(),
            "loss_pct": ward_domain::quality::pct(degraded.loss_permille),
            "rtt_ms": degraded.rtt_us.map(|us| f64::from(us) / 1000.0),
            "since": rfc3339(device.status_changed_at_ms),
        })),
    })
}

/// `?status=&site=&q=&severity=&tag=&parent=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    status: Option<String>,
    site: Option<String>,
    q: Option<String>,
    severity: Option<String>,
    tag: Option<String>,
    parent: Option<i64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The `?status=&site=&q=&severity=&tag=` parameters as a filter; a bad
/// status or severity is named.
pub(super) fn device_filter<'a>(
    status: Option<&str>,
    site: Option<&'a str>,
    query: Option<&'a str>,
    severity_text: Option<&str>,
    tag: Option<&'a str>,
) -> Result<DeviceFilter<'a>, ApiError> {
    let status = status
        .map(|text| {
            text.parse::<Status>()
                .map_err(|error| ApiError::field("status", error))
        })
        .transpose()?;
    Ok(DeviceFilter {
        status,
        site,
        query,
        severity: severity(severity_text)?,
        tag,
        parent: None,
    })
}

/// A `?severity=` parameter.
pub(super) fn severity(text: Option<&str>) -> Result<Option<Severity>, ApiError> {
    text.map(|text| {
        text.parse::<Severity>()
            .map_err(|error| ApiError::field("severity", error))
    })
    .transpose()
}

/// `GET /api/v1/devices`: every matching device (an array), or with
/// `limit` or `cursor` one page of them: `{"devices": [...],
/// "next_cursor": "…" | null}` (null on the last page; see
/// `services::paging`).
pub async fn list(
    State(inventory): State<Arc<Inventory>>,
    State(maintenance): State<Arc<Maintenance>>,
    Query(filter): Query<ListFilter>,
) -> Result<Json<Value>, ApiError> {
    let found = DeviceFilter {
        parent: filter.parent,
        ..device_filter(
            filter.status.as_deref(),
            filter.site.as_deref(),
            filter.q.as_deref(),
            filter.severity.as_deref(),
            filter.tag.as_deref(),
        )?
    };
    let open = maintenance.open_windows();
    let shown = |devices: &[std::sync::Arc<Device>]| -> Vec<Value> {
        devices
            .iter()
            .map(|device| device_json(device, &open))
            .collect()
    };
    if filter.limit.is_none() && filter.cursor.is_none() {
        let devices = inventory.find_devices(&found).await?;
        if devices.len() > UNPAGED_MAX {
            return Err(ApiError::field(
                "limit",
                format!(
                    "{} devices match, more than {UNPAGED_MAX} in one answer: page them with \
                     ?limit=N (at most {DEVICE_PAGE_MAX}) and each answer's next_cursor, or filter",
                    devices.len()
                ),
            ));
        }
        return Ok(Json(Value::Array(shown(&devices))));
    }
    let limit = filter.limit.unwrap_or(DEVICE_PAGE_DEFAULT);
    if !(1..=DEVICE_PAGE_MAX).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {DEVICE_PAGE_MAX}"),
        ));
    }
    let after = filter
        .cursor
        .as_deref()
        .map(str::parse::<DeviceCursor>)
        .transpose()
        .map_err(|error| ApiError::field("cursor", error))?;
    let (devices, next) = inventory
        .find_devices_page(&found, after.as_ref(), limit)
        .await?;
    Ok(Json(json!({
        "devices": shown(&devices),
        "next_cursor": next.map(|cursor| cursor.to_string()),
    })))
}

/// `GET /api/v1/devices/{id}`: the device, with its last `trace` (the
/// path to it when it last failed; `null` if never traced).
pub async fn get(
    State(core): State<Arc<Core>>,
    State(maintenance): State<Arc<Maintenance>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let device = core
        .store
        .get_device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
    let mut shown = device_json(&device, &maintenance.open_windows());
    shown["trace"] = core
        .store
        .last_trace(id)
        .await?
        .as_ref()
        .map(crate::notify::trace_view)
        .into();
    Ok(Json(shown))
}

/// `?minutes=` (default 60, at most 30 days).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryWindow {
    minutes: Option<u32>,
}

/// `GET /api/v1/devices/{id}/rtt`: the device's RTT band (min, mean,
/// max per step) and loss over the last `minutes`, from VictoriaMetrics,
/// or without it from the built-in history (the last day; `kept_minutes`).
pub async fn rtt(
    State(core): State<Arc<Core>>,
    State(reports): State<Arc<Reports>>,
    State(http): State<reqwest::Client>,
    Path(id): Path<i64>,
    Query(window): Query<HistoryWindow>,
) -> Result<Json<Value>, ApiError> {
    let minutes = window.minutes.unwrap_or(60);
    if !(1..=43_200).contains(&minutes) {
        return Err(ApiError::field(
            "minutes",
            "must be between 1 and 43200 (30 days)",
        ));
    }
    let device = core
        .store
        .get_device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
    let end = now_ms();
    let start = end - i64::from(minutes) * 60_000;
    let (points, kept_minutes) = match (&reports.tsdb, &reports.recent) {
        (Some(tsdb), _) => {
            let points = crate::tsdb::history::rtt_history(
                &http,
                tsdb.url(),
                &device.spec.name,
                &device.spec.site,
                start,
                end,
            )
            .await
            .map_err(|error| ApiError::unavailable(error.to_string()))?;
            (points, None)
        }
        (None, Some(recent)) => (
            recent.points(id, start, end),
            Some(crate::tsdb::recent::KEPT_MINUTES),
        ),
        (None, None) => (Vec::new(), Some(0)),
    };
    Ok(Json(json!({
        "device_id": id,
        // Without VictoriaMetrics, how far back the built-in history
        // reaches (minutes); null with it.
        "kept_minutes": kept_minutes,
        "points": points.iter().map(|point| json!({
            "at": rfc3339(point.at_ms),
            "rtt_ms": point.avg_ms,
            "min_ms": point.min_ms,
            "max_ms": point.max_ms,
            "p50_ms": point.p50_ms,
            "loss": point.loss,
        })).collect::<Vec<_>>(),
    })))
}

/// Body of `POST /api/v1/devices`; omitted probe settings take defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// Fields as in `POST /api/v1/devices`.
    pub(super) name: String,
    pub(super) address: String,
    pub(super) site: String,
    pub(super) parent_id: Option<i64>,
    pub(super) interval_ms: Option<u32>,
    pub(super) timeout_ms: Option<u32>,
    pub(super) down_after: Option<u8>,
    pub(super) up_after: Option<u8>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    pub(super) enabled: Option<bool>,
    pub(super) severity: Option<String>,
    pub(super) profile: Option<String>,
    pub(super) check: Option<String>,
    pub(super) rst_alive: Option<bool>,
}

impl DeviceInput {
    pub(super) fn into_spec(self) -> Result<DeviceSpec, ApiError> {
        let address: IpAddr = self.address.parse().map_err(|_| {
            ApiError::field(
                "address",
                format!("`{}` is not an IPv4 or IPv6 address", self.address),
            )
        })?;
        let check = match self.check.as_deref() {
            None | Some("") => Check::Icmp,
            Some(text) => text
                .parse()
                .map_err(|error: String| ApiError::field("check", error))?,
        };
        Ok(DeviceSpec {
            check,
            rst_alive: self.rst_alive.unwrap_or(true),
            name: self.name,
            address,
            site: self.site,
            parent_id: self.parent_id,
            interval_ms: self.interval_ms.unwrap_or(1000),
            timeout_ms: self.timeout_ms.unwrap_or_else(|| {
                DeviceSpec::default_timeout_ms(self.interval_ms.unwrap_or(1000))
            }),
            down_after: self.down_after.unwrap_or(3),
            up_after: self.up_after.unwrap_or(2),
            tags: self.tags,
            enabled: self.enabled.unwrap_or(true),
            severity: severity(self.severity.as_deref())?.unwrap_or_default(),
            profile: self.profile.filter(|profile| !profile.is_empty()),
        })
    }
}

/// `POST /api/v1/devices`.
pub async fn create(
    State(inventory): State<Arc<Inventory>>,
    State(maintenance): State<Arc<Maintenance>>,
    Caller(actor): Caller,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let device = inventory
        .create_device(&input.into_spec()?, &actor, now_ms())
        .await?;
    let mut shown = device_json(&device, &maintenance.open_windows());
    let warnings = inventory.warnings(&device).await?;
    if !warnings.is_empty() {
        shown["warnings"] = json!(warnings);
    }
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `GET /api/v1/summary`.
pub async fn summary(State(inventory): State<Arc<Inventory>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(inventory.summary().await?)))
}

/// `PUT /api/v1/devices/{id}`: replaces the configuration; status is kept.
pub async fn update(
    State(inventory): State<Arc<Inventory>>,
    State(maintenance): State<Arc<Maintenance>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let device = inventory
        .update_device(id, &input.into_spec()?, &actor, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
    Ok(Json(device_json(&device, &maintenance.open_windows())))
}

/// `DELETE /api/v1/devices/{id}`.
pub async fn delete(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if inventory.delete_device(id, &actor, now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no device with id {id}")))
    }
}
