//! `GET /api/v1/controllers`: the controllers of the cluster, from their
//! membership rows in the database.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, rfc3339};
use crate::services::Cluster;

/// `GET /api/v1/controllers`: each controller with whether it is alive
/// (heard within the failover delay), when it started and the
/// once-per-cluster jobs it holds.
pub async fn list(State(cluster): State<Arc<Cluster>>) -> Result<Json<Value>, ApiError> {
    let members = cluster.controllers().await?;
    Ok(Json(Value::Array(
        members
            .iter()
            .map(|(member, alive)| {
                json!({
                    "instance": member.instance,
                    "this": member.instance == cluster.instance,
                    "alive": alive,
                    "version": member.version,
                    "started": rfc3339(member.started_at_ms),
                    "last_heartbeat_ago_ms": member.heard_ago_ms.max(0),
                    "jobs": member.jobs,
                })
            })
            .collect(),
    )))
}
