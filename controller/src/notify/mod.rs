//! The outbox workers: one per configured receiver (a generic JSON
//! webhook, Alertmanager v2, Slack, Teams, Telegram, ntfy, e-mail), each with its
//! own outbox rows, so one receiver being down never holds back another;
//! each sends only what the routes give it. A row leaves the outbox only after a
//! 2xx; a failure is counted, logged and retried with exponential backoff.
//! Per alert, order is kept: a `resolved` is never sent before its
//! `firing`. Delivery is at least once.

mod alertmanager;
mod chat;
mod email;
mod webhook;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

pub use alertmanager::Alertmanager;
pub use chat::{Chat, Message};
pub use email::Email;
pub use webhook::Webhook;
pub use workers::Workers;

use crate::services::{Cluster, Maintenance, Notifications, Outcome};
use crate::store::{DueNotification, StoreError};
use crate::time::now_ms;
use ward_domain::maintenance::{OpenWindow, holds_back};

/// Notifications fetched per round.
const BATCH: u32 = 500;
/// Longest pause between rounds when nothing wakes the worker.
const POLL: Duration = Duration::from_millis(500);
/// A receiver's answer slower than this is a failed attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF_MS`].
const BASE_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 60_000;

/// Where notifications go.
pub enum Channel {
    /// A generic JSON webhook.
    Webhook(Webhook),
    /// An Alertmanager.
    Alertmanager(Alertmanager),
    /// Slack, Teams, Telegram or ntfy.
    Chat(Chat),
    /// E-mail over SMTP.
    Email(Email),
}

impl Channel {
    /// The channel of `receiver`; links to the dashboard at `public_url`,
    /// an Alertmanager's firing alerts re-sent every `resend`.
    pub fn for_receiver(
        receiver: &crate::config::Receiver,
        public_url: Option<&str>,
        resend: Duration,
    ) -> Result<Self, String> {
        use crate::config::ReceiverKind;
        Ok(match (receiver.kind, &receiver.email) {
            (ReceiverKind::Webhook, _) => Channel::Webhook(
                Webhook::new(&receiver.url)
                    .named(&receiver.name)
                    .linking(public_url),
            ),
            (ReceiverKind::Alertmanager, _) => Channel::Alertmanager(
                Alertmanager::new(&receiver.url, resend)
                    .named(&receiver.name)
                    .linking(public_url),
            ),
            (ReceiverKind::Email, Some(email)) => {
                Channel::Email(Email::new(&receiver.name, email, public_url)?)
            }
            (ReceiverKind::Email, None) => {
                return Err(format!("receiver {}: no SMTP settings", receiver.name));
            }
            _ => Channel::Chat(Chat::new(receiver.clone(), public_url)),
        })
    }

    /// The name its outbox rows carry: its receiver's.
    pub fn name(&self) -> &str {
        match self {
            Channel::Webhook(webhook) => webhook.name(),
            Channel::Alertmanager(alertmanager) => alertmanager.name(),
            Channel::Chat(chat) => chat.name(),
            Channel::Email(email) => email.name(),
        }
    }

    async fn post(&self, notification: &DueNotification, now_ms: i64) -> Result<(), String> {
        match self {
            Channel::Webhook(webhook) => webhook.post(notification).await,
            Channel::Alertmanager(alertmanager) => alertmanager.post(notification, now_ms).await,
            Channel::Chat(chat) => chat.post(notification).await,
            Channel::Email(email) => email.post(notification).await,
        }
    }
}

/// What the API and the webhook both show of `alert`: its name, times,
/// severity, acknowledgement, and its subject (`device` or `agent`).
pub fn alert_view(alert: &crate::store::Alert) -> serde_json::Value {
    use crate::time::rfc3339;
    use serde_json::json;
    let mut view = json!({
        "alertname": alert.alertname.as_str(),
        "opened_at": rfc3339(alert.opened_at_ms),
        "resolved_at": alert.resolved_at_ms.map(rfc3339),
        "resolved_reason": alert.resolved_reason,
        "severity": alert.severity_label(),
        "acknowledged": alert.acknowledged.as_ref().map(|ack| json!({
            "by": ack.by,
            "at": rfc3339(ack.at_ms),
            "comment": ack.comment,
        })),
    });
    match alert.alertname {
        crate::store::AlertName::DeviceDown | crate::store::AlertName::DeviceDegraded => {
            view["device"] = json!({
                "id": alert.device_id,
                "name": alert.name,
                "address": alert.address,
                "site": alert.site,
                "status": alert.device_status.map(crate::store::Status::as_str),
                "flapping": alert.flapping,
            });
            if alert.alertname == crate::store::AlertName::DeviceDegraded {
                let degraded = alert.degraded;
                view["loss_pct"] = degraded
                    .map(|degraded| ward_domain::quality::pct(degraded.loss_permille))
                    .into();
                view["rtt_ms"] = degraded
                    .and_then(|degraded| degraded.rtt_us)
                    .map(|us| f64::from(us) / 1000.0)
                    .into();
            }
        }
        crate::store::AlertName::AgentDown => {
            view["agent"] = json!({ "id": alert.name, "site": alert.site });
        }
    }
    if let Some(trace) = &alert.trace {
        view["trace"] = trace_view(trace);
    }
    view
}

/// A trace as APIs and notifications show it: `{hops: [{ttl, address,
/// rtt_ms}], last_hop, last_hop_device, target, reached, traced_at}`.
pub fn trace_view(trace: &ward_domain::trace::Trace) -> serde_json::Value {
    serde_json::json!({
        "hops": trace.hops.iter().map(|hop| serde_json::json!({
            "ttl": hop.ttl,
            "address": hop.address,
            "rtt_ms": hop.rtt_us.map(|us| f64::from(us) / 1000.0),
        })).collect::<Vec<_>>(),
        "last_hop": trace.last_hop,
        "last_hop_device": trace.last_hop_device,
        "target": trace.target,
        "reached": trace.reached,
        "traced_at": crate::time::rfc3339(trace.traced_at_ms),
    })
}

/// Where the dashboard shows `alert`'s subject, under `public_url`: the
/// device (`/?device=ID`), or an agent's site (`/?site=NAME`).
fn dashboard_link(public_url: &str, alert: &crate::store::Alert) -> String {
    let base = public_url.trim_end_matches('/');
    match (alert.alertname, alert.device_id) {
        (name, Some(id)) if name.is_device() => format!("{base}/?device={id}"),
        _ => format!("{base}/?site={}", query_value(&alert.site)),
    }
}

/// `text` percent-encoded for a URL query value (unreserved bytes kept).
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// POSTs `body`; anything but a 2xx is an error naming the URL.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let response = http.post(url).json(body).send().await.map_err(|error| {
        format!(
            "POST {}: {}",
            ward_settings::redact_secrets(url),
            error.without_url()
        )
    })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "POST {}: HTTP {}",
            ward_settings::redact_secrets(url),
            response.status()
        ))
    }
}

/// What one delivery round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Delivered and removed from the outbox.
    pub delivered: u32,
    /// Attempts that failed (rescheduled).
    pub failed: u32,
    /// Held back by maintenance and dropped (see `store::held`).
    pub held: u32,
}

/// When to try a notification again after `attempts` failures.
pub fn retry_at(now_ms: i64, attempts: u32) -> i64 {
    let factor = 1i64 << attempts.min(16);
    now_ms + (BASE_BACKOFF_MS * factor).min(MAX_BACKOFF_MS)
}

/// Delivers every notification of `channel` due at `now_ms`. At most one
/// notification per alert is due at a time (its oldest waiting one): a
/// failure holds the alert's later ones back until it is delivered, and a
/// delivery makes the next one due, so passes repeat while they deliver.
pub async fn deliver_due(
    notifications: &Notifications,
    maintenance: &Maintenance,
    channel: &Channel,
    now_ms: i64,
) -> Result<Round, StoreError> {
    let core = &notifications.core;
    let open = maintenance.open_windows();
    let mut round = Round::default();
    let started = Instant::now();
    // Taken notifications are this controller's for the claim only: a
    // round that has run for half of it stops and hands the rest back.
    let claim = Duration::from_millis(crate::store::NOTIFICATION_CLAIM_MS.unsigned_abs() / 2);
    loop {
        let due = core
            .store
            .due_notifications(channel.name(), now_ms, BATCH)
            .await?;
        let done_before = round.delivered + round.held;
        for (index, notification) in due.iter().enumerate() {
            if started.elapsed() > claim {
                let rest: Vec<i64> = due[index..].iter().map(|rest| rest.id).collect();
                core.store.release_notifications(&rest, now_ms).await?;
                break;
            }
            deliver(
                notifications,
                &open,
                channel,
                notification,
                now_ms,
                &mut round,
            )
            .await?;
        }
        if due.is_empty()
            || round.delivered + round.held == done_before
            || started.elapsed() > claim
        {
            break;
        }
    }
    notifications.set_failing(
        channel.name(),
        round.failed > 0 && round.delivered == 0,
        now_ms,
    );
    Ok(round)
}

/// One delivery attempt: a 2xx removes the notification from the outbox,
/// anything else schedules a retry with backoff. One held back by
/// maintenance is dropped (counted; its alert marked held), as is one the
/// routes send elsewhere (counted).
async fn deliver(
    notifications: &Notifications,
    open: &[OpenWindow],
    channel: &Channel,
    notification: &DueNotification,
    now_ms: i64,
    round: &mut Round,
) -> Result<(), StoreError> {
    let core = &notifications.core;
    if holds_back(open, notification) {
        core.store
            .hold_notification(notification.id, notification.alert.id)
            .await?;
        core.metrics
            .notifications_held
            .fetch_add(1, Ordering::Relaxed);
        notifications.count(channel.name(), Outcome::Held);
        tracing::info!(channel = channel.name(), notification = notification.id, alert = notification.alert.id, kind = %notification.kind, "notification held back: the device is in maintenance");
        round.held += 1;
        return Ok(());
    }
    let chasing = matches!(notification.kind.as_str(), "reminder" | "escalated");
    let alert = &notification.alert;
    if chasing && (alert.acknowledged.is_some() || alert.resolved_at_ms.is_some()) {
        core.store.notification_delivered(notification.id).await?;
        notifications.count(channel.name(), Outcome::Superseded);
        round.held += 1;
        return Ok(());
    }
    if !notifications
        .routes_to(channel.name(), &notification.alert)
        .await?
    {
        core.store.notification_delivered(notification.id).await?;
        notifications.count(channel.name(), Outcome::NotRouted);
        tracing::debug!(
            channel = channel.name(),
            notification = notification.id,
            alert = notification.alert.id,
            "notification not sent: the routes send its alert elsewhere"
        );
        round.held += 1;
        return Ok(());
    }
    match channel.post(notification, now_ms).await {
        Ok(()) => {
            core.store.notification_delivered(notification.id).await?;
            core.metrics
                .notifications_sent
                .fetch_add(1, Ordering::Relaxed);
            notifications.count(channel.name(), Outcome::Sent);
            round.delivered += 1;
        }
        Err(error) => {
            let retry = retry_at(now_ms, notification.attempts);
            core.store
                .notification_failed(notification.id, retry, &error)
                .await?;
            core.metrics
                .notifications_failed
                .fetch_add(1, Ordering::Relaxed);
            notifications.count(channel.name(), Outcome::Failed);
            warn!(channel = channel.name(), notification = notification.id, alert = notification.alert.id, %error, "notification not delivered; will retry");
            round.failed += 1;
        }
    }
    Ok(())
}

/// Sends every open alert to `alertmanager` again.
pub async fn resend_open_alerts(
    notifications: &Notifications,
    alertmanager: &Alertmanager,
    now_ms: i64,
) -> Result<usize, String> {
    let core = &notifications.core;
    let read = async {
        let open = core.store.alerts(true).await?;
        let flapping = core.store.flapping_alerts().await?;
        Ok((open, flapping))
    };
    let (open, flapping) = read.await.map_err(|error: StoreError| error.to_string())?;
    alertmanager.resend_open(&open, &flapping, now_ms).await
}

/// Delivers `channel`'s notifications until `shutdown` completes: woken
/// right after commits that queue notifications, and every [`POLL`] for
/// retries. An Alertmanager also gets every open alert again each
/// re-send interval.
pub async fn run(
    notifications: Arc<Notifications>,
    maintenance: Arc<Maintenance>,
    cluster: Arc<Cluster>,
    channel: Channel,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut wakeups = notifications.core.live.outbox_wakeups();
    let mut next_resend = Instant::now();
    loop {
        if let Err(error) = deliver_due(&notifications, &maintenance, &channel, now_ms()).await {
            warn!(channel = channel.name(), %error, "notification round failed; retrying");
        }
        // One controller of a cluster re-sends (it renews its lease every
        // round); another takes over when it dies.
        if let Channel::Alertmanager(alertmanager) = &channel
            && cluster
                .holds(&crate::services::Lease::Resend(alertmanager.name().to_owned()).name())
                .await
            && Instant::now() >= next_resend
        {
            next_resend = Instant::now() + alertmanager.resend_interval();
            if let Err(error) = resend_open_alerts(&notifications, alertmanager, now_ms()).await {
                notifications
                    .core
                    .metrics
                    .notifications_failed
                    .fetch_add(1, Ordering::Relaxed);
                warn!(%error, "re-sending open alerts to Alertmanager failed; next try in one interval");
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            _ = wakeups.changed() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
