//! What every read and write path shares: the store, the cache, and the
//! counters. All status changes go through [`Controller::apply_report`], so
//! the cache is invalidated after every commit, whichever path wrote.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::Cache;
use crate::store::{ApplyOutcome, Device, DeviceSpec, Status, Store, StoreError, TransitionReport};

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
    /// The last delivery round only failed.
    pub notifier_failing: std::sync::atomic::AtomicBool,
    /// Report entries ignored (stale, unknown device, no change).
    pub transitions_ignored: AtomicU64,
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
    events: tokio::sync::broadcast::Sender<Device>,
    /// Woken after commits that may have queued notifications.
    pub outbox_wakeup: tokio::sync::Notify,
    /// When set, REST calls that change data must carry it as a bearer token.
    pub api_token: Option<String>,
}

/// Status changes buffered per live-event subscriber before it must resync.
const EVENT_BUFFER: usize = 16_384;

impl Controller {
    /// A controller over `store` and `cache`.
    pub fn new(store: Store, cache: Cache) -> Self {
        Self {
            store,
            cache,
            metrics: Metrics::default(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            outbox_wakeup: tokio::sync::Notify::new(),
            api_token: None,
        }
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

    /// Subscribes to committed status changes (the device after each).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Device> {
        self.events.subscribe()
    }

    /// Applies an agent report; the cache moves to a new generation after
    /// the commit, and live-event subscribers get the changed devices.
    pub async fn apply_report(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let _write = self.cache.begin_write();
        let outcome = self
            .store
            .apply(report, now_ms)
            .await
            .map_err(|e| self.store_failed(e))?;
        match &outcome {
            ApplyOutcome::Applied { changed, ignored } => {
                self.metrics
                    .transitions_applied
                    .fetch_add(changed.len() as u64, Ordering::Relaxed);
                self.metrics
                    .transitions_ignored
                    .fetch_add(ignored.len() as u64, Ordering::Relaxed);
                if !changed.is_empty() {
                    self.outbox_wakeup.notify_one();
                }
                if !changed.is_empty() && self.events.receiver_count() > 0 {
                    let devices = self
                        .store
                        .get_devices(changed)
                        .await
                        .map_err(|e| self.store_failed(e))?;
                    for device in devices {
                        // Fails only when every subscriber has gone.
                        let _ = self.events.send(device);
                    }
                }
            }
            ApplyOutcome::AlreadyApplied => {
                self.metrics
                    .reports_replayed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(outcome)
    }

    /// Creates a device; the cache moves on after the commit.
    pub async fn create_device(
        &self,
        spec: &DeviceSpec,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        let _write = self.cache.begin_write();
        self.store
            .create_device(spec, now_ms)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Replaces a device's configuration; `None` if it does not exist.
    pub async fn update_device(
        &self,
        id: i64,
        spec: &DeviceSpec,
    ) -> Result<Option<Device>, StoreError> {
        let _write = self.cache.begin_write();
        self.store
            .update_device(id, spec)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Deletes a device; false if it did not exist.
    pub async fn delete_device(&self, id: i64) -> Result<bool, StoreError> {
        let _write = self.cache.begin_write();
        self.store
            .delete_device(id)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Creates all devices or none.
    pub async fn import_devices(
        &self,
        specs: &[DeviceSpec],
        now_ms: i64,
    ) -> Result<Vec<Device>, StoreError> {
        let _write = self.cache.begin_write();
        self.store
            .import_devices(specs, now_ms)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Devices matching every given filter: status, site, and `query` in
    /// the name or address (case-insensitive). REST and gRPC both use it.
    pub async fn find_devices(
        &self,
        status: Option<Status>,
        site: Option<&str>,
        query: Option<&str>,
    ) -> Result<Vec<Device>, StoreError> {
        let query = query.map(str::to_lowercase);
        let devices = self.devices().await?;
        Ok(devices
            .into_iter()
            .filter(|d| status.is_none_or(|status| d.status == status))
            .filter(|d| site.is_none_or(|site| d.spec.site == site))
            .filter(|d| {
                query.as_deref().is_none_or(|q| {
                    d.spec.name.to_lowercase().contains(q) || d.spec.address.to_string().contains(q)
                })
            })
            .collect())
    }

    /// Enabled devices counted by status.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let devices = self.devices().await?;
        let mut summary = Summary::default();
        for device in devices.iter().filter(|d| d.spec.enabled) {
            summary.total += 1;
            match device.status {
                Status::Up => summary.up += 1,
                Status::Down => summary.down += 1,
                Status::Unreachable => summary.unreachable += 1,
                Status::Unknown => summary.unknown += 1,
            }
        }
        Ok(summary)
    }

    /// Every device, through the cache.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.cache
            .get_or_load("devices", async {
                self.store
                    .list_devices()
                    .await
                    .map_err(|e| self.store_failed(e))
            })
            .await
    }
}
