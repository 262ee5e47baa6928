//! Inventory sync: the inventory made equal to a list (a CMDB or Zabbix
//! export), keyed by device name within its site. Devices not in ward are
//! created, those whose configuration differs are updated, and with
//! `delete_missing` those not in the list are deleted — in one
//! transaction, each change through the same rules and audit as a single
//! create, update or delete. A dry run computes the same diff and writes
//! nothing.

use std::collections::{HashMap, HashSet};

use super::model::{Device, DeviceSpec, StatusChanges};
use super::operations;
use super::principals::Actor;
use super::tx::WriteTx;
use super::{StoreError, entry_error, rows, sql};

/// What a sync is asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncMode {
    /// Delete the devices the list does not name.
    pub delete_missing: bool,
    /// Compute the diff only.
    pub dry_run: bool,
}

/// A device the sync changes or leaves, named as the operator knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncedDevice {
    /// Its id (`None` for one a dry run would create).
    pub id: Option<i64>,
    pub name: String,
    pub site: String,
    /// The configuration fields that differ (updates only), in the API's
    /// names.
    pub changed: Vec<&'static str>,
}

/// The diff between the inventory and the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncDiff {
    pub created: Vec<SyncedDevice>,
    pub updated: Vec<SyncedDevice>,
    pub deleted: Vec<SyncedDevice>,
    pub unchanged: Vec<SyncedDevice>,
}

/// The configuration fields of `after` that differ from `before`.
fn changed_fields(before: &DeviceSpec, after: &DeviceSpec) -> Vec<&'static str> {
    [
        ("address", before.address != after.address),
        ("parent_id", before.parent_id != after.parent_id),
        ("interval_ms", before.interval_ms != after.interval_ms),
        ("timeout_ms", before.timeout_ms != after.timeout_ms),
        ("down_after", before.down_after != after.down_after),
        ("up_after", before.up_after != after.up_after),
        ("tags", before.tags != after.tags),
        ("enabled", before.enabled != after.enabled),
        ("severity", before.severity != after.severity),
        ("profile", before.profile != after.profile),
        ("check", before.check != after.check),
        ("rst_alive", before.rst_alive != after.rst_alive),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect()
}

fn named(device: &Device, changed: Vec<&'static str>) -> SyncedDevice {
    SyncedDevice {
        id: Some(device.id),
        name: device.spec.name.clone(),
        site: device.spec.site.clone(),
        changed,
    }
}

/// Each (site, name) of `specs`; a device listed twice is refused.
fn listed_once(specs: &[DeviceSpec]) -> Result<HashSet<(&str, &str)>, StoreError> {
    let mut seen = HashSet::new();
    for (index, spec) in specs.iter().enumerate() {
        if !seen.insert((spec.site.as_str(), spec.name.as_str())) {
            return Err(entry_error(
                index,
                StoreError::Conflict {
                    field: "name".into(),
                    message: format!(
                        "device `{}` of site `{}` is listed twice",
                        spec.name, spec.site
                    ),
                },
            ));
        }
    }
    Ok(seen)
}

/// Creates (no id) or updates (an id) the device of each `writes` entry
/// (a position in `specs`), naming the created ones' ids in `diff`.
async fn apply_writes(
    tx: &impl WriteTx,
    specs: &[DeviceSpec],
    writes: Vec<(usize, Option<i64>)>,
    diff: &mut SyncDiff,
    changes: &mut StatusChanges,
    actor: &Actor,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut created = diff.created.iter_mut();
    for (index, id) in writes {
        let spec = &specs[index];
        match id {
            None => {
                let device = operations::create_device(tx, spec, actor, now_ms)
                    .await
                    .map_err(|error| entry_error(index, error))?;
                if let Some(entry) = created.next() {
                    entry.id = Some(device.id);
                }
            }
            Some(id) => {
                if let Some((_, made)) = operations::update_device(tx, id, spec, actor, now_ms)
                    .await
                    .map_err(|error| entry_error(index, error))?
                {
                    changes.merge(made);
                }
            }
        }
    }
    Ok(())
}

/// Makes the inventory equal to `specs` (see the module); the diff, and
/// the status changes the writes made. Entries are named by position.
pub(super) async fn sync_devices(
    tx: &impl WriteTx,
    specs: &[DeviceSpec],
    mode: SyncMode,
    actor: &Actor,
    now_ms: i64,
) -> Result<(SyncDiff, StatusChanges), StoreError> {
    let seen = listed_once(specs)?;
    let current: Vec<Device> = tx.rows(sql::DEVICES, &[], |row| rows::device(row)).await?;
    let by_key: HashMap<(&str, &str), &Device> = current
        .iter()
        .map(|device| {
            (
                (device.spec.site.as_str(), device.spec.name.as_str()),
                device,
            )
        })
        .collect();
    let mut diff = SyncDiff::default();
    let mut writes = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        match by_key.get(&(spec.site.as_str(), spec.name.as_str())) {
            None => {
                diff.created.push(SyncedDevice {
                    id: None,
                    name: spec.name.clone(),
                    site: spec.site.clone(),
                    changed: Vec::new(),
                });
                writes.push((index, None));
            }
            Some(device) => match changed_fields(&device.spec, spec) {
                changed if changed.is_empty() => diff.unchanged.push(named(device, changed)),
                changed => {
                    diff.updated.push(named(device, changed));
                    writes.push((index, Some(device.id)));
                }
            },
        }
    }
    if mode.delete_missing {
        diff.deleted = current
            .iter()
            .filter(|device| {
                !seen.contains(&(device.spec.site.as_str(), device.spec.name.as_str()))
            })
            .map(|device| named(device, Vec::new()))
            .collect();
    }
    let mut changes = StatusChanges::default();
    if mode.dry_run {
        return Ok((diff, changes));
    }
    apply_writes(tx, specs, writes, &mut diff, &mut changes, actor, now_ms).await?;
    for gone in &diff.deleted {
        if let Some(made) =
            operations::delete_device(tx, gone.id.unwrap_or_default(), actor, now_ms).await?
        {
            changes.merge(made);
        }
    }
    Ok((diff, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeviceSpec {
        DeviceSpec {
            rst_alive: true,
            check: Default::default(),
            profile: None,
            name: "atm-1".into(),
            address: "198.18.1.1".parse().expect("address"),
            site: "branch-1".into(),
            parent_id: None,
            interval_ms: 1000,
            timeout_ms: 500,
            down_after: 3,
            up_after: 2,
            tags: vec!["atm".into()],
            enabled: true,
            severity: super::super::Severity::Major,
        }
    }

    #[test]
    fn every_differing_field_is_named_and_nothing_else() {
        assert!(changed_fields(&spec(), &spec()).is_empty());
        let after = DeviceSpec {
            address: "198.18.1.2".parse().expect("address"),
            tags: vec![],
            severity: super::super::Severity::Critical,
            ..spec()
        };
        assert_eq!(
            changed_fields(&spec(), &after),
            ["address", "tags", "severity"]
        );
    }
}
