//! REST by role: every route is declared with what it requires
//! ([`Routes::add`]), the router and the access table come from the same
//! declarations, and one layer checks each request against the table. A
//! route missing from the table refuses everyone.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use super::ApiError;
use crate::access::{self, Access, Refusal};
use crate::auth::Principal;
use crate::services::{App, Core, Guard};
use crate::store::Actor;
use crate::time::now_ms;

/// One declared route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// Its method.
    pub method: Method,
    /// Its path, as routed (`/api/v1/devices/{id}`).
    pub path: &'static str,
    /// What it requires.
    pub access: Access,
}

/// Routes being declared, each with what it requires.
#[derive(Default)]
pub struct Routes {
    routers: Vec<(&'static str, MethodRouter<App>)>,
    declared: Vec<Declared>,
}

impl Routes {
    /// `method path` served by `handler`, requiring `access`.
    pub fn add<H, T>(self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, App>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        self.add_router(method, path, access, on(filter, handler))
    }

    /// Like [`Routes::add`], for a method router with its own layers.
    pub fn add_router(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        router: MethodRouter<App>,
    ) -> Self {
        self.declared.push(Declared {
            method,
            path,
            access,
        });
        self.routers.push((path, router));
        self
    }

    /// What every route requires.
    pub fn declared(&self) -> &[Declared] {
        &self.declared
    }

    /// The router, each request checked against the declarations.
    pub fn into_router(self, guard: &Arc<Guard>) -> Router<App> {
        let declared = Arc::new(self.declared);
        let mut paths: Vec<(&'static str, MethodRouter<App>)> = Vec::new();
        for (path, router) in self.routers {
            match paths.iter_mut().find(|(known, _)| *known == path) {
                Some((_, merged)) => *merged = std::mem::take(merged).merge(router),
                None => paths.push((path, router)),
            }
        }
        let router = paths
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(path, methods)
            });
        router.route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(guard), declared),
            authorize,
        ))
    }
}

/// The legacy `api_token` acts as an admin until users' tokens replace it.
fn legacy_principal() -> Principal {
    Principal::Token {
        id: 0,
        user: "api_token (legacy)".into(),
        role: crate::auth::Role::Admin,
    }
}

/// Checks a request against the declarations; lets it through with its
/// principal in its extensions, or refuses it (401/403, counted, logged,
/// audited).
async fn authorize(
    State((guard, declared)): State<(Arc<Guard>, Arc<Vec<Declared>>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    let on_path = || declared.iter().filter(|route| route.path == path);
    let access = on_path()
        .find(|route| {
            route.method == method || (method == Method::HEAD && route.method == Method::GET)
        })
        .map(|route| route.access);
    if access.is_none() && on_path().next().is_some() {
        let allowed: Vec<&str> = on_path().map(|route| route.method.as_str()).collect();
        return ApiError::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers {}, not {method}", allowed.join(", ")),
        )
        .into_response();
    }
    if access == Some(Access::Open) {
        // Liveness, readiness, the page and the API description: a token
        // that no longer works must not fail a health probe.
        request.extensions_mut().insert(Principal::Anonymous);
        return next.run(request).await;
    }
    let proven = prove(&guard, &method, request.headers()).await;
    let (principal, decided) = match (proven, access) {
        (Ok((principal, Ok(()))), Some(access)) => {
            let decided = access::permit(&principal, access, guard.anonymous_read);
            (principal, decided)
        }
        (Ok((principal, Ok(()))), None) => (
            principal,
            Err(Refusal::Forbidden(format!(
                "no access is declared for {method} {path}: a bug, refused for everyone"
            ))),
        ),
        (Ok((principal, Err(refusal))), _) => (principal, Err(refusal)),
        (Err(refusal), _) => (Principal::Anonymous, Err(refusal)),
    };
    let refusal = match decided {
        Ok(()) => {
            request.extensions_mut().insert(principal);
            return next.run(request).await;
        }
        Err(refusal) => with_first_admin_hint(&guard, &principal, refusal).await,
    };
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.to_string());
    let action = format!("{method} {path}");
    let object = request.uri().path().to_owned();
    access::refused(&guard.core, &principal, &source, &action, &object, &refusal).await;
    refused(refusal)
}

/// The principal a request proves: the legacy `api_token`, a session
/// cookie (with its CSRF token for a change), or an API token; and whether
/// its proof holds for this request.
async fn prove(
    guard: &Guard,
    method: &Method,
    headers: &axum::http::HeaderMap,
) -> Result<(Principal, Result<(), Refusal>), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let cookie = super::session::session_cookie(headers);
    match (token, guard.api_token.as_deref(), cookie) {
        (Some(token), Some(legacy), _)
            if access::constant_time_eq(token.as_bytes(), legacy.as_bytes()) =>
        {
            Ok((legacy_principal(), Ok(())))
        }
        (None, _, Some(cookie)) => session_with_csrf(&guard.core, cookie, method, headers).await,
        (token, _, _) => access::token_principal(&guard.core, token, now_ms())
            .await
            .map(|principal| (principal, Ok(()))),
    }
}

/// A refusal as the client gets it.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated(message) => (
            [(header::WWW_AUTHENTICATE, "Bearer")],
            ApiError::plain(StatusCode::UNAUTHORIZED, message),
        )
            .into_response(),
        Refusal::Forbidden(message) => {
            ApiError::plain(StatusCode::FORBIDDEN, message).into_response()
        }
        Refusal::Unavailable(message) => {
            ApiError::plain(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}

/// The principal of a session cookie; a change (any method but GET and
/// HEAD) must also carry the session's CSRF token, which a page of another
/// site cannot read.
async fn session_with_csrf(
    core: &Core,
    cookie: &str,
    method: &Method,
    headers: &axum::http::HeaderMap,
) -> Result<(Principal, Result<(), Refusal>), Refusal> {
    let (principal, session) = access::session_principal(core, cookie, now_ms()).await?;
    let safe = *method == Method::GET || *method == Method::HEAD;
    if safe || super::session::carries_csrf(headers, &session) {
        Ok((principal, Ok(())))
    } else {
        let refusal = Refusal::Forbidden(access::CROSS_SITE_REFUSAL.into());
        Ok((principal, Err(refusal)))
    }
}

/// An anonymous refusal while no user exists says how to make the first
/// admin.
async fn with_first_admin_hint(guard: &Guard, principal: &Principal, refusal: Refusal) -> Refusal {
    let no_users = *principal == Principal::Anonymous
        && guard.api_token.is_none()
        && guard
            .core
            .store
            .users()
            .await
            .is_ok_and(|users| users.is_empty());
    match refusal {
        Refusal::Unauthenticated(message) if no_users => {
            Refusal::Unauthenticated(format!("{message}. {}", access::FIRST_ADMIN_HINT))
        }
        other => other,
    }
}

/// Who is calling and from where, as the audit log records a change: the
/// principal the access layer proved, and the peer address.
pub struct Caller(pub Actor);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Anonymous);
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.to_string());
        Ok(Caller(Actor {
            principal: principal.to_string(),
            source,
        }))
    }
}
