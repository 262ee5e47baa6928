//! PostgreSQL backend (production): a deadpool of tokio-postgres clients.
//! Each operation is one short transaction; nothing else is awaited while
//! one is open.

use std::collections::HashMap;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::args::Arg;
use super::model::{AgentRecord, DeviceSpec, DueNotification, StatusChanges, TransitionReport};
use super::plan::{CurrentDevice, Plan};
use super::rows::Columns;
use super::tx::{Query, WriteTx};

mod set_based;

use super::{StoreError, duplicate_name, missing_parent, rows, sql};
use set_based::{
    execute_agent_alert, insert_events, open_alerts, resolve_alerts, write_device_rows,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_reported_status.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_notification_channels.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_alerts_outlive_devices.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_events_without_row_checks.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_principals_and_audit.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_agent_certificates.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_sessions_and_lockouts.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_data_version.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_agent_presence.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_leases.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_agent_groups.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/postgres/0013_event_versions.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/postgres/0014_controllers.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/postgres/0015_history.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/postgres/0016_severity.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/postgres/0017_acknowledgements.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/postgres/0018_maintenance.sql"),
    ),
    (
        19,
        include_str!("../../../migrations/postgres/0019_availability.sql"),
    ),
    (
        20,
        include_str!("../../../migrations/postgres/0020_flapping.sql"),
    ),
    (
        21,
        include_str!("../../../migrations/postgres/0021_flapping_index.sql"),
    ),
];

/// The database's clock, Unix ms.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Serialises concurrent migrations of several controllers.
const MIGRATION_LOCK: i64 = 0x5741_5244;

/// What `plan` needs: the reported devices, their parents, all their
/// descendants.
const CURRENT_DEVICES: &str = "WITH RECURSIVE tree(id) AS ( \
        SELECT id FROM devices WHERE id = ANY($1) \
        UNION SELECT d.id FROM devices d JOIN tree t ON d.parent_id = t.id), \
    wanted(id) AS ( \
        SELECT id FROM tree \
        UNION SELECT parent_id FROM devices WHERE id = ANY($1) AND parent_id IS NOT NULL) \
    SELECT d.id, d.status, d.status_changed_at_ms, d.down_since_ms, d.reported_status, \
        d.reported_at_ms, d.parent_id, d.enabled, \
        EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.resolved_at_ms IS NULL), \
        d.flapping, d.flap_started_at_ms, d.recent_changes \
    FROM devices d JOIN wanted w ON d.id = w.id \
    ORDER BY d.id FOR UPDATE OF d";

/// Imports at least this large refresh the planner's statistics.
const ANALYZE_AFTER_IMPORT: usize = 1_000;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// How to open a connection of our own (to listen for announcements).
    config: Box<tokio_postgres::Config>,
    /// A random id of this store, set on every connection as
    /// `ward.origin`, naming the announcements its transactions send.
    origin: String,
}

/// The pool's error with every cause under it ("invalid configuration:
/// password missing"), so the log says what to fix.
fn pool_error(error: impl std::error::Error) -> StoreError {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = inner.source();
    }
    StoreError::Pool(message)
}

fn to_i32(value: impl Into<u32>) -> i32 {
    i32::try_from(value.into()).unwrap_or(i32::MAX)
}

impl PostgresStore {
    pub(super) fn open(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        if let Some(password) = password {
            config.password(password);
        }
        // ward's statements are short and touch at most a site's devices,
        // but the planner's row estimates for the recursive device tree
        // run to millions, past `jit_above_cost`: compiling them cost
        // 170–380 ms of a 10,000-device outage whose execution took 30 ms.
        // Options given in the URL are kept; this one is added to them.
        // `ward.origin` names this store in its announcements.
        let origin = crate::auth::instance_id();
        let options = format!(
            "{} -c jit=off -c ward.origin={origin}",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(pool_error)?;
        Ok(Self {
            pool,
            config: Box::new(listen_config),
            origin,
        })
    }

    /// This store's id in its announcements.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    /// A connection of its own listening for every controller's
    /// announcements ([`super::announce`]).
    pub(super) async fn listen(&self) -> Result<super::announce::Listening, StoreError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (forward, announced) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages =
                futures_util::stream::poll_fn(move |context| connection.poll_message(context));
            while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
                if let tokio_postgres::AsyncMessage::Notification(notification) = message
                    && let Some(parsed) = super::announce::parse(notification.payload())
                    && forward.send(parsed).is_err()
                {
                    return;
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", super::announce::CHANNEL))
            .await?;
        Ok(super::announce::Listening {
            announced,
            _client: client,
        })
    }

    /// Runs `operation` in one transaction, committed if it succeeds.
    pub(super) async fn transaction<T>(
        &self,
        operation: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = operation(&tx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// After an import of `count` devices: the planner's statistics are
    /// stale after a bulk insert until autovacuum gets to the table, and
    /// stale ones make every status commit scan the whole table, so large
    /// imports refresh them. The import stands whatever happens here.
    pub(super) async fn after_import(&self, count: usize) {
        if count < ANALYZE_AFTER_IMPORT {
            return;
        }
        let analyzed = match self.client().await {
            Ok(client) => client
                .batch_execute("ANALYZE devices, alerts")
                .await
                .map_err(StoreError::from),
            Err(error) => Err(error),
        };
        if let Err(error) = analyzed {
            tracing::warn!(%error, count, "refreshing PostgreSQL's statistics after an import failed; the import stands, status commits may be slow until autovacuum runs");
        }
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    pub(super) async fn migrate(&self) -> Result<u32, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
        )
        .await?;
        let current: i64 = tx.query_one(sql::MIGRATED_VERSION, &[]).await?.try_get(0)?;
        let mut applied = 0;
        for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
            tx.batch_execute(sql).await?;
            tx.execute(sql::RECORD_MIGRATION, &[version, &crate::time::now_ms()])
                .await?;
            applied += 1;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Claims them too: each row returned is locked (`SKIP LOCKED`: rows
    /// another controller is claiming are passed over) and its next
    /// attempt moved [`super::NOTIFICATION_CLAIM_MS`] ahead, so no other
    /// controller on the database delivers it meanwhile.
    pub(super) async fn due_notifications(
        &self,
        channel: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let query = format!(
            "{} FOR UPDATE OF o SKIP LOCKED",
            super::due_notifications_query(["$1", "$2", "$3"])
        );
        let rows = tx
            .query(&query, &[&now_ms, &i64::from(limit), &channel])
            .await?;
        let due: Vec<DueNotification> = rows
            .iter()
            .map(rows::due_notification)
            .collect::<Result<_, _>>()?;
        let ids: Vec<i64> = due.iter().map(|notification| notification.id).collect();
        tx.execute(
            "UPDATE notification_outbox SET next_attempt_at_ms = $2 WHERE id = ANY($1)",
            &[&ids, &(now_ms + super::NOTIFICATION_CLAIM_MS)],
        )
        .await?;
        tx.commit().await?;
        Ok(due)
    }

    pub(super) async fn release_notifications(
        &self,
        ids: &[i64],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE notification_outbox SET next_attempt_at_ms = $2 WHERE id = ANY($1)",
                &[&ids, &now_ms],
            )
            .await?;
        Ok(())
    }
}

impl WriteTx for Transaction<'_> {
    // A lock of its own (held to the commit): taking the data-version row
    // here, before device rows, would invert the order every other writer
    // takes them in.
    const LOCK_SETTLEMENTS: &'static str = "SELECT pg_advisory_xact_lock(7727001)";
    const LOCKING: &'static str = "FOR UPDATE";
    // Controllers of a cluster starting together set the channels one
    // after the other (the lock conflicts with itself).
    const LOCK_CHANNELS: &'static str =
        "LOCK TABLE notification_channels IN SHARE ROW EXCLUSIVE MODE";

    /// Delivered to every listening controller at the commit.
    async fn announce_changes(
        &self,
        changes: &StatusChanges,
        version: i64,
    ) -> Result<(), StoreError> {
        let payload = super::announce::payload(changes, version);
        self.execute(
            &format!(
                "SELECT pg_notify('{}', current_setting('ward.origin') || ' ' || $1)",
                super::announce::CHANNEL
            ),
            &[&payload],
        )
        .await?;
        Ok(())
    }

    async fn announce_inventory(&self) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "SELECT pg_notify('{}', current_setting('ward.origin') || ' {}')",
                super::announce::CHANNEL,
                super::announce::INVENTORY
            ),
            &[],
        )
        .await?;
        Ok(())
    }

    async fn add_site(&self, site: &str) -> Result<(), StoreError> {
        self.execute(sql::ADD_SITE, &[&site]).await?;
        Ok(())
    }

    async fn insert_device(&self, spec: &DeviceSpec, now_ms: i64) -> Result<i64, StoreError> {
        let row = self
            .query_one(sql::INSERT_DEVICE, &SpecColumns::of(spec).with(&now_ms))
            .await
            .map_err(|error| constraint_error(error, spec))?;
        Ok(row.try_get(0)?)
    }

    async fn update_spec(&self, id: i64, spec: &DeviceSpec) -> Result<bool, StoreError> {
        let updated = self
            .execute(sql::UPDATE_SPEC, &SpecColumns::of(spec).with(&id))
            .await
            .map_err(|error| constraint_error(error, spec))?;
        Ok(updated > 0)
    }

    async fn remove_device(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.execute(sql::KEEP_ALERT_SUBJECT, &[&id]).await?;
        self.execute(sql::KEEP_TOMBSTONE, &[&id, &now_ms]).await?;
        self.execute(sql::DELETE_DEVICE, &[&id]).await?;
        Ok(())
    }

    /// Locked in id order so concurrent writers cannot deadlock.
    async fn current_devices(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, CurrentDevice>, StoreError> {
        let rows = self.query(CURRENT_DEVICES, &[&ids]).await?;
        let current = rows.iter().map(rows::current).collect::<Result<_, _>>()?;
        Ok(current)
    }

    /// Set-based: every device row in one statement (the rows the writes
    /// leave, [`Plan::device_rows`]), every event in one, device alerts in
    /// one statement per kind and round ([`Plan::alert_rounds`]), agent
    /// alerts one by one. All are pipelined on the connection: a
    /// 10,000-device outage is a handful of statements.
    async fn execute_plan(&self, plan: &Plan, actor: &str, now_ms: i64) -> Result<(), StoreError> {
        let rows = plan.device_rows();
        let devices = write_device_rows(self, &rows);
        let events = insert_events(self, plan, actor);
        let device_alerts = async {
            for round in plan.alert_rounds() {
                tokio::try_join!(
                    open_alerts(self, &round, now_ms),
                    resolve_alerts(self, &round, now_ms)
                )?;
            }
            Ok::<_, StoreError>(())
        };
        let agent_alerts = futures_util::future::try_join_all(
            plan.writes
                .iter()
                .map(|write| execute_agent_alert(self, write, now_ms)),
        );
        tokio::try_join!(devices, events, device_alerts, agent_alerts)?;
        Ok(())
    }

    async fn first_application(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let seq = i64::try_from(report.seq).unwrap_or(i64::MAX);
        let fresh = self
            .execute(
                sql::REPORT_ONCE,
                &[&report.agent_id, &report.boot_id, &seq, &now_ms],
            )
            .await?;
        Ok(fresh > 0)
    }

    async fn add_agent(
        &self,
        id: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        self.execute(sql::ADD_AGENT, &[&id, &site, &now_ms]).await?;
        rows::agent(&self.query_one(sql::AGENT, &[&id]).await?)
    }
}

/// Shared statements on a connection and in a transaction alike.
macro_rules! query_on {
    ($client:ty) => {
        impl Query for $client {
            const NOW_MS: &'static str = NOW_MS;
            const ID_IN_LIST: &'static str = "id = ANY($1)";

            async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
                Ok(self.execute(statement, &bind(args)).await?)
            }

            async fn rows<T>(
                &self,
                statement: &str,
                args: &[Arg<'_>],
                read: fn(&dyn Columns) -> Result<T, StoreError>,
            ) -> Result<Vec<T>, StoreError> {
                let rows = self.query(statement, &bind(args)).await?;
                rows.iter().map(|row| read(row)).collect()
            }
        }
    };
}

query_on!(tokio_postgres::Client);
query_on!(Transaction<'_>);

/// `args` as tokio-postgres binds them.
fn bind<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|arg| arg as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// The eleven configured columns of a device, owned, for binding.
struct SpecColumns<'a> {
    spec: &'a DeviceSpec,
    address: String,
    numbers: [i32; 4],
    tags: String,
    severity: &'static str,
}

impl<'a> SpecColumns<'a> {
    fn of(spec: &'a DeviceSpec) -> Self {
        Self {
            spec,
            address: spec.address.to_string(),
            numbers: [
                to_i32(spec.interval_ms),
                to_i32(spec.timeout_ms),
                to_i32(spec.down_after),
                to_i32(spec.up_after),
            ],
            tags: serde_json::to_string(&spec.tags).unwrap_or_else(|_| "[]".into()),
            severity: spec.severity.as_str(),
        }
    }

    /// The columns name … severity in schema order, then `last` (the id to
    /// update, or the creation time).
    fn with<'b>(&'b self, last: &'b i64) -> [&'b (dyn tokio_postgres::types::ToSql + Sync); 12] {
        let [interval, timeout, down_after, up_after] = &self.numbers;
        [
            &self.spec.name,
            &self.address,
            &self.spec.site,
            &self.spec.parent_id,
            interval,
            timeout,
            down_after,
            up_after,
            &self.tags,
            &self.spec.enabled,
            &self.severity,
            last,
        ]
    }
}

/// Names a duplicate or a missing parent; passes anything else on.
fn constraint_error(error: tokio_postgres::Error, spec: &DeviceSpec) -> StoreError {
    match error.code() {
        Some(&SqlState::UNIQUE_VIOLATION) => duplicate_name(spec),
        Some(&SqlState::FOREIGN_KEY_VIOLATION) => missing_parent(spec),
        _ => error.into(),
    }
}
