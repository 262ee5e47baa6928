//! Chat and push receivers, each posting a notification in its service's
//! own documented format:
//!
//! - Slack incoming webhooks: `{text, blocks}` with a `section` block in
//!   `mrkdwn` (<https://api.slack.com/messaging/webhooks>,
//!   <https://api.slack.com/reference/block-kit/blocks#section>); `text` is
//!   the fallback shown in notifications.
//! - Microsoft Teams Workflows webhooks: a `message` whose one attachment
//!   is an Adaptive Card 1.4 (`TextBlock`, `FactSet`, `Action.OpenUrl`)
//!   (<https://learn.microsoft.com/en-us/connectors/teams/?tabs=text1#microsoft-teams-webhook>,
//!   <https://adaptivecards.io/explorer/>).
//! - Telegram's Bot API `sendMessage`: `{chat_id, text}`
//!   (<https://core.telegram.org/bots/api#sendmessage>); the URL carries
//!   the bot's token.
//! - ntfy's JSON publishing: POST to the server's root URL `{topic,
//!   title, message, priority, tags, click}`
//!   (<https://docs.ntfy.sh/publish/#publish-as-json>).

use serde_json::{Value, json};

use crate::config::{Receiver, ReceiverKind};
use crate::store::{AlertName, DueNotification};
use crate::time::rfc3339;

/// A Slack, Teams, Telegram or ntfy receiver.
pub struct Chat {
    receiver: Receiver,
    /// The dashboard's address, for each message's link.
    public_url: Option<String>,
    http: reqwest::Client,
}

impl Chat {
    /// Posts to `receiver` (of a chat kind).
    pub fn new(receiver: Receiver, public_url: Option<&str>) -> Self {
        Self {
            receiver,
            public_url: public_url.map(str::to_owned),
            http: super::http_client(),
        }
    }

    /// Its receiver's name.
    pub fn name(&self) -> &str {
        &self.receiver.name
    }

    pub(super) async fn post(&self, notification: &DueNotification) -> Result<(), String> {
        let message = Message::of(notification, self.public_url.as_deref());
        let (url, body) = match self.receiver.kind {
            ReceiverKind::Slack => (self.receiver.url.clone(), message.slack()),
            ReceiverKind::Teams => (self.receiver.url.clone(), message.teams()),
            ReceiverKind::Telegram => (
                self.receiver.url.clone(),
                message.telegram(self.receiver.chat_id.as_deref().unwrap_or_default()),
            ),
            ReceiverKind::Ntfy => (
                self.receiver.url.trim_end_matches('/').to_owned(),
                message.ntfy(self.receiver.topic.as_deref().unwrap_or_default()),
            ),
            ReceiverKind::Webhook | ReceiverKind::Alertmanager | ReceiverKind::Email => {
                return Err(format!(
                    "receiver {} is not a chat receiver",
                    self.receiver.name
                ));
            }
        };
        super::post_json(&self.http, &url, &body).await
    }
}

/// A notification as a person reads it.
pub struct Message {
    /// One line: `[ward] DOWN atm-17 (branch-0421) since 03:12 UTC`.
    pub headline: String,
    /// `(label, value)` lines: status, site, address, since, acknowledged.
    pub facts: Vec<(&'static str, String)>,
    /// The subject in the dashboard, when `public_url` is set.
    pub link: Option<String>,
    /// Firing (not resolved, acknowledged or settled): louder.
    pub urgent: bool,
}

/// `HH:MM UTC` of a Unix ms time.
fn clock(ms: i64) -> String {
    let stamp = rfc3339(ms);
    format!("{} UTC", stamp.get(11..16).unwrap_or(&stamp))
}

impl Message {
    /// What `notification` says.
    pub fn of(notification: &DueNotification, public_url: Option<&str>) -> Self {
        let alert = &notification.alert;
        let subject = format!("{} ({})", alert.name, alert.site);
        let problem = match alert.alertname {
            AlertName::DeviceDown => "DOWN",
            AlertName::DeviceDegraded => "DEGRADED",
            AlertName::AgentDown => "AGENT DOWN",
        };
        let since = clock(alert.opened_at_ms);
        let headline = match notification.kind.as_str() {
            "firing" => format!("{problem} {subject} since {since}"),
            "resolved" => format!(
                "RESOLVED {problem} {subject} at {}",
                alert.resolved_at_ms.map_or_else(|| "now".to_owned(), clock)
            ),
            "acknowledged" => match &alert.acknowledged {
                Some(ack) => format!("ACKNOWLEDGED {problem} {subject} by {}", ack.by),
                None => format!("ACKNOWLEDGEMENT WITHDRAWN {problem} {subject}"),
            },
            "flapping" => format!("FLAPPING {subject}: its changes are held until it settles"),
            "settled" => format!("SETTLED {subject}"),
            "reminder" | "escalated" => format!(
                "{} {problem} {subject} since {since}, not acknowledged",
                notification.kind.to_uppercase()
            ),
            other => format!("{} {problem} {subject}", other.to_uppercase()),
        };
        let mut facts = vec![
            ("Alert", alert.alertname.as_str().to_owned()),
            ("Severity", alert.severity_label().to_owned()),
            ("Site", alert.site.clone()),
        ];
        if !alert.address.is_empty() {
            facts.push(("Address", alert.address.clone()));
        }
        if let Some(status) = alert.device_status {
            facts.push(("Status now", status.as_str().to_owned()));
        }
        if let Some(degraded) = alert.degraded {
            facts.push((
                "Loss",
                format!("{} %", ward_domain::quality::pct(degraded.loss_permille)),
            ));
            if let Some(rtt_us) = degraded.rtt_us {
                facts.push(("RTT", format!("{:.1} ms", f64::from(rtt_us) / 1000.0)));
            }
        }
        facts.push(("Since", rfc3339(alert.opened_at_ms)));
        facts.push((
            "Acknowledged",
            alert.acknowledged.as_ref().map_or_else(
                || "no".to_owned(),
                |ack| format!("by {} at {}: {}", ack.by, rfc3339(ack.at_ms), ack.comment),
            ),
        ));
        Self {
            headline: format!("[ward] {headline}"),
            facts,
            link: public_url.map(|base| super::dashboard_link(base, alert)),
            urgent: notification.kind == "firing",
        }
    }

    /// The facts as `label: value` lines.
    pub fn plain_facts(&self) -> String {
        self.facts
            .iter()
            .map(|(label, value)| format!("{label}: {value}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn slack(&self) -> Value {
        // mrkdwn: &, < and > are escaped, links are <url|text>.
        let escape = |text: &str| {
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut text = format!(
            "*{}*\n{}",
            escape(&self.headline),
            escape(&self.plain_facts())
        );
        if let Some(link) = &self.link {
            text.push_str(&format!("\n<{link}|Open in ward>"));
        }
        json!({
            "text": self.headline,
            "blocks": [{
                "type": "section",
                "text": { "type": "mrkdwn", "text": text },
            }],
        })
    }

    fn teams(&self) -> Value {
        let facts: Vec<Value> = self
            .facts
            .iter()
            .map(|(title, value)| json!({ "title": title, "value": value }))
            .collect();
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "text": self.headline,
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": true,
                    "color": if self.urgent { "Attention" } else { "Default" },
                },
                { "type": "FactSet", "facts": facts },
            ],
        });
        if let Some(link) = &self.link {
            card["actions"] =
                json!([{ "type": "Action.OpenUrl", "title": "Open in ward", "url": link }]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        })
    }

    fn telegram(&self, chat_id: &str) -> Value {
        let mut text = format!("{}\n\n{}", self.headline, self.plain_facts());
        if let Some(link) = &self.link {
            text.push_str(&format!("\n{link}"));
        }
        json!({ "chat_id": chat_id, "text": text })
    }

    fn ntfy(&self, topic: &str) -> Value {
        let mut body = json!({
            "topic": topic,
            "title": self.headline,
            "message": self.plain_facts(),
            // 5 is ntfy's "urgent", 3 its default.
            "priority": if self.urgent { 5 } else { 3 },
            "tags": [if self.urgent { "rotating_light" } else { "white_check_mark" }],
        });
        if let Some(link) = &self.link {
            body["click"] = link.as_str().into();
        }
        body
    }
}
