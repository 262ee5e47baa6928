//! Alertmanager v2 (`POST /api/v2/alerts`). An alert is identified by its
//! labels: `alertname=DeviceDown` with `device`, `address`, `site`, `severity`, or
//! `alertname=AgentDown` with `agent`, `site`, `severity`. Firing alerts carry an
//! `endsAt` a few re-send intervals ahead, so Alertmanager resolves them by
//! itself if the controller goes away for good; they are re-sent every
//! interval while open. A resolved alert is sent with its real `endsAt`.
//! An acknowledged alert carries `acknowledged_by`, `acknowledged_at` and
//! `acknowledgement` annotations (sent at once, and with every re-send).
//!
//! A flapping device is `alertname=DeviceFlapping` (the device's labels):
//! firing from its `flapping` notification, re-sent while it flaps (its
//! `DeviceDown` is not, its changes being withheld), resolved by its
//! `settled` notification, which also sends its `DeviceDown` as it ended
//! (firing if still down, resolved if not).

use std::time::Duration;

use serde_json::{Value, json};

use crate::store::{Alert, AlertName, DueNotification};
use crate::time::rfc3339;

/// Firing alerts expire in Alertmanager after this many missed re-sends.
const MISSED_RESENDS_BEFORE_EXPIRY: u32 = 4;

/// An Alertmanager.
pub struct Alertmanager {
    /// The channel its outbox rows carry: `alertmanager`, then
    /// `alertmanager-2`, … for the other instances of a cluster.
    name: String,
    alerts_url: String,
    resend_interval: Duration,
    /// The dashboard's address, for each alert's `generatorURL`.
    public_url: Option<String>,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Alertmanager at `base_url` (e.g. `http://127.0.0.1:9093`), firing
    /// alerts re-sent every `resend_interval`.
    pub fn new(base_url: &str, resend_interval: Duration) -> Self {
        Self {
            name: "alertmanager".into(),
            alerts_url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            resend_interval,
            public_url: None,
            http: super::http_client(),
        }
    }

    /// The same, as instance `number` (from 1) of an Alertmanager cluster:
    /// each instance gets every alert (Alertmanager deduplicates), through
    /// outbox rows of its own, so one instance down holds back no other.
    pub fn instance(mut self, number: usize) -> Self {
        if number > 1 {
            self.name = format!("alertmanager-{number}");
        }
        self
    }

    /// The same as receiver `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Alerts carry `generatorURL`, the subject in the dashboard at
    /// `public_url`.
    pub fn linking(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.map(str::to_owned);
        self
    }

    /// Its channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How often firing alerts are sent again.
    pub fn resend_interval(&self) -> Duration {
        self.resend_interval
    }

    /// A firing alert's `endsAt` when sent at `now_ms`.
    fn expiry(&self, now_ms: i64) -> i64 {
        now_ms
            + i64::try_from(self.resend_interval.as_millis()).unwrap_or(i64::MAX / 8)
                * i64::from(MISSED_RESENDS_BEFORE_EXPIRY)
    }

    /// `DeviceFlapping` for `alert`'s device: firing while it flaps,
    /// resolved at `now_ms` once settled.
    fn flapping(&self, alert: &Alert, now_ms: i64) -> Value {
        let mut sent = json!({
            "labels": {
                "alertname": "DeviceFlapping",
                "device": alert.name,
                "address": alert.address,
                "site": alert.site,
                "severity": alert.severity.as_str(),
            },
            "annotations": {
                "summary": format!(
                    "{} ({}) at site {} is flapping: it keeps going down and up",
                    alert.name, alert.address, alert.site
                ),
            },
            "startsAt": rfc3339(alert.flap_started_at_ms.unwrap_or(alert.opened_at_ms)),
            "endsAt": rfc3339(if alert.flapping { self.expiry(now_ms) } else { now_ms }),
        });
        if let Some(public_url) = &self.public_url {
            sent["generatorURL"] = super::dashboard_link(public_url, alert).into();
        }
        sent
    }

    fn alert(&self, alert: &Alert, now_ms: i64) -> Value {
        self.alert_at(alert, alert.severity_label(), now_ms)
    }

    /// `alert` as Alertmanager gets it, with `severity` as its label.
    fn alert_at(&self, alert: &Alert, severity: &str, now_ms: i64) -> Value {
        let expires_ms = self.expiry(now_ms);
        let (labels, summary) = match alert.alertname {
            AlertName::DeviceDegraded => (
                json!({
                    "alertname": alert.alertname.as_str(),
                    "device": alert.name,
                    "address": alert.address,
                    "site": alert.site,
                    "severity": severity,
                }),
                format!(
                    "{} ({}) at site {} is degraded: its loss or round-trip time is over its thresholds",
                    alert.name, alert.address, alert.site
                ),
            ),
            AlertName::DeviceDown => (
                json!({
                    "alertname": alert.alertname.as_str(),
                    "device": alert.name,
                    "address": alert.address,
                    "site": alert.site,
                    "severity": alert.severity.as_str(),
                }),
                format!(
                    "{} ({}) at site {} is down",
                    alert.name, alert.address, alert.site
                ),
            ),
            AlertName::AgentDown => (
                json!({
                    "alertname": alert.alertname.as_str(),
                    "agent": alert.name,
                    "site": alert.site,
                    "severity": alert.severity.as_str(),
                }),
                format!(
                    "agent {} of site {} is offline or cannot probe its devices",
                    alert.name, alert.site
                ),
            ),
        };
        let mut annotations = json!({ "summary": summary });
        if let Some(degraded) = alert.degraded {
            annotations["loss_pct"] = ward_domain::quality::pct(degraded.loss_permille)
                .to_string()
                .into();
            if let Some(rtt_us) = degraded.rtt_us {
                annotations["rtt_ms"] = (f64::from(rtt_us) / 1000.0).to_string().into();
            }
        }
        if let Some(trace) = &alert.trace {
            annotations["last_hop"] = trace.last_hop.as_deref().unwrap_or("none").into();
            if let Some(device) = &trace.last_hop_device {
                annotations["last_hop_device"] = device.as_str().into();
            }
        }
        if let (Some(_), Some(reason)) = (alert.resolved_at_ms, &alert.resolved_reason) {
            annotations["resolution"] = reason.as_str().into();
        }
        if let Some(ack) = &alert.acknowledged {
            annotations["acknowledged_by"] = ack.by.as_str().into();
            annotations["acknowledged_at"] = rfc3339(ack.at_ms).into();
            annotations["acknowledgement"] = ack.comment.as_str().into();
        }
        let mut sent = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.opened_at_ms),
            "endsAt": rfc3339(alert.resolved_at_ms.unwrap_or(expires_ms)),
        });
        if let Some(public_url) = &self.public_url {
            sent["generatorURL"] = super::dashboard_link(public_url, alert).into();
        }
        sent
    }

    pub(super) async fn post(
        &self,
        notification: &DueNotification,
        now_ms: i64,
    ) -> Result<(), String> {
        let alert = &notification.alert;
        let body = match notification.kind.as_str() {
            "flapping" => json!([self.flapping(alert, now_ms)]),
            "settled" => json!([self.flapping(alert, now_ms), self.alert(alert, now_ms)]),
            // A degraded device's level changed: Alertmanager tells alerts
            // apart by their labels, so the one at the other severity ends.
            "updated" => {
                let mut ended = self.alert_at(alert, other_level(alert.severity_label()), now_ms);
                ended["endsAt"] = rfc3339(now_ms).into();
                json!([ended, self.alert(alert, now_ms)])
            }
            _ => json!([self.alert(alert, now_ms)]),
        };
        super::post_json(&self.http, &self.alerts_url, &body).await
    }

    /// Sends every open alert again (Alertmanager forgets alerts that are
    /// not refreshed), and `DeviceFlapping` for each device of `flapping`
    /// (its latest alert). Returns how many were sent.
    pub(super) async fn resend_open(
        &self,
        open: &[Alert],
        flapping: &[Alert],
        now_ms: i64,
    ) -> Result<usize, String> {
        let alerts: Vec<Value> = open
            .iter()
            // A held alert was never sent (its device is in maintenance); a
            // flapping device's changes are withheld until it settles.
            .filter(|alert| alert.resolved_at_ms.is_none() && !alert.held && !alert.flapping)
            .map(|alert| self.alert(alert, now_ms))
            .chain(
                flapping
                    .iter()
                    .filter(|alert| alert.flapping && !alert.held)
                    .map(|alert| self.flapping(alert, now_ms)),
            )
            .collect();
        let count = alerts.len();
        if count > 0 {
            super::post_json(&self.http, &self.alerts_url, &Value::Array(alerts)).await?;
        }
        Ok(count)
    }
}

/// The level a degraded alert was at before an update to `level`.
fn other_level(level: &str) -> &'static str {
    if level == "critical" {
        "warning"
    } else {
        "critical"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Acknowledgement, Severity};

    fn device_alert(acknowledged: Option<Acknowledgement>) -> Alert {
        Alert {
            trace: None,
            degraded: None,
            id: 5,
            alertname: AlertName::DeviceDown,
            device_id: Some(9),
            agent_id: None,
            name: "atm-1".into(),
            address: "198.18.1.10".into(),
            site: "branch-7".into(),
            severity: Severity::Critical,
            tags: vec!["atm".into()],
            parent: None,
            acknowledged,
            held: false,
            flapping: false,
            flap_started_at_ms: None,
            device_status: Some(crate::store::Status::Down),
            opened_at_ms: 1_000,
            resolved_at_ms: None,
            resolved_reason: None,
        }
    }

    #[test]
    fn labels_carry_the_severity_and_annotations_the_acknowledgement() {
        let alertmanager = Alertmanager::new("http://127.0.0.1:9", Duration::from_secs(60));
        let plain = alertmanager.alert(&device_alert(None), 2_000);
        assert_eq!(plain["labels"]["severity"], "critical");
        assert!(plain.get("generatorURL").is_none(), "no public_url");
        let linked = alertmanager
            .linking(Some("https://ward.bank.example/"))
            .alert(&device_alert(None), 2_000);
        assert_eq!(
            linked["generatorURL"],
            "https://ward.bank.example/?device=9"
        );
        let alertmanager = Alertmanager::new("http://127.0.0.1:9", Duration::from_secs(60));
        assert!(plain["annotations"].get("acknowledged_by").is_none());
        let acked = alertmanager.alert(
            &device_alert(Some(Acknowledgement {
                by: "user olga (token 3)".into(),
                at_ms: 1_500,
                comment: "INC-42".into(),
            })),
            2_000,
        );
        assert_eq!(acked["labels"], plain["labels"], "the same alert");
        assert_eq!(
            acked["annotations"]["acknowledged_by"],
            "user olga (token 3)"
        );
        assert_eq!(acked["annotations"]["acknowledgement"], "INC-42");
        assert_eq!(
            acked["annotations"]["acknowledged_at"],
            "1970-01-01T00:00:01.500Z"
        );
    }

    #[test]
    fn a_flapping_device_is_device_flapping_until_it_settles() {
        let alertmanager = Alertmanager::new("http://127.0.0.1:9", Duration::from_secs(60));
        let mut alert = Alert {
            flapping: true,
            flap_started_at_ms: Some(1_500),
            ..device_alert(None)
        };
        let flapping = alertmanager.flapping(&alert, 2_000);
        assert_eq!(flapping["labels"]["alertname"], "DeviceFlapping");
        assert_eq!(flapping["labels"]["device"], "atm-1");
        assert_eq!(flapping["startsAt"], "1970-01-01T00:00:01.500Z");
        assert_eq!(
            flapping["endsAt"],
            rfc3339(2_000 + 4 * 60_000),
            "expires unless re-sent"
        );
        alert.flapping = false;
        let settled = alertmanager.flapping(&alert, 9_000);
        assert_eq!(settled["labels"], flapping["labels"], "the same alert");
        assert_eq!(settled["endsAt"], "1970-01-01T00:00:09.000Z", "resolved");
    }

    #[test]
    fn a_traced_alert_names_its_last_hop_in_the_annotations_and_keeps_its_labels() {
        use ward_domain::trace::{Trace, TraceHop};
        let alertmanager = Alertmanager::new("http://127.0.0.1:9", Duration::from_secs(60));
        let plain = alertmanager.alert(&device_alert(None), 2_000);
        assert!(
            plain["annotations"].get("last_hop").is_none(),
            "not traced yet"
        );
        let mut trace = Trace::new(
            1_800,
            "198.18.1.10".into(),
            false,
            vec![TraceHop {
                ttl: 1,
                address: Some("198.18.0.2".into()),
                rtt_us: Some(300),
            }],
        );
        trace.last_hop_device = Some("core-router".into());
        let traced = alertmanager.alert(
            &Alert {
                trace: Some(trace),
                ..device_alert(None)
            },
            2_000,
        );
        assert_eq!(traced["labels"], plain["labels"], "the same alert");
        assert_eq!(traced["annotations"]["last_hop"], "198.18.0.2");
        assert_eq!(traced["annotations"]["last_hop_device"], "core-router");
    }
}
