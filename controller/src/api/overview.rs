//! `GET /api/v1/overview`: what the dashboard shows at a glance, computed
//! by the controller (`services::overview`), so no screen loads the whole
//! inventory.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::devices::{device_filter, device_json};
use crate::services::{Inventory, Maintenance, PROBLEMS_DEFAULT, PROBLEMS_MAX};

/// `?status=&site=&q=&severity=&tag=` (as `/api/v1/devices`) and
/// `problems=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    status: Option<String>,
    site: Option<String>,
    q: Option<String>,
    severity: Option<String>,
    tag: Option<String>,
    problems: Option<usize>,
}

/// `{"counts": <summary>, "matching": N, "problems": {"total": K,
/// "devices": [...]}, "sites": [...]}`: the filters narrow `matching` and
/// the problems, never the counts or the sites.
pub async fn overview(
    State(inventory): State<Arc<Inventory>>,
    State(maintenance): State<Arc<Maintenance>>,
    Query(query): Query<OverviewQuery>,
) -> Result<Json<Value>, ApiError> {
    let shown = query.problems.unwrap_or(PROBLEMS_DEFAULT);
    if shown > PROBLEMS_MAX {
        return Err(ApiError::field(
            "problems",
            format!("must be between 0 and {PROBLEMS_MAX}"),
        ));
    }
    let filter = device_filter(
        query.status.as_deref(),
        query.site.as_deref(),
        query.q.as_deref(),
        query.severity.as_deref(),
        query.tag.as_deref(),
    )?;
    let overview = inventory.overview(&filter, shown).await?;
    let open = maintenance.open_windows();
    Ok(Json(json!({
        "counts": overview.counts,
        "matching": overview.matching,
        "problems": {
            "total": overview.problem_total,
            "devices": overview
                .problems
                .iter()
                .map(|device| device_json(device, &open))
                .collect::<Vec<_>>(),
        },
        "sites": overview.sites,
    })))
}
