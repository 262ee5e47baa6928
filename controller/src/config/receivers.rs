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
}

/// A route's `match`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchTable {
    /// A site glob.
    pub site: Option<String>,
    /// A device tag.
    pub tag: Option<String>,
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
        let url = match (&table.url, &table.url_file) {
            (Some(url), None) => url.clone(),
            (None, Some(path)) => {
                let path = credential_path("receivers", path, None)?;
                std::fs::read_to_string(&path)
                    .map_err(|error| {
                        invalid(format!("`{name}`: url_file {}: {error}", path.display()))
                    })?
                    .trim()
                    .to_owned()
            }
            _ => {
                return Err(invalid(format!(
                    "`{name}`: give exactly one of `url` and `url_file`"
                )));
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
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
        receivers.push(Receiver {
            name: name.clone(),
            kind: table.kind,
            url,
            chat_id: table.chat_id.clone(),
            topic: table.topic.clone(),
        });
    }
    Ok(receivers)
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
            severity: table.matcher.severity.clone(),
            alertname: table.matcher.alertname.clone(),
        };
        matcher
            .check()
            .map_err(|(key, why)| invalid(format!("match.{key}: {why}")))?;
        if table.receivers.is_empty() {
            return Err(invalid("`receivers` is empty: name at least one".into()));
        }
        if let Some(unknown) = table
            .receivers
            .iter()
            .find(|name| !receivers.iter().any(|r| &r.name == *name))
        {
            let known: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
            return Err(invalid(format!(
                "receivers: `{unknown}` is not a receiver (defined: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        routes.push(Route::new(
            matcher,
            table.receivers.iter().cloned(),
            table.keep_matching,
        ));
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
             [[routes]]\nreceivers = [\"webhook\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["webhook", "north", "night"]);
        assert_eq!(receivers[1].target(), "https://hooks.slack.com");
        assert_eq!(routes.len(), 2);
        assert!(routes[0].keep_matching);
        assert_eq!(routes[0].matcher.site.as_deref(), Some("north-*"));
        assert_eq!(routes[1].matcher, Match::default());
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
