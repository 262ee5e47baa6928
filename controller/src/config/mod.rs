//! Controller settings: a TOML file (`--config`), overridden by flags and
//! `WARD_*` environment variables, over built-in defaults. Unknown keys and
//! bad values are errors naming the key and line, reported before anything
//! starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
pub use ward_settings::ConfigError;
use ward_settings::credential_path;

use crate::services::LoginSettings;

mod degraded;
mod receivers;

pub use degraded::DegradedTable;
pub use receivers::{
    EmailSettings, Receiver, ReceiverKind, ReceiverTable, RouteTable, SmtpSecurity,
};

/// Where the embedded default database lives.
pub const DEFAULT_DATABASE: &str = "sqlite:./ward.db";
/// REST, dashboard, health and metrics.
pub const DEFAULT_LISTEN_HTTP: &str = "127.0.0.1:8080";
/// gRPC (agents, inventory).
pub const DEFAULT_LISTEN_GRPC: &str = "127.0.0.1:50051";
/// The time-series spool, beside the default database.
pub const DEFAULT_TSDB_SPOOL_DIR: &str = "./ward-tsdb-spool";
/// Time-series spool bound, MiB.
pub const DEFAULT_TSDB_SPOOL_MAX_MIB: u64 = 256;
/// Alertmanager re-send interval for firing alerts.
pub const DEFAULT_ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// The configuration file's keys; every one optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen_http = "127.0.0.1:8080"`.
    pub listen_http: Option<SocketAddr>,
    /// `listen_grpc = "127.0.0.1:50051"`.
    pub listen_grpc: Option<SocketAddr>,
    /// `database = "postgres://…"` or `"sqlite:PATH"`.
    pub database: Option<String>,
    /// `database_password_file = "${CREDENTIALS_DIRECTORY}/database-password"`:
    /// PostgreSQL's password, kept out of the URL and the config.
    pub database_password_file: Option<PathBuf>,
    /// `redis = "redis://…"`.
    pub redis: Option<String>,
    /// `victoria_metrics = "http://…:8428"`.
    pub victoria_metrics: Option<String>,
    /// `tsdb_spool_dir = "/var/lib/ward/tsdb-spool"`.
    pub tsdb_spool_dir: Option<PathBuf>,
    /// `tsdb_spool_max_mib = 256`.
    pub tsdb_spool_max_mib: Option<u64>,
    /// `webhook = "https://…"`.
    pub webhook: Option<String>,
    /// `public_url = "https://ward.example/"`: where operators open the
    /// dashboard; notifications link to the device there.
    pub public_url: Option<String>,
    /// `alertmanager = "http://…:9093"`, or the instances of an
    /// Alertmanager cluster: `["http://a:9093", "http://b:9093"]`.
    pub alertmanager: Option<OneOrMany>,
    /// `alertmanager_resend_interval = "60s"`.
    #[serde(default, with = "ward_settings::duration")]
    pub alertmanager_resend_interval: Option<Duration>,
    /// `api_token = "…"`.
    pub api_token: Option<String>,
    /// `anonymous_read = true`: reads need no principal (off by default).
    pub anonymous_read: Option<bool>,
    /// `certificate_warning_days = 14`: `/readyz` is degraded while a
    /// certificate in use expires within this many days.
    pub certificate_warning_days: Option<u32>,
    /// `tls_cert = "/etc/ward/controller.pem"`: serve gRPC over mTLS.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "/etc/ward/controller.key"`.
    pub tls_key: Option<PathBuf>,
    /// `tls_client_ca = "/etc/ward/ca.pem"`: agents' certificates must
    /// chain to it.
    pub tls_client_ca: Option<PathBuf>,
    /// `session_lifetime = "12h"`: a dashboard session ends this long
    /// after its login.
    #[serde(default, with = "ward_settings::duration")]
    pub session_lifetime: Option<Duration>,
    /// `login_lockout_failures = 20`: wrong passwords within a minute that
    /// lock a user out.
    pub login_lockout_failures: Option<u32>,
    /// `login_lockout_duration = "15m"`: how long the user stays locked.
    #[serde(default, with = "ward_settings::duration")]
    pub login_lockout_duration: Option<Duration>,
    /// `login_address_failures_per_minute = 100`: failed logins from one
    /// address after which it is refused for the rest of the minute.
    pub login_address_failures_per_minute: Option<u32>,
    /// `[ldap]`: dashboard logins through LDAP / Active Directory.
    pub ldap: Option<crate::ldap::LdapSettings>,
    /// `metrics_access = "open"` (default) or `"viewer"`: who may scrape
    /// `/metrics`.
    pub metrics_access: Option<MetricsAccess>,
    /// `failover_delay = "5s"`: how long a dead controller's once-per-
    /// cluster jobs wait before another controller takes them.
    #[serde(default, with = "ward_settings::duration")]
    pub failover_delay: Option<Duration>,
    /// `agent_failover_delay = "3s"`: an agent not heard by any
    /// controller for this long is lost, and its devices move to the other
    /// agents of its site.
    #[serde(default, with = "ward_settings::duration")]
    pub agent_failover_delay: Option<Duration>,
    /// `audit_retention = "400d"`: audit entries older than this are
    /// deleted (by the controller, hourly).
    #[serde(default, with = "ward_settings::duration")]
    pub audit_retention: Option<Duration>,
    /// `history_retention = "400d"`: status changes older than this are
    /// deleted (by one controller, hourly); reports reach back this far.
    #[serde(default, with = "ward_settings::duration")]
    pub history_retention: Option<Duration>,
    /// `flap_changes = 5`: a device whose outage began or ended more often
    /// than this within `flap_window` is flapping.
    pub flap_changes: Option<u32>,
    /// `flap_window = "10m"`: the window `flap_changes` counts in, and how
    /// long a flapping device must be stable to settle.
    #[serde(default, with = "ward_settings::duration")]
    pub flap_window: Option<Duration>,
    /// `[degraded]`: when a device that answers is degraded.
    pub degraded: Option<DegradedTable>,
    /// `[[receivers]]`: where notifications can go (besides `webhook` and
    /// `alertmanager`).
    pub receivers: Option<Vec<ReceiverTable>>,
    /// `[[routes]]`: which receivers get which alerts, in order.
    pub routes: Option<Vec<RouteTable>>,
    /// `receiver_failing_after = "1m"`: `/readyz` names a receiver whose
    /// every delivery has failed for this long.
    #[serde(default, with = "ward_settings::duration")]
    pub receiver_failing_after: Option<Duration>,
}

/// A URL, or several.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// Who may scrape `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who reaches the port (Prometheus without a token).
    Open,
    /// A viewer's token (`authorization: Bearer`, Prometheus
    /// `authorization.credentials_file`).
    Viewer,
}

/// Audit entries kept by default: 400 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);
/// Status changes are kept this long unless `history_retention` says otherwise.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// The controller's side of mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// Its certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA agents' certificates must chain to.
    pub client_ca: PathBuf,
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        ward_settings::load(path)
    }

    /// Parses `text` (from `origin`, for messages).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        ward_settings::parse(text, origin)
    }
}

/// Everything the controller runs with, after the file, flags and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// REST address.
    pub listen_http: SocketAddr,
    /// gRPC address.
    pub listen_grpc: SocketAddr,
    /// Status database URL.
    pub database: String,
    /// A file holding the database's password.
    pub database_password_file: Option<PathBuf>,
    /// Redis URL, or the in-process cache.
    pub redis: Option<String>,
    /// VictoriaMetrics base URL, or no time series.
    pub victoria_metrics: Option<String>,
    /// Time-series spool directory.
    pub tsdb_spool_dir: PathBuf,
    /// Time-series spool bound, bytes.
    pub tsdb_spool_max_bytes: u64,
    /// Webhook URL.
    pub webhook: Option<String>,
    /// The dashboard's address as operators reach it (notification links).
    pub public_url: Option<String>,
    /// Alertmanager base URLs: each instance gets every alert.
    pub alertmanagers: Vec<String>,
    /// Alertmanager re-send interval.
    pub alertmanager_resend_interval: Duration,
    /// Bearer token for mutations.
    pub api_token: Option<String>,
    /// Reads need no principal.
    pub anonymous_read: bool,
    /// Certificates expiring within this many days degrade `/readyz`.
    pub certificate_warning_days: u32,
    /// mTLS on the gRPC endpoint and HTTPS for REST and the dashboard;
    /// `None` is plaintext (loopback only).
    pub tls: Option<ServerTls>,
    /// Dashboard sessions and login limits.
    pub login: LoginSettings,
    /// LDAP logins, when configured.
    pub ldap: Option<crate::ldap::LdapSettings>,
    /// What `/metrics` requires.
    pub metrics_access: crate::access::Access,
    /// Audit entries older than this are deleted.
    pub audit_retention: Duration,
    /// Status changes older than this are deleted.
    pub history_retention: Duration,
    /// When a device is flapping.
    pub flapping: crate::store::FlapPolicy,
    /// How long a dead controller's leases outlive it.
    pub failover_delay: Duration,
    /// How long an agent goes unheard before its devices move.
    pub agent_failover_delay: Duration,
    /// When a device that answers is degraded.
    pub degraded: ward_domain::quality::Thresholds,
    /// Every receiver: `webhook`, each Alertmanager, then `[[receivers]]`.
    pub receivers: Vec<Receiver>,
    /// The routes, in order (none: every receiver gets everything).
    pub routes: Vec<ward_domain::routing::Route>,
    /// How long a receiver fails before `/readyz` names it.
    pub receiver_failing_after: Duration,
}

/// A default listen address.
fn loopback(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// The time-series spool's bound, in bytes (at least 1 MiB).
fn spool_max_bytes(overrides: &FileConfig, file: &FileConfig) -> Result<u64, ConfigError> {
    let spool_mib = overrides
        .tsdb_spool_max_mib
        .or(file.tsdb_spool_max_mib)
        .unwrap_or(DEFAULT_TSDB_SPOOL_MAX_MIB);
    if spool_mib == 0 {
        return Err(ConfigError::Invalid {
            key: "tsdb_spool_max_mib",
            message: "must be at least 1".into(),
        });
    }
    Ok(spool_mib << 20)
}

/// Who may read `/metrics` (open by default).
fn metrics_access(setting: Option<MetricsAccess>) -> crate::access::Access {
    match setting.unwrap_or(MetricsAccess::Open) {
        MetricsAccess::Open => crate::access::Access::Open,
        MetricsAccess::Viewer => crate::access::Access::Role(crate::auth::Role::Viewer),
    }
}

/// The periods a setting gives, each checked against its floor.
struct Periods {
    resend: Duration,
    receiver_failing_after: Duration,
    audit_retention: Duration,
    history_retention: Duration,
    failover_delay: Duration,
    agent_failover_delay: Duration,
}

/// `overrides` over `file` over the defaults, for every period.
fn periods(overrides: &FileConfig, file: &FileConfig) -> Result<Periods, ConfigError> {
    Ok(Periods {
        receiver_failing_after: at_least(
            "receiver_failing_after",
            overrides
                .receiver_failing_after
                .or(file.receiver_failing_after),
            crate::services::DEFAULT_RECEIVER_FAILING_AFTER,
            (
                Duration::from_secs(1),
                "1s: a receiver's rounds run every half second",
            ),
        )?,
        resend: at_least(
            "alertmanager_resend_interval",
            overrides
                .alertmanager_resend_interval
                .or(file.alertmanager_resend_interval),
            DEFAULT_ALERTMANAGER_RESEND,
            (Duration::from_secs(1), "1s"),
        )?,
        audit_retention: at_least(
            "audit_retention",
            overrides.audit_retention.or(file.audit_retention),
            DEFAULT_AUDIT_RETENTION,
            (
                Duration::from_secs(86_400),
                "1d: the audit log is how a change is traced",
            ),
        )?,
        history_retention: at_least(
            "history_retention",
            overrides.history_retention.or(file.history_retention),
            DEFAULT_HISTORY_RETENTION,
            (
                Duration::from_secs(86_400),
                "1d: availability reports and the history read it",
            ),
        )?,
        failover_delay: at_least(
            "failover_delay",
            overrides.failover_delay.or(file.failover_delay),
            crate::services::DEFAULT_FAILOVER_DELAY,
            (
                Duration::from_secs(1),
                "1s: a live controller renews its leases every second",
            ),
        )?,
        agent_failover_delay: at_least(
            "agent_failover_delay",
            overrides.agent_failover_delay.or(file.agent_failover_delay),
            crate::agents::DEFAULT_AGENT_FAILOVER_DELAY,
            (
                Duration::from_secs(2),
                "2s: controllers share which agents they hold every second",
            ),
        )?,
    })
}

impl Settings {
    /// `overrides` (flags, environment) over `file` over the defaults.
    pub fn resolve(overrides: FileConfig, file: FileConfig) -> Result<Self, ConfigError> {
        let Periods {
            resend,
            receiver_failing_after,
            audit_retention,
            history_retention,
            failover_delay,
            agent_failover_delay,
        } = periods(&overrides, &file)?;
        let receiver_tables = overrides
            .receivers
            .clone()
            .or(file.receivers.clone())
            .unwrap_or_default();
        let route_tables = overrides
            .routes
            .clone()
            .or(file.routes.clone())
            .unwrap_or_default();
        let settings = Self {
            receivers: Vec::new(),
            routes: Vec::new(),
            receiver_failing_after,
            // Read before any field is moved out of either.
            tsdb_spool_max_bytes: spool_max_bytes(&overrides, &file)?,
            login: login_settings(&overrides, &file)?,
            flapping: flap_policy(&overrides, &file)?,
            degraded: DegradedTable::resolve(overrides.degraded.as_ref(), file.degraded.as_ref())?,
            ldap: overrides
                .ldap
                .or(file.ldap)
                .map(ldap_settings)
                .transpose()?,
            agent_failover_delay,
            metrics_access: metrics_access(overrides.metrics_access.or(file.metrics_access)),
            audit_retention,
            history_retention,
            failover_delay,
            database_password_file: overrides
                .database_password_file
                .or(file.database_password_file)
                .map(|path| credential_path("database_password_file", &path, None))
                .transpose()?,
            listen_http: overrides
                .listen_http
                .or(file.listen_http)
                .unwrap_or_else(|| loopback(DEFAULT_LISTEN_HTTP)),
            listen_grpc: overrides
                .listen_grpc
                .or(file.listen_grpc)
                .unwrap_or_else(|| loopback(DEFAULT_LISTEN_GRPC)),
            database: overrides
                .database
                .or(file.database)
                .unwrap_or_else(|| DEFAULT_DATABASE.to_owned()),
            redis: overrides.redis.or(file.redis),
            victoria_metrics: overrides.victoria_metrics.or(file.victoria_metrics),
            tsdb_spool_dir: overrides
                .tsdb_spool_dir
                .or(file.tsdb_spool_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TSDB_SPOOL_DIR)),
            webhook: overrides.webhook.or(file.webhook),
            public_url: overrides.public_url.or(file.public_url),
            alertmanagers: overrides
                .alertmanager
                .or(file.alertmanager)
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
            alertmanager_resend_interval: resend,
            api_token: overrides.api_token.or(file.api_token),
            anonymous_read: overrides
                .anonymous_read
                .or(file.anonymous_read)
                .unwrap_or(false),
            certificate_warning_days: overrides
                .certificate_warning_days
                .or(file.certificate_warning_days)
                .unwrap_or(14),
            tls: server_tls(
                overrides.tls_cert.or(file.tls_cert),
                overrides.tls_key.or(file.tls_key),
                overrides.tls_client_ca.or(file.tls_client_ca),
            )?,
        };
        settings.check_listeners()?;
        settings.check_urls()?;
        let receivers =
            receivers::resolve_receivers(settings.legacy_receivers(), &receiver_tables)?;
        let routes = receivers::resolve_routes(&route_tables, &receivers)?;
        Ok(Settings {
            receivers,
            routes,
            login: LoginSettings {
                secure_cookie: settings.tls.is_some(),
                ..settings.login
            },
            ..settings
        })
    }

    /// The receivers the older keys name: `webhook`, then each
    /// Alertmanager (`alertmanager`, `alertmanager-2`, …).
    fn legacy_receivers(&self) -> Vec<Receiver> {
        let webhook = self
            .webhook
            .iter()
            .map(|url| Receiver::legacy("webhook".into(), ReceiverKind::Webhook, url.clone()));
        let alertmanagers = self.alertmanagers.iter().enumerate().map(|(index, url)| {
            let name = match index {
                0 => "alertmanager".to_owned(),
                _ => format!("alertmanager-{}", index + 1),
            };
            Receiver::legacy(name, ReceiverKind::Alertmanager, url.clone())
        });
        webhook.chain(alertmanagers).collect()
    }

    /// HTTP and gRPC beyond loopback only over TLS.
    fn check_listeners(&self) -> Result<(), ConfigError> {
        if self.tls.is_none() && !self.listen_http.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "listen_http",
                message: format!(
                    "{} is not loopback: passwords, session cookies and tokens must not cross \
                     the network in clear; set tls_cert and tls_key (HTTPS), or listen on \
                     127.0.0.1 behind a TLS proxy",
                    self.listen_http
                ),
            });
        }
        if self.tls.is_none() && !self.listen_grpc.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "listen_grpc",
                message: format!(
                    "{} is not loopback: agents outside this host need mTLS \
                     (tls_cert, tls_key, tls_client_ca; see `ward-controller certs init`)",
                    self.listen_grpc
                ),
            });
        }
        Ok(())
    }

    /// Every configured URL is http:// or https://.
    fn check_urls(&self) -> Result<(), ConfigError> {
        let alertmanagers = self.alertmanagers.iter().map(|url| ("alertmanager", url));
        let urls = [
            ("victoria_metrics", self.victoria_metrics.as_ref()),
            ("webhook", self.webhook.as_ref()),
            ("public_url", self.public_url.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, url)| url.map(|url| (key, url)))
        .chain(alertmanagers);
        for (key, url) in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("`{url}` is not an http:// or https:// URL"),
                });
            }
        }
        Ok(())
    }
}

/// `value`, else `default`; refused (naming `key`) when shorter than the
/// minimum, whose text says why.
/// The LDAP settings with their files resolved (`${CREDENTIALS_DIRECTORY}`).
fn ldap_settings(
    ldap: crate::ldap::LdapSettings,
) -> Result<crate::ldap::LdapSettings, ConfigError> {
    let file = |key, path: Option<PathBuf>| {
        path.map(|path| credential_path(key, &path, None))
            .transpose()
    };
    Ok(crate::ldap::LdapSettings {
        ca: file("ldap.ca", ldap.ca.clone())?,
        bind_password_file: file("ldap.bind_password_file", ldap.bind_password_file.clone())?,
        ..ldap
    })
}

/// The server's certificate, key and client CA: all three or none.
fn server_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<ServerTls>, ConfigError> {
    match (cert, key, client_ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(client_ca)) => Ok(Some(ServerTls {
            cert: credential_path("tls_cert", &cert, None)?,
            key: credential_path("tls_key", &key, None)?,
            client_ca: credential_path("tls_client_ca", &client_ca, None)?,
        })),
        _ => Err(ConfigError::Invalid {
            key: "tls_cert",
            message: "mTLS needs all three of tls_cert, tls_key and tls_client_ca \
                      (`ward-controller certs init` makes them)"
                .into(),
        }),
    }
}

fn at_least(
    key: &'static str,
    value: Option<Duration>,
    default: Duration,
    (minimum, why): (Duration, &str),
) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    if value < minimum {
        return Err(ConfigError::Invalid {
            key,
            message: format!("must be at least {why}"),
        });
    }
    Ok(value)
}

/// `flap_changes` and `flap_window` of `overrides` over `file` over the
/// defaults (5 changes within 10 minutes).
fn flap_policy(
    overrides: &FileConfig,
    file: &FileConfig,
) -> Result<crate::store::FlapPolicy, ConfigError> {
    let defaults = crate::store::FlapPolicy::default();
    let changes = overrides
        .flap_changes
        .or(file.flap_changes)
        .unwrap_or(defaults.changes);
    if !(1..=1_000).contains(&changes) {
        return Err(ConfigError::Invalid {
            key: "flap_changes",
            message: "must be from 1 to 1000".into(),
        });
    }
    let window = at_least(
        "flap_window",
        overrides.flap_window.or(file.flap_window),
        Duration::from_millis(defaults.window_ms.unsigned_abs()),
        (Duration::from_secs(1), "1s"),
    )?;
    Ok(crate::store::FlapPolicy {
        changes,
        window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
    })
}

/// The login keys of `overrides` over `file` over the defaults.
fn login_settings(overrides: &FileConfig, file: &FileConfig) -> Result<LoginSettings, ConfigError> {
    let defaults = LoginSettings::default();
    let session_lifetime = overrides
        .session_lifetime
        .or(file.session_lifetime)
        .unwrap_or(defaults.session_lifetime);
    if session_lifetime < Duration::from_secs(60) {
        return Err(ConfigError::Invalid {
            key: "session_lifetime",
            message: "must be at least 1m".into(),
        });
    }
    let failures = overrides
        .login_lockout_failures
        .or(file.login_lockout_failures)
        .unwrap_or(defaults.lockout.failures);
    let address_failures = overrides
        .login_address_failures_per_minute
        .or(file.login_address_failures_per_minute)
        .unwrap_or(defaults.address_failures_per_minute);
    for (key, value) in [
        ("login_lockout_failures", failures),
        ("login_address_failures_per_minute", address_failures),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            });
        }
    }
    let lock = overrides
        .login_lockout_duration
        .or(file.login_lockout_duration)
        .map_or(defaults.lockout.lock_ms, |lock| {
            i64::try_from(lock.as_millis()).unwrap_or(i64::MAX)
        });
    Ok(LoginSettings {
        session_lifetime,
        lockout: crate::store::LockoutPolicy {
            failures,
            lock_ms: lock,
            ..defaults.lockout
        },
        address_failures_per_minute: address_failures,
        secure_cookie: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        FileConfig::parse(text, "ward.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let message = error("database = \"sqlite:x.db\"\nlisten_htp = \"127.0.0.1:1\"\n");
        assert!(message.contains("ward.toml"), "{message}");
        assert!(message.contains("listen_htp"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_line() {
        let message = error("\n\nlisten_http = \"everywhere\"\n");
        assert!(message.contains("line 3"), "{message}");
        let message = error("alertmanager_resend_interval = \"soon\"\n");
        assert!(message.contains("soon"), "{message}");
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file = FileConfig::parse(
            "database = \"sqlite:file.db\"\nlisten_grpc = \"127.0.0.1:7000\"\nalertmanager_resend_interval = \"2m\"\n",
            "ward.toml",
        )
        .unwrap();
        let overrides = FileConfig {
            database: Some("postgres://flag@127.0.0.1/ward".into()),
            ..FileConfig::default()
        };
        let settings = Settings::resolve(overrides, file).unwrap();
        assert_eq!(settings.database, "postgres://flag@127.0.0.1/ward");
        assert_eq!(settings.listen_grpc.port(), 7000);
        assert_eq!(settings.listen_http.to_string(), DEFAULT_LISTEN_HTTP);
        assert_eq!(
            settings.alertmanager_resend_interval,
            Duration::from_secs(120)
        );
        assert_eq!(settings.tsdb_spool_max_bytes, 256 << 20);
    }

    #[test]
    fn grpc_beyond_loopback_needs_mtls() {
        let file =
            FileConfig::parse("listen_grpc = \"198.18.254.1:50051\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("listen_grpc:"), "{message}");
        let file = FileConfig::parse(
            "listen_grpc = \"198.18.254.1:50051\"\ntls_cert = \"c\"\ntls_key = \"k\"\ntls_client_ca = \"ca\"\n",
            "ward.toml",
        )
        .unwrap();
        assert!(
            Settings::resolve(FileConfig::default(), file)
                .unwrap()
                .tls
                .is_some()
        );
    }

    #[test]
    fn http_beyond_loopback_needs_tls_which_also_marks_the_session_cookie_secure() {
        let file = FileConfig::parse("listen_http = \"0.0.0.0:8443\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("listen_http:"), "{message}");
        assert!(message.contains("tls_cert"), "{message}");
        let local = Settings::resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert!(!local.login.secure_cookie);
        let file = FileConfig::parse(
            "listen_http = \"0.0.0.0:8443\"\ntls_cert = \"c\"\ntls_key = \"k\"\ntls_client_ca = \"ca\"\n",
            "ward.toml",
        )
        .unwrap();
        let settings = Settings::resolve(FileConfig::default(), file).unwrap();
        assert!(settings.login.secure_cookie, "HTTPS: the cookie is Secure");
    }

    #[test]
    fn metrics_access_and_audit_retention_are_read_and_checked() {
        let defaults = Settings::resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(defaults.metrics_access, crate::access::Access::Open);
        assert_eq!(defaults.audit_retention, DEFAULT_AUDIT_RETENTION);
        let file = FileConfig::parse(
            "metrics_access = \"viewer\"\naudit_retention = \"90days\"\n",
            "ward.toml",
        )
        .unwrap();
        let settings = Settings::resolve(FileConfig::default(), file).unwrap();
        assert_eq!(
            settings.metrics_access,
            crate::access::Access::Role(crate::auth::Role::Viewer)
        );
        assert_eq!(settings.audit_retention, Duration::from_secs(90 * 86_400));
        let message = error("metrics_access = \"everyone\"\n");
        assert!(
            message.contains("everyone") && message.contains("line 1"),
            "{message}"
        );
        assert_eq!(defaults.failover_delay, Duration::from_secs(5));
        assert_eq!(defaults.agent_failover_delay, Duration::from_secs(3));
        let file = FileConfig::parse("agent_failover_delay = \"1s\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("agent_failover_delay:"), "{message}");
        let file = FileConfig::parse("failover_delay = \"500ms\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("failover_delay:"), "{message}");
        let file = FileConfig::parse("audit_retention = \"1h\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("audit_retention:"), "{message}");
        assert_eq!(defaults.history_retention, DEFAULT_HISTORY_RETENTION);
        let file = FileConfig::parse("history_retention = \"30d\"\n", "ward.toml").unwrap();
        let settings = Settings::resolve(FileConfig::default(), file).unwrap();
        assert_eq!(settings.history_retention, Duration::from_secs(30 * 86_400));
        let file = FileConfig::parse("history_retention = \"2h\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("history_retention:"), "{message}");
    }

    #[test]
    fn flap_detection_is_read_and_checked() {
        let defaults = Settings::resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(defaults.flapping, crate::store::FlapPolicy::default());
        let file =
            FileConfig::parse("flap_changes = 3\nflap_window = \"90s\"\n", "ward.toml").unwrap();
        let settings = Settings::resolve(FileConfig::default(), file).unwrap();
        assert_eq!(
            settings.flapping,
            crate::store::FlapPolicy {
                changes: 3,
                window_ms: 90_000
            }
        );
        for (text, key) in [
            ("flap_changes = 0\n", "flap_changes:"),
            ("flap_window = \"500ms\"\n", "flap_window:"),
        ] {
            let file = FileConfig::parse(text, "ward.toml").unwrap();
            let message = Settings::resolve(FileConfig::default(), file)
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(key), "{message}");
        }
    }

    #[test]
    fn login_limits_are_read_and_checked() {
        let file = FileConfig::parse(
            "session_lifetime = \"8h\"\nlogin_lockout_failures = 5\nlogin_lockout_duration = \"1h\"\n",
            "ward.toml",
        )
        .unwrap();
        let login = Settings::resolve(FileConfig::default(), file)
            .unwrap()
            .login;
        assert_eq!(login.session_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(
            (login.lockout.failures, login.lockout.lock_ms),
            (5, 3_600_000)
        );
        let file = FileConfig::parse("login_lockout_failures = 0\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("login_lockout_failures:"), "{message}");
    }

    #[test]
    fn alertmanager_is_one_url_or_the_instances_of_a_cluster() {
        let one = FileConfig::parse("alertmanager = \"http://a:9093\"\n", "ward.toml").unwrap();
        let settings = Settings::resolve(FileConfig::default(), one).unwrap();
        assert_eq!(settings.alertmanagers, ["http://a:9093"]);
        let many = FileConfig::parse(
            "alertmanager = [\"http://a:9093\", \"http://b:9093\"]\n",
            "ward.toml",
        )
        .unwrap();
        let settings = Settings::resolve(FileConfig::default(), many).unwrap();
        assert_eq!(settings.alertmanagers, ["http://a:9093", "http://b:9093"]);
        let bad = FileConfig::parse(
            "alertmanager = [\"http://a:9093\", \"b:9093\"]\n",
            "ward.toml",
        )
        .unwrap();
        let message = Settings::resolve(FileConfig::default(), bad)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("alertmanager:") && message.contains("b:9093"),
            "{message}"
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_by_key() {
        let file = FileConfig::parse("public_url = \"ward.example\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("public_url:"), "{message}");
        let file = FileConfig::parse("webhook = \"ftp://x\"\n", "ward.toml").unwrap();
        let message = Settings::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("webhook:"), "{message}");
    }
}
