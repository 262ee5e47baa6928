//! What every service shares: the store, the read cache, the counters and
//! the live change feed (the store counts its own failures). A committed
//! change is published here
//! ([`Core::publish`]), after its commit, whichever service wrote it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::device_table::{DeviceTable, Devices};
use super::live::{Live, LiveEvent, StatusEvent};
use super::metrics::Metrics;
use crate::cache::Cache;
use crate::store::{Device, Status, StatusChanges, Store, StoreError};
use ward_domain::quality::ProfileBook;

/// The store, the cache, the counters and the live feed.
pub struct Core {
    /// The status database.
    pub store: Store,
    /// The read cache.
    pub cache: Cache,
    /// Counters.
    pub metrics: Metrics,
    /// Committed changes and wake-ups.
    pub live: Live,
    /// The device list in memory.
    device_table: DeviceTable,
}

impl Core {
    /// The shared parts over `store` and `cache`.
    pub fn new(store: Store, cache: Cache) -> Self {
        Self {
            store,
            cache,
            metrics: Metrics::default(),
            live: Live::default(),
            device_table: DeviceTable::default(),
        }
    }

    /// Every device as of the store's data version now, from the list
    /// this controller holds ([`DeviceTable`]).
    pub async fn devices(&self) -> Result<Devices, StoreError> {
        self.device_table.devices(&self.store, &self.metrics).await
    }

    /// The devices agent `agent` owns as of the store's data version now,
    /// without a pass over the whole list per caller.
    pub async fn devices_of(&self, agent: &str) -> Result<Vec<Arc<Device>>, StoreError> {
        self.device_table
            .devices_of(agent, &self.store, &self.metrics)
            .await
    }

    /// Forgets the store's record of which devices were written longer
    /// ago than about [`super::device_table::WRITES_KEPT`] (a failure is
    /// counted and logged by the store; the next round tries again).
    pub async fn forget_old_device_writes(&self) {
        if let Ok(forgotten) = self.device_table.forget_old_writes(&self.store).await {
            tracing::debug!(forgotten, "old records of device writes forgotten");
        }
    }

    /// Every threshold profile and each site's default, through the
    /// cache, as of the store's data version now.
    pub async fn profile_book(&self) -> Result<ProfileBook, StoreError> {
        let version = self.store.data_version().await?;
        self.cache
            .get_or_load("profiles", &version, async {
                self.store.profile_book().await
            })
            .await
    }

    /// After a commit: counts the changes, wakes the outbox and tells live
    /// subscribers. Never fails: what cannot be published is counted and
    /// logged, and subscribers are told to resync.
    pub async fn publish(&self, changes: &StatusChanges) {
        if changes.changed.is_empty() {
            return;
        }
        self.metrics
            .transitions_applied
            .fetch_add(changes.changed.len() as u64, Ordering::Relaxed);
        self.live.outbox_changed();
        self.broadcast(changes).await;
    }

    /// Sends live subscribers each device of `changes` as its commit left
    /// it (read back now when the commit was another controller's).
    pub async fn broadcast(&self, changes: &StatusChanges) {
        if !self.live.has_subscribers() {
            return;
        }
        // As the commit left them; another controller's commit (its
        // announcement names them) is read back.
        let committed = if changes.devices.is_empty() {
            self.store.get_devices(&changes.changed).await
        } else {
            Ok(changes.devices.clone())
        };
        let devices = match committed {
            Ok(devices) => devices,
            Err(error) => {
                self.metrics
                    .post_commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, changed = changes.changed.len(),
                    "committed status changes could not be read back for live events; subscribers told to resync");
                self.live.send(LiveEvent::Resync);
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
            self.live.send(LiveEvent::Status(Arc::new(StatusEvent {
                device,
                previous,
                version: changes.version,
                closes_version: index == last,
                encoded: std::sync::OnceLock::new(),
            })));
        }
    }
}

/// Runs `write` to its end in a task of its own: a caller that goes away (a
/// REST client that disconnects, a closed agent link) cannot stop it
/// half-way, between a commit and what must follow it (live events,
/// agents' assignments, the outbox).
pub async fn to_the_end<T: Send + 'static>(
    write: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(write)
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
}
