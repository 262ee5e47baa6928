//! API errors as JSON: `{"error": "...", "field": "..."}` with a 4xx for
//! the caller's mistakes and 503 when the store cannot answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    /// The line of a CSV import the error is on.
    line: Option<u64>,
}

impl ApiError {
    /// 400 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::plain(StatusCode::BAD_REQUEST, message)
        }
    }

    /// An error with no field.
    pub fn plain(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            line: None,
        }
    }

    /// The same error, on `line` of a CSV import (counting the header as
    /// line 1).
    pub fn at_line(mut self, line: u64) -> Self {
        self.message = format!("line {line}: {}", self.message);
        self.line = Some(line);
        self
    }

    /// The entry of an import this error names, if any.
    pub fn entry(&self) -> Option<usize> {
        let field = self.field.as_deref()?;
        field
            .strip_prefix("devices[")?
            .split(']')
            .next()?
            .parse()
            .ok()
    }

    /// The same error, located in entry `index` of an import.
    pub fn within(mut self, index: usize) -> Self {
        self.field = Some(match self.field {
            Some(field) => format!("devices[{index}].{field}"),
            None => format!("devices[{index}]"),
        });
        self
    }

    /// A JSON body that could not be taken: 413 when it is over the size
    /// limit, else 400 naming `body`.
    pub fn body(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let error = Self::field("body", rejection.body_text());
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..error
            }
        } else {
            error
        }
    }

    /// 503: a component the answer needs is not answering.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::NOT_FOUND, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(field) => Self::field(field.field, field.message),
            StoreError::InvalidEntry {
                index,
                field,
                message,
            } => Self::field(format!("devices[{index}].{field}"), message),
            StoreError::Conflict(message) => Self::plain(StatusCode::CONFLICT, message),
            other => Self::unavailable(format!("the status database is not answering: {other}")),
        }
    }
}

/// Gives every error answer the JSON shape: the framework's own rejections
/// (a bad path or query parameter, an unknown route, a wrong method, a body
/// over the limit) come as plain text; they are rewritten as
/// `{"error": ..., "field": ...}` naming the parameter where it can.
pub async fn errors_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::NOT_FOUND, true) => format!("no such route: {path}"),
        (StatusCode::METHOD_NOT_ALLOWED, true) => format!("method not allowed on {path}"),
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, false) => text.clone(),
    };
    let field = rejected_parameter(&text);
    ApiError {
        status,
        message,
        field,
        line: None,
    }
    .into_response()
}

/// The parameter a framework rejection is about: `id` for a path that does
/// not parse, the query parameter named in a query rejection.
fn rejected_parameter(text: &str) -> Option<String> {
    if text.starts_with("Invalid URL") || text.contains("Cannot parse") {
        return Some("id".into());
    }
    let detail = text.strip_prefix("Failed to deserialize query string: ")?;
    Some(match detail.split_once(": ") {
        Some((name, _)) if !name.contains(' ') => name.to_owned(),
        _ => "query".to_owned(),
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        if let Some(line) = self.line {
            body["line"] = line.into();
        }
        (self.status, Json(body)).into_response()
    }
}
