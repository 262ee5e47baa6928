//! Who may do what, decided once for REST and gRPC: the principal a
//! request proves (an API token, an agent certificate, nothing), whether it
//! holds what the route or method requires, and every refusal counted and
//! audited.

use std::sync::atomic::Ordering;

pub use crate::auth::Access;
use crate::auth::{Principal, Role, token_digest};
use crate::services::Core;
use crate::store::AuditEntry;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It proved nobody, or its token is not valid (401, UNAUTHENTICATED).
    Unauthenticated(String),
    /// Its principal may not do this (403, PERMISSION_DENIED).
    Forbidden(String),
    /// Its credentials cannot be checked now: the status database is not
    /// answering (503, UNAVAILABLE). Not the client's fault: try again.
    Unavailable(String),
}

impl Refusal {
    /// What the client is told.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Unauthenticated(message)
            | Refusal::Forbidden(message)
            | Refusal::Unavailable(message) => message,
        }
    }
}

/// The principal a bearer `token` proves (`None`: none presented).
pub async fn token_principal(
    core: &Core,
    token: Option<&str>,
    now_ms: i64,
) -> Result<Principal, Refusal> {
    let Some(token) = token else {
        return Ok(Principal::Anonymous);
    };
    let owner = core
        .store
        .token_owner(&token_digest(token))
        .await
        .map_err(|error| {
            Refusal::Unavailable(format!(
                "the token cannot be checked now (try again): {error}"
            ))
        })?
        .ok_or_else(|| Refusal::Unauthenticated("unknown API token".into()))?;
    let id = owner.token.id;
    if owner.token.revoked_at_ms.is_some() {
        return Err(Refusal::Unauthenticated(format!(
            "API token {id} was revoked"
        )));
    }
    if owner.token.expires_at_ms.is_some_and(|at| at <= now_ms) {
        return Err(Refusal::Unauthenticated(format!("API token {id} expired")));
    }
    if !owner.user_enabled {
        return Err(Refusal::Unauthenticated(format!(
            "user {} is disabled",
            owner.token.user
        )));
    }
    Ok(Principal::Token {
        id,
        user: owner.token.user,
        role: owner.role,
    })
}

/// The principal a dashboard session cookie proves, with the session
/// (its CSRF token is checked on changes).
pub async fn session_principal(
    core: &Core,
    cookie: &str,
    now_ms: i64,
) -> Result<(Principal, crate::store::SessionRecord), Refusal> {
    let session = core
        .store
        .session(&token_digest(cookie), now_ms)
        .await
        .map_err(|error| {
            Refusal::Unavailable(format!(
                "the session cannot be checked now (try again): {error}"
            ))
        })?
        .ok_or_else(|| {
            Refusal::Unauthenticated(
                "the session ended (expired, logged out, or its user disabled): log in again"
                    .into(),
            )
        })?;
    let principal = Principal::Session {
        user: session.user.clone(),
        role: session.role,
    };
    Ok((principal, session))
}

/// What a change made with a session cookie but without its CSRF token
/// is told.
pub const CROSS_SITE_REFUSAL: &str = "cross-site request refused: a change made with the \
    dashboard's session cookie must carry the session's X-Ward-CSRF header";

/// How to make the first admin, said while no user exists.
pub const FIRST_ADMIN_HINT: &str = "No user exists yet: on the controller host run \
    `ward-controller users add NAME --role admin` (it prints a generated password) and log in, \
    or `ward-controller tokens create NAME` for an API token";

/// Compares without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Audit entries listed when a request names no limit.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;

/// Most audit entries one request lists.
pub const AUDIT_MAX_LIMIT: u32 = 10_000;

/// The number of audit entries to list for a requested `limit`.
pub fn audit_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(AUDIT_DEFAULT_LIMIT).min(AUDIT_MAX_LIMIT)
}

/// Whether `principal` may do what `access` requires.
pub fn permit(principal: &Principal, access: Access, anonymous_read: bool) -> Result<(), Refusal> {
    if let (Principal::Agent { id }, Access::Read | Access::Role(_)) = (principal, access) {
        return Err(Refusal::Forbidden(format!(
            "agent {id}'s certificate may use ward.v1.AgentLink only"
        )));
    }
    let needed = match access {
        Access::Open => return Ok(()),
        Access::Read if anonymous_read => return Ok(()),
        Access::Read => Role::Viewer,
        Access::Role(role) => role,
    };
    match (principal, principal.role()) {
        (_, Some(role)) if role >= needed => Ok(()),
        (Principal::Anonymous, _) => Err(Refusal::Unauthenticated(format!(
            "this needs the {needed} role: present an API token (`authorization: Bearer …`; \
             `ward-controller tokens create USER`)"
        ))),
        (other, role) => Err(Refusal::Forbidden(format!(
            "this needs the {needed} role; {other} has {}",
            role.map_or("none", Role::as_str)
        ))),
    }
}

/// Counts, logs and audits a refused request: `action` on `object` by
/// `principal` from `source`.
pub async fn refused(
    core: &Core,
    principal: &Principal,
    source: &str,
    action: &str,
    object: &str,
    refusal: &Refusal,
) {
    core.metrics.access_refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%principal, source, action, object, reason = refusal.message(), "request refused");
    let entry = AuditEntry {
        id: 0,
        at_ms: crate::time::now_ms(),
        principal: principal.to_string(),
        source: source.to_owned(),
        action: action.to_owned(),
        object: object.to_owned(),
        outcome: format!("refused: {}", refusal.message()),
        before: None,
        after: None,
    };
    // A failure is counted and logged by the store; the refusal stands.
    let _ = core.store.record_audit(&entry).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role) -> Principal {
        Principal::Token {
            id: 1,
            user: "alice".into(),
            role,
        }
    }

    #[test]
    fn roles_include_the_weaker_ones_and_agents_get_nothing_but_their_link() {
        let admin = Access::Role(Role::Admin);
        assert_eq!(permit(&token(Role::Admin), admin, false), Ok(()));
        assert!(matches!(
            permit(&token(Role::Operator), admin, false),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(permit(&token(Role::Viewer), Access::Read, false), Ok(()));
        assert!(matches!(
            permit(&Principal::Anonymous, Access::Read, false),
            Err(Refusal::Unauthenticated(_))
        ));
        assert_eq!(permit(&Principal::Anonymous, Access::Read, true), Ok(()));
        assert_eq!(permit(&Principal::Anonymous, Access::Open, false), Ok(()));
        let agent = Principal::Agent {
            id: "branch-0421".into(),
        };
        let refused = permit(&agent, Access::Read, false).expect_err("agent");
        assert!(refused.message().contains("AgentLink only"), "{refused:?}");
        assert!(matches!(
            permit(&agent, admin, true),
            Err(Refusal::Forbidden(_))
        ));
    }
}
