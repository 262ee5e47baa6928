//! SQLite backend: the embedded default. One connection in WAL mode with
//! `synchronous=FULL` (a commit is durable before it is acknowledged),
//! used from blocking tasks.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::model::{
    AgentRecord, Alert, ApplyOutcome, Device, DeviceSpec, DueNotification, Notification,
    StatusChanges, TransitionReport,
};
use super::plan::{CurrentDevice, InventoryChange, Plan, Write, created, plan, plan_inventory};
use super::{INVENTORY_ACTOR, StoreError, duplicate_name, missing_parent, rows, sql};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_initial.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_reported_status.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_notification_channels.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_alerts_outlive_devices.sql"),
    ),
];

#[allow(
    clippy::disallowed_types,
    reason = "one SQLite connection, locked per store call, never on the probe path"
)]
type Shared = Arc<std::sync::Mutex<Connection>>;

/// The SQLite store.
pub struct SqliteStore {
    connection: Shared,
}

impl SqliteStore {
    pub(super) async fn open(path: &str) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let connection = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let connection = Connection::open(&path)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
            connection.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(connection)
        })
        .await
        .map_err(|error| StoreError::Task(error.to_string()))??;
        #[allow(clippy::disallowed_types, reason = "see `Shared`")]
        let connection = Arc::new(std::sync::Mutex::new(connection));
        Ok(Self { connection })
    }

    /// Runs `work` on the connection in a blocking task.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.run(|connection| {
            Ok(connection
                .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    pub(super) async fn migrate(&self) -> Result<u32, StoreError> {
        self.run(|connection| {
            // Migrations that rebuild a table need foreign keys off (SQLite's
            // ALTER TABLE procedure); they are checked before the commit and
            // turned on again whatever happens.
            connection.pragma_update(None, "foreign_keys", "OFF")?;
            let migrated = migrate(connection);
            connection.pragma_update(None, "foreign_keys", "ON")?;
            migrated
        })
        .await
    }
}

/// Applies the migrations not applied yet, in one transaction.
fn migrate(connection: &mut Connection) -> Result<u32, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
    )?;
    let current: i64 = tx.query_row(&sql::sqlite(sql::MIGRATED_VERSION), [], |row| row.get(0))?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            &sql::sqlite(sql::RECORD_MIGRATION),
            params![version, crate::time::now_ms()],
        )?;
        applied += 1;
    }
    let violations: i64 =
        tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })?;
    if violations > 0 {
        return Err(StoreError::Corrupt(format!(
            "{violations} rows break a foreign key after migrating; nothing was migrated"
        )));
    }
    tx.commit()?;
    Ok(applied)
}

impl SqliteStore {
    pub(super) async fn create_device(
        &self,
        spec: &DeviceSpec,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        let spec = spec.clone();
        self.run(move |connection| {
            let tx = connection.transaction()?;
            let device = insert_device(&tx, &spec, now_ms)?;
            let device = settle_created(&tx, vec![device], now_ms)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Corrupt("created device vanished".into()))?;
            tx.commit()?;
            Ok(device)
        })
        .await
    }

    pub(super) async fn import_devices(
        &self,
        specs: &[DeviceSpec],
        now_ms: i64,
    ) -> Result<Vec<Device>, StoreError> {
        let specs = specs.to_vec();
        self.run(move |connection| {
            let tx = connection.transaction()?;
            let mut devices = Vec::with_capacity(specs.len());
            for (index, spec) in specs.iter().enumerate() {
                devices.push(
                    insert_device(&tx, spec, now_ms)
                        .map_err(|error| super::entry_error(index, error))?,
                );
            }
            let devices = settle_created(&tx, devices, now_ms)?;
            tx.commit()?;
            Ok(devices)
        })
        .await
    }

    pub(super) async fn update_device(
        &self,
        id: i64,
        spec: &DeviceSpec,
        now_ms: i64,
    ) -> Result<Option<(Device, StatusChanges)>, StoreError> {
        let spec = spec.clone();
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(&sql::sqlite(sql::ADD_SITE), [&spec.site])?;
            let Some(before) = select_device(&tx, id)? else {
                return Ok(None);
            };
            let ids: Vec<i64> = std::iter::once(id).chain(spec.parent_id).collect();
            let current = current_devices(&tx, &ids)?;
            let change = InventoryChange::Updated {
                device_id: id,
                parent_id: spec.parent_id,
                enabled: spec.enabled,
                address_changed: before.spec.address != spec.address,
            };
            let plan = plan_inventory(&[change], &current, now_ms)?;
            let updated = tx.execute(&sql::sqlite(sql::UPDATE_SPEC), spec_params(&spec, id));
            match updated {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(error) => return Err(constraint_error(error, &spec)),
            }
            execute_plan(&tx, &plan, INVENTORY_ACTOR, now_ms)?;
            let device = select_device(&tx, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("device {id} vanished")))?;
            tx.commit()?;
            Ok(Some((device, plan.into())))
        })
        .await
    }

    pub(super) async fn delete_device(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<StatusChanges>, StoreError> {
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = current_devices(&tx, &[id])?;
            if !current.contains_key(&id) {
                return Ok(None);
            }
            let plan = plan_inventory(
                &[InventoryChange::Deleted { device_id: id }],
                &current,
                now_ms,
            )?;
            execute_plan(&tx, &plan, INVENTORY_ACTOR, now_ms)?;
            tx.execute(&sql::sqlite(sql::KEEP_ALERT_SUBJECT), [id])?;
            tx.execute(&sql::sqlite(sql::DELETE_DEVICE), [id])?;
            tx.commit()?;
            Ok(Some(plan.into()))
        })
        .await
    }

    pub(super) async fn get_device(&self, id: i64) -> Result<Option<Device>, StoreError> {
        self.run(move |connection| select_device(connection, id))
            .await
    }

    pub(super) async fn get_devices(&self, ids: &[i64]) -> Result<Vec<Device>, StoreError> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        self.run(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {} FROM devices WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
                sql::DEVICE_COLUMNS
            ))?;
            let rows = statement.query_map([ids], |row| Ok(rows::device(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    pub(super) async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.run(|connection| {
            let mut statement = connection.prepare(sql::DEVICES)?;
            let rows = statement.query_map([], |row| Ok(rows::device(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    pub(super) async fn apply(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let report = report.clone();
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let fresh = tx.execute(
                &sql::sqlite(sql::REPORT_ONCE),
                params![
                    report.agent_id,
                    report.boot_id,
                    i64::try_from(report.seq).unwrap_or(i64::MAX),
                    now_ms
                ],
            )?;
            if fresh == 0 {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            let ids: Vec<i64> = report.transitions.iter().map(|t| t.device_id).collect();
            let current = current_devices(&tx, &ids)?;
            let plan = plan(&report, &current);
            execute_plan(&tx, &plan, &report.agent_id, now_ms)?;
            tx.commit()?;
            Ok(ApplyOutcome::Applied {
                changed: plan.changed,
                previous: plan.previous,
                ignored: plan.ignored,
            })
        })
        .await
    }

    pub(super) async fn alerts(&self, open_only: bool) -> Result<Vec<Alert>, StoreError> {
        self.run(move |connection| {
            let mut statement = connection.prepare(&super::alerts_query(open_only))?;
            let rows = statement.query_map([], |row| Ok(rows::alert(row, 0)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    pub(super) async fn due_notifications(
        &self,
        channel: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let channel = channel.to_owned();
        self.run(move |connection| {
            let mut statement =
                connection.prepare(&super::due_notifications_query(["?1", "?2", "?3"]))?;
            let rows = statement.query_map(params![now_ms, limit, channel], |row| {
                Ok(rows::due_notification(row))
            })?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    pub(super) async fn notification_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.run(move |connection| {
            connection.execute(&sql::sqlite(sql::NOTIFICATION_DELIVERED), [id])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn notification_failed(
        &self,
        id: i64,
        retry_at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.run(move |connection| {
            connection.execute(
                &sql::sqlite(sql::NOTIFICATION_FAILED),
                params![id, retry_at_ms, error],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn set_notification_channels(
        &self,
        channels: &[&str],
    ) -> Result<u64, StoreError> {
        let channels: Vec<String> = channels.iter().map(|&c| c.to_owned()).collect();
        self.run(move |connection| {
            let tx = connection.transaction()?;
            tx.execute(&sql::sqlite(sql::CLEAR_CHANNELS), [])?;
            for channel in &channels {
                tx.execute(&sql::sqlite(sql::ADD_CHANNEL), [channel])?;
            }
            let discarded = tx.execute(&sql::sqlite(sql::DROP_UNCONFIGURED), [])?;
            tx.commit()?;
            Ok(discarded as u64)
        })
        .await
    }

    pub(super) async fn register_agent(
        &self,
        id: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        let (id, site) = (id.to_owned(), site.to_owned());
        self.run(move |connection| {
            let tx = connection.transaction()?;
            tx.execute(&sql::sqlite(sql::ADD_SITE), [&site])?;
            tx.execute(&sql::sqlite(sql::ADD_AGENT), params![id, site, now_ms])?;
            let agent =
                tx.query_row(&sql::sqlite(sql::AGENT), [&id], |row| Ok(rows::agent(row)))??;
            if agent.site != site {
                return Err(super::agent_conflict(&agent));
            }
            tx.commit()?;
            Ok(agent)
        })
        .await
    }

    pub(super) async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.run(|connection| {
            let mut statement = connection.prepare(&sql::sqlite(sql::AGENTS))?;
            let agents = statement.query_map([], |row| Ok(rows::agent(row)))?;
            agents.map(|agent| agent?).collect()
        })
        .await
    }

    pub(super) async fn outbox_depth(&self) -> Result<u64, StoreError> {
        self.run(|connection| {
            let depth: i64 =
                connection.query_row(&sql::sqlite(sql::OUTBOX_DEPTH), [], |row| row.get(0))?;
            Ok(u64::try_from(depth).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn pending_notifications(&self) -> Result<Vec<Notification>, StoreError> {
        self.run(|connection| {
            let mut statement = connection.prepare(&sql::sqlite(sql::PENDING_NOTIFICATIONS))?;
            let waiting = statement.query_map([], |row| Ok(rows::notification(row)))?;
            waiting.map(|notification| notification?).collect()
        })
        .await
    }
}

/// Inserts one device (status `unknown`), creating its site if needed.
fn insert_device(
    tx: &Transaction<'_>,
    spec: &DeviceSpec,
    now_ms: i64,
) -> Result<Device, StoreError> {
    tx.execute(&sql::sqlite(sql::ADD_SITE), [&spec.site])?;
    let id = tx
        .query_row(
            &sql::sqlite(sql::INSERT_DEVICE),
            spec_params(spec, now_ms),
            |row| row.get::<_, i64>(0),
        )
        .map_err(|error| constraint_error(error, spec))?;
    select_device(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("device {id} vanished")))
}

/// The ten configured columns of a device (name … enabled, in schema
/// order), then `last` (the id to update, or the creation time).
fn spec_params(spec: &DeviceSpec, last: i64) -> impl rusqlite::Params {
    use rusqlite::types::Value;
    let values: [Value; 11] = [
        spec.name.clone().into(),
        spec.address.to_string().into(),
        spec.site.clone().into(),
        spec.parent_id.into(),
        spec.interval_ms.into(),
        spec.timeout_ms.into(),
        spec.down_after.into(),
        spec.up_after.into(),
        tags_json(&spec.tags).into(),
        spec.enabled.into(),
        last.into(),
    ];
    rusqlite::params_from_iter(values)
}

/// Names a duplicate or a missing parent; passes anything else on.
fn constraint_error(error: rusqlite::Error, spec: &DeviceSpec) -> StoreError {
    if is_constraint(&error, "UNIQUE") {
        duplicate_name(spec)
    } else if is_constraint(&error, "FOREIGN KEY") {
        missing_parent(spec)
    } else {
        error.into()
    }
}

fn execute_plan(
    tx: &Transaction<'_>,
    plan: &Plan,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    for write in &plan.writes {
        execute(tx, write, actor, now_ms)?;
    }
    Ok(())
}

/// Settles devices just inserted (a child of a parent in an outage is
/// `unreachable` from the start) and returns them as they now are.
fn settle_created(
    tx: &Transaction<'_>,
    devices: Vec<Device>,
    now_ms: i64,
) -> Result<Vec<Device>, StoreError> {
    let changes = created(&devices);
    if changes.is_empty() {
        return Ok(devices);
    }
    let settled: Vec<i64> = changes.iter().map(InventoryChange::device_id).collect();
    let current = current_devices(tx, &settled)?;
    let plan = plan_inventory(&changes, &current, now_ms)?;
    if plan.changed.is_empty() {
        return Ok(devices);
    }
    execute_plan(tx, &plan, INVENTORY_ACTOR, now_ms)?;
    devices
        .iter()
        .map(|device| {
            select_device(tx, device.id)?
                .ok_or_else(|| StoreError::Corrupt(format!("device {} vanished", device.id)))
        })
        .collect()
}

fn execute(
    tx: &Transaction<'_>,
    write: &Write,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    match write {
        Write::SetReported {
            device_id,
            status,
            at_ms,
            last_rtt_us,
        } => {
            tx.execute(
                "UPDATE devices SET reported_status = ?1, reported_at_ms = ?2, \
                 last_rtt_us = COALESCE(?3, last_rtt_us) WHERE id = ?4",
                params![status.as_str(), at_ms, last_rtt_us, device_id],
            )?;
        }
        Write::UpdateDevice {
            device_id,
            status,
            down_since_ms,
            changed_at_ms,
            reported,
        } => {
            tx.execute(
                "UPDATE devices SET status = ?1, down_since_ms = ?2, status_changed_at_ms = ?3, \
                 reported_status = COALESCE(?4, reported_status), \
                 reported_at_ms = COALESCE(?5, reported_at_ms), \
                 last_rtt_us = COALESCE(?6, last_rtt_us) WHERE id = ?7",
                params![
                    status.as_str(),
                    down_since_ms,
                    changed_at_ms,
                    reported.map(|r| r.status.as_str()),
                    reported.map(|r| r.at_ms),
                    reported.and_then(|r| r.last_rtt_us),
                    device_id
                ],
            )?;
        }
        Write::InsertEvent {
            device_id,
            previous,
            status,
            at_ms,
            reason,
        } => {
            tx.execute(
                "INSERT INTO status_events (device_id, previous, status, at_ms, agent_id, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    device_id,
                    previous.as_str(),
                    status.as_str(),
                    at_ms,
                    agent_id,
                    reason
                ],
            )?;
        }
        Write::OpenAlert {
            device_id,
            opened_at_ms,
        } => notify_each(
            tx,
            "INSERT INTO alerts (device_id, opened_at_ms) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING RETURNING id",
            params![device_id, opened_at_ms],
            "firing",
            now_ms,
        )?,
        Write::ResolveAlert {
            device_id,
            resolved_at_ms,
            reason,
        } => notify_each(
            tx,
            "UPDATE alerts SET resolved_at_ms = ?1, resolved_reason = ?3 \
             WHERE device_id = ?2 AND resolved_at_ms IS NULL RETURNING id",
            params![resolved_at_ms, device_id, reason],
            "resolved",
            now_ms,
        )?,
        Write::OpenAgentAlert {
            agent_id,
            site,
            opened_at_ms,
            reason: _,
        } => notify_each(
            tx,
            "INSERT INTO alerts (alertname, agent_id, site, opened_at_ms) \
             VALUES ('AgentDown', ?1, ?2, ?3) ON CONFLICT DO NOTHING RETURNING id",
            params![agent_id, site, opened_at_ms],
            "firing",
            now_ms,
        )?,
        Write::ResolveAgentAlert {
            agent_id,
            resolved_at_ms,
            reason,
        } => notify_each(
            tx,
            "UPDATE alerts SET resolved_at_ms = ?1, resolved_reason = ?3 \
             WHERE agent_id = ?2 AND resolved_at_ms IS NULL RETURNING id",
            params![resolved_at_ms, agent_id, reason],
            "resolved",
            now_ms,
        )?,
    }
    Ok(())
}

/// Runs an alert statement that returns the ids of the alerts it opened or
/// resolved, and queues a `kind` notification for each (none when it
/// changed nothing: an alert already open, or none to resolve).
fn notify_each(
    tx: &Transaction<'_>,
    statement: &str,
    params: impl rusqlite::Params,
    kind: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let alert_ids: Vec<i64> = tx
        .prepare(statement)?
        .query_map(params, |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for alert_id in alert_ids {
        queue_notification(tx, alert_id, kind, now_ms)?;
    }
    Ok(())
}

fn queue_notification(
    tx: &Transaction<'_>,
    alert_id: i64,
    kind: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO notification_outbox (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
         SELECT ?1, ?2, name, ?3, ?3 FROM notification_channels",
        params![alert_id, kind, now_ms],
    )?;
    Ok(())
}

/// What `plan` needs: the devices `ids`, their parents and all their
/// descendants.
fn current_devices(
    connection: &Connection,
    ids: &[i64],
) -> Result<HashMap<i64, CurrentDevice>, StoreError> {
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let mut statement = connection.prepare(
        "WITH RECURSIVE tree(id) AS ( \
            SELECT id FROM devices WHERE id IN (SELECT value FROM json_each(?1)) \
            UNION SELECT d.id FROM devices d JOIN tree t ON d.parent_id = t.id) \
         SELECT d.id, d.status, d.status_changed_at_ms, d.down_since_ms, d.reported_status, \
            d.reported_at_ms, d.parent_id, d.enabled, \
            EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.resolved_at_ms IS NULL) \
         FROM devices d \
         WHERE d.id IN (SELECT id FROM tree) \
            OR d.id IN (SELECT parent_id FROM devices WHERE id IN (SELECT value FROM json_each(?1)))",
    )?;
    let rows = statement.query_map([ids], |row| Ok(rows::current(row)))?;
    let current = rows.map(|row| row?).collect::<Result<_, _>>()?;
    Ok(current)
}

fn select_device(connection: &Connection, id: i64) -> Result<Option<Device>, StoreError> {
    connection
        .query_row(&sql::sqlite(sql::DEVICE), [id], |row| Ok(rows::device(row)))
        .optional()?
        .transpose()
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn is_constraint(error: &rusqlite::Error, kind: &str) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, Some(message))
        if code.code == rusqlite::ErrorCode::ConstraintViolation && message.contains(kind))
}
