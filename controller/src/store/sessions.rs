//! Dashboard sessions and login lockouts, written once for both backends
//! over [`super::tx::WriteTx`]. Logins, failed logins, lockouts
//! and logouts are audited in their own transaction; failed logins are
//! counted from the audit log itself, so every controller on one database
//! sees the same count.

use crate::auth::Role;

use super::args::Arg;
use super::principals::{Actor, Change, UserRecord, audit_outcome, find_user, json};
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use super::{StoreError, parse_stored};

/// Where a session's user was proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionOrigin {
    /// A local user's password: the session follows the user (disabled or
    /// its role changed: so does the session).
    Local,
    /// An LDAP bind: the role its groups gave at login, for this session
    /// only.
    Ldap,
}

impl SessionOrigin {
    fn as_str(self) -> &'static str {
        match self {
            SessionOrigin::Local => "local",
            SessionOrigin::Ldap => "ldap",
        }
    }
}

impl std::str::FromStr for SessionOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "local" => Ok(SessionOrigin::Local),
            "ldap" => Ok(SessionOrigin::Ldap),
            other => Err(format!("unknown session origin `{other}`")),
        }
    }
}

/// A live session as a request proves it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionRecord {
    /// Its user.
    pub user: String,
    /// What it may do now.
    pub role: Role,
    /// Where its user was proven.
    pub origin: SessionOrigin,
    /// What every change made with the session's cookie must carry.
    pub csrf: String,
    /// When it stops working, Unix ms.
    pub expires_at_ms: i64,
}

/// What a login keeps: the session's cookie is known only by `digest`.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The digest of the cookie's secret.
    pub digest: String,
    /// The session itself.
    pub session: SessionRecord,
}

/// How many wrong passwords lock a login name out, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Wrong passwords within `window_ms` that lock the name.
    pub failures: u32,
    /// The window they are counted in, ms.
    pub window_ms: i64,
    /// How long the name stays locked, ms.
    pub lock_ms: i64,
}

/// Sessions that ended more than this long ago are deleted at a login.
const ENDED_SESSIONS_KEPT_MS: i64 = 24 * 3600 * 1000;

fn session(row: &dyn Columns) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        user: row.text(0)?,
        role: parse_stored("role", &row.text(1)?)?,
        origin: parse_stored("origin", &row.text(2)?)?,
        csrf: row.text(3)?,
        expires_at_ms: row.int(4)?,
    })
}

fn login_object(name: &str) -> String {
    format!("user {name}")
}

/// Audits a login attempt on `name`.
async fn audit_login(
    tx: &impl WriteTx,
    actor: &Actor,
    action: &str,
    name: &str,
    outcome: String,
    after: Option<String>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let change = Change {
        action,
        object: login_object(name),
        before: None,
        after,
    };
    audit_outcome(tx, actor, change, outcome, now_ms).await
}

/// A local user and its password hash (none: it logs in through LDAP or
/// only uses tokens).
pub(super) async fn credentials(
    tx: &impl Query,
    name: &str,
) -> Result<Option<(UserRecord, Option<String>)>, StoreError> {
    let Some(user) = find_user(tx, name).await? else {
        return Ok(None);
    };
    let hash = tx
        .rows(
            "SELECT password_hash FROM users WHERE name = $1",
            &[Arg::Text(name)],
            |row| row.opt_text(0),
        )
        .await?
        .pop()
        .flatten();
    Ok(Some((user, hash)))
}

/// Until when login name `name` is locked out, if it is now.
pub(super) async fn lockout(
    tx: &impl Query,
    name: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .rows(
            "SELECT until_ms FROM login_lockouts WHERE name = $1 AND until_ms > $2",
            &[Arg::Text(name), Arg::Int(now_ms)],
            |row| row.int(0),
        )
        .await?
        .pop())
}

/// Keeps `new` and audits the login.
pub(super) async fn start_session(
    tx: &impl WriteTx,
    new: &NewSession,
    actor: &Actor,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.run(
        "DELETE FROM sessions WHERE expires_at_ms < $1 OR ended_at_ms < $1",
        &[Arg::Int(now_ms - ENDED_SESSIONS_KEPT_MS)],
    )
    .await?;
    let session = &new.session;
    tx.run(
        "INSERT INTO sessions (digest, user_name, role, origin, csrf, source, created_at_ms, \
         expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            Arg::Text(&new.digest),
            Arg::Text(&session.user),
            Arg::Text(session.role.as_str()),
            Arg::Text(session.origin.as_str()),
            Arg::Text(&session.csrf),
            Arg::Text(&actor.source),
            Arg::Int(now_ms),
            Arg::Int(session.expires_at_ms),
        ],
    )
    .await?;
    let after = serde_json::json!({
        "role": session.role,
        "origin": session.origin,
        "expires_at_ms": session.expires_at_ms,
    });
    audit_login(
        tx,
        actor,
        "login",
        &session.user,
        "ok".into(),
        Some(json(&after)),
        now_ms,
    )
    .await
}

/// The live session kept by `digest`: not ended, not expired, and for a
/// local user, the user still enabled (with its role now).
pub(super) async fn session_by_digest(
    tx: &impl Query,
    digest: &str,
    now_ms: i64,
) -> Result<Option<SessionRecord>, StoreError> {
    Ok(tx
        .rows(
            "SELECT s.user_name, COALESCE(u.role, s.role), s.origin, s.csrf, s.expires_at_ms \
             FROM sessions s LEFT JOIN users u ON u.name = s.user_name AND s.origin = 'local' \
             WHERE s.digest = $1 AND s.ended_at_ms IS NULL AND s.expires_at_ms > $2 \
             AND (s.origin = 'ldap' OR u.enabled = TRUE)",
            &[Arg::Text(digest), Arg::Int(now_ms)],
            session,
        )
        .await?
        .pop())
}

/// Ends the session kept by `digest` and audits the logout; `false` if it
/// was not live.
pub(super) async fn end_session(
    tx: &impl WriteTx,
    digest: &str,
    actor: &Actor,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(live) = session_by_digest(tx, digest, now_ms).await? else {
        return Ok(false);
    };
    tx.run(
        "UPDATE sessions SET ended_at_ms = $2 WHERE digest = $1",
        &[Arg::Text(digest), Arg::Int(now_ms)],
    )
    .await?;
    audit_login(tx, actor, "logout", &live.user, "ok".into(), None, now_ms).await?;
    Ok(true)
}

/// Audits a wrong password (or unknown name) for `name`; once `policy`'s
/// count is reached within its window, locks the name out and audits that
/// too. Returns until when the name is locked, if this failure locked it.
pub(super) async fn login_failed(
    tx: &impl WriteTx,
    name: &str,
    reason: &str,
    policy: LockoutPolicy,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    audit_login(
        tx,
        actor,
        "login.failed",
        name,
        format!("refused: {reason}"),
        None,
        now_ms,
    )
    .await?;
    let failures = tx
        .rows(
            "SELECT count(*) FROM audit_log WHERE action = 'login.failed' AND object = $1 \
             AND at_ms > $2",
            &[
                Arg::Text(&login_object(name)),
                Arg::Int(now_ms - policy.window_ms),
            ],
            |row| row.int(0),
        )
        .await?
        .pop()
        .unwrap_or(0);
    if failures < i64::from(policy.failures) {
        return Ok(None);
    }
    let until_ms = now_ms + policy.lock_ms;
    tx.run(
        "INSERT INTO login_lockouts (name, until_ms) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET until_ms = excluded.until_ms",
        &[Arg::Text(name), Arg::Int(until_ms)],
    )
    .await?;
    let after = serde_json::json!({ "failures": failures, "locked_until_ms": until_ms });
    audit_login(
        tx,
        actor,
        "login.lockout",
        name,
        format!(
            "locked: {failures} wrong passwords within {} s",
            policy.window_ms / 1000
        ),
        Some(json(&after)),
        now_ms,
    )
    .await?;
    Ok(Some(until_ms))
}

/// Audits a login refused for another reason than the password (locked
/// out, disabled, no mapped group).
pub(super) async fn login_refused(
    tx: &impl WriteTx,
    name: &str,
    reason: &str,
    actor: &Actor,
    now_ms: i64,
) -> Result<(), StoreError> {
    audit_login(
        tx,
        actor,
        "login.refused",
        name,
        format!("refused: {reason}"),
        None,
        now_ms,
    )
    .await
}
