//! Who may do what, as configured: the legacy API token, anonymous reads,
//! what `/metrics` requires, the dashboard's logins (limits, counters, the
//! directory), and the certificates in use with when they expire. The
//! decisions themselves are `crate::access`'s and `crate::login`'s.

use std::sync::Arc;

use super::core::Core;
use super::logins::Logins;
use crate::auth::Access;

/// The access settings and their state.
pub struct Guard {
    /// The store, counters and feed (sessions, tokens, the audit log).
    pub core: Arc<Core>,
    /// When set, REST calls that change data must carry it as a bearer token.
    pub api_token: Option<String>,
    /// Reads need no principal (`anonymous_read = true`; off by default).
    pub anonymous_read: bool,
    /// What `/metrics` requires (`metrics_access`: open, or a viewer).
    pub metrics_access: Access,
    /// The dashboard's logins: limits, counters, failures per address.
    pub logins: Logins,
    /// `/readyz` is degraded while a certificate expires within this
    /// (`certificate_warning_days`, 14 by default), ms.
    pub certificate_warning_ms: i64,
    /// When each certificate in use expires (Unix ms): the controller's,
    /// and each agent's as last presented.
    #[allow(
        clippy::disallowed_types,
        reason = "touched once per TLS load and agent link, never on the probe path"
    )]
    certificates: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl Guard {
    /// The settings over `core`; no certificate noted yet.
    pub fn new(
        core: Arc<Core>,
        api_token: Option<String>,
        anonymous_read: bool,
        metrics_access: Access,
        logins: Logins,
        certificate_warning_days: u32,
    ) -> Self {
        Self {
            core,
            api_token: api_token.filter(|token| !token.is_empty()),
            anonymous_read,
            metrics_access,
            logins,
            certificate_warning_ms: i64::from(certificate_warning_days) * 86_400_000,
            #[allow(clippy::disallowed_types, reason = "see the field")]
            certificates: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Notes that certificate `name` (`controller`, `agent ID`) expires at
    /// `expires_at_ms`.
    pub fn note_certificate(&self, name: &str, expires_at_ms: i64) {
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), expires_at_ms);
    }

    /// Every certificate in use and when it expires (Unix ms), by name.
    pub fn certificate_expiries(&self) -> Vec<(String, i64)> {
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, at)| (name.clone(), *at))
            .collect()
    }
}
