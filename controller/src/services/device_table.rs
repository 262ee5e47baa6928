//! The device list in this controller's memory, as of a data version.
//!
//! Every read of the list first reads the store's data version (one
//! row); when the list held is older, it reads only the devices written and
//! deleted since (`store::device_writes`: each commit records what it
//! wrote under its version) and patches the list. A fleet
//! reporting a thousand small changes a second costs each read a few rows,
//! not the whole inventory (before, every commit made the next read load
//! and decode every device). Reads stay as fresh as any other: a read
//! reflects every commit before it began. One refresh runs at a time; a
//! reader that waited for it takes its result.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::metrics::Metrics;
use crate::store::{Device, Store, StoreError};
use ward_domain::model::DataVersion;

/// The devices, by site then name in natural order, shared read-only.
pub type Devices = Arc<Vec<Arc<Device>>>;

/// The list held and where each device is in it.
struct Held {
    version: DataVersion,
    devices: Devices,
    position: Arc<HashMap<i64, usize>>,
    /// Each agent's devices, made on the first ask at this version (an
    /// agent link's assignment; a thousand links woken by one inventory
    /// change share one pass over the list).
    by_agent: std::sync::OnceLock<HashMap<String, Vec<Arc<Device>>>>,
}

fn positions(devices: &[Arc<Device>]) -> Arc<HashMap<i64, usize>> {
    Arc::new(
        devices
            .iter()
            .enumerate()
            .map(|(at, device)| (device.id, at))
            .collect(),
    )
}

impl Held {
    fn new(version: DataVersion, mut devices: Vec<Arc<Device>>) -> Self {
        devices.sort_by(|a, b| natural_order(a, b));
        Self {
            version,
            position: positions(&devices),
            devices: Arc::new(devices),
            by_agent: std::sync::OnceLock::new(),
        }
    }

    /// The devices `agent` owns, in the list's order.
    fn devices_of(&self, agent: &str) -> Vec<Arc<Device>> {
        let by_agent = self.by_agent.get_or_init(|| {
            let mut by_agent: HashMap<String, Vec<Arc<Device>>> = HashMap::new();
            for device in self.devices.iter() {
                if let Some(owner) = &device.agent {
                    by_agent
                        .entry(owner.clone())
                        .or_default()
                        .push(Arc::clone(device));
                }
            }
            by_agent
        });
        by_agent.get(agent).cloned().unwrap_or_default()
    }

    /// The list at `version`: this one without `deleted`, with `written`
    /// (deletions first: a deleted id written again is a new device).
    fn patched(&self, version: DataVersion, deleted: &[i64], written: Vec<Device>) -> Self {
        let mut devices: Vec<Arc<Device>> = self.devices.as_ref().clone();
        let mut position = Arc::clone(&self.position);
        if !deleted.is_empty() {
            let deleted: HashSet<i64> = deleted.iter().copied().collect();
            devices.retain(|device| !deleted.contains(&device.id));
            position = positions(&devices);
        }
        // Appending keeps every position; a new, renamed or moved device
        // changes the order.
        let mut reorder = !deleted.is_empty();
        for device in written {
            match position.get(&device.id) {
                Some(&at) => {
                    let held = &devices[at];
                    reorder |=
                        held.spec.site != device.spec.site || held.spec.name != device.spec.name;
                    devices[at] = Arc::new(device);
                }
                None => {
                    devices.push(Arc::new(device));
                    reorder = true;
                }
            }
        }
        if reorder {
            Self::new(version, devices)
        } else {
            Self {
                version,
                devices: Arc::new(devices),
                position,
                by_agent: std::sync::OnceLock::new(),
            }
        }
    }
}

fn natural_order(a: &Device, b: &Device) -> std::cmp::Ordering {
    ward_domain::natural::cmp(&a.spec.site, &b.spec.site)
        .then_with(|| ward_domain::natural::cmp(&a.spec.name, &b.spec.name))
}

/// How long the store keeps the record of which devices each commit
/// wrote, at least: a list read within this of its last read is patched.
pub const WRITES_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// The list and its refresh.
#[derive(Default)]
pub struct DeviceTable {
    held: tokio::sync::Mutex<Option<Arc<Held>>>,
    /// The data version at the previous round of
    /// [`DeviceTable::forget_old_writes`] (0 before the first).
    version_a_round_ago: std::sync::atomic::AtomicI64,
}

impl DeviceTable {
    /// Every device as of the store's data version now (or later).
    pub async fn devices(&self, store: &Store, metrics: &Metrics) -> Result<Devices, StoreError> {
        Ok(Arc::clone(&self.held(store, metrics).await?.devices))
    }

    /// The devices agent `agent` owns, as of the store's data version now
    /// (or later), in the list's order.
    pub async fn devices_of(
        &self,
        agent: &str,
        store: &Store,
        metrics: &Metrics,
    ) -> Result<Vec<Arc<Device>>, StoreError> {
        Ok(self.held(store, metrics).await?.devices_of(agent))
    }

    async fn held(&self, store: &Store, metrics: &Metrics) -> Result<Arc<Held>, StoreError> {
        let version = store.data_version().await?;
        let mut held = self.held.lock().await;
        let refreshed = match held.as_ref() {
            Some(current)
                if current.version.cluster == version.cluster
                    && current.version.version >= version.version =>
            {
                metrics.device_list_held.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(current));
            }
            Some(current) if current.version.cluster == version.cluster => {
                match store.devices_changed_since(current.version.version).await? {
                    Some((deleted, written)) => {
                        metrics.device_list_patched.fetch_add(1, Ordering::Relaxed);
                        current.patched(version, &deleted, written)
                    }
                    None => Self::loaded(version, store, metrics).await?,
                }
            }
            _ => Self::loaded(version, store, metrics).await?,
        };
        let refreshed = Arc::new(refreshed);
        *held = Some(Arc::clone(&refreshed));
        Ok(refreshed)
    }

    /// The whole list, loaded at `version` (or later).
    async fn loaded(
        version: DataVersion,
        store: &Store,
        metrics: &Metrics,
    ) -> Result<Held, StoreError> {
        metrics.device_list_loaded.fetch_add(1, Ordering::Relaxed);
        let devices = store.list_devices().await?;
        Ok(Held::new(
            version,
            devices.into_iter().map(Arc::new).collect(),
        ))
    }

    /// Forgets the record of which devices the commits wrote up to the
    /// data version of this call's previous round (none at the first):
    /// run every [`WRITES_KEPT`], a list not read for longer loads the
    /// whole list again. Returns how many records went.
    pub async fn forget_old_writes(&self, store: &Store) -> Result<u64, StoreError> {
        let now = store.data_version().await?.version;
        match self.version_a_round_ago.swap(now, Ordering::Relaxed) {
            0 => Ok(0),
            through => store.forget_device_writes(through).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;

    fn device(id: i64, site: &str, name: &str, status: Status) -> Device {
        crate::services::test_device(id, site, name, status)
    }

    fn at(version: i64) -> DataVersion {
        DataVersion {
            cluster: "c".into(),
            version,
        }
    }

    fn held() -> Held {
        Held::new(
            at(1),
            [
                device(1, "b-10", "atm-1", Status::Up),
                device(2, "b-2", "atm-10", Status::Up),
                device(3, "b-2", "atm-2", Status::Up),
            ]
            .map(Arc::new)
            .into(),
        )
    }

    /// (id, status) in the list's order, and every position right.
    fn shown(held: &Held) -> Vec<(i64, Status)> {
        for (at, device) in held.devices.iter().enumerate() {
            assert_eq!(held.position[&device.id], at, "position of {}", device.id);
        }
        assert_eq!(held.position.len(), held.devices.len());
        held.devices.iter().map(|d| (d.id, d.status)).collect()
    }

    #[test]
    fn a_loaded_list_is_in_natural_order() {
        let held = held();
        assert_eq!(
            shown(&held),
            [(3, Status::Up), (2, Status::Up), (1, Status::Up)]
        );
    }

    #[test]
    fn a_status_change_is_patched_in_place_and_the_list_before_is_untouched() {
        let before = held();
        let after = before.patched(at(2), &[], vec![device(2, "b-2", "atm-10", Status::Down)]);
        assert_eq!(
            shown(&after),
            [(3, Status::Up), (2, Status::Down), (1, Status::Up)]
        );
        assert_eq!(after.version, at(2));
        assert_eq!(shown(&before)[1], (2, Status::Up), "readers of v1 keep v1");
    }

    #[test]
    fn new_renamed_and_deleted_devices_keep_the_natural_order() {
        let held = held();
        let after = held.patched(
            at(5),
            &[3],
            vec![
                device(4, "b-2", "atm-3", Status::Unknown),
                device(1, "b-1", "atm-1", Status::Up),
            ],
        );
        // b-1 < b-2; atm-3 < atm-10.
        assert_eq!(
            shown(&after),
            [(1, Status::Up), (4, Status::Unknown), (2, Status::Up)]
        );
    }

    #[test]
    fn an_id_deleted_and_written_again_is_the_new_device() {
        let held = held();
        let after = held.patched(at(3), &[3], vec![device(3, "b-3", "cam-1", Status::Down)]);
        assert_eq!(
            shown(&after),
            [(2, Status::Up), (3, Status::Down), (1, Status::Up)]
        );
        assert_eq!(after.devices[1].spec.name, "cam-1");
    }

    #[test]
    fn each_agents_devices_are_those_it_owns_at_that_version() {
        let owned = |id, agent: &str| {
            let mut device = device(id, "b-2", &format!("atm-{id}"), Status::Up);
            device.agent = Some(agent.into());
            device
        };
        let held = Held::new(
            at(1),
            vec![
                Arc::new(owned(1, "a")),
                Arc::new(owned(2, "a")),
                Arc::new(owned(3, "b")),
            ],
        );
        let ids = |devices: Vec<Arc<Device>>| devices.iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(held.devices_of("a")), [1, 2]);
        let moved = held.patched(at(2), &[], vec![owned(2, "b")]);
        assert_eq!(ids(moved.devices_of("a")), [1]);
        assert_eq!(ids(moved.devices_of("b")), [2, 3]);
        assert_eq!(ids(held.devices_of("a")), [1, 2], "version 1 unchanged");
        assert!(moved.devices_of("c").is_empty());
    }
}
