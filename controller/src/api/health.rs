//! `/healthz` (the process answers), `/readyz` (per component, with
//! `degraded`), `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::Controller;

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when every component works or only the cache is
/// failing (`degraded`: answers come from the store), 503 when the store
/// cannot answer.
pub async fn readyz(State(controller): State<Arc<Controller>>) -> (StatusCode, Json<Value>) {
    let store = match controller.store.list_devices().await {
        Ok(_) => json!({ "status": "ok" }),
        Err(error) => {
            json!({ "status": "failing", "detail": controller.store_failed(error).to_string() })
        }
    };
    let cache = match controller.cache.round_trip().await {
        Ok(()) => json!({ "status": "ok", "kind": controller.cache.kind() }),
        Err(detail) => {
            json!({ "status": "failing", "kind": controller.cache.kind(), "detail": detail })
        }
    };
    let (code, overall) = match (store["status"] == "ok", cache["status"] == "ok") {
        (true, true) => (StatusCode::OK, "ok"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "failing"),
    };
    (
        code,
        Json(json!({ "status": overall, "components": { "store": store, "cache": cache } })),
    )
}

/// `GET /metrics`.
pub async fn metrics(State(controller): State<Arc<Controller>>) -> String {
    let cache = controller.cache.metrics();
    let counters = [
        (
            "ward_cache_hits_total",
            "Answers served from the cache.",
            &cache.hits,
        ),
        (
            "ward_cache_misses_total",
            "Answers loaded from the store into the cache.",
            &cache.misses,
        ),
        (
            "ward_cache_bypasses_total",
            "Reads that bypassed the cache during a write.",
            &cache.bypasses,
        ),
        (
            "ward_cache_invalidations_total",
            "Cache generation bumps after commits.",
            &cache.invalidations,
        ),
        (
            "ward_cache_errors_total",
            "Cache backend errors and timeouts.",
            &cache.errors,
        ),
        (
            "ward_store_errors_total",
            "Status database operations that failed.",
            &controller.metrics.store_errors,
        ),
        (
            "ward_transitions_applied_total",
            "Status changes committed.",
            &controller.metrics.transitions_applied,
        ),
        (
            "ward_transitions_ignored_total",
            "Reported transitions ignored (stale, unknown, unchanged).",
            &controller.metrics.transitions_ignored,
        ),
        (
            "ward_reports_replayed_total",
            "Agent reports received again after being applied.",
            &controller.metrics.reports_replayed,
        ),
        (
            "ward_event_subscribers_lagged_total",
            "Live-event subscribers told to resync after falling behind.",
            &controller.metrics.event_subscribers_lagged,
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in counters {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let degraded = u8::from(controller.cache.is_degraded());
    let _ = writeln!(
        text,
        "# HELP ward_cache_degraded 1 while the cache backend is failing.\n# TYPE ward_cache_degraded gauge\nward_cache_degraded {degraded}"
    );
    text
}
