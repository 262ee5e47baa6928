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
}

impl ApiError {
    /// 400 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The same error, located in entry `index` of an import.
    pub fn within(mut self, index: usize) -> Self {
        self.field = Some(match self.field {
            Some(field) => format!("devices[{index}].{field}"),
            None => format!("devices[{index}]"),
        });
        self
    }

    /// 401: a mutation without the configured bearer token.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "this call changes data and needs `Authorization: Bearer <token>` \
                      (the controller's --api-token)"
                .into(),
            field: None,
        }
    }

    /// 503: a component the answer needs is not answering.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            field: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: None,
        }
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
            StoreError::Conflict(message) => Self {
                status: StatusCode::CONFLICT,
                message,
                field: None,
            },
            other => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("the status database is not answering: {other}"),
                field: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => serde_json::json!({ "error": self.message, "field": field }),
            None => serde_json::json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}
