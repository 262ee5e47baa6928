//! The dashboard's login: `POST /api/v1/login` starts a session (an
//! `HttpOnly`, `SameSite=Strict` cookie, `Secure` under TLS, and a CSRF
//! token every change made with it must carry in `X-Ward-CSRF`),
//! `GET /api/v1/session` says who is logged in, `POST /api/v1/logout` ends
//! the session.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Caller, rfc3339};
use crate::access;
use crate::login::{self, LoginRefusal};
use crate::services::{Core, Guard};
use crate::store::SessionRecord;

/// The session cookie's name.
pub const COOKIE: &str = "ward_session";

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-ward-csrf";

/// The session cookie's value in `headers`, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|value| !value.is_empty())
}

/// Whether `headers` carry `session`'s CSRF token.
pub fn carries_csrf(headers: &HeaderMap, session: &SessionRecord) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|sent| access::constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()))
}

/// `{user, password}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    user: String,
    password: String,
}

fn cookie(guard: &Guard, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if guard.logins.settings.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("ward_session=; Max-Age=0"))
}

fn described(session: &SessionRecord) -> serde_json::Value {
    json!({
        "user": session.user,
        "role": session.role,
        "origin": session.origin,
        "csrf": session.csrf,
        "expires_at": rfc3339(session.expires_at_ms),
    })
}

/// `POST /api/v1/login`: a session for a right name and password; 401 for
/// a wrong one, 429 (with `Retry-After`) while the name is locked out or
/// the address failed too often.
pub async fn login(
    State(guard): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Credentials>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(credentials) = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::body(rejection).into_response(),
    };
    let source = peer.to_string();
    match login::login(
        &guard,
        &credentials.user,
        &credentials.password,
        Some(peer.ip()),
        &source,
    )
    .await
    {
        Ok(started) => {
            let lifetime = guard.logins.settings.session_lifetime.as_secs();
            let max_age_s = i64::try_from(lifetime).unwrap_or(i64::MAX);
            (
                [(
                    header::SET_COOKIE,
                    cookie(&guard, &started.cookie, max_age_s),
                )],
                Json(described(&started.session)),
            )
                .into_response()
        }
        Err(refusal) => refused(&refusal),
    }
}

fn refused(refusal: &LoginRefusal) -> Response {
    let message = refusal.to_string();
    match refusal {
        LoginRefusal::Wrong => ApiError::plain(StatusCode::UNAUTHORIZED, message).into_response(),
        LoginRefusal::LockedOut { retry_after_s }
        | LoginRefusal::AddressLimited { retry_after_s } => (
            [(header::RETRY_AFTER, retry_after_s.to_string())],
            ApiError::plain(StatusCode::TOO_MANY_REQUESTS, message),
        )
            .into_response(),
        LoginRefusal::NoRole => ApiError::plain(StatusCode::FORBIDDEN, message).into_response(),
        LoginRefusal::Unavailable(_) => {
            ApiError::plain(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}

/// `GET /api/v1/session`: who the session cookie proves, or `user: null`
/// with whether reads are open and, while no user exists, how to make the
/// first admin.
pub async fn current(
    State(core): State<Arc<Core>>,
    State(guard): State<Arc<Guard>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(session) = live_session(&core, &headers).await? {
        return Ok(Json(described(&session)));
    }
    let users = core.store.users().await.map_err(ApiError::from)?;
    let hint = users.is_empty().then_some(access::FIRST_ADMIN_HINT);
    Ok(Json(json!({
        "user": null,
        "anonymous_read": guard.anonymous_read,
        "first_admin": hint,
    })))
}

async fn live_session(core: &Core, headers: &HeaderMap) -> Result<Option<SessionRecord>, ApiError> {
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    core.store
        .session(&crate::auth::token_digest(cookie), crate::time::now_ms())
        .await
        .map_err(ApiError::from)
}

/// `POST /api/v1/logout`: ends the cookie's session (it must carry the
/// session's CSRF token) and clears the cookie.
pub async fn logout(
    State(core): State<Arc<Core>>,
    State(guard): State<Arc<Guard>>,
    Caller(actor): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let clear = [(header::SET_COOKIE, cookie(&guard, "", 0))];
    let Some(session) = live_session(&core, &headers).await? else {
        return Ok((clear, StatusCode::NO_CONTENT).into_response());
    };
    if !carries_csrf(&headers, &session) {
        return Err(ApiError::plain(
            StatusCode::FORBIDDEN,
            access::CROSS_SITE_REFUSAL,
        ));
    }
    let digest = session_cookie(&headers)
        .map(crate::auth::token_digest)
        .unwrap_or_default();
    let actor = crate::store::Actor {
        principal: format!("user {} (dashboard session)", session.user),
        ..actor
    };
    core.store
        .end_session(&digest, &actor, crate::time::now_ms())
        .await
        .map_err(ApiError::from)?;
    tracing::info!(user = session.user, source = actor.source, "logged out");
    Ok((clear, StatusCode::NO_CONTENT).into_response())
}
