//! The dashboard's login limits and counters: how long sessions last, the
//! lockout policy, failures per address in the last minute (kept in this
//! process) and every attempt counted for `/metrics`. The login procedure
//! is `crate::login`'s.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::LockoutPolicy;

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
    pub fn address_wait(&self, address: IpAddr, now_ms: i64) -> Option<u64> {
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

    pub fn note_address_failure(&self, address: IpAddr, now_ms: i64) {
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
