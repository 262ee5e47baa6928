//! REST API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.
//! Every read reflects the last commit (see `cache`); bad input gets a 4xx
//! JSON error naming the field, and nothing is half-written.

mod access;
mod agents;
mod alerts;
mod audit;
mod cluster;
mod dashboard;
mod devices;
mod error;
mod events;
mod health;
mod history;
mod import;
mod latency;
mod maintenance;
mod overview;
mod profiles;
mod receivers;
mod reports;
mod security_headers;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::middleware;
use axum::routing::post;

use crate::access::Access;
use crate::services::App;

pub use access::{Caller, Declared, Routes};
pub use error::ApiError;

/// `GET /api/v1/openapi.json`: the REST API described (OpenAPI 3).
async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

pub use crate::time::{now_ms, rfc3339};

/// A time parameter (RFC 3339, `Z` or an offset) as Unix ms; a 400
/// naming `parameter` if it is not one.
fn instant(parameter: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|text| {
        text.parse::<jiff::Timestamp>()
            .map(jiff::Timestamp::as_millisecond)
            .map_err(|_| {
                ApiError::field(
                    parameter,
                    format!(
                        "`{text}`: use RFC 3339, e.g. 2026-11-30T06:00:00Z or 2026-11-30T10:00:00+04:00"
                    ),
                )
            })
    })
    .transpose()
}

/// Every route with what it requires, declared once: the router is built
/// from these declarations, and the authorization test walks them.
/// `/metrics` requires `metrics` (`metrics_access`: open by default, or
/// `viewer`).
pub fn routes(metrics: Access) -> Routes {
    use crate::access::Access::{Open, Read, Role};
    use crate::auth::Role::{Admin, Operator};
    dashboard::routes(Routes::default())
        .add(Method::GET, "/api/v1/devices", Read, devices::list)
        .add(
            Method::POST,
            "/api/v1/devices",
            Role(Admin),
            devices::create,
        )
        .add(Method::GET, "/api/v1/devices/{id}", Read, devices::get)
        .add(
            Method::PUT,
            "/api/v1/devices/{id}",
            Role(Admin),
            devices::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/devices/{id}",
            Role(Admin),
            devices::delete,
        )
        .add(Method::GET, "/api/v1/devices/{id}/rtt", Read, devices::rtt)
        .add_router(
            Method::POST,
            "/api/v1/devices/import",
            Role(Admin),
            // 100,000 devices as JSON are about 15 MiB.
            post(import::import).layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        )
        .add(Method::GET, "/api/v1/summary", Read, devices::summary)
        .add(Method::GET, "/api/v1/overview", Read, overview::overview)
        .add(Method::GET, "/api/v1/agents", Read, agents::list)
        .add(
            Method::POST,
            "/api/v1/agents",
            Role(Admin),
            agents::register,
        )
        .add(Method::GET, "/api/v1/controllers", Read, cluster::list)
        .add(Method::GET, "/api/v1/alerts", Read, alerts::list)
        .add(
            Method::POST,
            "/api/v1/alerts/{id}/ack",
            Role(Operator),
            alerts::acknowledge,
        )
        .add(
            Method::DELETE,
            "/api/v1/alerts/{id}/ack",
            Role(Operator),
            alerts::unacknowledge,
        )
        .add(Method::GET, "/api/v1/events", Read, events::stream)
        .add(Method::GET, "/api/v1/history", Read, history::list)
        .add(
            Method::GET,
            "/api/v1/reports/availability",
            Read,
            reports::availability,
        )
        .add(Method::GET, "/api/v1/maintenance", Read, maintenance::list)
        .add(
            Method::POST,
            "/api/v1/maintenance",
            Role(Operator),
            maintenance::create,
        )
        .add(
            Method::GET,
            "/api/v1/maintenance/{id}",
            Read,
            maintenance::get,
        )
        .add(
            Method::PUT,
            "/api/v1/maintenance/{id}",
            Role(Operator),
            maintenance::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/maintenance/{id}",
            Role(Operator),
            maintenance::delete,
        )
        .add(Method::GET, "/api/v1/profiles", Read, profiles::list)
        .add(
            Method::POST,
            "/api/v1/profiles",
            Role(Admin),
            profiles::create,
        )
        .add(Method::GET, "/api/v1/profiles/{name}", Read, profiles::get)
        .add(
            Method::PUT,
            "/api/v1/profiles/{name}",
            Role(Admin),
            profiles::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/profiles/{name}",
            Role(Admin),
            profiles::delete,
        )
        .add(Method::GET, "/api/v1/sites", Read, profiles::sites)
        .add(
            Method::PUT,
            "/api/v1/sites/{name}",
            Role(Admin),
            profiles::update_site,
        )
        .add(Method::GET, "/api/v1/receivers", Read, receivers::list)
        .add(
            Method::POST,
            "/api/v1/receivers/route",
            Read,
            receivers::route,
        )
        .add(Method::GET, "/api/v1/audit", Role(Admin), audit::list)
        .add(Method::GET, "/api/v1/openapi.json", Open, openapi)
        // Logging in is how a principal is proven; the handlers check
        // the session (and logout its CSRF token) themselves.
        .add(Method::POST, "/api/v1/login", Open, session::login)
        .add(Method::GET, "/api/v1/session", Open, session::current)
        .add(Method::POST, "/api/v1/logout", Open, session::logout)
        .add(Method::GET, "/healthz", Open, health::healthz)
        .add(Method::GET, "/readyz", Open, health::readyz)
        .add(Method::GET, "/metrics", metrics, health::metrics)
}

/// The HTTP router over `app`'s services.
pub fn router(app: App) -> Router {
    routes(app.guard.metrics_access)
        .into_router(&app.guard)
        .layer(middleware::from_fn(error::errors_as_json))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app.guard),
            security_headers::add,
        ))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&app.core),
            latency::observe,
        ))
        .with_state(app)
}
