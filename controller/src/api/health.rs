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

/// `GET /readyz`: 200 when every component works, 200 `degraded` when the
/// cache or the notifier fails (answers come from the store; notifications
/// wait in the outbox), 503 when the store cannot answer.
pub async fn readyz(State(controller): State<Arc<Controller>>) -> (StatusCode, Json<Value>) {
    let store = match controller.store.ping().await {
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
    let notifier = if controller.metrics.notifier_failing.load(Ordering::Relaxed) {
        json!({ "status": "failing", "detail": "the last delivery round failed; see ward_notifications_failed_total" })
    } else {
        json!({ "status": "ok" })
    };
    let degraded = cache["status"] != "ok" || notifier["status"] != "ok";
    let (code, overall) = match (store["status"] == "ok", degraded) {
        (true, false) => (StatusCode::OK, "ok"),
        (true, true) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "failing"),
    };
    (
        code,
        Json(json!({
            "status": overall,
            "components": { "store": store, "cache": cache, "notifier": notifier },
        })),
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
            "ward_notifications_sent_total",
            "Notifications delivered (2xx).",
            &controller.metrics.notifications_sent,
        ),
        (
            "ward_notifications_failed_total",
            "Notification delivery attempts that failed (retried).",
            &controller.metrics.notifications_failed,
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
