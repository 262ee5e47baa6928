//! REST API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.
//! Every read reflects the last commit (see `cache`); bad input gets a 4xx
//! JSON error naming the field, and nothing is half-written.

mod devices;
mod error;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::state::Controller;

pub use error::ApiError;

/// The HTTP router for `controller`.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route("/api/v1/devices/{id}", get(devices::get))
        .route("/api/v1/summary", get(devices::summary))
        .route("/api/v1/alerts", get(devices::alerts))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(controller)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}
