//! TOML configuration files for `ward-agent` and `ward-controller`: one
//! way to read them, one error type, and `"10s"`-style durations. Each
//! daemon defines its own keys (`#[serde(deny_unknown_fields)]`) and its
//! defaults; the parser's messages name the key, line and column. Also
//! the daemons' one logging set-up ([`init_logging`]).
#![forbid(unsafe_code)]

use std::path::Path;

use serde::de::DeserializeOwned;

/// Logs to stderr (journald under systemd), coloured only on a terminal,
/// filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// What is wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for these keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (key, line, column).
        message: String,
    },
    /// A value that cannot work.
    #[error("{key}: {message}")]
    Invalid {
        /// The key or flag.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Reads and parses the file at `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses `text` (from `origin`, for messages).
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Parse {
        path: origin.to_owned(),
        message: error.to_string().trim_end().to_owned(),
    })
}

/// `#[serde(default, with = "ward_settings::duration")]` for an
/// `Option<Duration>` written `"10s"`, `"2m"`, `"500ms"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserialises `"10s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|error| serde::de::Error::custom(format!("`{text}`: {error} (e.g. \"10s\")")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        #[serde(default, with = "crate::duration")]
        period: Option<Duration>,
    }

    #[test]
    fn errors_name_the_key_and_line_and_durations_parse() {
        let keys: Keys = parse("period = \"2m\"\n", "x.toml").unwrap();
        assert_eq!(keys.period, Some(Duration::from_secs(120)));
        let message = parse::<Keys>("\nperiod = \"soon\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.toml") && message.contains("line 2") && message.contains("soon"),
            "{message}"
        );
        let message = parse::<Keys>("perod = \"1s\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(message.contains("perod"), "{message}");
        let message = load::<Keys>(Path::new("/nonexistent/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cannot read config file /nonexistent/x.toml"),
            "{message}"
        );
    }
}
