//! The generic JSON webhook: one POST per notification, with the outbox id
//! as its idempotency key.

use crate::store::DueNotification;

/// A generic JSON webhook.
pub struct Webhook {
    /// Its receiver's name (`webhook` for the `webhook` key).
    name: String,
    url: String,
    /// The dashboard's address, for each body's `url`.
    public_url: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    /// Posts to `url`.
    pub fn new(url: &str) -> Self {
        Self {
            name: "webhook".into(),
            url: url.to_owned(),
            public_url: None,
            http: super::http_client(),
        }
    }

    /// The same as receiver `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Its receiver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bodies carry `url`, the subject in the dashboard at `public_url`.
    pub fn linking(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.map(str::to_owned);
        self
    }

    pub(super) async fn post(&self, notification: &DueNotification) -> Result<(), String> {
        let alert = &notification.alert;
        let mut body = super::alert_view(alert);
        body["id"] = notification.id.into();
        body["kind"] = notification.kind.as_str().into();
        body["alert_id"] = alert.id.into();
        body["url"] = self
            .public_url
            .as_deref()
            .map(|public_url| super::dashboard_link(public_url, alert))
            .into();
        super::post_json(&self.http, &self.url, &body).await
    }
}
