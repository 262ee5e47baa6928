//! The generic JSON webhook: one POST per notification, with the outbox id
//! as its idempotency key.

use serde_json::json;

use crate::store::{AlertName, DueNotification};
use crate::time::rfc3339;

/// A generic JSON webhook.
pub struct Webhook {
    url: String,
    http: reqwest::Client,
}

impl Webhook {
    /// Posts to `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            http: super::http_client(),
        }
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
