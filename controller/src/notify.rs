//! The outbox worker: delivers notifications to a generic JSON webhook.
//! A row leaves the outbox only after a 2xx; a failure is counted, logged
//! and retried with exponential backoff. Per alert, order is kept: a
//! `resolved` is never sent before its `firing`. Delivery is at least
//! once; every message carries the outbox id as its idempotency key.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tracing::warn;

use crate::state::Controller;
use crate::store::{DueNotification, StoreError};
use crate::time::{now_ms, rfc3339};

/// Notifications fetched per round.
const BATCH: u32 = 500;
/// Longest pause between rounds when nothing wakes the worker.
const POLL: Duration = Duration::from_millis(500);
/// A webhook answer slower than this is a failed attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF_MS`].
const BASE_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 60_000;

/// A generic JSON webhook.
pub struct Webhook {
    url: String,
    http: reqwest::Client,
}

/// What one delivery round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Delivered and removed from the outbox.
    pub delivered: u32,
    /// Attempts that failed (rescheduled).
    pub failed: u32,
    /// Held back behind an earlier failed message of the same alert.
    pub held: u32,
}

impl Webhook {
    /// Posts to `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
        }
    }

    async fn post(&self, notification: &DueNotification) -> Result<(), String> {
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
        });
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|error| format!("POST {}: {error}", self.url))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST {}: HTTP {}", self.url, response.status()))
        }
    }
}

/// When to try a notification again after `attempts` failures.
pub fn retry_at(now_ms: i64, attempts: u32) -> i64 {
    let factor = 1i64 << attempts.min(16);
    now_ms + (BASE_BACKOFF_MS * factor).min(MAX_BACKOFF_MS)
}

/// Delivers every notification due at `now_ms`, once.
pub async fn deliver_due(
    controller: &Controller,
    webhook: &Webhook,
    now_ms: i64,
) -> Result<Round, StoreError> {
    let due = controller
        .store
        .due_notifications(now_ms, BATCH)
        .await
        .map_err(|error| controller.store_failed(error))?;
    let mut round = Round::default();
    let mut held_alerts = HashSet::new();
    for notification in due {
        if held_alerts.contains(&notification.alert_id) {
            round.held += 1;
            continue;
        }
        match webhook.post(&notification).await {
            Ok(()) => {
                controller
                    .store
                    .notification_delivered(notification.id)
                    .await?;
                controller
                    .metrics
                    .notifications_sent
                    .fetch_add(1, Ordering::Relaxed);
                round.delivered += 1;
            }
            Err(error) => {
                let retry = retry_at(now_ms, notification.attempts);
                controller
                    .store
                    .notification_failed(notification.id, retry, &error)
                    .await?;
                controller
                    .metrics
                    .notifications_failed
                    .fetch_add(1, Ordering::Relaxed);
                warn!(notification = notification.id, alert = notification.alert_id, %error, "notification not delivered; will retry");
                held_alerts.insert(notification.alert_id);
                round.failed += 1;
            }
        }
    }
    controller
        .metrics
        .notifier_failing
        .store(round.failed > 0 && round.delivered == 0, Ordering::Relaxed);
    Ok(round)
}

/// Delivers notifications until `shutdown` completes: woken right after
/// commits that queue notifications, and every [`POLL`] for retries.
pub async fn run(
    controller: Arc<Controller>,
    webhook: Webhook,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(error) = deliver_due(&controller, &webhook, now_ms()).await {
            warn!(%error, "notification round failed; retrying");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = controller.outbox_wakeup.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
