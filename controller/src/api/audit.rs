//! `GET /api/v1/audit` (admin): the audit log, newest first, filtered by
//! principal, object and time. Nothing updates or deletes it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, rfc3339};
use crate::state::Controller;
use crate::store::AuditFilter;

/// `?principal=&object=&since=&until=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    principal: Option<String>,
    object: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
}

/// `since`/`until` (RFC 3339) as Unix ms.
fn instant(parameter: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|text| {
        humantime::parse_rfc3339_weak(text)
            .ok()
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|since_epoch| i64::try_from(since_epoch.as_millis()).ok())
            .ok_or_else(|| {
                ApiError::field(
                    parameter,
                    format!("`{text}`: use RFC 3339, e.g. 2026-11-30T06:00:00Z"),
                )
            })
    })
    .transpose()
}

/// A stored JSON snapshot back as JSON (text if it no longer parses).
fn snapshot(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |text| {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    })
}

/// `GET /api/v1/audit`.
pub async fn list(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = AuditFilter {
        principal: query.principal,
        object: query.object,
        since_ms: instant("since", query.since.as_deref())?,
        until_ms: instant("until", query.until.as_deref())?,
        limit: crate::access::audit_limit(query.limit),
    };
    let entries = controller
        .store
        .audit(&filter)
        .await
        .map_err(|error| controller.store_failed(error))?;
    let shown = entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.id,
                "at": rfc3339(entry.at_ms),
                "principal": entry.principal,
                "source": entry.source,
                "action": entry.action,
                "object": entry.object,
                "outcome": entry.outcome,
                "before": snapshot(entry.before.as_deref()),
                "after": snapshot(entry.after.as_deref()),
            })
        })
        .collect();
    Ok(Json(Value::Array(shown)))
}
