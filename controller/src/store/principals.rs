//! Users, API tokens and the audit log: the model, the statements and the
//! operations, written once for both backends over
//! [`super::tx::WriteTx`]. Every change is audited in its own
//! transaction.

use crate::auth::Role;

use super::args::Arg;
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use super::{FieldError, StoreError, parse_stored};

/// A user as stored (never its password).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserRecord {
    /// Its login name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// A disabled user cannot log in and its tokens are refused.
    pub enabled: bool,
    /// Created, Unix ms.
    pub created_at_ms: i64,
}

/// An API token as stored (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    /// Its id, to revoke it by.
    pub id: i64,
    /// The user it acts as.
    pub user: String,
    /// What it is for.
    pub label: String,
    /// Created, Unix ms.
    pub created_at_ms: i64,
    /// When it stops working, Unix ms.
    pub expires_at_ms: Option<i64>,
    /// When it was revoked, Unix ms.
    pub revoked_at_ms: Option<i64>,
}

/// A token found by its digest, with what its user may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOwner {
    /// The token.
    pub token: TokenRecord,
    /// Its user's role.
    pub role: Role,
    /// Whether its user is enabled.
    pub user_enabled: bool,
}

/// Who made a change and from where, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The principal ([`crate::auth::Principal`]'s display).
    pub principal: String,
    /// Where the request came from (an address, or `console`).
    pub source: String,
}

impl Actor {
    /// The controller's own command line on its host.
    pub fn console() -> Self {
        Self {
            principal: crate::auth::Principal::Console.to_string(),
            source: "console".into(),
        }
    }
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Its id (increasing).
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub principal: String,
    /// From where.
    pub source: String,
    /// What was done or tried (`user.add`, `grpc Inventory/DeleteDevice`).
    pub action: String,
    /// On what (`user alice`, `device 9`).
    pub object: String,
    /// `ok`, or `refused: …` with the reason.
    pub outcome: String,
    /// The object before (JSON), for changes.
    pub before: Option<String>,
    /// The object after (JSON), for changes.
    pub after: Option<String>,
}

/// Checks a user name before it is stored.
pub fn validate_user_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: "name",
            message: "must be 1 to 64 letters, digits, '.', '-', '_' or '@'".into(),
        })
    }
}

const USER_COLUMNS: &str = "name, role, enabled, created_at_ms";

const TOKEN_COLUMNS: &str =
    "t.id, t.user_name, t.label, t.created_at_ms, t.expires_at_ms, t.revoked_at_ms";

const AUDIT_COLUMNS: &str = "id, at_ms, principal, source, action, object, outcome, before, after";

fn user(row: &dyn Columns) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: row.text(0)?,
        role: parse_stored("role", &row.text(1)?)?,
        enabled: row.flag(2)?,
        created_at_ms: row.int(3)?,
    })
}

fn token(row: &dyn Columns) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.int(0)?,
        user: row.text(1)?,
        label: row.text(2)?,
        created_at_ms: row.int(3)?,
        expires_at_ms: row.opt_int(4)?,
        revoked_at_ms: row.opt_int(5)?,
    })
}

fn token_owner(row: &dyn Columns) -> Result<TokenOwner, StoreError> {
    Ok(TokenOwner {
        token: token(row)?,
        role: parse_stored("role", &row.text(6)?)?,
        user_enabled: row.flag(7)?,
    })
}

fn audit_entry(row: &dyn Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.int(0)?,
        at_ms: row.int(1)?,
        principal: row.text(2)?,
        source: row.text(3)?,
        action: row.text(4)?,
        object: row.text(5)?,
        outcome: row.text(6)?,
        before: row.opt_text(7)?,
        after: row.opt_text(8)?,
    })
}

/// `value` as the audit log keeps it.
pub(super) fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// What one audited change records besides who.
pub(super) struct Change<'a> {
    /// `device.create`, `user.add`, …
    pub action: &'a str,
    /// `device 9`, `user alice`, …
    pub object: String,
    /// The object before (JSON).
    pub before: Option<String>,
    /// The object after (JSON).
    pub after: Option<String>,
}

/// Records `change` by `actor` in the audit log, in the caller's
/// transaction.
pub(super) async fn audit_change(
    tx: &impl WriteTx,
    actor: &Actor,
    change: Change<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    audit_outcome(tx, actor, change, "ok".into(), now_ms).await
}

/// Records what `actor` did or tried (`change`) and its `outcome` (`ok`,
/// `refused: …`), in the caller's transaction.
pub(super) async fn audit_outcome(
    tx: &impl WriteTx,
    actor: &Actor,
    change: Change<'_>,
    outcome: String,
    now_ms: i64,
) -> Result<(), StoreError> {
    record(
        tx,
        &AuditEntry {
            id: 0,
            at_ms: now_ms,
            principal: actor.principal.clone(),
            source: actor.source.clone(),
            action: change.action.to_owned(),
            object: change.object,
            outcome,
            before: change.before,
            after: change.after,
        },
    )
    .await
}

/// Appends `entry` to the audit log (its `id` is assigned).
pub(super) async fn record(tx: &impl WriteTx, entry: &AuditEntry) -> Result<(), StoreError> {
    tx.run(
        "INSERT INTO audit_log (at_ms, principal, source, action, object, outcome, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            Arg::Int(entry.at_ms),
            Arg::Text(&entry.principal),
            Arg::Text(&entry.source),
            Arg::Text(&entry.action),
            Arg::Text(&entry.object),
            Arg::Text(&entry.outcome),
            Arg::OptText(entry.before.as_deref()),
            Arg::OptText(entry.after.as_deref()),
        ],
    )
    .await?;
    Ok(())
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries whose principal contains this.
    pub principal: Option<String>,
    /// Entries about exactly this object.
    pub object: Option<String>,
    /// At or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Before, Unix ms.
    pub until_ms: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

impl AuditFilter {
    /// The newest `limit` entries.
    pub fn newest(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }
}

/// The audit entries `filter` selects, newest first.
pub(super) async fn audit(
    tx: &impl Query,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE ($1 = '' OR principal LIKE '%' || $1 || '%') AND ($2 = '' OR object = $2) \
             AND at_ms >= $3 AND at_ms < $4 ORDER BY id DESC LIMIT $5"
        ),
        &[
            Arg::Text(filter.principal.as_deref().unwrap_or_default()),
            Arg::Text(filter.object.as_deref().unwrap_or_default()),
            Arg::Int(filter.since_ms.unwrap_or(i64::MIN)),
            Arg::Int(filter.until_ms.unwrap_or(i64::MAX)),
            Arg::Int(i64::from(filter.limit)),
        ],
        audit_entry,
    )
    .await
}

pub(super) async fn find_user(
    tx: &impl Query,
    name: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let mut found = tx
        .rows(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
            &[Arg::Text(name)],
            user,
        )
        .await?;
    Ok(found.pop())
}

/// Every user, by name.
pub(super) async fn users(tx: &impl Query) -> Result<Vec<UserRecord>, StoreError> {
    tx.rows(
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"),
        &[],
        user,
    )
    .await
}

/// Creates user `name`; a name taken already is a conflict.
pub(super) async fn add_user(
    tx: &impl WriteTx,
    name: &str,
    role: Role,
    password_hash: Option<&str>,
    actor: &Actor,
    now_ms: i64,
) -> Result<UserRecord, StoreError> {
    validate_user_name(name)?;
    let added = tx
        .run(
            "INSERT INTO users (name, role, password_hash, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[
                Arg::Text(name),
                Arg::Text(role.as_str()),
                Arg::OptText(password_hash),
                Arg::Int(now_ms),
            ],
        )
        .await?;
    if added == 0 {
        return Err(StoreError::Conflict {
            field: "name".into(),
            message: format!("a user named `{name}` exists already"),
        });
    }
    let created = find_user(tx, name)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("user {name} vanished")))?;
    let change = Change {
        action: "user.add",
        object: format!("user {name}"),
        before: None,
        after: Some(json(&created)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(created)
}

/// Enables or disables user `name`; `None` if there is no such user.
pub(super) async fn set_user_enabled(
    tx: &impl WriteTx,
    name: &str,
    enabled: bool,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<UserRecord>, StoreError> {
    let Some(before) = find_user(tx, name).await? else {
        return Ok(None);
    };
    tx.run(
        "UPDATE users SET enabled = $2 WHERE name = $1",
        &[Arg::Text(name), Arg::Flag(enabled)],
    )
    .await?;
    let after = UserRecord {
        enabled,
        ..before.clone()
    };
    let change = Change {
        action: if enabled {
            "user.enable"
        } else {
            "user.disable"
        },
        object: format!("user {name}"),
        before: Some(json(&before)),
        after: Some(json(&after)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(after))
}

/// A new token of user `user` kept by its `digest`.
pub(super) async fn create_token(
    tx: &impl WriteTx,
    user: &str,
    label: &str,
    digest: &str,
    expires_at_ms: Option<i64>,
    actor: &Actor,
    now_ms: i64,
) -> Result<TokenRecord, StoreError> {
    if !find_user(tx, user)
        .await?
        .is_some_and(|found| found.enabled)
    {
        return Err(StoreError::Invalid(FieldError {
            field: "user",
            message: format!("no enabled user named `{user}`"),
        }));
    }
    let ids = tx
        .rows(
            "INSERT INTO api_tokens (user_name, label, digest, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                Arg::Text(user),
                Arg::Text(label),
                Arg::Text(digest),
                Arg::Int(now_ms),
                Arg::OptInt(expires_at_ms),
            ],
            |row| row.int(0),
        )
        .await?;
    let id = ids
        .first()
        .copied()
        .ok_or_else(|| StoreError::Corrupt("a new token has no id".into()))?;
    let created = TokenRecord {
        id,
        user: user.to_owned(),
        label: label.to_owned(),
        created_at_ms: now_ms,
        expires_at_ms,
        revoked_at_ms: None,
    };
    let change = Change {
        action: "token.create",
        object: format!("token {id}"),
        before: None,
        after: Some(json(&created)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(created)
}

/// Every token, by id.
pub(super) async fn tokens(tx: &impl Query) -> Result<Vec<TokenRecord>, StoreError> {
    tx.rows(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens t ORDER BY t.id"),
        &[],
        token,
    )
    .await
}

/// Revokes token `id`; `None` if there is no such token. Revoking a
/// revoked token changes nothing.
pub(super) async fn revoke_token(
    tx: &impl WriteTx,
    id: i64,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<TokenRecord>, StoreError> {
    let statement = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.id = $1");
    let Some(before) = tx.rows(&statement, &[Arg::Int(id)], token).await?.pop() else {
        return Ok(None);
    };
    if before.revoked_at_ms.is_some() {
        return Ok(Some(before));
    }
    tx.run(
        "UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1",
        &[Arg::Int(id), Arg::Int(now_ms)],
    )
    .await?;
    let after = TokenRecord {
        revoked_at_ms: Some(now_ms),
        ..before.clone()
    };
    let change = Change {
        action: "token.revoke",
        object: format!("token {id}"),
        before: Some(json(&before)),
        after: Some(json(&after)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(after))
}

/// The token kept by `digest`, with its user's role and state.
pub(super) async fn token_owner_by_digest(
    tx: &impl Query,
    digest: &str,
) -> Result<Option<TokenOwner>, StoreError> {
    let mut found = tx
        .rows(
            &format!(
                "SELECT {TOKEN_COLUMNS}, u.role, u.enabled FROM api_tokens t \
                 JOIN users u ON u.name = t.user_name WHERE t.digest = $1"
            ),
            &[Arg::Text(digest)],
            token_owner,
        )
        .await?;
    Ok(found.pop())
}

/// Deletes the audit entries older than `before_ms` and records that it
/// did (as the controller), in one transaction; returns how many went.
pub(super) async fn prune_audit(
    tx: &impl WriteTx,
    before_ms: i64,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let deleted = tx
        .run(
            "DELETE FROM audit_log WHERE at_ms < $1",
            &[Arg::Int(before_ms)],
        )
        .await?;
    if deleted > 0 {
        let actor = Actor {
            principal: "ward-controller (audit_retention)".into(),
            source: "controller".into(),
        };
        let change = Change {
            action: "audit.prune",
            object: "audit log".into(),
            before: None,
            after: Some(json(&serde_json::json!({
                "deleted": deleted,
                "older_than": crate::time::rfc3339(before_ms),
            }))),
        };
        audit_change(tx, &actor, change, now_ms).await?;
    }
    Ok(deleted)
}
