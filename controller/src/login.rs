//! Logging in to the dashboard: a name and password proven against a
//! local user (Argon2id) or the directory (LDAP, for names without a local
//! password), a session started, and every attempt audited. Local users
//! never depend on the directory: they log in while it is down.
//! Guessing is slowed twice: a login name with too many wrong passwords
//! within a minute is locked out for a while (kept in the store, so every
//! controller agrees), and an address with too many failures is refused
//! for a minute (kept in this process).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use crate::auth::{self, Role};
use crate::services::Guard;
use crate::store::{Actor, NewSession, SessionOrigin, SessionRecord};
use crate::time::now_ms;

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginRefusal {
    /// The name or the password is wrong (which one is not said).
    #[error("wrong user name or password")]
    Wrong,
    /// The name is locked out after too many wrong passwords.
    #[error(
        "too many wrong passwords for this user: locked out for {retry_after_s} s more \
         (an admin can see why in the audit log)"
    )]
    LockedOut {
        /// Seconds until it may try again.
        retry_after_s: u64,
    },
    /// The address failed too often within a minute.
    #[error("too many failed logins from this address: try again in {retry_after_s} s")]
    AddressLimited {
        /// Seconds until it may try again.
        retry_after_s: u64,
    },
    /// The directory proved the password but maps none of the user's
    /// groups to a role.
    #[error(
        "your directory account is in no group that may use ward: ask an admin to add you to \
         one mapped to a role"
    )]
    NoRole,
    /// The store or the directory cannot be asked now.
    #[error("logins cannot be checked now: {0}")]
    Unavailable(String),
}

/// A started session: the cookie's secret goes to the browser once.
pub struct Started {
    /// The cookie's value.
    pub cookie: String,
    /// The session.
    pub session: SessionRecord,
}

/// A hash to verify against when the name is unknown, so an unknown name
/// takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| auth::hash_password("ward decoy password").unwrap_or_default())
}

/// Whether `password` matches `hash` (the decoy when `None`), off the
/// async workers: Argon2id takes tens of milliseconds by design.
async fn password_matches(password: &str, hash: Option<String>) -> bool {
    let password = password.to_owned();
    let matched = tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or_else(|| decoy_hash());
        auth::verify_password(&password, hash)
    })
    .await;
    // A panicked verification proves nothing.
    matched.unwrap_or(false)
}

/// Who a proven name is.
struct Proven {
    role: Role,
    origin: SessionOrigin,
}

/// Logs `name` in with `password` from `address`: a new session, or why
/// not. Every attempt is counted, logged and audited.
pub async fn login(
    guard: &Guard,
    name: &str,
    password: &str,
    address: Option<IpAddr>,
    source: &str,
) -> Result<Started, LoginRefusal> {
    let logins = &guard.logins;
    let now = now_ms();
    let actor = Actor {
        principal: format!("login as {name}"),
        source: source.to_owned(),
    };
    held_off(guard, name, address, &actor, now).await?;
    let proven = match prove(guard, name, password).await {
        Ok(Ok(proven)) => proven,
        Ok(Err(reason)) => {
            return Err(failed(guard, name, address, &actor, reason).await);
        }
        Err(LoginRefusal::NoRole) => {
            logins.counters.refused.fetch_add(1, Ordering::Relaxed);
            warn!(
                user = name,
                source, "login refused: no directory group maps to a role"
            );
            let reason = "in no directory group mapped to a role";
            guard
                .core
                .store
                .login_refused(name, reason, &actor, now)
                .await
                .map_err(unavailable)?;
            return Err(LoginRefusal::NoRole);
        }
        Err(other) => return Err(other),
    };
    start_session(guard, name, &proven, &actor, now).await
}

/// Checks `password` for `name`: `Ok(Err(reason))` when it does not
/// prove the user (the reason is for the audit log, not the client). A
/// local user with a password is checked here; a name without one goes
/// to the directory, if there is one.
async fn prove(
    guard: &Guard,
    name: &str,
    password: &str,
) -> Result<Result<Proven, &'static str>, LoginRefusal> {
    let local = guard
        .core
        .store
        .credentials(name)
        .await
        .map_err(|error| LoginRefusal::Unavailable(error.to_string()))?;
    match (local, &guard.logins.directory) {
        (Some((user, Some(hash))), _) => {
            if !password_matches(password, Some(hash)).await {
                Ok(Err("wrong password"))
            } else if user.enabled {
                Ok(Ok(Proven {
                    role: user.role,
                    origin: SessionOrigin::Local,
                }))
            } else {
                Ok(Err("the user is disabled"))
            }
        }
        // A local user without a password, disabled, keeps a directory
        // account out too.
        (Some((user, None)), Some(_)) if !user.enabled => Ok(Err("the user is disabled")),
        (_, Some(directory)) => ask_directory(guard, directory, name, password).await,
        (_, None) => {
            // As long as a wrong password takes.
            password_matches(password, None).await;
            Ok(Err("no local user with a password of that name"))
        }
    }
}

async fn ask_directory(
    guard: &Guard,
    directory: &crate::ldap::Directory,
    name: &str,
    password: &str,
) -> Result<Result<Proven, &'static str>, LoginRefusal> {
    use crate::ldap::Verdict;
    match directory.authenticate(name, password).await {
        Ok(Verdict::Proven(role)) => Ok(Ok(Proven {
            role,
            origin: SessionOrigin::Ldap,
        })),
        Ok(Verdict::WrongPassword) => Ok(Err("wrong password (LDAP)")),
        Ok(Verdict::NoUser) => Ok(Err("no such user, local or in the directory")),
        Ok(Verdict::NoRole) => Err(LoginRefusal::NoRole),
        Err(error) => {
            guard
                .logins
                .counters
                .directory_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(user = name, %error, "login: the directory cannot be asked");
            Err(LoginRefusal::Unavailable(error.to_string()))
        }
    }
}

/// The store is not answering: the login cannot be decided.
fn unavailable(error: crate::store::StoreError) -> LoginRefusal {
    LoginRefusal::Unavailable(error.to_string())
}

/// Refuses (counted, logged, audited) a login from an address that failed
/// too often, or for a name locked out.
async fn held_off(
    guard: &Guard,
    name: &str,
    address: Option<IpAddr>,
    actor: &Actor,
    now: i64,
) -> Result<(), LoginRefusal> {
    let logins = &guard.logins;
    let source = &actor.source;
    if let Some(retry_after_s) = address.and_then(|address| logins.address_wait(address, now)) {
        logins.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        warn!(
            user = name,
            source, retry_after_s, "login refused: too many failures from this address"
        );
        return Err(LoginRefusal::AddressLimited { retry_after_s });
    }
    if let Some(until_ms) = guard
        .core
        .store
        .lockout(name, now)
        .await
        .map_err(unavailable)?
    {
        let retry_after_s = u64::try_from((until_ms - now).max(0) / 1_000).unwrap_or(0) + 1;
        logins.counters.refused.fetch_add(1, Ordering::Relaxed);
        warn!(
            user = name,
            source, retry_after_s, "login refused: the user is locked out"
        );
        let reason = format!("locked out for {retry_after_s} s more");
        guard
            .core
            .store
            .login_refused(name, &reason, actor, now)
            .await
            .map_err(unavailable)?;
        return Err(LoginRefusal::LockedOut { retry_after_s });
    }
    Ok(())
}

/// Starts the session of a proven login (counted and logged).
async fn start_session(
    guard: &Guard,
    name: &str,
    proven: &Proven,
    actor: &Actor,
    now: i64,
) -> Result<Started, LoginRefusal> {
    let logins = &guard.logins;
    let source = &actor.source;
    let secrets =
        auth::new_session().map_err(|error| LoginRefusal::Unavailable(error.to_string()))?;
    let lifetime_ms =
        i64::try_from(logins.settings.session_lifetime.as_millis()).unwrap_or(i64::MAX);
    let session = SessionRecord {
        user: name.to_owned(),
        role: proven.role,
        origin: proven.origin,
        csrf: secrets.csrf,
        expires_at_ms: now.saturating_add(lifetime_ms),
    };
    let new = NewSession {
        digest: secrets.digest,
        session,
    };
    guard
        .core
        .store
        .start_session(&new, actor, now)
        .await
        .map_err(unavailable)?;
    logins.counters.ok.fetch_add(1, Ordering::Relaxed);
    info!(user = name, role = %proven.role, origin = ?proven.origin, source, "logged in");
    Ok(Started {
        cookie: secrets.cookie,
        session: new.session,
    })
}

/// Counts, logs and audits a failed login; locks the name out when it
/// failed too often.
async fn failed(
    guard: &Guard,
    name: &str,
    address: Option<IpAddr>,
    actor: &Actor,
    reason: &str,
) -> LoginRefusal {
    let logins = &guard.logins;
    let now = now_ms();
    if let Some(address) = address {
        logins.note_address_failure(address, now);
    }
    logins.counters.failed.fetch_add(1, Ordering::Relaxed);
    warn!(user = name, source = actor.source, reason, "login failed");
    match guard
        .core
        .store
        .login_failed(name, reason, logins.settings.lockout, actor, now)
        .await
    {
        Ok(Some(until_ms)) => {
            logins.counters.lockouts.fetch_add(1, Ordering::Relaxed);
            let locked_for_s = (until_ms - now) / 1_000;
            warn!(
                user = name,
                locked_for_s, "user locked out after too many wrong passwords"
            );
            LoginRefusal::Wrong
        }
        Ok(None) => LoginRefusal::Wrong,
        Err(error) => LoginRefusal::Unavailable(error.to_string()),
    }
}
