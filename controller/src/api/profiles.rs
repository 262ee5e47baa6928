//! Threshold profiles: `GET /api/v1/profiles`, `GET /api/v1/profiles/{name}`
//! (viewer); `POST`, `PUT /{name}`, `DELETE /{name}` (admin, audited;
//! deleting one in use is refused with how many use it). Sites' default
//! profiles: `GET /api/v1/sites` (viewer), `PUT /api/v1/sites/{name}`
//! `{"profile": "dsl"}` (admin, audited; `null`: the `[degraded]` table).
//!
//! A profile's body has the `[degraded]` table's keys (`window`,
//! `clear_window` as `"30s"`, `"5m"`; `loss_warn_pct`, `loss_crit_pct`,
//! `rtt_warn_ms`, `rtt_crit_ms`, `rtt_percentile`), each optional over
//! ward's defaults, and its `name`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, Caller, now_ms, rfc3339};
use crate::config::DegradedTable;
use crate::services::{Core, Inventory};
use crate::store::{Site, StoredProfile};
use ward_domain::quality::{Profile, Thresholds, pct};

/// `30000` ms as `"30s"`, `300000` as `"5m"`.
fn duration_text(ms: u32) -> String {
    humantime::format_duration(Duration::from_millis(u64::from(ms))).to_string()
}

/// A profile as the API shows it.
fn profile_json(stored: &StoredProfile) -> Value {
    let thresholds = &stored.profile.thresholds;
    json!({
        "name": stored.profile.name,
        "window": duration_text(thresholds.window_ms),
        "clear_window": duration_text(thresholds.clear_window_ms),
        "loss_warn_pct": pct(thresholds.loss_warn_permille),
        "loss_crit_pct": pct(thresholds.loss_crit_permille),
        "rtt_warn_ms": thresholds.rtt_warn_ms,
        "rtt_crit_ms": thresholds.rtt_crit_ms,
        "rtt_percentile": if thresholds.rtt_p90 { 90 } else { 50 },
        "devices": stored.devices,
        "sites": stored.sites,
        "created_by": stored.created_by,
        "created_at": rfc3339(stored.created_at_ms),
    })
}

fn site_json(site: &Site) -> Value {
    json!({ "name": site.name, "profile": site.profile, "devices": site.devices })
}

/// The thresholds of a profile's body (its keys but `name`), each wrong
/// key named.
fn thresholds(mut body: Map<String, Value>) -> Result<Thresholds, ApiError> {
    body.remove("name");
    let table: DegradedTable = serde_path_to_error::deserialize(Value::Object(body))
        .map_err(|error| ApiError::json_value(&error))?;
    table.thresholds().map_err(|error| match error {
        ward_settings::ConfigError::Invalid { key, message } => {
            ApiError::field(key.trim_start_matches("degraded."), message)
        }
        other => ApiError::field("body", other.to_string()),
    })
}

/// The body as a JSON object.
fn object(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    match body.map_err(ApiError::body)?.0 {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::field("body", "must be a JSON object")),
    }
}

fn no_profile(name: &str) -> ApiError {
    ApiError::not_found(format!("no profile named `{name}`")).on_field("name")
}

/// `GET /api/v1/profiles`, by name.
pub async fn list(State(core): State<Arc<Core>>) -> Result<Json<Value>, ApiError> {
    let profiles = core.store.profiles().await?;
    Ok(Json(profiles.iter().map(profile_json).collect()))
}

/// `GET /api/v1/profiles/{name}`.
pub async fn get(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = core
        .store
        .profile(&name)
        .await?
        .ok_or_else(|| no_profile(&name))?;
    Ok(Json(profile_json(&stored)))
}

/// `POST /api/v1/profiles`: 201 with the profile.
pub async fn create(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = object(body)?;
    let name = match body.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(ApiError::field("name", "required: the profile's name")),
    };
    let profile = Profile {
        name,
        thresholds: thresholds(body)?,
    };
    let stored = inventory
        .change_profiles(move |core| async move {
            core.store.create_profile(&profile, &actor, now_ms()).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(profile_json(&stored))))
}

/// `PUT /api/v1/profiles/{name}`: replaces its thresholds (a `name` in
/// the body, if any, must be the same: profiles are not renamed).
pub async fn update(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = object(body)?;
    if body.get("name").is_some_and(|given| given != name.as_str()) {
        return Err(ApiError::field(
            "name",
            "a profile is not renamed: create one under the new name, move its devices, \
             delete this one",
        ));
    }
    let thresholds = thresholds(body)?;
    let shown = name.clone();
    let stored = inventory
        .change_profiles(move |core| async move {
            core.store
                .change_profile(&shown, Some(&thresholds), &actor, now_ms())
                .await
        })
        .await?
        .ok_or_else(|| no_profile(&name))?;
    Ok(Json(profile_json(&stored)))
}

/// `DELETE /api/v1/profiles/{name}`: 204; 409 while in use.
pub async fn delete(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let shown = name.clone();
    inventory
        .change_profiles(move |core| async move {
            core.store
                .change_profile(&shown, None, &actor, now_ms())
                .await
        })
        .await?
        .ok_or_else(|| no_profile(&name))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/sites`, by name.
pub async fn sites(State(core): State<Arc<Core>>) -> Result<Json<Value>, ApiError> {
    let sites = core.store.sites().await?;
    Ok(Json(sites.iter().map(site_json).collect()))
}

/// Body of `PUT /api/v1/sites/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    profile: Option<String>,
}

/// `PUT /api/v1/sites/{name}`: sets the site's default profile.
pub async fn update_site(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<SiteInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let shown = name.clone();
    let site = inventory
        .change_profiles(move |core| async move {
            core.store
                .set_site_profile(&shown, input.profile.as_deref(), &actor, now_ms())
                .await
        })
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no site named `{name}` (a site exists once a device or agent is in it)"
            ))
            .on_field("name")
        })?;
    Ok(Json(site_json(&site)))
}
