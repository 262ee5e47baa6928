//! `GET /api/v1/receivers`: where notifications can go, nothing secret
//! shown; `POST /api/v1/receivers/route`: which receivers an alert with
//! the given labels would go to, without sending anything.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::{Value, json};
use ward_domain::routing::Labels;

use super::ApiError;
use crate::services::Notifications;

/// `GET /api/v1/receivers`: every receiver (`name`, `kind`, `target`: the
/// URL's scheme, host and port), then the routes in order.
pub async fn list(State(notifications): State<Arc<Notifications>>) -> Json<Value> {
    Json(json!({
        "receivers": notifications.receivers(),
        "routes": notifications.routes(),
    }))
}

/// `POST /api/v1/receivers/route` with an alert's labels (`alertname`,
/// `site`, `tags`, `severity`): `{receivers, matched}` (the routes that
/// matched, numbered from 1; none: every receiver).
pub async fn route(
    State(notifications): State<Arc<Notifications>>,
    body: Result<Json<Labels>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(labels) = body.map_err(ApiError::body)?;
    labels
        .check()
        .map_err(|(field, why)| ApiError::field(field, why))?;
    Ok(Json(json!(notifications.route(&labels))))
}
