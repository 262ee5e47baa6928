//! `GET /api/v1/audit` (admin): the audit log, newest first, filtered by
//! principal, object and time. Nothing updates or deletes it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, instant, rfc3339};
use crate::services::Core;
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

/// A stored JSON snapshot back as JSON (text if it no longer parses).
fn snapshot(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |text| {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    })
}

/// `GET /api/v1/audit`.
pub async fn list(
    State(core): State<Arc<Core>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = AuditFilter {
        principal: query.principal,
        object: query.object,
        since_ms: instant("since", query.since.as_deref())?,
        until_ms: instant("until", query.until.as_deref())?,
        limit: crate::access::audit_limit(query.limit),
    };
    let entries = core.store.audit(&filter).await?;
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
