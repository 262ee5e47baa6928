//! The write operations, written once for both backends. A backend opens
//! the transaction, runs one of these over its [`WriteTx`] and commits on
//! `Ok`; the steps of each operation, their order and every rule between
//! them are here. [`WriteTx`] is what one transaction can do in the store's
//! terms, its steps written once too.

use super::announce;
use super::args::Arg;
use super::device_writes;
use super::groups::Scope;
use super::model::{AgentRecord, Device, DeviceSpec, DueNotification, StatusChanges};
use super::ownership::{self, Settlement};
use super::plan::{InventoryChange, created, plan_inventory};
use super::plan_execution::{self, StatusWrites};
use super::principals::{Actor, Change, audit_change, json};
use super::profiles;
use super::tx::{Query, WriteTx, devices_by_id};
use super::{INVENTORY_ACTOR, StoreError, agent_conflict, entry_error, rows, sql};

/// Creates one device; it settles at once (a child of a parent in an
/// outage is `unreachable` from the start).
pub(super) async fn create_device(
    tx: &impl WriteTx,
    spec: &DeviceSpec,
    actor: &Actor,
    now_ms: i64,
) -> Result<Device, StoreError> {
    let id = insert(tx, spec, now_ms).await?;
    owners_for(tx, std::slice::from_ref(&spec.site)).await?;
    let (mut devices, mut changes, settled) = settle_created(tx, &[id], now_ms).await?;
    let device = devices
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("created device {id} vanished")))?;
    let change = Change {
        action: "device.create",
        object: format!("device {id}"),
        before: None,
        after: Some(json(&device.spec)),
    };
    data_changed(tx, &mut changes, settled).await?;
    audit_change(tx, actor, change, now_ms).await?;
    Ok(device)
}

/// Creates all `specs` or none; a failing entry is named by position.
pub(super) async fn import_devices(
    tx: &impl WriteTx,
    specs: &[DeviceSpec],
    actor: &Actor,
    now_ms: i64,
) -> Result<Vec<Device>, StoreError> {
    let mut ids = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let id = insert(tx, spec, now_ms)
            .await
            .map_err(|error| entry_error(index, error))?;
        ids.push(id);
    }
    let mut sites: Vec<String> = specs.iter().map(|spec| spec.site.clone()).collect();
    sites.sort_unstable();
    sites.dedup();
    owners_for(tx, &sites).await?;
    let (devices, mut changes, settled) = settle_created(tx, &ids, now_ms).await?;
    let change = Change {
        action: "device.import",
        object: format!("{} devices", ids.len()),
        before: None,
        after: Some(json(&serde_json::json!({ "ids": ids }))),
    };
    data_changed(tx, &mut changes, settled).await?;
    audit_change(tx, actor, change, now_ms).await?;
    Ok(devices)
}

/// Replaces device `id`'s configuration through the rules; `None` if it
/// does not exist.
pub(super) async fn update_device(
    tx: &impl WriteTx,
    id: i64,
    spec: &DeviceSpec,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<(Device, StatusChanges)>, StoreError> {
    let Some(before) = devices_by_id(tx, &[id]).await?.pop() else {
        return Ok(None);
    };
    let ids: Vec<i64> = std::iter::once(id).chain(spec.parent_id).collect();
    let current = tx.current_devices(&ids).await?;
    let change = InventoryChange::Updated {
        device_id: id,
        parent_id: spec.parent_id,
        enabled: spec.enabled,
        address_changed: before.spec.address != spec.address,
    };
    let plan = plan_inventory(&[change], &current, now_ms)?;
    profile_exists(tx, spec).await?;
    tx.add_site(&spec.site).await?;
    if !tx.update_spec(id, spec).await? {
        return Ok(None);
    }
    owners_for(tx, std::slice::from_ref(&spec.site)).await?;
    let written = plan_execution::execute(tx, &plan, INVENTORY_ACTOR, now_ms)
        .await?
        .status_written;
    let device = devices_by_id(tx, &[id])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("device {id} vanished")))?;
    let change = Change {
        action: "device.update",
        object: format!("device {id}"),
        before: Some(json(&before.spec)),
        after: Some(json(&device.spec)),
    };
    let mut changes: StatusChanges = plan.into();
    data_changed(tx, &mut changes, written).await?;
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some((device, changes)))
}

/// Deletes device `id` through the rules (its alert resolved, its
/// children settled); `None` if it did not exist.
pub(super) async fn delete_device(
    tx: &impl WriteTx,
    id: i64,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<StatusChanges>, StoreError> {
    let current = tx.current_devices(&[id]).await?;
    let Some(before) = devices_by_id(tx, &[id]).await?.pop() else {
        return Ok(None);
    };
    let plan = plan_inventory(
        &[InventoryChange::Deleted { device_id: id }],
        &current,
        now_ms,
    )?;
    let written = plan_execution::execute(tx, &plan, INVENTORY_ACTOR, now_ms)
        .await?
        .status_written;
    tx.remove_device(id, now_ms).await?;
    tx.announce_inventory().await?;
    let change = Change {
        action: "device.delete",
        object: format!("device {id}"),
        before: Some(json(&before.spec)),
        after: None,
    };
    let mut changes: StatusChanges = plan.into();
    data_changed(tx, &mut changes, written).await?;
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(changes))
}

/// Registers agent `id` for `site`; the same agent for another site is a
/// conflict.
pub(super) async fn register_agent(
    tx: &impl WriteTx,
    id: &str,
    site: &str,
    actor: &Actor,
    now_ms: i64,
) -> Result<AgentRecord, StoreError> {
    tx.add_site(site).await?;
    let agent = tx.add_agent(id, site, now_ms).await?;
    if agent.site != site {
        return Err(agent_conflict(&agent));
    }
    if !owners_for(tx, &[site.to_owned()]).await?.moves.is_empty() {
        data_changed(tx, &mut StatusChanges::default(), StatusWrites::default()).await?;
    }
    let change = Change {
        action: "agent.register",
        object: format!("agent {id}"),
        before: None,
        after: Some(json(&agent)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(agent)
}

/// Gives every device of `sites` without an owner of its site one (see
/// [`super::groups`]), and tells the other controllers the inventory
/// changed.
async fn owners_for(tx: &impl WriteTx, sites: &[String]) -> Result<Settlement, StoreError> {
    let live_ms = i64::try_from(super::HEARD_RECENTLY.as_millis()).unwrap_or(i64::MAX);
    let settlement = ownership::settle(tx, Some(sites), live_ms, Scope::Orphans).await?;
    tx.announce_inventory().await?;
    Ok(settlement)
}

/// Settles every agent group (lost owners replaced, groups rebalanced),
/// an agent counting as live while heard within `failover_delay_ms`.
pub(super) async fn settle_groups(
    tx: &impl WriteTx,
    failover_delay_ms: i64,
) -> Result<Settlement, StoreError> {
    let settlement = ownership::settle(tx, None, failover_delay_ms, Scope::Everything).await?;
    if !settlement.moves.is_empty() {
        data_changed(tx, &mut StatusChanges::default(), StatusWrites::default()).await?;
        tx.announce_inventory().await?;
    }
    Ok(settlement)
}

/// Refuses a device naming a profile that does not exist.
async fn profile_exists(tx: &impl WriteTx, spec: &DeviceSpec) -> Result<(), StoreError> {
    match &spec.profile {
        Some(profile) => profiles::must_exist(tx, "profile", profile).await,
        None => Ok(()),
    }
}

/// After a change to the threshold profiles or a site's default profile,
/// in its transaction: the data version moves on and the agent links are
/// told (each sends its devices' thresholds again).
pub(super) async fn thresholds_changed(tx: &impl WriteTx) -> Result<(), StoreError> {
    data_changed(tx, &mut StatusChanges::default(), StatusWrites::default()).await?;
    tx.announce_inventory().await
}

/// Moves the data version on, in the transaction that changes devices or
/// alerts: a cached answer of an older version is never served again, by
/// any controller (see `cache`). First the changed devices are read as
/// this transaction leaves them (`changes.devices`, for live events). The
/// status events of its status writes (`status_written`) are recorded
/// with the version (it holds the data-version row until its commit, so
/// versions follow commit order), the devices whose status it wrote
/// listed under it and the rows it left unstamped stamped
/// ([`device_writes`]), and its status `changes` announced to the other
/// controllers with it. Sets `changes.version` and returns it.
pub(super) async fn data_changed(
    tx: &impl WriteTx,
    changes: &mut StatusChanges,
    status_written: StatusWrites,
) -> Result<i64, StoreError> {
    let version = next_version(tx, changes, status_written).await?;
    device_writes::stamp_unstamped(tx, version).await?;
    Ok(version)
}

/// Moves the data version on (see [`data_changed`]) without stamping
/// device rows: for a transaction that wrote the status of devices
/// (`status_written`) and nothing else of any device (agents' reports).
/// From the version's bump to the commit every other writer waits, so
/// this stays short: the events' insert and one row a device.
pub(super) async fn next_version<T: WriteTx>(
    tx: &T,
    changes: &mut StatusChanges,
    mut status_written: StatusWrites,
) -> Result<i64, StoreError> {
    if !changes.changed.is_empty() {
        changes.devices = match devices_by_id(tx, &changes.changed).await {
            Ok(devices) => devices,
            // A row that cannot be read back holds up no write: the live
            // events read it again after the commit, and on failure tell
            // subscribers to resync (counted and logged there).
            Err(StoreError::Corrupt(_)) => Vec::new(),
            Err(error) => return Err(error),
        };
    }
    status_written.devices.sort_unstable();
    status_written.devices.dedup();
    let mut after: Vec<String> = status_written.recording::<T>().into_iter().collect();
    after.extend(device_writes::listings(&status_written.devices));
    let announced = (!changes.changed.is_empty()).then(|| announce::payload(changes));
    let version = tx.take_version(&after, announced.as_deref()).await?;
    changes.version = Some(version);
    Ok(version)
}

async fn insert(tx: &impl WriteTx, spec: &DeviceSpec, now_ms: i64) -> Result<i64, StoreError> {
    profile_exists(tx, spec).await?;
    tx.add_site(&spec.site).await?;
    tx.insert_device(spec, now_ms).await
}

/// Settles devices just inserted and returns them as they now are, by id,
/// with the status changes that made and the status writes of them all.
async fn settle_created(
    tx: &impl WriteTx,
    ids: &[i64],
    now_ms: i64,
) -> Result<(Vec<Device>, StatusChanges, StatusWrites), StoreError> {
    let mut written = StatusWrites::of(ids.to_vec());
    let devices = devices_by_id(tx, ids).await?;
    let changes = created(&devices);
    if changes.is_empty() {
        return Ok((devices, StatusChanges::default(), written));
    }
    let settled: Vec<i64> = changes.iter().map(InventoryChange::device_id).collect();
    let current = tx.current_devices(&settled).await?;
    let plan = plan_inventory(&changes, &current, now_ms)?;
    if plan.changed.is_empty() {
        return Ok((devices, StatusChanges::default(), written));
    }
    // It writes only devices `ids`.
    let executed = plan_execution::execute(tx, &plan, INVENTORY_ACTOR, now_ms).await?;
    written.extend(executed.status_written);
    Ok((devices_by_id(tx, ids).await?, plan.into(), written))
}

/// Makes `channels` the ones every new alert notification is queued for;
/// returns how many waiting notifications of other channels were
/// discarded.
pub(super) async fn set_notification_channels<T: WriteTx>(
    tx: &T,
    channels: &[String],
) -> Result<u64, StoreError> {
    tx.rows(T::LOCK_CHANNELS, &[], |_| Ok(())).await?;
    tx.run(sql::CLEAR_CHANNELS, &[]).await?;
    for channel in channels {
        tx.run(sql::ADD_CHANNEL, &[Arg::Text(channel)]).await?;
    }
    tx.run(sql::DROP_UNCONFIGURED, &[]).await
}

/// Up to `limit` of `channel`'s notifications due at `now_ms`, oldest
/// first, taken: each row is locked where the backend locks rows (rows
/// another controller is taking are passed over) and its next attempt
/// moved [`super::NOTIFICATION_CLAIM_MS`] ahead, so no other controller
/// on the database delivers it meanwhile.
pub(super) async fn take_due_notifications<T: WriteTx>(
    tx: &T,
    channel: &str,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<DueNotification>, StoreError> {
    let query = format!("{} {}", super::due_notifications_query(), T::SKIP_LOCKED);
    let args = [
        Arg::Int(now_ms),
        Arg::Int(i64::from(limit)),
        Arg::Text(channel),
    ];
    let due = tx
        .rows(&query, &args, |row| rows::due_notification(row))
        .await?;
    let ids: Vec<i64> = due.iter().map(|notification| notification.id).collect();
    reschedule_notifications(tx, &ids, now_ms + super::NOTIFICATION_CLAIM_MS).await?;
    Ok(due)
}

/// Moves the next attempt of notifications `ids` to `at_ms`.
pub(super) async fn reschedule_notifications<Q: Query>(
    q: &Q,
    ids: &[i64],
    at_ms: i64,
) -> Result<(), StoreError> {
    let statement = format!(
        "UPDATE notification_outbox SET next_attempt_at_ms = $2 WHERE {}",
        Q::ID_IN_LIST
    );
    q.run(&statement, &[Arg::Ids(ids), Arg::Int(at_ms)]).await?;
    Ok(())
}
