//! API latency: the middleware that times each request, from its arrival
//! to its response headers (for the event stream, until the stream opens),
//! into `Metrics::api_latency`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::services::Core;

/// Times every request that matched a route.
pub async fn observe(State(core): State<Arc<Core>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    if let Some(route) = route {
        core.metrics
            .api_latency
            .observe(&method, &route, start.elapsed().as_secs_f64());
    }
    response
}
