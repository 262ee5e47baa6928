//! Alerts: the list (viewer), and acknowledgements (operator):
//! `POST /api/v1/alerts/{id}/ack` `{"comment": "…"}` and `DELETE
//! /api/v1/alerts/{id}/ack`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::devices::severity;
use super::{ApiError, Caller, now_ms, rfc3339};
use crate::services::{Core, Inventory};
use crate::store::{AckOutcome, Alert, MAX_ACK_COMMENT};

/// An alert as the API shows it.
fn alert_json(alert: &Alert) -> Value {
    let mut shown = crate::notify::alert_view(alert);
    shown["id"] = alert.id.into();
    shown["device_id"] = alert.device_id.into();
    shown["held"] = alert.held.into();
    shown["state"] = if alert.resolved_at_ms.is_some() {
        "resolved"
    } else {
        "open"
    }
    .into();
    shown
}

/// `?state=open|resolved&severity=&tag=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFilter {
    state: Option<String>,
    severity: Option<String>,
    tag: Option<String>,
}

/// `GET /api/v1/alerts`, newest first.
pub async fn list(
    State(core): State<Arc<Core>>,
    Query(filter): Query<AlertFilter>,
) -> Result<Json<Value>, ApiError> {
    let (open_only, resolved_only) = match filter.state.as_deref() {
        None => (false, false),
        Some("open") => (true, false),
        Some("resolved") => (false, true),
        Some(other) => {
            return Err(ApiError::field(
                "state",
                format!("`{other}`: use open or resolved"),
            ));
        }
    };
    let wanted_severity = severity(filter.severity.as_deref())?;
    let alerts = core.store.alerts(open_only).await?;
    let shown: Vec<Value> = alerts
        .iter()
        .filter(|alert| !resolved_only || alert.resolved_at_ms.is_some())
        .filter(|alert| wanted_severity.is_none_or(|wanted| alert.severity == wanted))
        .filter(|alert| {
            filter
                .tag
                .as_deref()
                .is_none_or(|tag| alert.tags.iter().any(|t| t == tag))
        })
        .map(alert_json)
        .collect();
    Ok(Json(Value::Array(shown)))
}

/// Body of `POST /api/v1/alerts/{id}/ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckInput {
    /// What the operator says (who is on it, the ticket).
    #[serde(default)]
    comment: String,
}

/// The alert after an acknowledgement or its withdrawal; 404 without
/// such an alert, 409 when it is resolved.
fn answer(id: i64, outcome: AckOutcome) -> Result<Json<Value>, ApiError> {
    match outcome {
        AckOutcome::Done(alert) => Ok(Json(alert_json(&alert))),
        AckOutcome::NotFound => Err(ApiError::not_found(format!("no alert with id {id}"))),
        AckOutcome::Resolved(alert) => Err(ApiError::plain(
            StatusCode::CONFLICT,
            format!(
                "alert {id} was resolved at {}: only an open alert is acknowledged",
                alert.resolved_at_ms.map(rfc3339).unwrap_or_default()
            ),
        )),
    }
}

/// `POST /api/v1/alerts/{id}/ack` (operator): acknowledges an open alert;
/// the alert and the device's status are unchanged, every channel gets an
/// `acknowledged` notification.
pub async fn acknowledge(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
    body: Result<Json<AckInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    if input.comment.chars().count() > MAX_ACK_COMMENT {
        return Err(ApiError::field(
            "comment",
            format!("at most {MAX_ACK_COMMENT} characters"),
        ));
    }
    let outcome = inventory
        .acknowledge(id, Some(&input.comment), &actor, now_ms())
        .await?;
    answer(id, outcome)
}

/// `DELETE /api/v1/alerts/{id}/ack` (operator): withdraws the
/// acknowledgement (no notification).
pub async fn unacknowledge(
    State(inventory): State<Arc<Inventory>>,
    Caller(actor): Caller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let outcome = inventory.acknowledge(id, None, &actor, now_ms()).await?;
    answer(id, outcome)
}
