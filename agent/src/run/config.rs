//! `ward-agent run` settings: a TOML file (`--config`), overridden by flags
//! and `WARD_AGENT_*` variables, over defaults. Unknown keys and bad values
//! are errors naming the key and line, before anything starts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::prober::SendPath;
pub use ward_settings::ConfigError;
use ward_settings::credential_path;

/// Where the controller listens by default.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:50051";
/// The spool, when no directory is configured (systemd sets
/// `STATE_DIRECTORY`).
pub const DEFAULT_SPOOL_DIR: &str = "./ward-agent-spool";
/// Statistics are reported this often.
pub const DEFAULT_REPORT_PERIOD: Duration = Duration::from_secs(10);
/// Heartbeats go this often.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Statistics kept in the spool while the controller is unreachable, MiB.
pub const DEFAULT_SPOOL_STATISTICS_MIB: u64 = 64;

/// The configuration file's keys, every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `controller = "https://controller.example:50051"`.
    pub controller: Option<String>,
    /// `controllers = ["https://a:50051", "https://b:50051"]`: several
    /// controllers of one cluster; the agent links to one and moves to
    /// the next when it loses it.
    pub controllers: Option<Vec<String>>,
    /// `agent_id = "branch-0421"` (default: the host name).
    pub agent_id: Option<String>,
    /// `site = "branch-0421"` (checked against the inventory).
    pub site: Option<String>,
    /// `spool_dir = "/var/lib/ward-agent"`.
    pub spool_dir: Option<PathBuf>,
    /// `spool_statistics_mib = 64`.
    pub spool_statistics_mib: Option<u64>,
    /// `report_period = "10s"`.
    #[serde(default, with = "ward_settings::duration")]
    pub report_period: Option<Duration>,
    /// `heartbeat_interval = "1s"`.
    #[serde(default, with = "ward_settings::duration")]
    pub heartbeat_interval: Option<Duration>,
    /// `rate = 50000`: probes per second, at most.
    pub rate: Option<u32>,
    /// `send_path = "packet"`: IPv4 probes through a packet socket.
    pub send_path: Option<SendPath>,
    /// `tls_ca = "/etc/ward/ca.pem"`.
    pub tls_ca: Option<PathBuf>,
    /// `tls_cert = "/etc/ward/agent.pem"`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "/etc/ward/agent.key"`.
    pub tls_key: Option<PathBuf>,
}

/// Certificate files for mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the controller's certificate.
    pub ca: PathBuf,
    /// This agent's certificate (its identity).
    pub cert: PathBuf,
    /// This agent's private key.
    pub key: PathBuf,
}

/// Everything `ward-agent run` runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// The controllers' gRPC URLs (one cluster), tried in turn.
    pub controllers: Vec<String>,
    /// This agent's id.
    pub agent_id: String,
    /// Its site, or empty to take the registered one.
    pub site: String,
    /// The spool directory.
    pub spool_dir: PathBuf,
    /// Statistics bound in the spool, bytes.
    pub spool_statistics_max_bytes: u64,
    /// Statistics period.
    pub report_period: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Probe rate cap.
    pub rate: Option<u32>,
    /// How IPv4 probes leave the host.
    pub send_path: SendPath,
    /// mTLS files; `None` is plaintext (loopback controller only).
    pub tls: Option<TlsFiles>,
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

impl RunSettings {
    /// `overrides` over `file` over the defaults; `host_name` is the
    /// default agent id, `state_directory` (systemd's) the default spool.
    pub fn resolve(
        overrides: FileConfig,
        file: FileConfig,
        host_name: &str,
        state_directory: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let controllers = controllers(&overrides, &file)?;
        let tls = tls_files(&overrides, &file)?;
        for controller in &controllers {
            check_controller(controller, tls.is_some())?;
        }
        let agent_id = overrides
            .agent_id
            .or(file.agent_id)
            .unwrap_or_else(|| host_name.to_owned());
        if agent_id.is_empty() {
            return Err(ConfigError::Invalid {
                key: "agent_id",
                message: "empty, and the host has no name: set agent_id".into(),
            });
        }
        let report_period = overrides
            .report_period
            .or(file.report_period)
            .unwrap_or(DEFAULT_REPORT_PERIOD);
        let heartbeat_interval = overrides
            .heartbeat_interval
            .or(file.heartbeat_interval)
            .unwrap_or(DEFAULT_HEARTBEAT);
        for (key, value) in [
            ("report_period", report_period),
            ("heartbeat_interval", heartbeat_interval),
        ] {
            if value < Duration::from_millis(100) {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 100ms".into(),
                });
            }
        }
        Ok(Self {
            controllers,
            agent_id,
            site: overrides.site.or(file.site).unwrap_or_default(),
            spool_dir: overrides
                .spool_dir
                .or(file.spool_dir)
                .or(state_directory)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
            spool_statistics_max_bytes: overrides
                .spool_statistics_mib
                .or(file.spool_statistics_mib)
                .unwrap_or(DEFAULT_SPOOL_STATISTICS_MIB)
                << 20,
            report_period,
            heartbeat_interval,
            rate: overrides.rate.or(file.rate),
            send_path: overrides.send_path.or(file.send_path).unwrap_or_default(),
            tls,
        })
    }
}

/// The controllers to dial: `overrides` over `file` (either's
/// `controller` or `controllers`, not both in the file) over the default.
fn controllers(overrides: &FileConfig, file: &FileConfig) -> Result<Vec<String>, ConfigError> {
    if file.controller.is_some() && file.controllers.is_some() {
        return Err(ConfigError::Invalid {
            key: "controllers",
            message: "set controller or controllers, not both".into(),
        });
    }
    let single = |config: &FileConfig| config.controller.clone().map(|url| vec![url]);
    let controllers = overrides
        .controllers
        .clone()
        .or_else(|| single(overrides))
        .or_else(|| file.controllers.clone())
        .or_else(|| single(file))
        .unwrap_or_else(|| vec![DEFAULT_CONTROLLER.to_owned()]);
    if controllers.is_empty() {
        return Err(ConfigError::Invalid {
            key: "controllers",
            message: "name at least one controller".into(),
        });
    }
    Ok(controllers)
}

/// The mTLS files: all three or none.
fn tls_files(overrides: &FileConfig, file: &FileConfig) -> Result<Option<TlsFiles>, ConfigError> {
    let pick = |over: &Option<PathBuf>, from_file: &Option<PathBuf>| {
        over.clone().or_else(|| from_file.clone())
    };
    match (
        pick(&overrides.tls_ca, &file.tls_ca),
        pick(&overrides.tls_cert, &file.tls_cert),
        pick(&overrides.tls_key, &file.tls_key),
    ) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
            ca: credential_path("tls_ca", &ca, None)?,
            cert: credential_path("tls_cert", &cert, None)?,
            key: credential_path("tls_key", &key, None)?,
        })),
        _ => Err(ConfigError::Invalid {
            key: "tls_ca",
            message: "mTLS needs all three of tls_ca, tls_cert and tls_key \
                      (`ward-controller certs agent ID` makes them)"
                .into(),
        }),
    }
}

/// A controller URL: `http://` only to loopback, `https://` with mTLS.
fn check_controller(url: &str, tls: bool) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "controller",
        message,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("`{url}` is not a URL like http://127.0.0.1:50051")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .strip_prefix('[')
        .and_then(|v6| v6.split_once(']').map(|(host, _)| host))
        .unwrap_or_else(|| {
            authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host)
        });
    match (scheme, tls) {
        ("https", true) => Ok(()),
        ("https", false) => Err(invalid(format!(
            "`{url}` needs tls_ca, tls_cert and tls_key (mTLS)"
        ))),
        ("http", false) => {
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(invalid(format!(
                    "plaintext is only allowed to a loopback controller, not `{host}`: \
                     use https:// with tls_ca, tls_cert and tls_key"
                )))
            }
        }
        ("http", true) => Err(invalid(format!(
            "`{url}`: with mTLS configured, use https://"
        ))),
        _ => Err(invalid(format!(
            "`{url}`: use http:// (loopback) or https://"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(file: &str) -> Result<RunSettings, ConfigError> {
        RunSettings::resolve(
            FileConfig::default(),
            FileConfig::parse(file, "agent.toml")?,
            "host-1",
            None,
        )
    }

    #[test]
    fn defaults_name_the_agent_after_the_host() {
        let settings = resolve("").unwrap();
        assert_eq!(settings.agent_id, "host-1");
        assert_eq!(settings.controllers, [DEFAULT_CONTROLLER]);
        assert_eq!(settings.report_period, DEFAULT_REPORT_PERIOD);
        assert!(settings.tls.is_none());
    }

    #[test]
    fn the_send_path_is_the_ip_stack_unless_packet_is_asked_for() {
        assert_eq!(resolve("").unwrap().send_path, SendPath::Ip);
        assert_eq!(
            resolve("send_path = \"packet\"").unwrap().send_path,
            SendPath::Packet
        );
        let message = resolve("send_path = \"raw\"").unwrap_err().to_string();
        assert!(
            message.contains("raw") && message.contains("line 1"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let message = resolve("site = \"b\"\nspool = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("spool") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn a_cluster_is_a_list_of_controllers_each_checked() {
        let settings =
            resolve("controllers = [\"http://127.0.0.1:50051\", \"http://127.0.0.1:50052\"]")
                .expect("settings");
        assert_eq!(
            settings.controllers,
            ["http://127.0.0.1:50051", "http://127.0.0.1:50052"]
        );
        let message = resolve("controllers = [\"http://127.0.0.1:1\", \"http://198.18.0.1:1\"]")
            .unwrap_err()
            .to_string();
        assert!(message.contains("198.18.0.1"), "{message}");
        let message = resolve("controller = \"http://127.0.0.1:1\"\ncontrollers = []")
            .unwrap_err()
            .to_string();
        assert!(message.contains("not both"), "{message}");
        let message = resolve("controllers = []").unwrap_err().to_string();
        assert!(message.contains("at least one"), "{message}");
    }

    #[test]
    fn plaintext_is_only_for_a_loopback_controller() {
        assert!(resolve("controller = \"http://[::1]:50051\"").is_ok());
        assert!(resolve("controller = \"http://localhost:50051\"").is_ok());
        let message = resolve("controller = \"http://198.18.0.1:50051\"")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("controller: plaintext"), "{message}");
        let message = resolve("controller = \"https://c:50051\"")
            .unwrap_err()
            .to_string();
        assert!(message.contains("tls_ca"), "{message}");
        let message = resolve("tls_ca = \"/ca.pem\"").unwrap_err().to_string();
        assert!(message.contains("all three"), "{message}");
    }
}
