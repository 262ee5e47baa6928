//! Logging in to the dashboard: a name and password proven against a
//! local user (Argon2id) or the directory (LDAP, for names without a local
//! password), a session started, and every attempt audited. Local users
//! never depend on the directory: they log in while it is down.
//! Guessing is slowed twice: a login name with too many wrong passwords
//! within a minute is locked out for a while (kept in the store, so every
//! controller agrees), and an address with too many failures is refused
//! for a minute (kept in this process).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::auth::{self, Role};
use crate::state::Controller;
use crate::store::{Actor, LockoutPolicy, NewSession, SessionOrigin, SessionRecord};
use crate::time::now_ms;

/// How logins are limited and how long sessions last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSettings {
    /// A session ends this long after its login.
    pub session_lifetime: Duration,
    /// Wrong passwords that lock a login name out.
    pub lockout: LockoutPolicy,
    /// Failed logins from one address within a minute after which that
    /// address is refused until the minute has passed.
    pub address_failures_per_minute: u32,
    /// The session cookie is marked `Secure` (HTTP is served over TLS).
    pub secure_cookie: bool,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            session_lifetime: Duration::from_secs(12 * 3600),
            lockout: LockoutPolicy {
                failures: 20,
                window_ms: 60_000,
                lock_ms: 15 * 60_000,
            },
            address_failures_per_minute: 100,
            secure_cookie: false,
        }
    }
}

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

/// Login attempts by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct LoginCounters {
    /// Sessions started.
    pub ok: AtomicU64,
    /// Wrong name or password.
    pub failed: AtomicU64,
    /// Refused: the name is locked out, or the user may not log in.
    pub refused: AtomicU64,
    /// Refused: the address failed too often.
    pub rate_limited: AtomicU64,
    /// Login names locked out.
    pub lockouts: AtomicU64,
    /// Logins the directory could not answer (unreachable, misconfigured).
    pub directory_errors: AtomicU64,
}

/// The dashboard's logins: settings, counters and failures per address.
#[derive(Debug, Default)]
pub struct Logins {
    /// How logins are limited.
    pub settings: LoginSettings,
    /// Attempts by outcome.
    pub counters: LoginCounters,
    /// The directory, when LDAP logins are configured.
    pub directory: Option<crate::ldap::Directory>,
    /// Recent failures per address, Unix ms, oldest first.
    #[allow(
        clippy::disallowed_types,
        reason = "touched once per login attempt, never on the probe path"
    )]
    failures: std::sync::Mutex<HashMap<IpAddr, VecDeque<i64>>>,
}

const MINUTE_MS: i64 = 60_000;

impl Logins {
    /// Logins limited by `settings`.
    pub fn new(settings: LoginSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Seconds until `address` may try again, if it failed too often.
    fn address_wait(&self, address: IpAddr, now_ms: i64) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let recent = failures.get_mut(&address)?;
        while recent.front().is_some_and(|at| *at <= now_ms - MINUTE_MS) {
            recent.pop_front();
        }
        if recent.is_empty() {
            failures.remove(&address);
            return None;
        }
        let limit = self.settings.address_failures_per_minute as usize;
        (recent.len() >= limit)
            .then(|| recent.front().map(|oldest| oldest + MINUTE_MS - now_ms))
            .flatten()
            .map(|ms| u64::try_from(ms.max(1_000) / 1_000).unwrap_or(60))
    }

    fn note_address_failure(&self, address: IpAddr, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses that have been quiet for a minute, so a scan of
        // many addresses cannot grow this without bound.
        failures.retain(|_, recent| recent.back().is_some_and(|at| *at > now_ms - MINUTE_MS));
        failures.entry(address).or_default().push_back(now_ms);
    }

    /// Writes the login counters for `/metrics`.
    pub fn write_prometheus(&self, text: &mut String) {
        use std::fmt::Write as _;
        let counters = &self.counters;
        let _ = writeln!(
            text,
            "# HELP ward_logins_total Dashboard login attempts by outcome (ok, failed: wrong name \
             or password, refused: locked out or disabled, rate_limited: too many failures from \
             the address).\n# TYPE ward_logins_total counter"
        );
        for (outcome, value) in [
            ("ok", &counters.ok),
            ("failed", &counters.failed),
            ("refused", &counters.refused),
            ("rate_limited", &counters.rate_limited),
        ] {
            let _ = writeln!(
                text,
                "ward_logins_total{{outcome=\"{outcome}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP ward_login_lockouts_total Login names locked out after too many wrong \
             passwords.\n# TYPE ward_login_lockouts_total counter\nward_login_lockouts_total {}",
            counters.lockouts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP ward_login_directory_errors_total Logins the directory (LDAP) could not \
             answer.\n# TYPE ward_login_directory_errors_total counter\n\
             ward_login_directory_errors_total {}",
            counters.directory_errors.load(Ordering::Relaxed)
        );
    }
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
    controller: &Controller,
    name: &str,
    password: &str,
    address: Option<IpAddr>,
    source: &str,
) -> Result<Started, LoginRefusal> {
    let logins = &controller.logins;
    let now = now_ms();
    let actor = Actor {
        principal: format!("login as {name}"),
        source: source.to_owned(),
    };
    let unavailable = |error| LoginRefusal::Unavailable(controller.store_failed(error).to_string());
    if let Some(retry_after_s) = address.and_then(|address| logins.address_wait(address, now)) {
        logins.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        warn!(
            user = name,
            source, retry_after_s, "login refused: too many failures from this address"
        );
        return Err(LoginRefusal::AddressLimited { retry_after_s });
    }
    if let Some(until_ms) = controller
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
        controller
            .store
            .login_refused(name, &reason, &actor, now)
            .await
            .map_err(unavailable)?;
        return Err(LoginRefusal::LockedOut { retry_after_s });
    }
    let proven = match prove(controller, name, password).await {
        Ok(Ok(proven)) => proven,
        Ok(Err(reason)) => {
            return Err(failed(controller, name, address, &actor, reason).await);
        }
        Err(LoginRefusal::NoRole) => {
            logins.counters.refused.fetch_add(1, Ordering::Relaxed);
            warn!(
                user = name,
                source, "login refused: no directory group maps to a role"
            );
            let reason = "in no directory group mapped to a role";
            controller
                .store
                .login_refused(name, reason, &actor, now)
                .await
                .map_err(unavailable)?;
            return Err(LoginRefusal::NoRole);
        }
        Err(other) => return Err(other),
    };
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
    controller
        .store
        .start_session(&new, &actor, now)
        .await
        .map_err(unavailable)?;
    logins.counters.ok.fetch_add(1, Ordering::Relaxed);
    info!(user = name, role = %proven.role, origin = ?proven.origin, source, "logged in");
    Ok(Started {
        cookie: secrets.cookie,
        session: new.session,
    })
}

/// Checks `password` for `name`: `Ok(Err(reason))` when it does not
/// prove the user (the reason is for the audit log, not the client). A
/// local user with a password is checked here; a name without one goes
/// to the directory, if there is one.
async fn prove(
    controller: &Controller,
    name: &str,
    password: &str,
) -> Result<Result<Proven, &'static str>, LoginRefusal> {
    let local =
        controller.store.credentials(name).await.map_err(|error| {
            LoginRefusal::Unavailable(controller.store_failed(error).to_string())
        })?;
    match (local, &controller.logins.directory) {
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
        (_, Some(directory)) => ask_directory(controller, directory, name, password).await,
        (_, None) => {
            // As long as a wrong password takes.
            password_matches(password, None).await;
            Ok(Err("no local user with a password of that name"))
        }
    }
}

async fn ask_directory(
    controller: &Controller,
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
            controller
                .logins
                .counters
                .directory_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(user = name, %error, "login: the directory cannot be asked");
            Err(LoginRefusal::Unavailable(error.to_string()))
        }
    }
}

/// Counts, logs and audits a failed login; locks the name out when it
/// failed too often.
async fn failed(
    controller: &Controller,
    name: &str,
    address: Option<IpAddr>,
    actor: &Actor,
    reason: &str,
) -> LoginRefusal {
    let logins = &controller.logins;
    let now = now_ms();
    if let Some(address) = address {
        logins.note_address_failure(address, now);
    }
    logins.counters.failed.fetch_add(1, Ordering::Relaxed);
    warn!(user = name, source = actor.source, reason, "login failed");
    match controller
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
        Err(error) => LoginRefusal::Unavailable(controller.store_failed(error).to_string()),
    }
}
