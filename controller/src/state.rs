//! What every read and write path shares: the store, the cache, and the
//! counters. Every write (agent report, inventory change) goes through a
//! method here, which runs it to its end in a task of its own (a caller
//! that goes away cannot stop it half-way; the store moved the data
//! version on in the write's own transaction), then publishes what changed. A
//! failure after the commit never turns the committed write into an error:
//! it is counted and logged, and live subscribers are told to resync.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::agents::{Presence, Presences, grace_period};
use crate::cache::Cache;
use crate::store::{
    AckOutcome, Actor, AgentAlertChange, AgentRecord, ApplyOutcome, Device, DeviceSpec,
    MaintenanceSpec, MaintenanceWindow, ReportedTransition, Severity, Status, StatusChanges, Store,
    StoreError, SyncDiff, SyncMode, TransitionReport,
};
use crate::store::{Announcement, CONTROLLER_REPORTS, ControllerMember};
use crate::tsdb::{DeviceLabels, DeviceSample, SampleBatch, StatisticsReport, Tsdb, WriterStopped};
use ward_domain::maintenance::OpenWindow;

/// Enabled devices by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Up.
    pub up: u64,
    /// Down.
    pub down: u64,
    /// Unreachable.
    pub unreachable: u64,
    /// Unknown.
    pub unknown: u64,
    /// All enabled devices.
    pub total: u64,
    /// Enabled devices in an open maintenance window (counted in their
    /// status too).
    pub in_maintenance: u64,
}

/// A committed status change: the device after it, and its status before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEvent {
    /// The device after the change.
    pub device: Device,
    /// Its status before.
    pub previous: Status,
    /// The data version the change was committed at (commit order).
    pub version: Option<i64>,
    /// The last change of that version: a client that saw it has seen
    /// every change up to the version (the event stream's `id:`).
    pub closes_version: bool,
}

/// Statistics that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StatisticsError {
    /// The device list could not be read for labels.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The time-series writer has stopped.
    #[error(transparent)]
    Stopped(#[from] WriterStopped),
}

/// What live subscribers (SSE, gRPC `WatchStatus`) receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveEvent {
    /// A committed status change.
    Status(Box<StatusEvent>),
    /// Changes were committed that could not be published one by one:
    /// reload the lists.
    Resync,
}

/// Controller-wide counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Store operations that failed.
    pub store_errors: AtomicU64,
    /// Status changes committed.
    pub transitions_applied: AtomicU64,
    /// Reports that were replays of applied ones.
    pub reports_replayed: AtomicU64,
    /// Live-event subscribers that fell behind and were told to resync.
    pub event_subscribers_lagged: AtomicU64,
    /// Notifications delivered (2xx).
    pub notifications_sent: AtomicU64,
    /// Notification delivery attempts that failed.
    pub notifications_failed: AtomicU64,
    /// Notifications held back (dropped) because their device was in
    /// maintenance.
    pub notifications_held: AtomicU64,
    /// Held alerts released when their maintenance ended (their `firing`
    /// queued).
    pub held_alerts_released: AtomicU64,
    /// Alert changes of flapping devices whose notification was withheld
    /// (their settled status is sent once they are stable).
    pub notifications_withheld: AtomicU64,
    /// Flapping devices that settled (their `settled` queued).
    pub flapping_settled: AtomicU64,
    /// Channels whose last delivery round only failed.
    failing_channels: std::sync::RwLock<std::collections::BTreeSet<String>>,
    /// Report entries ignored (stale, unknown device, no change, not the
    /// owner).
    pub transitions_ignored: AtomicU64,
    /// Of those, reported by an agent that does not own the device.
    pub transitions_not_owner: AtomicU64,
    /// Devices given to another agent of their site (lost owner,
    /// rebalance).
    pub device_owner_changes: AtomicU64,
    /// Statistics entries for devices the store does not know.
    pub statistics_ignored: AtomicU64,
    /// Report entries refused on an agent link (not assigned, unknown,
    /// malformed).
    pub report_entries_rejected: AtomicU64,
    /// Sites whose devices were made `unknown` because no agent was
    /// connected for the grace period.
    pub sites_marked_unknown: AtomicU64,
    /// Work after a commit that failed (reading changed devices back for
    /// live events); the write itself stood, subscribers were told to
    /// resync.
    pub post_commit_failures: AtomicU64,
    /// Offline sites whose `unknown` could not be committed (tried again
    /// at the next sweep).
    pub offline_sweep_failures: AtomicU64,
    /// gRPC connections whose TLS handshake failed (a refused or missing
    /// certificate, a client that gave up).
    pub grpc_handshake_failures: AtomicU64,
    /// HTTPS connections whose TLS handshake failed.
    pub https_handshake_failures: AtomicU64,
    /// Requests refused for want of a principal or a role (audited).
    pub access_refused: AtomicU64,
}

/// The controller's shared state.
pub struct Controller {
    /// The status database.
    pub store: Store,
    /// The read cache.
    pub cache: Cache,
    /// Counters.
    pub metrics: Metrics,
    /// Committed status changes, for live events.
    events: tokio::sync::broadcast::Sender<LiveEvent>,
    /// Set when the controller shuts down: long-lived streams (agent links,
    /// live events) end, so the servers can stop.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Bumped after every committed change to the device inventory, so
    /// agent links send assignment updates.
    inventory_changes: tokio::sync::watch::Sender<u64>,
    /// How many agent certificates were ever revoked, as last read from
    /// the store ([`crate::jobs::Job::RevocationPoll`]): links re-check theirs on change.
    revocations: tokio::sync::watch::Sender<i64>,
    /// Bumped after commits that may have queued notifications.
    outbox_wakeup: tokio::sync::watch::Sender<()>,
    /// The maintenance windows open now (re-read every
    /// [`crate::jobs::MAINTENANCE_REFRESH`], and after this controller changes one).
    open_windows: tokio::sync::watch::Sender<Arc<Vec<OpenWindow>>>,
    /// When set, REST calls that change data must carry it as a bearer token.
    pub api_token: Option<String>,
    /// Reads need no principal (`anonymous_read = true`; off by default).
    pub anonymous_read: bool,
    /// What `/metrics` requires (`metrics_access`: open, or a viewer).
    pub metrics_access: crate::access::Access,
    /// The dashboard's logins: limits, counters, failures per address.
    pub logins: crate::login::Logins,
    /// `/readyz` is degraded while a certificate expires within this
    /// (`certificate_warning_days`, 14 by default), ms.
    pub certificate_warning_ms: i64,
    /// When each certificate in use expires (Unix ms): the controller's,
    /// and each agent's as last presented.
    #[allow(
        clippy::disallowed_types,
        reason = "touched once per TLS load and agent link, never on the probe path"
    )]
    certificates: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
    /// The time-series writer, when VictoriaMetrics is configured.
    pub tsdb: Option<Tsdb>,
    /// Which agents are connected, with heartbeats and counters.
    #[allow(
        clippy::disallowed_types,
        reason = "short critical sections on link events, never on the probe path"
    )]
    presences: std::sync::Mutex<Presences>,
    /// When this controller started, Unix ms.
    started_ms: i64,
    /// A random id of this controller process, as the other controllers
    /// on the database know it (shared presence, leases).
    pub instance: String,
    /// How long a dead controller's lease outlives it (`failover_delay`).
    failover_delay: std::time::Duration,
    /// How long an agent goes unheard before its devices move
    /// (`agent_failover_delay`).
    agent_failover_delay: std::time::Duration,
    /// Lost agents whose group covers for them and whose `AgentDown` was
    /// opened in this absence.
    #[allow(
        clippy::disallowed_types,
        reason = "touched by one task twice a second"
    )]
    lost_agents: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Agent reports hold it shared; the offline sweep holds it alone from
    /// its presence check to its commit.
    offline_gate: tokio::sync::RwLock<()>,
    /// REST latency per route.
    pub api_latency: crate::api::ApiLatency,
    /// For reading history back from VictoriaMetrics.
    pub http: reqwest::Client,
    /// Notification channels with a worker (`webhook`, `alertmanager`,
    /// `alertmanager-2`, …).
    pub notification_channels: Vec<String>,
    /// When a device is flapping (`flap_changes`, `flap_window`).
    pub flapping: crate::store::FlapPolicy,
}

/// How long a dead controller's leases outlive it by default.
pub const DEFAULT_FAILOVER_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// A status commit slower than this is logged.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Status changes buffered per live-event subscriber before it must resync.
const EVENT_BUFFER: usize = 16_384;

/// Which devices to list; `None` does not filter.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceFilter<'a> {
    /// In this status.
    pub status: Option<Status>,
    /// Of this site.
    pub site: Option<&'a str>,
    /// Whose name, address or a tag contains this (case-insensitive).
    pub query: Option<&'a str>,
    /// Of this severity.
    pub severity: Option<Severity>,
    /// Carrying this tag.
    pub tag: Option<&'a str>,
}

impl Controller {
    /// A controller over `store` and `cache`.
    pub fn new(store: Store, cache: Cache) -> Self {
        Self {
            store,
            cache,
            metrics: Metrics::default(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            outbox_wakeup: tokio::sync::watch::channel(()).0,
            open_windows: tokio::sync::watch::channel(Arc::default()).0,
            inventory_changes: tokio::sync::watch::channel(0).0,
            revocations: tokio::sync::watch::channel(0).0,
            stopping: tokio::sync::watch::channel(false).0,
            api_token: None,
            anonymous_read: false,
            logins: crate::login::Logins::default(),
            metrics_access: crate::access::Access::Open,
            certificate_warning_ms: 14 * 86_400_000,
            #[allow(clippy::disallowed_types, reason = "see the field")]
            certificates: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            tsdb: None,
            notification_channels: Vec::new(),
            api_latency: crate::api::ApiLatency::default(),
            http: reqwest::Client::new(),
            #[allow(clippy::disallowed_types, reason = "see the field")]
            presences: std::sync::Mutex::new(Presences::new(crate::time::now_ms())),
            started_ms: crate::time::now_ms(),
            instance: crate::auth::instance_id(),
            failover_delay: DEFAULT_FAILOVER_DELAY,
            agent_failover_delay: crate::agents::DEFAULT_AGENT_FAILOVER_DELAY,
            #[allow(clippy::disallowed_types, reason = "see the field")]
            lost_agents: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            offline_gate: tokio::sync::RwLock::new(()),
            flapping: crate::store::FlapPolicy::default(),
        }
    }

    /// Devices flap under `policy`.
    pub fn with_flapping(mut self, policy: crate::store::FlapPolicy) -> Self {
        self.flapping = policy;
        self
    }

    /// Queues every new alert notification for `channels` (and discards
    /// waiting ones of channels no longer configured, with a warning).
    pub async fn with_notification_channels(
        mut self,
        channels: &[&str],
    ) -> Result<Self, StoreError> {
        let discarded = self
            .store
            .set_notification_channels(channels)
            .await
            .map_err(|e| self.store_failed(e))?;
        if discarded > 0 {
            tracing::warn!(
                discarded,
                "notifications for channels no longer configured were discarded"
            );
        }
        self.notification_channels = channels.iter().map(|&name| name.to_owned()).collect();
        Ok(self)
    }

    /// Writes probe statistics to `tsdb`.
    pub fn with_tsdb(mut self, tsdb: Tsdb) -> Self {
        self.tsdb = Some(tsdb);
        self
    }

    /// Counts a store failure and passes it on.
    pub fn store_failed(&self, error: StoreError) -> StoreError {
        if !matches!(
            error,
            StoreError::Invalid(_) | StoreError::InvalidEntry { .. } | StoreError::Conflict(_)
        ) {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "store operation failed");
        }
        error
    }

    /// Requires `token` on REST calls that change data.
    pub fn with_api_token(mut self, token: Option<String>) -> Self {
        self.api_token = token.filter(|token| !token.is_empty());
        self
    }

    /// Makes `/readyz` degraded while a certificate expires within
    /// `days`.
    pub fn with_certificate_warning_days(mut self, days: u32) -> Self {
        self.certificate_warning_ms = i64::from(days) * 86_400_000;
        self
    }

    /// Notes that certificate `name` (`controller`, `agent ID`) expires at
    /// `expires_at_ms`.
    pub fn note_certificate(&self, name: &str, expires_at_ms: i64) {
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), expires_at_ms);
    }

    /// Every certificate in use and when it expires (Unix ms), by name.
    pub fn certificate_expiries(&self) -> Vec<(String, i64)> {
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, at)| (name.clone(), *at))
            .collect()
    }

    /// Lets anyone read (`anonymous_read = true`).
    pub fn with_anonymous_read(mut self, anonymous_read: bool) -> Self {
        self.anonymous_read = anonymous_read;
        self
    }

    /// `/metrics` requires `access`.
    pub fn with_metrics_access(mut self, access: crate::access::Access) -> Self {
        self.metrics_access = access;
        self
    }

    /// Limits logins and sessions by `settings`.
    pub fn with_login_settings(mut self, settings: crate::login::LoginSettings) -> Self {
        self.logins = crate::login::Logins::new(settings);
        self
    }

    /// Proves names without a local password against `directory` (LDAP).
    pub fn with_directory(mut self, directory: Option<crate::ldap::Directory>) -> Self {
        self.logins.directory = directory;
        self
    }

    /// Changes after every commit that may have queued notifications.
    pub fn outbox_wakeups(&self) -> tokio::sync::watch::Receiver<()> {
        self.outbox_wakeup.subscribe()
    }

    /// Ends every long-lived stream (agent links, live events).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once [`Controller::begin_shutdown`] was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Changes after every committed change to the device inventory.
    pub fn inventory_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inventory_changes.subscribe()
    }

    /// Changes when agent certificates were revoked.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revocations.subscribe()
    }

    /// Notes how many agent certificates were ever revoked, as just read
    /// from the store: agent links re-check theirs when it changed.
    pub fn note_revocations(&self, count: i64) {
        self.revocations.send_if_modified(|known| {
            let changed = count != *known;
            *known = count;
            changed
        });
    }

    /// Wakes the notification workers: a commit may have queued some.
    pub fn outbox_changed(&self) {
        self.outbox_wakeup.send_replace(());
    }

    fn inventory_changed(&self) {
        self.inventory_changes
            .send_modify(|generation| *generation += 1);
    }

    /// Whether notification channel `name`'s last round only failed.
    pub fn notifier_failing(&self, name: &str) -> bool {
        self.metrics
            .failing_channels
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(name)
    }

    /// Notes whether channel `name`'s last delivery round only failed.
    pub fn set_notifier_failing(&self, name: &str, failing: bool) {
        let mut channels = self
            .metrics
            .failing_channels
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if failing {
            channels.insert(name.to_owned());
        } else {
            channels.remove(name);
        }
    }

    /// Subscribes to committed status changes (the device after each).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Applies an agent report, to its end whatever the caller does; after
    /// the commit live-event subscribers get the changed devices.
    pub async fn apply_report(
        self: &Arc<Self>,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let controller = Arc::clone(self);
        let report = report.clone();
        to_the_end(async move {
            let _gate = controller.offline_gate.read().await;
            controller.commit_report(&report, now_ms).await
        })
        .await
    }

    async fn commit_report(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let started = std::time::Instant::now();
        let outcome = self
            .store
            .apply(report, &self.flapping, now_ms)
            .await
            .map_err(|e| self.store_failed(e))?;
        let elapsed = started.elapsed();
        if elapsed > SLOW_COMMIT {
            tracing::warn!(agent = %report.agent_id, seq = report.seq, transitions = report.transitions.len(),
                elapsed_ms = elapsed.as_millis(), "slow status commit");
        }
        match &outcome {
            ApplyOutcome::Applied { changes, ignored } => {
                self.metrics
                    .notifications_withheld
                    .fetch_add(changes.withheld, Ordering::Relaxed);
                self.metrics
                    .transitions_ignored
                    .fetch_add(ignored.len() as u64, Ordering::Relaxed);
                let foreign = ignored
                    .iter()
                    .filter(|(_, why)| *why == crate::store::Ignored::NotOwner)
                    .count();
                if foreign > 0 {
                    self.metrics
                        .transitions_not_owner
                        .fetch_add(foreign as u64, Ordering::Relaxed);
                    tracing::info!(agent = %report.agent_id, seq = report.seq, devices = foreign,
                        "reports about devices another agent of the site owns were ignored");
                }
                // An agent alert may have been queued without any device
                // changing (its devices were unknown already).
                if !report.agent_alerts.is_empty() {
                    self.outbox_wakeup.send_replace(());
                }
                self.publish(changes).await;
            }
            ApplyOutcome::AlreadyApplied => {
                self.metrics
                    .reports_replayed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(outcome)
    }

    /// After a commit: counts the changes, wakes the outbox and tells live
    /// subscribers. Never fails: what cannot be published is counted and
    /// logged, and subscribers are told to resync.
    async fn publish(&self, changes: &StatusChanges) {
        if changes.changed.is_empty() {
            return;
        }
        self.metrics
            .transitions_applied
            .fetch_add(changes.changed.len() as u64, Ordering::Relaxed);
        self.outbox_wakeup.send_replace(());
        self.broadcast(changes).await;
    }

    /// Sends live subscribers each device of `changes` as it is now.
    async fn broadcast(&self, changes: &StatusChanges) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let devices = match self.store.get_devices(&changes.changed).await {
            Ok(devices) => devices,
            Err(error) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .post_commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, changed = changes.changed.len(),
                    "committed status changes could not be read back for live events; subscribers told to resync");
                // Fails only when every subscriber has gone.
                let _ = self.events.send(LiveEvent::Resync);
                return;
            }
        };
        let before: HashMap<i64, Status> = changes
            .changed
            .iter()
            .copied()
            .zip(changes.previous.iter().copied())
            .collect();
        let last = devices.len().saturating_sub(1);
        for (index, device) in devices.into_iter().enumerate() {
            let previous = before.get(&device.id).copied().unwrap_or(Status::Unknown);
            // Fails only when every subscriber has gone.
            let _ = self.events.send(LiveEvent::Status(Box::new(StatusEvent {
                device,
                previous,
                version: changes.version,
                closes_version: index == last,
            })));
        }
    }

    /// Hands an agent's probe statistics to the time-series writer, with
    /// each device's labels and current status from the device list;
    /// entries for devices the store does not know are counted and
    /// skipped. Returns the samples queued (none when no time-series
    /// database is configured).
    pub async fn record_statistics(
        &self,
        report: &StatisticsReport,
    ) -> Result<usize, StatisticsError> {
        if self.tsdb.is_none() {
            return Ok(0);
        }
        let devices = self.devices().await?;
        let by_id: HashMap<i64, DeviceLabels> = devices
            .iter()
            .map(|device| (device.id, DeviceLabels::of(device)))
            .collect();
        Ok(self
            .record_statistics_with(report, |id| by_id.get(&id).cloned())
            .await?)
    }

    /// [`Controller::record_statistics`] with labels from `labels` (an
    /// agent link keeps its own, so no device list is loaded per report).
    /// Returns once the writer holds the samples (waiting while its queue
    /// is full), so an acknowledgement after it never covers dropped data.
    pub async fn record_statistics_with(
        &self,
        report: &StatisticsReport,
        labels: impl Fn(i64) -> Option<DeviceLabels>,
    ) -> Result<usize, WriterStopped> {
        let Some(tsdb) = &self.tsdb else {
            return Ok(0);
        };
        let mut samples = Vec::with_capacity(report.devices.len());
        for statistics in &report.devices {
            let Some(labels) = labels(statistics.device_id) else {
                self.metrics
                    .statistics_ignored
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            samples.push(DeviceSample {
                device_id: statistics.device_id,
                labels,
                statistics: *statistics,
            });
        }
        let queued = samples.len();
        tsdb.write(SampleBatch {
            agent_id: report.agent_id.clone(),
            at_ms: report.period_end_ms,
            samples,
        })
        .await?;
        Ok(queued)
    }

    /// Registers agent `id` for `site` (idempotent).
    pub async fn register_agent(
        &self,
        id: &str,
        site: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        self.store
            .register_agent(id, site, actor, now_ms)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Every registered agent with its presence.
    pub async fn agents(&self) -> Result<Vec<(AgentRecord, Presence)>, StoreError> {
        let agents = self
            .store
            .list_agents()
            .await
            .map_err(|e| self.store_failed(e))?;
        let now = crate::time::now_ms();
        let recently = now - i64::try_from(crate::store::HEARD_RECENTLY.as_millis()).unwrap_or(0);
        let heard: HashMap<String, (String, i64)> = self
            .store
            .heard_agents()
            .await
            .map_err(|e| self.store_failed(e))?
            .into_iter()
            .filter(|heard| heard.controller != self.instance)
            .map(|heard| {
                (
                    heard.agent_id,
                    (heard.controller, now - heard.age_ms.max(0)),
                )
            })
            .collect();
        let presences = self.lock_presences();
        Ok(agents
            .into_iter()
            .map(|agent| {
                let mut presence = presences.get(&agent.id);
                // Linked to another controller of the cluster: connected.
                if let Some((controller, heard_ms)) = heard.get(&agent.id)
                    && !presence.connected
                    && *heard_ms >= recently
                {
                    presence.connected = true;
                    presence.last_heartbeat_ms = Some(*heard_ms);
                    presence.elsewhere = Some(controller.clone());
                }
                (agent, presence)
            })
            .collect())
    }

    /// Every registered agent with its presence and how many devices it
    /// owns (what `/api/v1/agents` and `ListAgents` show).
    pub async fn agents_with_devices(&self) -> Result<Vec<(AgentRecord, Presence)>, StoreError> {
        let mut owned: HashMap<String, u64> = HashMap::new();
        for device in self.devices().await? {
            if let Some(agent) = device.agent {
                *owned.entry(agent).or_default() += 1;
            }
        }
        let mut agents = self.agents().await?;
        for (agent, presence) in &mut agents {
            presence.devices = owned.get(&agent.id).copied().unwrap_or(0);
        }
        Ok(agents)
    }

    /// The registered agent `id`, if any.
    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self
            .store
            .list_agents()
            .await
            .map_err(|e| self.store_failed(e))?
            .into_iter()
            .find(|agent| agent.id == id))
    }

    /// An agent's link opened.
    pub fn link_opened(&self, agent: &AgentRecord, version: &str, boot_id: &str, now_ms: i64) {
        self.lock_presences()
            .connected(&agent.id, &agent.site, version, boot_id, now_ms);
    }

    /// A job meant to run once per cluster is this controller's now: it
    /// took or renewed the job's lease for the failover delay. A store
    /// that fails holds nothing (the job needs it anyway).
    pub async fn holds(&self, job: &str) -> bool {
        let ttl_ms = i64::try_from(self.failover_delay.as_millis()).unwrap_or(i64::MAX);
        match self.store.take_lease(job, &self.instance, ttl_ms).await {
            Ok(held) => held,
            Err(error) => {
                self.store_failed(error);
                false
            }
        }
    }

    /// Leases of once-per-cluster jobs outlive a dead holder by `delay`.
    pub fn with_failover_delay(mut self, delay: std::time::Duration) -> Self {
        self.failover_delay = delay;
        self
    }

    /// Every controller of the cluster (membership rows), with whether it
    /// is alive (heard within the failover delay) and the jobs it holds.
    pub async fn controllers(&self) -> Result<Vec<(ControllerMember, bool)>, StoreError> {
        let delay_ms = i64::try_from(self.failover_delay.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .controllers()
            .await
            .map_err(|e| self.store_failed(e))?
            .into_iter()
            .map(|member| {
                let alive = member.heard_ago_ms < delay_ms;
                (member, alive)
            })
            .collect())
    }

    /// An agent unheard for `delay` is lost: its devices move.
    pub fn with_agent_failover_delay(mut self, delay: std::time::Duration) -> Self {
        self.agent_failover_delay = delay;
        self
    }

    /// Settles the agent groups (see `store::groups`): the devices of lost
    /// agents go to the live agents of their site, groups rebalance, and
    /// agent links on every controller learn what they own now. A lost
    /// agent whose group covers for it gets its `AgentDown` all the same,
    /// once per absence.
    pub async fn settle_groups(self: &Arc<Self>, now_ms: i64) -> Result<(), StoreError> {
        let delay_ms = i64::try_from(self.agent_failover_delay.as_millis()).unwrap_or(i64::MAX);
        let settlement = self
            .store
            .settle_groups(delay_ms)
            .await
            .map_err(|e| self.store_failed(e))?;
        if !settlement.moves.is_empty() {
            self.inventory_changed();
            self.metrics
                .device_owner_changes
                .fetch_add(settlement.moves.len() as u64, Ordering::Relaxed);
            let mut moved: std::collections::BTreeMap<(Option<&str>, &str), usize> =
                std::collections::BTreeMap::new();
            for m in &settlement.moves {
                *moved.entry((m.from.as_deref(), &m.to)).or_default() += 1;
            }
            for ((from, to), devices) in moved {
                tracing::info!(
                    from = from.unwrap_or("none"),
                    to,
                    devices,
                    "devices given to another agent of their site"
                );
            }
        }
        let covered: std::collections::HashSet<&str> = settlement
            .members
            .iter()
            .filter(|m| m.live(delay_ms))
            .map(|m| m.site.as_str())
            .collect();
        let lost: Vec<&crate::store::groups::Member> = settlement
            .members
            .iter()
            .filter(|m| m.lost(delay_ms) && covered.contains(m.site.as_str()))
            .collect();
        let newly_lost: Vec<&crate::store::groups::Member> = {
            let mut known = self
                .lost_agents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            known.retain(|id| lost.iter().any(|m| m.id == *id));
            lost.into_iter()
                .filter(|m| !known.contains(&m.id))
                .collect()
        };
        if newly_lost.is_empty() {
            return Ok(());
        }
        let agent_alerts = newly_lost
            .iter()
            .map(|m| AgentAlertChange {
                agent_id: m.id.clone(),
                site: m.site.clone(),
                open: true,
                at_ms: now_ms,
                reason: format!(
                    "agent {} not heard for {:?}; the other agents of site {} probe its devices",
                    m.id, self.agent_failover_delay, m.site
                ),
            })
            .collect();
        let report = TransitionReport {
            agent_alerts,
            agent_id: CONTROLLER_REPORTS.into(),
            boot_id: format!("agent-lost:{}", self.instance),
            seq: u64::try_from(now_ms).unwrap_or(0),
            transitions: Vec::new(),
        };
        self.apply_report(&report, now_ms).await?;
        for m in newly_lost {
            tracing::warn!(agent = %m.id, site = %m.site, "agent lost; its group covers for it");
            self.lost_agents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(m.id.clone());
        }
        Ok(())
    }

    /// Tells the other controllers on the database which agents this one
    /// holds now (the database's clock times it).
    pub async fn share_presence(&self) -> Result<(), StoreError> {
        self.store
            .controller_alive(&self.instance, env!("CARGO_PKG_VERSION"), self.started_ms)
            .await
            .map_err(|e| self.store_failed(e))?;
        let agents = self.lock_presences().connected_agents();
        self.store
            .heard(&self.instance, &agents)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// When other controllers last heard each agent, on this process's
    /// clock (`now_ms` minus the age the database's clock gives).
    async fn heard_elsewhere(&self, now_ms: i64) -> Result<HashMap<String, i64>, StoreError> {
        let heard = self
            .store
            .heard_agents()
            .await
            .map_err(|e| self.store_failed(e))?;
        Ok(heard
            .into_iter()
            .filter(|agent| agent.controller != self.instance)
            .map(|agent| (agent.agent_id, now_ms - agent.age_ms.max(0)))
            .collect())
    }

    /// An agent's link closed.
    pub fn link_closed(&self, agent_id: &str, now_ms: i64) {
        self.lock_presences().disconnected(agent_id, now_ms);
    }

    /// A heartbeat arrived on an agent's link.
    pub fn heartbeat(&self, agent_id: &str, counters: ward_proto::v1::EngineCounters, now_ms: i64) {
        self.lock_presences().heartbeat(agent_id, counters, now_ms);
    }

    /// Settles what a connected agent can probe, in one transaction: the
    /// devices it cannot probe become `unknown` (the reason names the
    /// family), and its `AgentDown` alert is open while it is blind and
    /// resolved otherwise (it is back). `report` names this settlement
    /// (boot id and sequence of a controller report).
    pub async fn agent_sight(
        self: &Arc<Self>,
        agent: &AgentRecord,
        probe_families: &[&'static str],
        blindness: &ward_domain::sight::Blindness,
        report: (&str, u64),
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let blind = blindness.reason(&agent.id);
        let transitions = blindness
            .devices
            .iter()
            .filter(|(_, status)| *status != Status::Unknown)
            .map(|&(device_id, _)| ReportedTransition {
                device_id,
                status: Status::Unknown,
                probed_at_ms: now_ms,
                last_rtt_us: None,
                reason: format!(
                    "agent {} cannot probe {}",
                    agent.id,
                    blindness.families.join(" and ")
                ),
            })
            .collect();
        let report = TransitionReport {
            agent_id: CONTROLLER_REPORTS.into(),
            boot_id: report.0.to_owned(),
            seq: report.1,
            transitions,
            agent_alerts: vec![AgentAlertChange {
                agent_id: agent.id.clone(),
                site: agent.site.clone(),
                open: blind.is_some(),
                at_ms: now_ms,
                reason: blind.clone().unwrap_or_else(|| {
                    format!(
                        "agent {} is connected and probes every device assigned to it",
                        agent.id
                    )
                }),
            }],
        };
        self.apply_report(&report, now_ms).await?;
        self.lock_presences()
            .sight(&agent.id, probe_families.to_vec(), blind);
        Ok(())
    }

    fn lock_presences(&self) -> std::sync::MutexGuard<'_, Presences> {
        self.presences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every device of each site whose agents have all been gone for
    /// the grace period `unknown` (once per absence). Returns the sites.
    ///
    /// Exact: agent reports wait while this runs (the offline gate), so an
    /// agent that comes back meanwhile has its reports applied after the
    /// `unknown`, never under it; a site counts as forgotten only once its
    /// `unknown` committed and no agent of it connected since; a site whose
    /// apply failed is counted and tried again at the next sweep.
    pub async fn forget_offline_sites(
        self: &Arc<Self>,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let agents = self
            .store
            .list_agents()
            .await
            .map_err(|e| self.store_failed(e))?;
        // The usual case, every site with a connected agent (or already
        // forgotten), needs no device list.
        if !self.lock_presences().any_site_unwatched(&agents) {
            return Ok(Vec::new());
        }
        let _gate = self.offline_gate.write().await;
        let devices = self.devices().await?;
        let mut sites: HashMap<String, (Vec<String>, std::time::Duration)> = HashMap::new();
        for agent in agents {
            sites
                .entry(agent.site)
                .or_insert_with(|| (Vec::new(), std::time::Duration::ZERO))
                .0
                .push(agent.id);
        }
        for device in &devices {
            if let Some((_, longest)) = sites.get_mut(&device.spec.site) {
                *longest = (*longest).max(std::time::Duration::from_millis(u64::from(
                    device.spec.interval_ms,
                )));
            }
        }
        for (_, longest) in sites.values_mut() {
            *longest = grace_period(*longest);
        }
        let elsewhere = self.heard_elsewhere(now_ms).await?;
        let offline = {
            let mut presences = self.lock_presences();
            presences.heard_elsewhere(&sites, &elsewhere);
            presences.sites_to_forget(&sites, &elsewhere, now_ms)
        };
        let mut forgotten = Vec::new();
        let mut failure = None;
        for site in offline {
            let name = &site.site;
            let transitions: Vec<ReportedTransition> = devices
                .iter()
                .filter(|d| d.spec.site == *name && d.status != Status::Unknown)
                .map(|d| ReportedTransition {
                    device_id: d.id,
                    status: Status::Unknown,
                    probed_at_ms: now_ms,
                    last_rtt_us: None,
                    reason: format!("no agent of site {name} connected"),
                })
                .collect();
            let marked = transitions.len();
            let gone = format!("no agent of site {name} connected for its grace period");
            let agent_alerts = sites
                .get(name)
                .map(|(agents, _)| agents.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|agent_id| AgentAlertChange {
                    agent_id: agent_id.clone(),
                    site: name.clone(),
                    open: true,
                    at_ms: now_ms,
                    reason: gone.clone(),
                })
                .collect();
            let report = TransitionReport {
                agent_alerts,
                agent_id: CONTROLLER_REPORTS.into(),
                boot_id: format!("agent-offline:{name}:{}", self.started_ms),
                seq: u64::try_from(now_ms).unwrap_or(0),
                transitions,
            };
            if let Err(error) = self.commit_report(&report, now_ms).await {
                self.metrics
                    .offline_sweep_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %name, %error, "could not mark an offline site's devices unknown; trying again at the next sweep");
                failure = Some(error);
                continue;
            }
            if self.lock_presences().forgotten(&site) {
                self.metrics
                    .sites_marked_unknown
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %name, devices = marked, "no agent of the site connected for its grace period; its devices are unknown");
                forgotten.push(site.site);
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(forgotten),
        }
    }

    /// Creates a device; the cache moves on after the commit.
    pub async fn create_device(
        self: &Arc<Self>,
        spec: &DeviceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        let (spec, actor) = (spec.clone(), actor.clone());
        self.write_inventory(move |controller| async move {
            let device = controller
                .store
                .create_device(&spec, &actor, now_ms)
                .await?;
            Ok((device, StatusChanges::default()))
        })
        .await
    }

    /// Replaces a device's configuration through the rules (see
    /// [`Store::update_device`]); `None` if it does not exist.
    pub async fn update_device(
        self: &Arc<Self>,
        id: i64,
        spec: &DeviceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<Device>, StoreError> {
        let (spec, actor) = (spec.clone(), actor.clone());
        self.write_inventory(move |controller| async move {
            Ok(
                match controller
                    .store
                    .update_device(id, &spec, &actor, now_ms)
                    .await?
                {
                    Some((device, changes)) => (Some(device), changes),
                    None => (None, StatusChanges::default()),
                },
            )
        })
        .await
    }

    /// Deletes a device through the rules (see [`Store::delete_device`]);
    /// false if it did not exist.
    pub async fn delete_device(
        self: &Arc<Self>,
        id: i64,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let actor = actor.clone();
        self.write_inventory(move |controller| async move {
            Ok(
                match controller.store.delete_device(id, &actor, now_ms).await? {
                    Some(changes) => (true, changes),
                    None => (false, StatusChanges::default()),
                },
            )
        })
        .await
    }

    /// Acknowledges open alert `id` (with `comment`), or withdraws its
    /// acknowledgement (`None`); audited as `actor`. The outbox wakes for
    /// the `acknowledged` notification.
    pub async fn acknowledge(
        &self,
        id: i64,
        comment: Option<&str>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let outcome = self.store.acknowledge(id, comment, actor, now_ms).await?;
        if matches!(outcome, AckOutcome::Done(_)) {
            self.outbox_wakeup.send_replace(());
        }
        Ok(outcome)
    }

    /// Makes the inventory equal to `specs` ([`Store::sync_devices`]); the
    /// diff (with `dry_run`, nothing is written).
    pub async fn sync_devices(
        self: &Arc<Self>,
        specs: &[DeviceSpec],
        mode: SyncMode,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<SyncDiff, StoreError> {
        let (specs, actor) = (specs.to_vec(), actor.clone());
        self.write_inventory(move |controller| async move {
            controller
                .store
                .sync_devices(&specs, mode, &actor, now_ms)
                .await
        })
        .await
    }

    /// Creates all devices or none.
    pub async fn import_devices(
        self: &Arc<Self>,
        specs: &[DeviceSpec],
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Vec<Device>, StoreError> {
        let (specs, actor) = (specs.to_vec(), actor.clone());
        self.write_inventory(move |controller| async move {
            let devices = controller
                .store
                .import_devices(&specs, &actor, now_ms)
                .await?;
            Ok((devices, StatusChanges::default()))
        })
        .await
    }

    /// Runs one inventory write to its end (see [`to_the_end`]): after its
    /// commit agents are told of the new inventory, the outbox wakes (a
    /// resolved alert may wait) and live subscribers get the status changes.
    async fn write_inventory<T, F>(
        self: &Arc<Self>,
        write: impl FnOnce(Arc<Self>) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<(T, StatusChanges), StoreError>> + Send + 'static,
    {
        let controller = Arc::clone(self);
        to_the_end(async move {
            let (value, changes) = write(Arc::clone(&controller))
                .await
                .map_err(|e| controller.store_failed(e))?;
            controller.inventory_changed();
            controller.outbox_wakeup.send_replace(());
            controller.publish(&changes).await;
            Ok(value)
        })
        .await
    }

    /// Devices matching every given filter: status, site, severity, tag,
    /// and `query` in the name, address or a tag (case-insensitive). REST,
    /// gRPC and the dashboard's search all match this way.
    pub async fn find_devices(&self, filter: &DeviceFilter<'_>) -> Result<Vec<Device>, StoreError> {
        let query = filter.query.map(str::to_lowercase);
        let devices = self.devices().await?;
        Ok(devices
            .into_iter()
            .filter(|d| filter.status.is_none_or(|status| d.status == status))
            .filter(|d| filter.site.is_none_or(|site| d.spec.site == site))
            .filter(|d| {
                filter
                    .severity
                    .is_none_or(|severity| d.spec.severity == severity)
            })
            .filter(|d| {
                filter
                    .tag
                    .is_none_or(|tag| d.spec.tags.iter().any(|t| t == tag))
            })
            .filter(|d| {
                query.as_deref().is_none_or(|q| {
                    d.spec.name.to_lowercase().contains(q)
                        || d.spec.address.to_string().contains(q)
                        || d.spec.tags.iter().any(|tag| tag.to_lowercase().contains(q))
                })
            })
            .collect())
    }

    /// The maintenance windows open now (at most [`crate::jobs::MAINTENANCE_REFRESH`]
    /// old; this controller's own changes at once).
    pub fn open_windows(&self) -> Arc<Vec<OpenWindow>> {
        Arc::clone(&self.open_windows.borrow())
    }

    /// Creates a maintenance window (`id` `None`), replaces window `id`
    /// (`spec` given) or deletes it (`spec` `None`); audited as `actor`.
    /// This controller sees the change at once, the others within
    /// [`crate::jobs::MAINTENANCE_REFRESH`]. `None` if there is no such window.
    pub async fn change_maintenance(
        &self,
        id: Option<i64>,
        spec: Option<MaintenanceSpec>,
        actor: &Actor,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        let now = crate::time::now_ms();
        let changed = match (id, spec) {
            (None, Some(spec)) => Some(self.store.create_maintenance(&spec, actor, now).await?),
            (Some(id), spec) => {
                self.store
                    .change_maintenance(id, spec.as_ref(), actor, now)
                    .await?
            }
            (None, None) => None,
        };
        if let Err(error) = self.refresh_maintenance().await {
            self.store_failed(error);
        }
        Ok(changed)
    }

    /// Releases the held alerts no open window covers any more (their
    /// `firing` queued; the outbox woken); returns how many.
    pub async fn release_held(&self) -> Result<u64, StoreError> {
        let open = self.open_windows();
        let mut released = 0;
        for alert in self.store.held_alerts().await? {
            // A flapping device's alerts wait for it to settle.
            if alert.flapping {
                continue;
            }
            let covered = alert.device_id.is_some_and(|id| {
                open.iter().any(|open| {
                    open.window
                        .spec
                        .covers_subject(id, &alert.site, &alert.tags)
                })
            });
            if !covered
                && self
                    .store
                    .release_alert(alert.id, crate::time::now_ms())
                    .await?
            {
                released += 1;
            }
        }
        if released > 0 {
            self.metrics
                .held_alerts_released
                .fetch_add(released, Ordering::Relaxed);
            self.outbox_wakeup.send_replace(());
            tracing::info!(
                released,
                "maintenance over: the held alerts' firing notifications are queued"
            );
        }
        Ok(released)
    }

    /// The availability report over `range` ([`ward_domain::availability`]):
    /// the recorded changes and the maintenance windows as they are now.
    pub async fn availability(
        &self,
        range: ward_domain::availability::Span,
        by: ward_domain::availability::By,
        filter: &ward_domain::availability::ReportFilter,
    ) -> Result<
        Vec<(
            ward_domain::availability::RowKey,
            ward_domain::availability::Totals,
        )>,
        StoreError,
    > {
        let (devices, changes) = self.store.availability_input(range.0, range.1).await?;
        let windows = self.store.maintenance_windows().await?;
        Ok(ward_domain::availability::report(
            &devices, &changes, &windows, range, by, filter,
        ))
    }

    /// Reads the windows again and keeps those open now.
    pub async fn refresh_maintenance(&self) -> Result<(), StoreError> {
        let windows = self.store.maintenance_windows().await?;
        let open = ward_domain::maintenance::open_at(windows, crate::time::now_ms());
        self.open_windows.send_replace(Arc::new(open));
        Ok(())
    }

    /// Enabled devices counted by status.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let devices = self.devices().await?;
        let open = self.open_windows();
        let mut summary = Summary::default();
        for device in devices.iter().filter(|d| d.spec.enabled) {
            summary.total += 1;
            if open.iter().any(|open| open.window.spec.covers(device)) {
                summary.in_maintenance += 1;
            }
            match device.status {
                Status::Up => summary.up += 1,
                Status::Down => summary.down += 1,
                Status::Unreachable => summary.unreachable += 1,
                Status::Unknown => summary.unknown += 1,
            }
        }
        Ok(summary)
    }

    /// Every device, through the cache, as of the store's data version
    /// now.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let version = self
            .store
            .data_version()
            .await
            .map_err(|e| self.store_failed(e))?;
        self.cache
            .get_or_load("devices", &version, async {
                self.store
                    .list_devices()
                    .await
                    .map_err(|e| self.store_failed(e))
            })
            .await
    }
}

/// Runs `write` to its end in a task of its own: a caller that goes away (a
/// REST client that disconnects, a closed agent link) cannot stop it
/// half-way, between a commit and what must follow it (live events,
/// agents' assignments, the outbox).
async fn to_the_end<T: Send + 'static>(
    write: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(write)
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
}

/// Hands the status changes other controllers on the database commit to
/// this one's live subscribers (SSE, `WatchStatus`) until `shutdown`; a
/// lost listening connection is opened again after a second, and the
/// subscribers told to resync (changes may have passed meanwhile). Returns
/// at once on SQLite: it has one controller.
pub async fn follow_other_controllers(
    controller: Arc<Controller>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut lost = false;
    loop {
        match controller.store.listen().await {
            Ok(None) => return,
            Ok(Some(mut listening)) => {
                if lost {
                    let _ = controller.events.send(LiveEvent::Resync);
                    controller.inventory_changed();
                }
                let own = controller.store.origin().map(str::to_owned);
                loop {
                    let announced = tokio::select! {
                        () = &mut shutdown => return,
                        announced = listening.announced.recv() => announced,
                    };
                    let Some(announced) = announced else { break };
                    if own.as_deref() == Some(announced.origin.as_str()) {
                        continue;
                    }
                    match announced.what {
                        Announcement::Changes(changes) => controller.broadcast(&changes).await,
                        Announcement::Resync(_) => {
                            let _ = controller.events.send(LiveEvent::Resync);
                        }
                        Announcement::Inventory => controller.inventory_changed(),
                    }
                }
                tracing::warn!(
                    "lost the connection that hears other controllers' changes; opening it again"
                );
            }
            Err(error) => {
                controller.store_failed(error);
            }
        }
        lost = true;
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
