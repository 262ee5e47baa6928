//! The generic JSON webhook: one POST per notification, with the outbox id
//! as its idempotency key.

use serde_json::json;

use crate::store::{AlertName, DueNotification};
use crate::time::rfc3339;

/// A generic JSON webhook.
pub struct Webhook {
    url: String,
    /// The dashboard's address, for each body's `url`.
    public_url: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    /// Posts to `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            public_url: None,
            http: super::http_client(),
        }
    }

    /// Bodies carry `url`, the subject in the dashboard at `public_url`.
    pub fn linking(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.map(str::to_owned);
        self
    }

    pub(super) async fn post(&self, notification: &DueNotification) -> Result<(), String> {
        let alert = &notification.alert;
        let mut body = json!({
            "id": notification.id,
            "kind": notification.kind,
            "alertname": alert.alertname.as_str(),
            "alert_id": alert.id,
            "opened_at": rfc3339(alert.opened_at_ms),
            "resolved_at": alert.resolved_at_ms.map(rfc3339),
            "resolved_reason": alert.resolved_reason,
            "severity": alert.severity.as_str(),
            "url": self
                .public_url
                .as_deref()
                .map(|public_url| super::dashboard_link(public_url, alert)),
            "acknowledged": alert.acknowledged.as_ref().map(|ack| json!({
                "by": ack.by,
                "at": rfc3339(ack.at_ms),
                "comment": ack.comment,
            })),
        });
        match alert.alertname {
            AlertName::DeviceDown => {
                body["device"] = json!({
                    "id": alert.device_id,
                    "name": alert.name,
                    "address": alert.address,
                    "site": alert.site,
                });
            }
            AlertName::AgentDown => {
                body["agent"] = json!({ "id": alert.name, "site": alert.site });
            }
        }
        super::post_json(&self.http, &self.url, &body).await
    }
}
