//! SQLite backend: the embedded default. One connection in WAL mode with
//! `synchronous=FULL` (a commit is durable before it is acknowledged),
//! used from blocking tasks.

use std::sync::Arc;

use futures_util::FutureExt as _;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::args::Arg;
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use super::{StoreError, sql};

/// The database's clock, Unix ms.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
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
    (
        22,
        include_str!("../../migrations/sqlite/0022_degraded.sql"),
    ),
    (
        23,
        include_str!("../../migrations/sqlite/0023_profiles.sql"),
    ),
    (24, include_str!("../../migrations/sqlite/0024_checks.sql")),
    (25, include_str!("../../migrations/sqlite/0025_traces.sql")),
    (
        26,
        include_str!("../../migrations/sqlite/0026_device_versions.sql"),
    ),
    (
        27,
        include_str!("../../migrations/sqlite/0027_device_writes.sql"),
    ),
    (
        28,
        include_str!("../../migrations/sqlite/0028_events_stamped_by_device.sql"),
    ),
    (
        29,
        include_str!("../../migrations/sqlite/0029_alert_receivers.sql"),
    ),
    (
        30,
        include_str!("../../migrations/sqlite/0030_alert_reminders.sql"),
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
    super::known_schema(current, MIGRATIONS)?;
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
}

/// SQLite's steps never wait: `SqliteStore::write` drives them to the end
/// on the blocking thread that holds the connection.
impl WriteTx for Transaction<'_> {
    // One writer at a time already.
    const LOCK_SETTLEMENTS: &'static str = "SELECT 1";
    const LOCK_CHANNELS: &'static str = "SELECT 1";
    const LOCKING: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const SKIP_LOCKED_ROWS: &'static str = "";

    async fn announce_inventory(&self) -> Result<(), StoreError> {
        Ok(()) // one controller per SQLite file
    }

    /// One controller per SQLite file: nobody to tell.
    async fn take_version(&self, after: &[String], _: Option<&str>) -> Result<i64, StoreError> {
        let version = self
            .rows(sql::BUMP_DATA_VERSION, &[], |row| row.int(0))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("the data_version row is missing".into()))?;
        for statement in after {
            self.run(statement, &[]).await?;
        }
        Ok(version)
    }
}

/// Shared statements on the connection and in a transaction alike (a
/// transaction's statements are its connection's).
macro_rules! query_on {
    ($connection:ty) => {
        impl Query for $connection {
            const NOW_MS: &'static str = NOW_MS;
            const ID_IN_LIST: &'static str = "id IN (SELECT value FROM json_each($1))";
            const JSON_ELEMENTS: &'static str = "(SELECT value, key AS n FROM json_each($1)) AS e";

            async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
                let changed =
                    self.execute(&sql::sqlite(statement), rusqlite::params_from_iter(args))?;
                Ok(changed as u64)
            }

            async fn rows<T>(
                &self,
                statement: &str,
                args: &[Arg<'_>],
                read: fn(&dyn Columns) -> Result<T, StoreError>,
            ) -> Result<Vec<T>, StoreError> {
                let mut prepared = self.prepare(&sql::sqlite(statement))?;
                let rows =
                    prepared.query_map(rusqlite::params_from_iter(args), |row| Ok(read(row)))?;
                rows.map(|row| row?).collect()
            }
        }
    };
}

query_on!(Connection);
query_on!(Transaction<'_>);

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

/// Whether `error` violates a constraint of `kind` (`UNIQUE`, `FOREIGN KEY`).
pub(super) fn is_constraint(error: &rusqlite::Error, kind: &str) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, Some(message))
        if code.code == rusqlite::ErrorCode::ConstraintViolation && message.contains(kind))
}
