//! The generic JSON webhook: one POST per notification, with the outbox id
//! as its idempotency key.

use serde_json::json;

use crate::store::DueNotification;
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
        let body = json!({
            "id": notification.id,
            "kind": notification.kind,
            "alert_id": notification.alert_id,
            "device": {
                "id": notification.device_id,
                "name": notification.device_name,
                "address": notification.address,
                "site": notification.site,
            },
            "opened_at": rfc3339(notification.opened_at_ms),
            "resolved_at": notification.resolved_at_ms.map(rfc3339),
            "resolved_reason": notification.resolved_reason,
        });
        super::post_json(&self.http, &self.url, &body).await
    }
}
