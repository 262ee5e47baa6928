//! The device inventory: every write (create, update, delete, import,
//! sync, acknowledge, a threshold profile) goes through the store's rules
//! and runs to its end in a task of its own, then agents, the outbox and live subscribers hear of
//! it; reads (the filtered list, the summary) come through the cache at
//! the store's data version, so none is older than the last commit.

use std::future::Future;
use std::sync::Arc;

use super::core::{Core, to_the_end};
use super::maintenance::Maintenance;
use super::paging::DeviceCursor;
use crate::store::{
    AckOutcome, Actor, Device, DeviceSpec, Severity, Status, StatusChanges, StoreError, SyncDiff,
    SyncMode,
};
use ward_domain::maintenance::OpenWindow;

/// Enabled devices by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Up.
    pub up: u64,
    /// Degraded (they answer; not counted in `up`).
    pub degraded: u64,
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
    /// Whose parent is this device.
    pub parent: Option<i64>,
}

/// The inventory.
pub struct Inventory {
    core: Arc<Core>,
    maintenance: Arc<Maintenance>,
}

impl Inventory {
    /// The inventory over `core`, counting devices in `maintenance`'s open
    /// windows.
    pub fn new(core: Arc<Core>, maintenance: Arc<Maintenance>) -> Self {
        Self { core, maintenance }
    }

    /// Creates a device; the cache moves on after the commit.
    pub async fn create_device(
        self: &Arc<Self>,
        spec: &DeviceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        let (spec, actor) = (spec.clone(), actor.clone());
        self.write_inventory(move |inventory| async move {
            let device = inventory
                .core
                .store
                .create_device(&spec, &actor, now_ms)
                .await?;
            Ok((device, StatusChanges::default()))
        })
        .await
    }

    /// What an operator should know about `device` as written, though it
    /// was accepted: another device of its site with the same address,
    /// or no agent for its site (it stays `unknown` until one registers).
    pub async fn warnings(&self, device: &Device) -> Result<Vec<String>, StoreError> {
        let mut warnings = Vec::new();
        if device.agent.is_none() {
            warnings.push(format!(
                "site `{}` has no agent: the device stays unknown until one registers \
                 (ward-controller agents add ID {})",
                device.spec.site, device.spec.site
            ));
        }
        let devices = self.core.devices().await?;
        for twin in devices.iter().filter(|other| {
            other.id != device.id
                && other.spec.site == device.spec.site
                && other.spec.address == device.spec.address
        }) {
            warnings.push(format!(
                "device `{}` (id {}) of this site has the same address {}: both are probed and \
                 alert apart (a second address of one device, or a mistake?)",
                twin.spec.name, twin.id, device.spec.address
            ));
        }
        Ok(warnings)
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
        self.write_inventory(move |inventory| async move {
            Ok(
                match inventory
                    .core
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
        self.write_inventory(move |inventory| async move {
            Ok(
                match inventory
                    .core
                    .store
                    .delete_device(id, &actor, now_ms)
                    .await?
                {
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
        let outcome = self
            .core
            .store
            .acknowledge(id, comment, actor, now_ms)
            .await?;
        if matches!(outcome, AckOutcome::Done(_)) {
            self.core.live.outbox_changed();
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
        self.write_inventory(move |inventory| async move {
            inventory
                .core
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
        self.write_inventory(move |inventory| async move {
            let devices = inventory
                .core
                .store
                .import_devices(&specs, &actor, now_ms)
                .await?;
            Ok((devices, StatusChanges::default()))
        })
        .await
    }

    /// Runs a change to the threshold profiles or a site's default profile
    /// (`write`, over the store) to its end; then agents are sent their
    /// devices' new thresholds, as after any inventory write.
    pub async fn change_profiles<T, F>(
        self: &Arc<Self>,
        write: impl FnOnce(Arc<Core>) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.write_inventory(move |inventory| async move {
            let value = write(Arc::clone(&inventory.core)).await?;
            Ok((value, StatusChanges::default()))
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
        let inventory = Arc::clone(self);
        to_the_end(async move {
            let core = Arc::clone(&inventory.core);
            let (value, changes) = write(inventory).await?;
            core.live.inventory_changed();
            core.live.outbox_changed();
            core.publish(&changes).await;
            Ok(value)
        })
        .await
    }

    /// Devices matching every given filter: status, site, severity, tag,
    /// and `query` in the name, address or a tag (case-insensitive). REST,
    /// gRPC and the dashboard's search all match this way.
    pub async fn find_devices(
        &self,
        filter: &DeviceFilter<'_>,
    ) -> Result<Vec<Arc<Device>>, StoreError> {
        let matcher = filter.matcher();
        let devices = self.core.devices().await?;
        Ok(devices
            .iter()
            .filter(|d| matcher.matches(d))
            .cloned()
            .collect())
    }

    /// One page of [`Inventory::find_devices`]: at most `limit` devices
    /// after `after`, and the cursor of the next page unless it is the last
    /// ([`super::paging`]).
    pub async fn find_devices_page(
        &self,
        filter: &DeviceFilter<'_>,
        after: Option<&DeviceCursor>,
        limit: usize,
    ) -> Result<(Vec<Arc<Device>>, Option<DeviceCursor>), StoreError> {
        let devices = self.find_devices(filter).await?;
        Ok(super::paging::page(devices, after, limit))
    }

    /// Enabled devices counted by status.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let (devices, open) = self.devices_now().await?;
        let mut summary = Summary::default();
        for device in devices.iter().filter(|d| d.spec.enabled) {
            summary.count(device, &open);
        }
        Ok(summary)
    }

    /// Every device as of the store's data version now, and the open
    /// maintenance windows.
    pub(super) async fn devices_now(
        &self,
    ) -> Result<(super::device_table::Devices, Arc<Vec<OpenWindow>>), StoreError> {
        Ok((self.core.devices().await?, self.maintenance.open_windows()))
    }
}

impl Summary {
    /// Counts enabled `device`, in maintenance when one of `open` covers it.
    pub(super) fn count(&mut self, device: &Device, open: &[OpenWindow]) {
        self.total += 1;
        if open.iter().any(|open| open.window.spec.covers(device)) {
            self.in_maintenance += 1;
        }
        match device.status {
            Status::Up => self.up += 1,
            Status::Degraded => self.degraded += 1,
            Status::Down => self.down += 1,
            Status::Unreachable => self.unreachable += 1,
            Status::Unknown => self.unknown += 1,
        }
    }
}

/// A [`DeviceFilter`] ready to test devices (its query lowercased once).
pub(super) struct Matcher<'a> {
    filter: &'a DeviceFilter<'a>,
    query: Option<String>,
}

impl<'a> DeviceFilter<'a> {
    /// This filter, ready to test devices.
    pub(super) fn matcher(&'a self) -> Matcher<'a> {
        Matcher {
            filter: self,
            query: self.query.map(str::to_lowercase),
        }
    }
}

impl Matcher<'_> {
    /// Whether `d` passes every part of the filter.
    pub(super) fn matches(&self, d: &Device) -> bool {
        let filter = self.filter;
        filter.status.is_none_or(|status| d.status == status)
            && filter.site.is_none_or(|site| d.spec.site == site)
            && filter
                .parent
                .is_none_or(|parent| d.spec.parent_id == Some(parent))
            && filter
                .severity
                .is_none_or(|severity| d.spec.severity == severity)
            && filter
                .tag
                .is_none_or(|tag| d.spec.tags.iter().any(|t| t == tag))
            && self.query.as_deref().is_none_or(|q| {
                d.spec.name.to_lowercase().contains(q)
                    || d.spec.address.to_string().contains(q)
                    || d.spec.tags.iter().any(|tag| tag.to_lowercase().contains(q))
            })
    }
}
