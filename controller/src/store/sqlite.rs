//! SQLite backend: the embedded default. One connection in WAL mode with
//! `synchronous=FULL` (a commit is durable before it is acknowledged),
//! used from blocking tasks.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::FutureExt as _;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::args::Arg;
use super::model::{AgentRecord, DeviceSpec, DueNotification, StatusChanges, TransitionReport};
use super::plan::{CurrentDevice, DeviceRow, Plan, Write};
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use super::{StoreError, duplicate_name, missing_parent, rows, sql};

/// The database's clock, Unix ms.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

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
    (
        5,
        include_str!("../../migrations/sqlite/0005_events_without_row_checks.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_principals_and_audit.sql"),
    ),
    (
        7,
        include_str!("../../migrations/sqlite/0007_agent_certificates.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_sessions_and_lockouts.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_data_version.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_agent_presence.sql"),
    ),
    (11, include_str!("../../migrations/sqlite/0011_leases.sql")),
    (
        12,
        include_str!("../../migrations/sqlite/0012_agent_groups.sql"),
    ),
    (
        13,
        include_str!("../../migrations/sqlite/0013_event_versions.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_controllers.sql"),
    ),
    (15, include_str!("../../migrations/sqlite/0015_history.sql")),
    (
        16,
        include_str!("../../migrations/sqlite/0016_severity.sql"),
    ),
    (
        17,
        include_str!("../../migrations/sqlite/0017_acknowledgements.sql"),
    ),
    (
        18,
        include_str!("../../migrations/sqlite/0018_maintenance.sql"),
    ),
    (
        19,
        include_str!("../../migrations/sqlite/0019_availability.sql"),
    ),
    (
        20,
        include_str!("../../migrations/sqlite/0020_flapping.sql"),
    ),
    (
        21,
        include_str!("../../migrations/sqlite/0021_flapping_index.sql"),
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
    /// Runs write operation `operation` ([`operations`]) in one
    /// immediate transaction, committed if it succeeds.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        operation: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcome = polled_once(operation(&tx))?;
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Runs `operation` ([`Query`] statements: a read, or one statement
    /// that is a write of its own) on the connection, outside any explicit
    /// transaction.
    pub(super) async fn on_connection<T: Send + 'static>(
        &self,
        operation: impl AsyncFnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(move |connection| polled_once(operation(connection)))
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
}

/// The eleven configured columns of a device (name … severity, in schema
/// order), then `last` (the id to update, or the creation time).
fn spec_params(spec: &DeviceSpec, last: i64) -> impl rusqlite::Params {
    use rusqlite::types::Value;
    let values: [Value; 12] = [
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
        spec.severity.as_str().to_owned().into(),
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

/// SQLite's steps never wait: `SqliteStore::write` drives them to the end
/// on the blocking thread that holds the connection.
impl WriteTx for Transaction<'_> {
    // One writer at a time already.
    const LOCK_SETTLEMENTS: &'static str = "SELECT 1";
    const LOCK_CHANNELS: &'static str = "SELECT 1";
    const LOCKING: &'static str = "";

    async fn announce_inventory(&self) -> Result<(), StoreError> {
        Ok(()) // one controller per SQLite file
    }

    async fn announce_changes(&self, _: &StatusChanges, _: i64) -> Result<(), StoreError> {
        Ok(()) // one controller per SQLite file
    }

    async fn add_site(&self, site: &str) -> Result<(), StoreError> {
        self.execute(&sql::sqlite(sql::ADD_SITE), [site])?;
        Ok(())
    }

    async fn insert_device(&self, spec: &DeviceSpec, now_ms: i64) -> Result<i64, StoreError> {
        self.query_row(
            &sql::sqlite(sql::INSERT_DEVICE),
            spec_params(spec, now_ms),
            |row| row.get::<_, i64>(0),
        )
        .map_err(|error| constraint_error(error, spec))
    }

    async fn update_spec(&self, id: i64, spec: &DeviceSpec) -> Result<bool, StoreError> {
        let updated = self
            .execute(&sql::sqlite(sql::UPDATE_SPEC), spec_params(spec, id))
            .map_err(|error| constraint_error(error, spec))?;
        Ok(updated > 0)
    }

    async fn remove_device(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.execute(&sql::sqlite(sql::KEEP_ALERT_SUBJECT), [id])?;
        self.execute(&sql::sqlite(sql::KEEP_TOMBSTONE), [id, now_ms])?;
        self.execute(&sql::sqlite(sql::DELETE_DEVICE), [id])?;
        Ok(())
    }

    async fn current_devices(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, CurrentDevice>, StoreError> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let mut statement = self.prepare(CURRENT_DEVICES)?;
        let rows = statement.query_map([ids], |row| Ok(rows::current(row)))?;
        let current = rows.map(|row| row?).collect::<Result<_, _>>()?;
        Ok(current)
    }

    /// Every device row in one statement ([`Plan::device_rows`]), then
    /// one statement per other write, in the plan's order.
    async fn execute_plan(&self, plan: &Plan, actor: &str, now_ms: i64) -> Result<(), StoreError> {
        write_device_rows(self, &plan.device_rows())?;
        for write in &plan.writes {
            execute(self, write, actor, now_ms)?;
        }
        Ok(())
    }

    async fn first_application(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let fresh = self.execute(
            &sql::sqlite(sql::REPORT_ONCE),
            params![
                report.agent_id,
                report.boot_id,
                i64::try_from(report.seq).unwrap_or(i64::MAX),
                now_ms
            ],
        )?;
        Ok(fresh > 0)
    }

    async fn add_agent(
        &self,
        id: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        self.execute(&sql::sqlite(sql::ADD_AGENT), params![id, site, now_ms])?;
        self.query_row(&sql::sqlite(sql::AGENT), [id], |row| Ok(rows::agent(row)))?
    }
}

impl Query for Connection {
    const NOW_MS: &'static str = NOW_MS;
    const ID_IN_LIST: &'static str = "id IN (SELECT value FROM json_each($1))";

    async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let changed = self.execute(&sql::sqlite(statement), rusqlite::params_from_iter(args))?;
        Ok(changed as u64)
    }

    async fn rows<T>(
        &self,
        statement: &str,
        args: &[Arg<'_>],
        read: fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut prepared = self.prepare(&sql::sqlite(statement))?;
        let rows = prepared.query_map(rusqlite::params_from_iter(args), |row| Ok(read(row)))?;
        rows.map(|row| row?).collect()
    }
}

/// A transaction's statements are its connection's.
impl Query for Transaction<'_> {
    const NOW_MS: &'static str = NOW_MS;
    const ID_IN_LIST: &'static str = <Connection as Query>::ID_IN_LIST;

    async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Query::run(&**self, statement, args).await
    }

    async fn rows<T>(
        &self,
        statement: &str,
        args: &[Arg<'_>],
        read: fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        Query::rows(&**self, statement, args, read).await
    }
}

/// The outcome of `operation`, whose every step is a SQLite call on this
/// thread: it completes in one poll. One that would wait (a timer, a
/// channel) is a bug, refused (before a write commits).
fn polled_once<T>(operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    operation.now_or_never().ok_or_else(|| {
        StoreError::Task(
            "a SQLite operation waited on something other than SQLite; nothing was written \
             (a bug: report it)"
                .into(),
        )
    })?
}

fn execute(
    tx: &Transaction<'_>,
    write: &Write,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    match write {
        // Written with the other device rows: see `execute_plan`.
        Write::SetReported { .. } | Write::UpdateDevice { .. } | Write::SetFlap { .. } => {}
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
            notice,
        } => notify_each(
            tx,
            "INSERT INTO alerts (device_id, opened_at_ms) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING RETURNING id",
            params![device_id, opened_at_ms],
            notice.kind("firing"),
            now_ms,
        )?,
        Write::ResolveAlert {
            device_id,
            resolved_at_ms,
            reason,
            notice,
        } => notify_each(
            tx,
            "UPDATE alerts SET resolved_at_ms = ?1, resolved_reason = ?3 \
             WHERE device_id = ?2 AND resolved_at_ms IS NULL RETURNING id",
            params![resolved_at_ms, device_id, reason],
            notice.kind("resolved"),
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
            Some("firing"),
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
            Some("resolved"),
            now_ms,
        )?,
    }
    Ok(())
}

/// Every device row of a plan in one `UPDATE … FROM json_each(…)`.
fn write_device_rows(tx: &Transaction<'_>, rows: &[DeviceRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = rows
        .iter()
        .map(|row| {
            serde_json::json!([
                row.device_id,
                row.status.is_some(),
                row.status.map(|(status, _, _)| status.as_str()),
                row.status.and_then(|(_, down_since, _)| down_since),
                row.status.map(|(_, _, at)| at),
                row.reported.map(|(status, _)| status.as_str()),
                row.reported.map(|(_, at)| at),
                row.last_rtt_us,
                row.flap.is_some(),
                row.flap.as_ref().is_some_and(|flap| flap.flapping),
                row.flap.as_ref().and_then(|flap| flap.started_at_ms),
                row.flap.as_ref().map(|flap| flap.recent_changes()),
            ])
        })
        .collect();
    let statement = sql::write_device_rows(
        "(SELECT value ->> 0 AS id, value ->> 1 AS changed, value ->> 2 AS status, \
            value ->> 3 AS down_since, value ->> 4 AS changed_at, value ->> 5 AS reported, \
            value ->> 6 AS reported_at, value ->> 7 AS rtt, value ->> 8 AS flap_changed, \
            value ->> 9 AS flapping, value ->> 10 AS flap_started, value ->> 11 AS recent \
         FROM json_each(?1)) AS u",
    );
    tx.execute(&statement, [serde_json::Value::from(rows).to_string()])?;
    Ok(())
}

/// Runs an alert statement that returns the ids of the alerts it opened or
/// resolved, and queues a `kind` notification for each (none when it
/// changed nothing: an alert already open, or none to resolve; none when
/// `kind` is `None`).
fn notify_each(
    tx: &Transaction<'_>,
    statement: &str,
    params: impl rusqlite::Params,
    kind: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let alert_ids: Vec<i64> = tx
        .prepare(statement)?
        .query_map(params, |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let Some(kind) = kind else {
        return Ok(());
    };
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

/// What `plan` needs (`?1`: a JSON array of ids): the devices, their
/// parents and all their descendants.
const CURRENT_DEVICES: &str = "WITH RECURSIVE tree(id) AS ( \
        SELECT id FROM devices WHERE id IN (SELECT value FROM json_each(?1)) \
        UNION SELECT d.id FROM devices d JOIN tree t ON d.parent_id = t.id) \
    SELECT d.id, d.status, d.status_changed_at_ms, d.down_since_ms, d.reported_status, \
        d.reported_at_ms, d.parent_id, d.enabled, \
        EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.resolved_at_ms IS NULL), \
        d.flapping, d.flap_started_at_ms, d.recent_changes \
    FROM devices d \
    WHERE d.id IN (SELECT id FROM tree) \
        OR d.id IN (SELECT parent_id FROM devices WHERE id IN (SELECT value FROM json_each(?1)))";

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn is_constraint(error: &rusqlite::Error, kind: &str) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, Some(message))
        if code.code == rusqlite::ErrorCode::ConstraintViolation && message.contains(kind))
}
