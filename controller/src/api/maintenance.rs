//! Maintenance windows: `GET /api/v1/maintenance` (`?active=true`: only
//! those open now) and `GET /api/v1/maintenance/{id}` (viewer); `POST`,
//! `PUT /{id}` and `DELETE /{id}` (operator, audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, instant, now_ms, rfc3339};
use crate::services::{Core, Maintenance};
use crate::store::{MaintenanceSpec, MaintenanceWindow};
use ward_domain::maintenance::{Day, Every, OpenWindow};

/// `recurrence` of a window: `{"every": "daily" | "weekly" | "monthly",
/// "days": ["mon", …] (weekly), "day": 15 (monthly), "until": RFC 3339}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceInput {
    every: String,
    days: Option<Vec<Day>>,
    day: Option<u8>,
    until: Option<String>,
}

/// Body of `POST /api/v1/maintenance` and `PUT /api/v1/maintenance/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowInput {
    name: String,
    starts_at: String,
    ends_at: String,
    time_zone: Option<String>,
    recurrence: Option<RecurrenceInput>,
    #[serde(default)]
    devices: Vec<i64>,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    comment: String,
}

fn required(parameter: &str, text: &str) -> Result<i64, ApiError> {
    instant(parameter, Some(text))?.ok_or_else(|| ApiError::field(parameter, "required"))
}

impl WindowInput {
    fn into_spec(self) -> Result<MaintenanceSpec, ApiError> {
        let (every, until_ms) = match self.recurrence {
            None => (None, None),
            Some(recurrence) => {
                let every = Every::named(&recurrence.every, recurrence.days, recurrence.day)
                    .map_err(|error| ApiError::field(error.field, error.message))?;
                let until = instant("recurrence.until", recurrence.until.as_deref())?;
                (Some(every), until)
            }
        };
        Ok(MaintenanceSpec {
            name: self.name,
            starts_at_ms: required("starts_at", &self.starts_at)?,
            ends_at_ms: required("ends_at", &self.ends_at)?,
            time_zone: self.time_zone.unwrap_or_else(|| "UTC".into()),
            every,
            until_ms,
            devices: self.devices,
            sites: self.sites,
            tags: self.tags,
            comment: self.comment,
        })
    }
}

/// A window as the API shows it; `open`: its occurrence open now.
fn window_json(window: &MaintenanceWindow, open: Option<&OpenWindow>) -> Value {
    let spec = &window.spec;
    let recurrence = spec.every.as_ref().map(|every| {
        let mut shown = serde_json::to_value(every).unwrap_or_default();
        shown["until"] = spec.until_ms.map(rfc3339).into();
        shown
    });
    json!({
        "id": window.id,
        "name": spec.name,
        "starts_at": rfc3339(spec.starts_at_ms),
        "ends_at": rfc3339(spec.ends_at_ms),
        "time_zone": spec.time_zone,
        "recurrence": recurrence,
        "devices": spec.devices,
        "sites": spec.sites,
        "tags": spec.tags,
        "comment": spec.comment,
        "created_by": window.created_by,
        "created_at": rfc3339(window.created_at_ms),
        "active": open.is_some(),
        "current": open.map(|open| json!({
            "starts_at": rfc3339(open.starts_ms),
            "ends_at": rfc3339(open.ends_ms),
        })),
    })
}

/// The window with its occurrence open now, if any.
fn shown(window: MaintenanceWindow) -> Value {
    let open = ward_domain::maintenance::open_at(vec![window.clone()], now_ms());
    window_json(&window, open.first())
}

/// `?active=true|false`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    active: Option<bool>,
}

/// `GET /api/v1/maintenance`, by id.
pub async fn list(
    State(core): State<Arc<Core>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let windows = core.store.maintenance_windows().await?;
    let open = ward_domain::maintenance::open_at(windows.clone(), now_ms());
    let shown = windows
        .iter()
        .map(|window| (window, open.iter().find(|open| open.window.id == window.id)))
        .filter(|(_, open)| query.active.is_none_or(|active| active == open.is_some()))
        .map(|(window, open)| window_json(window, open))
        .collect();
    Ok(Json(Value::Array(shown)))
}

fn no_window(id: i64) -> ApiError {
    ApiError::not_found(format!("no maintenance window with id {id}"))
}

/// `GET /api/v1/maintenance/{id}`.
pub async fn get(
    State(core): State<Arc<Core>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let window = core
        .store
        .maintenance_window(id)
        .await?
        .ok_or_else(|| no_window(id))?;
    Ok(Json(shown(window)))
}

/// `POST /api/v1/maintenance`: 201 with the window.
pub async fn create(
    State(maintenance): State<Arc<Maintenance>>,
    Caller(actor): Caller,
    body: Result<Json<WindowInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let window = maintenance
        .change_maintenance(None, Some(input.into_spec()?), &actor)
        .await?
        .ok_or_else(|| ApiError::unavailable("the new window could not be read back"))?;
    Ok((StatusCode::CREATED, Json(shown(window))))
}

/// `PUT /api/v1/maintenance/{id}`: replaces the window.
pub async fn update(
    State(maintenance): State<Arc<Maintenance>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
    body: Result<Json<WindowInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let window = maintenance
        .change_maintenance(Some(id), Some(input.into_spec()?), &actor)
        .await?
        .ok_or_else(|| no_window(id))?;
    Ok(Json(shown(window)))
}

/// `DELETE /api/v1/maintenance/{id}`: 204.
pub async fn delete(
    State(maintenance): State<Arc<Maintenance>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    maintenance
        .change_maintenance(Some(id), None, &actor)
        .await?
        .ok_or_else(|| no_window(id))?;
    Ok(StatusCode::NO_CONTENT)
}
