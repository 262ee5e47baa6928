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
    /// Every bad entry of an import (this error is the first), at most
    /// [`MOST_ENTRY_ERRORS`], and how many there were.
    entries: Option<(Vec<ApiError>, usize)>,
}

/// The bad entries of an import listed in one answer, at most.
pub const MOST_ENTRY_ERRORS: usize = 50;

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
            entries: None,
        }
    }

    /// One answer for every bad entry of an import: the first as the
    /// error, all of them (at most [`MOST_ENTRY_ERRORS`]) listed under
    /// `errors`, their number under `errors_total`. `None` if there are
    /// none.
    pub fn entries(mut errors: Vec<ApiError>) -> Option<Self> {
        let total = errors.len();
        errors.truncate(MOST_ENTRY_ERRORS);
        let first = errors.first()?;
        let mut answer = Self {
            status: first.status,
            message: first.message.clone(),
            field: first.field.clone(),
            line: first.line,
            entries: None,
        };
        if total > 1 {
            answer.message = format!("{} (and {} more bad entries)", answer.message, total - 1);
            answer.entries = Some((errors, total));
        }
        Some(answer)
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

    /// A JSON body that could not be taken: 413 (`body`) over the size
    /// limit; else 400 naming the field it is about (`interval_ms`,
    /// `site`) in words, or `body` when it is not JSON at all.
    pub fn body(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let status = rejection.status();
        let text = rejection.body_text();
        let error =
            match text.strip_prefix("Failed to deserialize the JSON body into the target type: ") {
                Some(detail) => {
                    let (field, message) = json_problem(detail);
                    Self::field(field, message)
                }
                None => Self::field("body", text),
            };
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self { status, ..error }
        } else {
            error
        }
    }

    /// A JSON value that did not fit its type, at `path` (serde's, e.g.
    /// `interval_ms`; `.` for the value itself).
    pub fn json_value(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let inner = error.inner().to_string();
        if path == "." {
            let (field, message) = json_problem(&inner);
            Self::field(field, message)
        } else {
            Self::field(path, in_words(strip_position(&inner)))
        }
    }

    /// The same error about `field` (a 404 for a name in the path).
    pub fn on_field(self, field: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..self
        }
    }

    /// 503: a component the answer needs is not answering.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::plain(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 404 for the `id` in the path: nothing has it.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            field: Some("id".into()),
            ..Self::plain(StatusCode::NOT_FOUND, message)
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
            StoreError::Conflict { field, message } => Self {
                field: Some(field),
                ..Self::plain(StatusCode::CONFLICT, message)
            },
            other => Self::unavailable(format!("the status database is not answering: {other}")),
        }
    }
}

/// The field a serde message is about and the message in words: `path:
/// message` (axum's), or a missing or unknown field named in backticks.
fn json_problem(detail: &str) -> (String, String) {
    let detail = strip_position(detail);
    for (opening, words) in [
        ("missing field `", "is required"),
        ("unknown field `", "is not a field here"),
    ] {
        if let Some(rest) = detail.strip_prefix(opening)
            && let Some((name, more)) = rest.split_once('`')
        {
            return (name.to_owned(), format!("{words}{more}"));
        }
    }
    match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_owned(), in_words(message)),
        _ => ("body".to_owned(), in_words(detail)),
    }
}

/// `message` without serde's trailing ` at line L column C`.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    }
}

/// A serde type error as an operator reads it: `invalid type: string
/// "fast", expected u32` → `must be a whole number from 0 to 4294967295,
/// not the text "fast"`.
fn in_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((_, more)) = rest.split_once('`')
    {
        return format!("is not a field here{more}");
    }
    let detail = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((got, expected)) = detail.and_then(|detail| detail.rsplit_once(", expected ")) else {
        return message.to_owned();
    };
    let expected = match expected {
        "u8" => "a whole number from 0 to 255".to_owned(),
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i32" | "i64" => "a whole number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" => "text".to_owned(),
        "a sequence" => "a list".to_owned(),
        other => other.to_owned(),
    };
    let got = if let Some(text) = got.strip_prefix("string ") {
        format!("the text {text}")
    } else if let Some(number) = got
        .strip_prefix("integer ")
        .or_else(|| got.strip_prefix("floating point "))
    {
        number.trim_matches('`').to_string()
    } else {
        match got {
            "map" => "an object".to_owned(),
            "sequence" => "a list".to_owned(),
            other => other.trim_matches('`').to_owned(),
        }
    };
    format!("must be {expected}, not {got}")
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
        field,
        ..ApiError::plain(status, message)
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
        let status = self.status;
        (status, Json(self.json())).into_response()
    }
}

impl ApiError {
    /// The error as its JSON body.
    fn json(self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some((entries, total)) = self.entries {
            body["errors"] = entries.into_iter().map(ApiError::json).collect();
            body["errors_total"] = total.into();
        }
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        if let Some(line) = self.line {
            body["line"] = line.into();
        }
        body
    }
}
