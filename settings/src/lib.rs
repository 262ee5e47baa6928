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

/// What a path starting with it means: the directory systemd puts a
/// unit's `LoadCredential=` files in (`$CREDENTIALS_DIRECTORY`).
pub const CREDENTIALS: &str = "${CREDENTIALS_DIRECTORY}";

/// `path` (the value of `key`) with a leading `${CREDENTIALS_DIRECTORY}`
/// replaced by `credentials` (the variable's value, from the environment
/// when `None`): a file loaded with `LoadCredential=`, which a
/// `DynamicUser=` service can read although the original is root's.
pub fn credential_path(
    key: &'static str,
    path: &Path,
    credentials: Option<&Path>,
) -> Result<std::path::PathBuf, ConfigError> {
    let Ok(rest) = path.strip_prefix(CREDENTIALS) else {
        return Ok(path.to_path_buf());
    };
    let from_environment = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    match credentials.map(Path::to_path_buf).or(from_environment) {
        Some(directory) => Ok(directory.join(rest)),
        None => Err(ConfigError::Invalid {
            key,
            message: format!(
                "{} names {CREDENTIALS}, which is not set: run under systemd with \
                 LoadCredential= (see the shipped unit), or give the file's own path",
                path.display()
            ),
        }),
    }
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

    #[test]
    fn a_credential_path_is_found_in_the_credentials_directory_or_named() {
        let credentials = Path::new("/run/credentials/ward-controller.service");
        let path = Path::new("${CREDENTIALS_DIRECTORY}/controller.key");
        assert_eq!(
            credential_path("tls_key", path, Some(credentials)).unwrap(),
            credentials.join("controller.key")
        );
        let plain = Path::new("/etc/ward/controller.key");
        assert_eq!(credential_path("tls_key", plain, None).unwrap(), plain);
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            let message = credential_path("tls_key", path, None)
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with("tls_key:") && message.contains("LoadCredential="),
                "{message}"
            );
        }
    }

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

/// `text` (a database, cache or HTTP URL, or a PostgreSQL `key=value`
/// connection string) with every password replaced by `***`, for logs and
/// error messages: `postgres://ward:s3cret@db/ward` becomes
/// `postgres://ward:***@db/ward`, `password=s3cret` becomes `password=***`.
pub fn redact_secrets(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    for (index, part) in text.split(' ').enumerate() {
        if index > 0 {
            redacted.push(' ');
        }
        redacted.push_str(&redact_part(part));
    }
    redacted
}

fn redact_part(part: &str) -> String {
    for key in ["password=", "token="] {
        if let Some(at) = part.find(key) {
            let start = at + key.len();
            let end = part[start..]
                .find(['&', ';'])
                .map_or(part.len(), |offset| start + offset);
            return format!("{}***{}", &part[..start], redact_part(&part[end..]));
        }
    }
    let Some(scheme_end) = part.find("://") else {
        return part.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = part[authority_start..]
        .find(['/', '?', '#'])
        .map_or(part.len(), |offset| authority_start + offset);
    let authority = &part[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let credentials = &authority[..at];
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            let web = part.starts_with("http://") || part.starts_with("https://");
            let shown = if credentials.contains(':') {
                format!("{user}:***")
            } else if web {
                // `https://TOKEN@host`: a lone user part is often a secret.
                "***".to_owned()
            } else {
                user.to_owned()
            };
            format!(
                "{}{shown}{}{}",
                &part[..authority_start],
                &authority[at..],
                &part[authority_end..]
            )
        }
        None => part.to_owned(),
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_secrets;

    #[test]
    fn passwords_never_survive_redaction() {
        for (text, shown) in [
            (
                "postgres://ward:s3cret@db:5432/ward",
                "postgres://ward:***@db:5432/ward",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("https://s3cret@vm.example/x", "https://***@vm.example/x"),
            ("postgres://ward@db/ward", "postgres://ward@db/ward"),
            (
                "host=db user=ward password=s3cret",
                "host=db user=ward password=***",
            ),
            (
                "http://vm/api?token=s3cret&x=1",
                "http://vm/api?token=***&x=1",
            ),
            (
                "sqlite:/var/lib/ward/ward.db",
                "sqlite:/var/lib/ward/ward.db",
            ),
        ] {
            let redacted = redact_secrets(text);
            assert_eq!(redacted, shown);
            assert!(!redacted.contains("s3cret"));
        }
    }
}
