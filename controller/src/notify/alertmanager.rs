//! Alertmanager v2 (`POST /api/v2/alerts`). An alert is identified by its
//! labels (`alertname=DeviceDown`, `device`, `address`, `site`). Firing
//! alerts carry an `endsAt` a few re-send intervals ahead, so Alertmanager
//! resolves them by itself if the controller goes away for good; they are
//! re-sent every interval while open. A resolved alert is sent with its
//! real `endsAt`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::store::{Alert, Device, DueNotification};
use crate::time::rfc3339;

/// Firing alerts expire in Alertmanager after this many missed re-sends.
const MISSED_RESENDS_BEFORE_EXPIRY: u32 = 4;

/// An Alertmanager.
pub struct Alertmanager {
    alerts_url: String,
    resend_interval: Duration,
    http: reqwest::Client,
}

/// What one alert needs.
struct AlertLabels<'a> {
    device: &'a str,
    address: &'a str,
    site: &'a str,
    opened_at_ms: i64,
    resolved_at_ms: Option<i64>,
}

impl Alertmanager {
    /// Alertmanager at `base_url` (e.g. `http://127.0.0.1:9093`), firing
    /// alerts re-sent every `resend_interval`.
    pub fn new(base_url: &str, resend_interval: Duration) -> Self {
        Self {
            alerts_url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            resend_interval,
            http: super::http_client(),
        }
    }

    /// How often firing alerts are sent again.
    pub fn resend_interval(&self) -> Duration {
        self.resend_interval
    }

    fn alert(&self, alert: &AlertLabels<'_>, now_ms: i64) -> Value {
        let expires_ms = now_ms
            + i64::try_from(self.resend_interval.as_millis()).unwrap_or(i64::MAX / 8)
                * i64::from(MISSED_RESENDS_BEFORE_EXPIRY);
        json!({
            "labels": {
                "alertname": "DeviceDown",
                "device": alert.device,
                "address": alert.address,
                "site": alert.site,
            },
            "annotations": {
                "summary": format!("{} ({}) at site {} is down", alert.device, alert.address, alert.site),
            },
            "startsAt": rfc3339(alert.opened_at_ms),
            "endsAt": rfc3339(alert.resolved_at_ms.unwrap_or(expires_ms)),
        })
    }

    pub(super) async fn post(
        &self,
        notification: &DueNotification,
        now_ms: i64,
    ) -> Result<(), String> {
        let alert = AlertLabels {
            device: &notification.device_name,
            address: &notification.address,
            site: &notification.site,
            opened_at_ms: notification.opened_at_ms,
            resolved_at_ms: notification.resolved_at_ms,
        };
        let body = json!([self.alert(&alert, now_ms)]);
        super::post_json(&self.http, &self.alerts_url, &body).await
    }

    /// Sends every open alert again (Alertmanager forgets alerts that are
    /// not refreshed). Returns how many were sent.
    pub(super) async fn resend_open(
        &self,
        open: &[Alert],
        devices: &[Device],
        now_ms: i64,
    ) -> Result<usize, String> {
        let by_id: std::collections::HashMap<i64, &Device> =
            devices.iter().map(|device| (device.id, device)).collect();
        let addresses: Vec<String> = open
            .iter()
            .map(|alert| {
                by_id
                    .get(&alert.device_id)
                    .map_or_else(String::new, |d| d.spec.address.to_string())
            })
            .collect();
        let alerts: Vec<Value> = open
            .iter()
            .zip(&addresses)
            .filter_map(|(alert, address)| {
                let device = by_id.get(&alert.device_id)?;
                Some(self.alert(
                    &AlertLabels {
                        device: &device.spec.name,
                        address,
                        site: &device.spec.site,
                        opened_at_ms: alert.opened_at_ms,
                        resolved_at_ms: None,
                    },
                    now_ms,
                ))
            })
            .collect();
        let count = alerts.len();
        if count > 0 {
            super::post_json(&self.http, &self.alerts_url, &Value::Array(alerts)).await?;
        }
        Ok(count)
    }
}
