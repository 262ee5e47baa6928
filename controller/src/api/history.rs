//! `GET /api/v1/history` (viewer): every recorded status change, newest
//! first, filtered by device, site and time, paged by a cursor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, instant, rfc3339};
use crate::services::Core;
use crate::store::{
    HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, HistoryCursor, HistoryEntry, HistoryFilter,
};

/// `?device=&site=&from=&to=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    device: Option<i64>,
    site: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One change as the API shows it.
fn change_json(entry: &HistoryEntry) -> Value {
    json!({
        "id": entry.id,
        "device": entry.device_id,
        "name": entry.device_name,
        "site": entry.site,
        "from": entry.from.as_str(),
        "to": entry.to.as_str(),
        "at": rfc3339(entry.at_ms),
        "reason": entry.reason,
        "agent": entry.agent,
    })
}

/// `GET /api/v1/history`: `{"changes": [...], "next_cursor": "…" | null}`;
/// `next_cursor` is null on the last page.
pub async fn list(
    State(core): State<Arc<Core>>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {HISTORY_MAX_LIMIT}"),
        ));
    }
    let filter = HistoryFilter {
        device: query.device,
        site: query.site,
        from_ms: instant("from", query.from.as_deref())?,
        to_ms: instant("to", query.to.as_deref())?,
        after: query
            .cursor
            .as_deref()
            .map(str::parse::<HistoryCursor>)
            .transpose()
            .map_err(|error| ApiError::field("cursor", error))?,
        limit,
    };
    let page = core.store.history(&filter).await?;
    Ok(Json(json!({
        "changes": page.changes.iter().map(change_json).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|cursor| cursor.to_string()),
    })))
}
