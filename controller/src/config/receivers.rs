//! `[[receivers]]` and `[[routes]]`: where notifications go. The older
//! keys stay receivers of their kind: `webhook = "…"` is the receiver
//! `webhook`, `alertmanager = [...]` the receivers `alertmanager`,
//! `alertmanager-2`, …; every receiver is refused at start with the key and
//! the receiver named when it cannot work.

use std::path::PathBuf;

use serde::Deserialize;
use ward_domain::routing::{Match, Route};
use ward_settings::{ConfigError, credential_path};

/// What a receiver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// ward's own JSON, one POST per notification.
    Webhook,
    /// Alertmanager v2 (`url` its base URL).
    Alertmanager,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams Workflows webhook (an Adaptive Card).
    Teams,
    /// A Telegram bot (`url` the bot API's `sendMessage` URL with its
    /// token, `chat_id`).
    Telegram,
    /// An ntfy server (`url` its base URL, `topic`).
    Ntfy,
    /// E-mail over SMTP (`smtp_url`, `from`, `to`).
    Email,
}

impl ReceiverKind {
    /// As written in the configuration and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Alertmanager => "alertmanager",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Teams => "teams",
            ReceiverKind::Telegram => "telegram",
            ReceiverKind::Ntfy => "ntfy",
            ReceiverKind::Email => "email",
        }
    }
}

/// A `[[receivers]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverTable {
    /// How routes name it (letters, digits, `-`, `_`).
    pub name: String,
    /// What it is.
    pub kind: ReceiverKind,
    /// Where it posts.
    pub url: Option<String>,
    /// A file holding the URL (a chat webhook's URL is its secret).
    pub url_file: Option<PathBuf>,
    /// Telegram: the chat to post to.
    pub chat_id: Option<String>,
    /// ntfy: the topic.
    pub topic: Option<String>,
    /// E-mail: `smtp://host:port` (STARTTLS unless `starttls = false`) or
    /// `smtps://host:port` (TLS from the first byte).
    pub smtp_url: Option<String>,
    /// E-mail over `smtp://`: upgrade with STARTTLS (default true; false
    /// only for a relay on this host).
    pub starttls: Option<bool>,
    /// E-mail: the SMTP user.
    pub username: Option<String>,
    /// E-mail: a file holding the SMTP password.
    pub password_file: Option<PathBuf>,
    /// E-mail: the sender.
    pub from: Option<String>,
    /// E-mail: the recipients.
    pub to: Option<Vec<String>>,
    /// E-mail: the CA (PEM) the SMTP server's certificate chains to, when
    /// not a public one (the bank's own PKI).
    pub ca_file: Option<PathBuf>,
}

/// A `[[routes]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// `match = { site = "north-*", tag = "atm", severity = "critical",
    /// alertname = "DeviceDown" }`; every key optional, none matches all.
    #[serde(rename = "match", default)]
    pub matcher: MatchTable,
    /// Who gets what it matches.
    pub receivers: Vec<String>,
    /// `continue = true`: later routes are tried too.
    #[serde(rename = "continue", default)]
    pub keep_matching: bool,
    /// `repeat_every = "1h"`: remind the receivers while an alert is open
    /// and not acknowledged.
    #[serde(default, with = "ward_settings::duration")]
    pub repeat_every: Option<std::time::Duration>,
    /// `escalate_after = "15m"`: tell `escalate_to` when an alert is still
    /// not acknowledged this long after it opened.
    #[serde(default, with = "ward_settings::duration")]
    pub escalate_after: Option<std::time::Duration>,
    /// `escalate_to = ["night-shift"]`.
    pub escalate_to: Option<Vec<String>>,
}

/// The shortest `repeat_every`: more often is a page storm, not a reminder.
const SHORTEST_REPEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// A route's `match`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchTable {
    /// A site glob.
    pub site: Option<String>,
    /// A device tag.
    pub tag: Option<String>,
    /// The device's parent's name, a glob.
    pub parent: Option<String>,
    /// `critical`, `major`, `minor`, `info` or `warning`.
    pub severity: Option<String>,
    /// `DeviceDown`, `DeviceDegraded` or `AgentDown`.
    pub alertname: Option<String>,
}

/// A receiver as the controller runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// Its name (its outbox rows' channel).
    pub name: String,
    /// What it is.
    pub kind: ReceiverKind,
    /// Where it posts (a secret for the chat kinds).
    pub url: String,
    /// Telegram's chat.
    pub chat_id: Option<String>,
    /// ntfy's topic.
    pub topic: Option<String>,
    /// How an e-mail receiver sends.
    pub email: Option<EmailSettings>,
}

/// An e-mail receiver's SMTP settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// The server's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// User and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// A CA to trust besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtp://` with `starttls = false`: plaintext.
    Plain,
}

impl Receiver {
    /// One from an older key (`webhook`, `alertmanager`).
    pub fn legacy(name: String, kind: ReceiverKind, url: String) -> Self {
        Self {
            name,
            kind,
            url,
            chat_id: None,
            topic: None,
            email: None,
        }
    }

    /// Where it posts with nothing secret: the URL's scheme, host and
    /// port (a chat webhook's path and a bot's token are its secret).
    pub fn target(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        format!("{scheme}://{host}")
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid {
        key: "receivers",
        message,
    }
}

/// The `[[receivers]]` tables checked, after the `legacy` ones; each
/// URL from `url` or read from `url_file`.
pub fn resolve_receivers(
    legacy: Vec<Receiver>,
    tables: &[ReceiverTable],
) -> Result<Vec<Receiver>, ConfigError> {
    let mut receivers = legacy;
    for table in tables {
        let name = &table.name;
        let named_well = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !named_well {
            return Err(invalid(format!(
                "name `{name}`: 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        if receivers.iter().any(|r| &r.name == name) {
            return Err(invalid(format!(
                "`{name}` is defined twice (`webhook` and `alertmanager` already name \
                 receivers `webhook`, `alertmanager`, `alertmanager-2`, …)"
            )));
        }
        let email = (table.kind == ReceiverKind::Email)
            .then(|| email_settings(table))
            .transpose()?;
        let url = match (&table.url, &table.url_file, &email) {
            (None, None, Some(_)) => table.smtp_url.clone().unwrap_or_default(),
            (_, _, Some(_)) => {
                return Err(invalid(format!(
                    "`{name}`: an email receiver takes `smtp_url`, not `url` or `url_file`"
                )));
            }
            (Some(url), None, None) => url.clone(),
            (None, Some(path), None) => read_secret(name, "url_file", path)?,
            _ => {
                return Err(invalid(format!(
                    "`{name}`: give exactly one of `url` and `url_file`"
                )));
            }
        };
        if email.is_none() && !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "`{name}`: url is not an http:// or https:// URL"
            )));
        }
        let needs = |key: &str, value: &Option<String>, wanted: bool| match (value, wanted) {
            (None, true) => Err(invalid(format!(
                "`{name}`: a {} receiver needs `{key}`",
                table.kind.as_str()
            ))),
            (Some(_), false) => Err(invalid(format!(
                "`{name}`: `{key}` is for {} receivers only",
                if key == "chat_id" { "telegram" } else { "ntfy" }
            ))),
            _ => Ok(()),
        };
        needs(
            "chat_id",
            &table.chat_id,
            table.kind == ReceiverKind::Telegram,
        )?;
        needs("topic", &table.topic, table.kind == ReceiverKind::Ntfy)?;
        let email_only = [
            ("smtp_url", table.smtp_url.is_some()),
            ("starttls", table.starttls.is_some()),
            ("username", table.username.is_some()),
            ("password_file", table.password_file.is_some()),
            ("from", table.from.is_some()),
            ("to", table.to.is_some()),
            ("ca_file", table.ca_file.is_some()),
        ];
        if email.is_none()
            && let Some((key, _)) = email_only.iter().find(|(_, set)| *set)
        {
            return Err(invalid(format!(
                "`{name}`: `{key}` is for email receivers only"
            )));
        }
        receivers.push(Receiver {
            name: name.clone(),
            kind: table.kind,
            url,
            chat_id: table.chat_id.clone(),
            topic: table.topic.clone(),
            email,
        });
    }
    Ok(receivers)
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The trimmed contents of the file at `path` (`${CREDENTIALS_DIRECTORY}`
/// resolved), for receiver `name`'s `key`.
fn read_secret(name: &str, key: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    let path = credential_path("receivers", path, None)?;
    std::fs::read_to_string(&path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| invalid(format!("`{name}`: {key} {}: {error}", path.display())))
}

/// An email receiver's settings from its table.
fn email_settings(table: &ReceiverTable) -> Result<EmailSettings, ConfigError> {
    let name = &table.name;
    let needs = |key: &str| invalid(format!("`{name}`: an email receiver needs `{key}`"));
    let url = table.smtp_url.as_deref().ok_or_else(|| needs("smtp_url"))?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let security = match (scheme, table.starttls.unwrap_or(true)) {
        ("smtps", _) => SmtpSecurity::Tls,
        ("smtp", true) => SmtpSecurity::StartTls,
        ("smtp", false) => SmtpSecurity::Plain,
        _ => {
            return Err(invalid(format!(
                "`{name}`: smtp_url `{url}` is not smtp://HOST:PORT or smtps://HOST:PORT"
            )));
        }
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>().map_err(|_| {
                invalid(format!(
                    "`{name}`: smtp_url `{url}`: `{port}` is not a port"
                ))
            })?,
        ),
        None if security == SmtpSecurity::Tls => (authority, 465),
        None => (authority, 587),
    };
    if host.is_empty() || host.contains(['/', '@', '?']) {
        return Err(invalid(format!(
            "`{name}`: smtp_url `{url}` is not smtp://HOST:PORT or smtps://HOST:PORT (no user, path or query)"
        )));
    }
    if table.password_file.is_some() && security == SmtpSecurity::Plain {
        return Err(invalid(format!(
            "`{name}`: a password is never sent in clear: drop `starttls = false` or use smtps://"
        )));
    }
    let credentials = match (&table.username, &table.password_file) {
        (Some(user), Some(path)) => Some((user.clone(), read_secret(name, "password_file", path)?)),
        (None, None) => None,
        _ => {
            return Err(invalid(format!(
                "`{name}`: give both `username` and `password_file`, or neither"
            )));
        }
    };
    let from = table.from.clone().ok_or_else(|| needs("from"))?;
    let to = table.to.clone().unwrap_or_default();
    if to.is_empty() {
        return Err(needs("to"));
    }
    for address in std::iter::once(&from).chain(&to) {
        if address.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(format!(
                "`{name}`: `{address}` is not an e-mail address"
            )));
        }
    }
    let ca_pem = table
        .ca_file
        .as_ref()
        .map(|path| {
            let path = credential_path("receivers", path, None)?;
            let pem = std::fs::read(&path).map_err(|error| {
                invalid(format!("`{name}`: ca_file {}: {error}", path.display()))
            })?;
            ca_certificates(&pem)
                .map_err(|why| invalid(format!("`{name}`: ca_file {}: {why}", path.display())))?;
            Ok(pem)
        })
        .transpose()?;
    Ok(EmailSettings {
        host: host.to_owned(),
        port,
        security,
        credentials,
        from,
        to,
        ca_pem,
    })
}

/// How many certificates `pem` holds; an error says why it holds none.
fn ca_certificates(pem: &[u8]) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|error| format!("not PEM certificates: {error}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM certificate in it".into());
    }
    Ok(count)
}

/// The `[[routes]]` tables checked against `receivers`.
pub fn resolve_routes(
    tables: &[RouteTable],
    receivers: &[Receiver],
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let number = index + 1;
        let invalid = |message: String| ConfigError::Invalid {
            key: "routes",
            message: format!("route {number}: {message}"),
        };
        let matcher = Match {
            site: table.matcher.site.clone(),
            tag: table.matcher.tag.clone(),
            parent: table.matcher.parent.clone(),
            severity: table.matcher.severity.clone(),
            alertname: table.matcher.alertname.clone(),
        };
        matcher
            .check()
            .map_err(|(key, why)| invalid(format!("match.{key}: {why}")))?;
        if table.receivers.is_empty() {
            return Err(invalid("`receivers` is empty: name at least one".into()));
        }
        let known = |names: &[String], key: &str| match names
            .iter()
            .find(|name| !receivers.iter().any(|r| &r.name == *name))
        {
            Some(unknown) => {
                let defined: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
                Err(invalid(format!(
                    "{key}: `{unknown}` is not a receiver (defined: {})",
                    if defined.is_empty() {
                        "none".to_owned()
                    } else {
                        defined.join(", ")
                    }
                )))
            }
            None => Ok(()),
        };
        known(&table.receivers, "receivers")?;
        if table
            .repeat_every
            .is_some_and(|every| every < SHORTEST_REPEAT)
        {
            return Err(invalid(
                "repeat_every: at least 1m (a reminder more often is a page storm)".into(),
            ));
        }
        let escalation = match (table.escalate_after, &table.escalate_to) {
            (Some(after), Some(to)) if !to.is_empty() => {
                known(to, "escalate_to")?;
                Some((after, to.clone()))
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "give both `escalate_after` and `escalate_to` (not empty), or neither".into(),
                ));
            }
        };
        let mut route = Route::new(
            matcher,
            table.receivers.iter().cloned(),
            table.keep_matching,
        );
        if let Some(every) = table.repeat_every {
            route = route.repeating(millis(every));
        }
        if let Some((after, to)) = escalation {
            route = route.escalating(millis(after), to);
        }
        routes.push(route);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Both {
        #[serde(default)]
        receivers: Vec<ReceiverTable>,
        #[serde(default)]
        routes: Vec<RouteTable>,
    }

    fn resolve(text: &str) -> Result<(Vec<Receiver>, Vec<Route>), ConfigError> {
        let both: Both = ward_settings::parse(text, "ward.toml")?;
        let legacy = vec![Receiver::legacy(
            "webhook".into(),
            ReceiverKind::Webhook,
            "http://hook".into(),
        )];
        let receivers = resolve_receivers(legacy, &both.receivers)?;
        let routes = resolve_routes(&both.routes, &receivers)?;
        Ok((receivers, routes))
    }

    fn message(text: &str) -> String {
        resolve(text).unwrap_err().to_string()
    }

    #[test]
    fn receivers_and_routes_are_read_in_order() {
        let (receivers, routes) = resolve(
            "[[receivers]]\nname = \"north\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/secret\"\n\
             [[receivers]]\nname = \"night\"\nkind = \"ntfy\"\nurl = \"https://ntfy.bank\"\ntopic = \"night\"\n\
             [[routes]]\nmatch = { site = \"north-*\", severity = \"critical\" }\nreceivers = [\"north\", \"night\"]\ncontinue = true\n\
             [[routes]]\nreceivers = [\"webhook\"]\nrepeat_every = \"1h\"\nescalate_after = \"15m\"\nescalate_to = [\"night\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["webhook", "north", "night"]);
        assert_eq!(receivers[1].target(), "https://hooks.slack.com");
        assert_eq!(routes.len(), 2);
        assert!(routes[0].keep_matching);
        assert_eq!(routes[0].matcher.site.as_deref(), Some("north-*"));
        assert_eq!(routes[1].matcher, Match::default());
        assert_eq!(routes[1].repeat_every_ms, Some(3_600_000));
        let escalation = routes[1].escalation.clone().unwrap();
        assert_eq!(
            (escalation.after_ms, escalation.to),
            (900_000, vec!["night".to_owned()])
        );
    }

    #[test]
    fn a_receiver_or_route_that_cannot_work_is_refused_naming_it() {
        for (text, expected) in [
            (
                "[[receivers]]\nname = \"webhook\"\nkind = \"slack\"\nurl = \"https://x\"\n",
                "receivers: `webhook` is defined twice",
            ),
            (
                "[[receivers]]\nname = \"a b\"\nkind = \"slack\"\nurl = \"https://x\"\n",
                "receivers: name `a b`",
            ),
            (
                "[[receivers]]\nname = \"t\"\nkind = \"telegram\"\nurl = \"https://x\"\n",
                "receivers: `t`: a telegram receiver needs `chat_id`",
            ),
            (
                "[[receivers]]\nname = \"s\"\nkind = \"slack\"\n",
                "receivers: `s`: give exactly one of `url` and `url_file`",
            ),
            (
                "[[receivers]]\nname = \"s\"\nkind = \"slack\"\nurl = \"ftp://x\"\n",
                "receivers: `s`: url is not an http:// or https:// URL",
            ),
            (
                "[[receivers]]\nname = \"s\"\nkind = \"slack\"\nurl_file = \"/nonexistent/ward-url\"\n",
                "receivers: `s`: url_file /nonexistent/ward-url",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://mail:587\"\nfrom = \"w@b.example\"\n",
                "receivers: `m`: an email receiver needs `to`",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"http://mail\"\nfrom = \"w@b.example\"\nto = [\"n@b.example\"]\n",
                "receivers: `m`: smtp_url `http://mail` is not smtp://HOST:PORT",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://mail:587\"\nfrom = \"w@b.example\"\nto = [\"not an address\"]\n",
                "receivers: `m`: `not an address` is not an e-mail address",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://mail:25\"\nstarttls = false\nusername = \"u\"\npassword_file = \"/nonexistent/password\"\nfrom = \"w@b.example\"\nto = [\"n@b.example\"]\n",
                "receivers: `m`: a password is never sent in clear",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nsmtp_url = \"smtp://mail\"\nusername = \"u\"\nfrom = \"w@b.example\"\nto = [\"n@b.example\"]\n",
                "receivers: `m`: give both `username` and `password_file`",
            ),
            (
                "[[receivers]]\nname = \"s\"\nkind = \"slack\"\nurl = \"https://x\"\nto = [\"n@b.example\"]\n",
                "receivers: `s`: `to` is for email receivers only",
            ),
            (
                "[[receivers]]\nname = \"m\"\nkind = \"email\"\nurl = \"https://x\"\nsmtp_url = \"smtp://mail\"\nfrom = \"w@b.example\"\nto = [\"n@b.example\"]\n",
                "receivers: `m`: an email receiver takes `smtp_url`, not `url`",
            ),
            (
                "[[routes]]\nreceivers = [\"pager\"]\n",
                "routes: route 1: receivers: `pager` is not a receiver (defined: webhook)",
            ),
            (
                "[[routes]]\nreceivers = [\"webhook\"]\n[[routes]]\nmatch = { severity = \"urgent\" }\nreceivers = [\"webhook\"]\n",
                "routes: route 2: match.severity: `urgent` is not one of",
            ),
            (
                "[[routes]]\nmatch = { alertname = \"DeviceUp\" }\nreceivers = [\"webhook\"]\n",
                "routes: route 1: match.alertname",
            ),
            (
                "[[routes]]\nreceivers = []\n",
                "routes: route 1: `receivers` is empty",
            ),
            (
                "[[routes]]\nreceivers = [\"webhook\"]\nrepeat_every = \"10s\"\n",
                "routes: route 1: repeat_every: at least 1m",
            ),
            (
                "[[routes]]\nreceivers = [\"webhook\"]\nescalate_after = \"15m\"\n",
                "routes: route 1: give both `escalate_after` and `escalate_to`",
            ),
            (
                "[[routes]]\nreceivers = [\"webhook\"]\nescalate_after = \"15m\"\nescalate_to = [\"boss\"]\n",
                "routes: route 1: escalate_to: `boss` is not a receiver (defined: webhook)",
            ),
        ] {
            let said = message(text);
            assert!(said.starts_with(expected), "{text}\n→ {said}");
        }
        // A key no route has is the parser's error, with its line.
        assert!(
            message("[[routes]]\nreceivers = [\"webhook\"]\nrepeat = \"1h\"\n")
                .contains("unknown field `repeat`")
        );
        assert!(
            message("[[routes]]\nmatch = { region = \"north\" }\nreceivers = [\"webhook\"]\n")
                .contains("unknown field `region`")
        );
    }

    #[test]
    fn an_email_receiver_is_read_with_its_password_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("smtp-password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let (receivers, _) = resolve(&format!(
            "[[receivers]]\nname = \"noc-mail\"\nkind = \"email\"\nsmtp_url = \"smtps://mail.bank.example\"\n\
             username = \"ward\"\npassword_file = \"{}\"\nfrom = \"ward <ward@bank.example>\"\n\
             to = [\"noc@bank.example\", \"night@bank.example\"]\n",
            password.display()
        ))
        .unwrap();
        let mail = receivers[1].email.clone().unwrap();
        assert_eq!((mail.host.as_str(), mail.port), ("mail.bank.example", 465));
        assert_eq!(mail.security, SmtpSecurity::Tls);
        assert_eq!(mail.credentials, Some(("ward".into(), "s3cret".into())));
        assert_eq!(mail.to.len(), 2);
        assert_eq!(receivers[1].target(), "smtps://mail.bank.example");
    }

    #[test]
    fn a_url_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slack-url");
        std::fs::write(&path, "https://hooks.slack.com/services/T/B/secret\n").unwrap();
        let (receivers, _) = resolve(&format!(
            "[[receivers]]\nname = \"s\"\nkind = \"slack\"\nurl_file = \"{}\"\n",
            path.display()
        ))
        .unwrap();
        assert_eq!(
            receivers[1].url,
            "https://hooks.slack.com/services/T/B/secret"
        );
    }
}
