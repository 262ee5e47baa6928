//! The receivers with a delivery worker, the routes that choose among
//! them, what each receiver's deliveries came to (for `/metrics`), and
//! which of them failed their last round (for `/readyz`). Delivery itself
//! is `crate::notify`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ward_domain::model::Alert;
use ward_domain::routing::{Labels, Route, Routes, Routing};

use super::core::Core;
use crate::store::StoreError;

/// How long a receiver fails every delivery before `/readyz` names it,
/// unless `receiver_failing_after` says otherwise.
pub const DEFAULT_RECEIVER_FAILING_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A receiver as the API lists it: nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListedReceiver {
    /// Its name (routes name it; its outbox rows carry it).
    pub name: String,
    /// `webhook`, `alertmanager`, `slack`, `teams`, `telegram`, `ntfy`.
    pub kind: &'static str,
    /// Where it posts: scheme, host and port only.
    pub target: String,
}

/// What became of a notification for one receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (2xx).
    Sent,
    /// An attempt failed (retried).
    Failed,
    /// Held back: its device was in maintenance.
    Held,
    /// The routes send its alert elsewhere.
    NotRouted,
    /// A reminder or escalation whose alert was acknowledged or ended
    /// before it left.
    Superseded,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Sent,
        Outcome::Failed,
        Outcome::Held,
        Outcome::NotRouted,
        Outcome::Superseded,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::Held => "held",
            Outcome::NotRouted => "not_routed",
            Outcome::Superseded => "superseded",
        }
    }
}

/// The receivers and routes in force (replaced whole on a reload).
struct Configured {
    receivers: Vec<ListedReceiver>,
    /// Their names, in order: the channels with a worker.
    channels: Vec<String>,
    routes: Routes,
}

/// The configured receivers and routes.
pub struct Notifications {
    /// The store (the outbox), counters and feed (wake-ups).
    pub core: Arc<Core>,
    configured: RwLock<Arc<Configured>>,
    /// Per receiver (every one configured since the start), a counter per
    /// [`Outcome`].
    outcomes: RwLock<BTreeMap<String, Arc<[AtomicU64; 5]>>>,
    /// Channels whose delivery rounds have only failed, since when (Unix
    /// ms: the first such round).
    failing: RwLock<BTreeMap<String, i64>>,
    /// How long a receiver fails before `/readyz` names it.
    failing_after_ms: i64,
}

impl Notifications {
    /// Queues every new alert notification for `receivers` (and discards
    /// waiting ones of receivers no longer configured, with a warning);
    /// `routes` choose among them.
    pub async fn new(
        core: Arc<Core>,
        receivers: Vec<ListedReceiver>,
        routes: Vec<Route>,
        failing_after: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let notifications = Self {
            core,
            configured: RwLock::new(Arc::new(Configured {
                receivers: Vec::new(),
                channels: Vec::new(),
                routes: Routes::default(),
            })),
            outcomes: RwLock::default(),
            failing: RwLock::default(),
            failing_after_ms: i64::try_from(failing_after.as_millis()).unwrap_or(i64::MAX),
        };
        notifications.reconfigure(receivers, routes).await?;
        Ok(notifications)
    }

    /// Puts `receivers` and `routes` in force (a reload): new notifications
    /// are queued for these receivers; those waiting for a receiver still
    /// configured stay queued, those of one taken out are discarded (with a
    /// warning).
    pub async fn reconfigure(
        &self,
        receivers: Vec<ListedReceiver>,
        routes: Vec<Route>,
    ) -> Result<(), StoreError> {
        let channels: Vec<String> = receivers.iter().map(|r| r.name.clone()).collect();
        let names: Vec<&str> = channels.iter().map(String::as_str).collect();
        let discarded = self.core.store.set_notification_channels(&names).await?;
        if discarded > 0 {
            tracing::warn!(
                discarded,
                "notifications for channels no longer configured were discarded"
            );
        }
        {
            let mut outcomes = self
                .outcomes
                .write()
                .unwrap_or_else(|poison| poison.into_inner());
            for name in &channels {
                outcomes.entry(name.clone()).or_default();
            }
        }
        let configured = Configured {
            routes: Routes::new(routes, channels.clone()),
            channels,
            receivers,
        };
        *self
            .configured
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Arc::new(configured);
        Ok(())
    }

    fn configured(&self) -> Arc<Configured> {
        Arc::clone(
            &self
                .configured
                .read()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    /// The channels, by name.
    pub fn channels(&self) -> Vec<String> {
        self.configured().channels.clone()
    }

    /// The receivers, as the API lists them.
    pub fn receivers(&self) -> Vec<ListedReceiver> {
        self.configured().receivers.clone()
    }

    /// The routes, in order.
    pub fn routes(&self) -> Vec<Route> {
        self.configured().routes.routes().to_vec()
    }

    /// Who the routes send an alert with `labels` to, and why.
    pub fn route(&self, labels: &Labels) -> Routing {
        self.configured().routes.explain(labels)
    }

    /// Whether `receiver` gets `alert`'s notifications. With routes, the
    /// answer at its first notification is kept for the alert's life
    /// (its resolution goes where its firing went, whatever changed).
    pub async fn routes_to(&self, receiver: &str, alert: &Alert) -> Result<bool, StoreError> {
        let routes = &self.configured().routes;
        if routes.routes().is_empty() {
            return Ok(true);
        }
        let routed = routes.sends_to(&Labels::of(alert), receiver);
        self.core.store.route_once(alert.id, receiver, routed).await
    }

    /// Queues what is due at `now_ms` for the open alerts nobody has
    /// acknowledged: each route's reminder once per `repeat_every`, its
    /// escalation once (see `store::reminders`: once whichever controllers
    /// run this). Returns (reminders, escalations) queued.
    pub async fn chase(&self, now_ms: i64) -> Result<(u32, u32), StoreError> {
        let configured = self.configured();
        let routes = &configured.routes;
        if !routes.chases() {
            return Ok((0, 0));
        }
        let store = &self.core.store;
        let (mut reminded, mut escalated) = (0, 0);
        // Read once a round, so that only what is due takes a transaction
        // (which still decides, once across controllers).
        let states = store.reminder_states().await?;
        for alert in store.alerts(true).await? {
            // Held (maintenance), flapping (withheld until it settles),
            // acknowledged (someone has it): nobody is chased.
            if alert.resolved_at_ms.is_some()
                || alert.acknowledged.is_some()
                || alert.held
                || alert.flapping
            {
                continue;
            }
            for chase in routes.chase(&Labels::of(&alert), alert.opened_at_ms, now_ms) {
                let state = states.get(&(alert.id, chase.route));
                if let Some(due_before_ms) = chase.remind_if_before_ms
                    && state.is_none_or(|&(reminded_at_ms, _)| reminded_at_ms <= due_before_ms)
                    && store
                        .remind(
                            alert.id,
                            chase.route,
                            chase.receivers,
                            (now_ms, due_before_ms),
                        )
                        .await?
                {
                    reminded += 1;
                }
                if let Some(to) = chase.escalate_to
                    && !state.is_some_and(|&(_, escalated)| escalated)
                    && store
                        .escalate(alert.id, chase.route, to, (now_ms, alert.opened_at_ms))
                        .await?
                {
                    escalated += 1;
                    tracing::warn!(alert = alert.id, name = %alert.name, site = %alert.site, route = chase.route, receivers = ?to,
                        "alert not acknowledged in time: escalated");
                }
            }
        }
        let metrics = &self.core.metrics;
        metrics
            .reminders_queued
            .fetch_add(u64::from(reminded), Ordering::Relaxed);
        metrics
            .escalations_queued
            .fetch_add(u64::from(escalated), Ordering::Relaxed);
        if reminded + escalated > 0 {
            self.core.live.outbox_changed();
        }
        Ok((reminded, escalated))
    }

    /// Counts one notification's `outcome` at `receiver`.
    pub fn count(&self, receiver: &str, outcome: Outcome) {
        let outcomes = self
            .outcomes
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(counters) = outcomes.get(receiver) {
            let index = Outcome::ALL
                .iter()
                .position(|&o| o == outcome)
                .unwrap_or_default();
            counters[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `ward_notifications_total{receiver,outcome}`.
    pub fn write_prometheus(&self, text: &mut String) {
        let _ = writeln!(
            text,
            "# HELP ward_notifications_total Notifications by receiver and outcome (sent, failed: an attempt retried, held: maintenance, not_routed: the routes send it elsewhere, superseded: a reminder or escalation of an alert acknowledged or ended before it left).\n# TYPE ward_notifications_total counter"
        );
        let outcomes = self
            .outcomes
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        for (receiver, counters) in outcomes.iter() {
            for (outcome, counter) in Outcome::ALL.iter().zip(counters.iter()) {
                let _ = writeln!(
                    text,
                    "ward_notifications_total{{receiver=\"{receiver}\",outcome=\"{}\"}} {}",
                    outcome.as_str(),
                    counter.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Whether channel `name`'s last round only failed.
    pub fn failing(&self, name: &str) -> bool {
        self.failing
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains_key(name)
    }

    /// Notes whether channel `name`'s delivery round at `now_ms` only
    /// failed.
    pub fn set_failing(&self, name: &str, failing: bool, now_ms: i64) {
        let mut channels = self
            .failing
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if failing {
            channels.entry(name.to_owned()).or_insert(now_ms);
        } else {
            channels.remove(name);
        }
    }

    /// The receivers that have only failed for `receiver_failing_after` or
    /// longer at `now_ms`, with since when.
    pub fn failing_too_long(&self, now_ms: i64) -> Vec<(String, i64)> {
        self.failing
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .filter(|&(_, &since)| now_ms - since >= self.failing_after_ms)
            .map(|(name, &since)| (name.clone(), since))
            .collect()
    }
}
