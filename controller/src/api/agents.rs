//! Agents: the inventory (`POST`), and who is connected right now (`GET`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, now_ms, rfc3339};
use crate::agents::Presence;
use crate::services::AgentPresence;
use crate::store::AgentRecord;

/// Agent as the API shows it.
fn agent_json(agent: &AgentRecord, presence: &Presence) -> Value {
    json!({
        "id": agent.id,
        "site": agent.site,
        "registered_at": rfc3339(agent.created_at_ms),
        "connected": presence.connected,
        // "this", or the instance id of the controller holding the link.
        "controller": if presence.connected {
            Value::from(presence.elsewhere.as_deref().unwrap_or("this"))
        } else {
            Value::Null
        },
        "state": presence.state().as_str(),
        "devices": presence.devices,
        "probe_families": presence.probe_families,
        "blind_reason": presence.blind,
        "since": rfc3339(presence.since_ms),
        "last_heartbeat": presence.last_heartbeat_ms.map(rfc3339),
        // How far its clock is behind this controller's (negative: ahead);
        // its reports are dated in the controller's time all the same.
        "clock_offset_ms": presence.clock_offset_ms,
        "version": presence.version,
        "boot_id": presence.boot_id,
        "counters": counters_json(&presence.counters),
    })
}

/// An agent's counters as the API shows them.
fn counters_json(counters: &ward_proto::v1::EngineCounters) -> Value {
    json!({
        "probes_sent": counters.probes_sent,
        "send_errors": counters.send_errors,
        "replies_matched": counters.replies_matched,
        "replies_invalid": counters.replies_invalid,
        "replies_duplicate": counters.replies_duplicate,
        "replies_late": counters.replies_late,
        "icmp_errors": counters.icmp_errors,
        "rx_kernel_drops": counters.rx_kernel_drops,
        "rate_limited": counters.rate_limited,
        "spool_records": counters.spool_records,
        "spool_statistics_dropped": counters.spool_statistics_dropped,
        "targets": counters.targets,
        "traces_started": counters.traces_started,
        "traces_shared": counters.traces_shared,
        "traces_skipped": counters.traces_skipped,
    })
}

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    id: String,
    site: String,
}

/// `POST /api/v1/agents`: registers an agent (again: no change).
pub async fn register(
    State(presence): State<Arc<AgentPresence>>,
    Caller(actor): Caller,
    body: Result<Json<AgentInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body.map_err(ApiError::body)?;
    let agent = presence
        .register_agent(&input.id, &input.site, &actor, now_ms())
        .await?;
    let presence = presence
        .agents_with_devices()
        .await?
        .into_iter()
        .find(|(known, _)| known.id == agent.id)
        .map(|(_, presence)| presence)
        .unwrap_or_default();
    Ok((StatusCode::CREATED, Json(agent_json(&agent, &presence))))
}

/// `GET /api/v1/agents`.
pub async fn list(State(presence): State<Arc<AgentPresence>>) -> Result<Json<Value>, ApiError> {
    let agents = presence.agents_with_devices().await?;
    Ok(Json(Value::Array(
        agents
            .iter()
            .map(|(agent, presence)| agent_json(agent, presence))
            .collect(),
    )))
}
