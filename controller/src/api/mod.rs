//! REST API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.
//! Every read reflects the last commit (see `cache`); bad input gets a 4xx
//! JSON error naming the field, and nothing is half-written.

mod agents;
mod auth;
mod devices;
mod error;
mod events;
mod health;
mod import;
mod latency;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::state::Controller;

pub use error::ApiError;
pub use latency::ApiLatency;

/// `GET /api/v1/openapi.json`: the REST API described (OpenAPI 3).
async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// `GET /`: the dashboard, one static page (no build step) that reads the
/// REST API and follows `/api/v1/events`.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

pub use crate::time::{now_ms, rfc3339};

/// The HTTP router for `controller`.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route(
            "/api/v1/devices/{id}",
            get(devices::get)
                .put(devices::update)
                .delete(devices::delete),
        )
        .route("/api/v1/devices/{id}/rtt", get(devices::rtt))
        .route(
            "/api/v1/devices/import",
            // 100,000 devices as JSON are about 15 MiB.
            post(import::import).layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        )
        .route("/api/v1/summary", get(devices::summary))
        .route("/api/v1/agents", get(agents::list).post(agents::register))
        .route("/api/v1/alerts", get(devices::alerts))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            auth::require_token,
        ))
        .layer(middleware::from_fn(error::errors_as_json))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            latency::observe,
        ))
        .with_state(controller)
}
