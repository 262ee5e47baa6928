//! PostgreSQL backend (production): a deadpool of tokio-postgres clients.
//! Each operation is one short transaction; nothing else is awaited while
//! one is open.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};

use super::args::Arg;
use super::postgres_tls::{self, RustlsConnector};
use super::rows::Columns;
use super::tx::{Query, WriteTx};

use super::{StoreError, sql};

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        include_str!("../../migrations/postgres/0002_reported_status.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_notification_channels.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_alerts_outlive_devices.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_events_without_row_checks.sql"),
    ),
    (
        6,
        include_str!("../../migrations/postgres/0006_principals_and_audit.sql"),
    ),
    (
        7,
        include_str!("../../migrations/postgres/0007_agent_certificates.sql"),
    ),
    (
        8,
        include_str!("../../migrations/postgres/0008_sessions_and_lockouts.sql"),
    ),
    (
        9,
        include_str!("../../migrations/postgres/0009_data_version.sql"),
    ),
    (
        10,
        include_str!("../../migrations/postgres/0010_agent_presence.sql"),
    ),
    (
        11,
        include_str!("../../migrations/postgres/0011_leases.sql"),
    ),
    (
        12,
        include_str!("../../migrations/postgres/0012_agent_groups.sql"),
    ),
    (
        13,
        include_str!("../../migrations/postgres/0013_event_versions.sql"),
    ),
    (
        14,
        include_str!("../../migrations/postgres/0014_controllers.sql"),
    ),
    (
        15,
        include_str!("../../migrations/postgres/0015_history.sql"),
    ),
    (
        16,
        include_str!("../../migrations/postgres/0016_severity.sql"),
    ),
    (
        17,
        include_str!("../../migrations/postgres/0017_acknowledgements.sql"),
    ),
    (
        18,
        include_str!("../../migrations/postgres/0018_maintenance.sql"),
    ),
    (
        19,
        include_str!("../../migrations/postgres/0019_availability.sql"),
    ),
    (
        20,
        include_str!("../../migrations/postgres/0020_flapping.sql"),
    ),
    (
        21,
        include_str!("../../migrations/postgres/0021_flapping_index.sql"),
    ),
    (
        22,
        include_str!("../../migrations/postgres/0022_degraded.sql"),
    ),
    (
        23,
        include_str!("../../migrations/postgres/0023_profiles.sql"),
    ),
    (
        24,
        include_str!("../../migrations/postgres/0024_checks.sql"),
    ),
    (
        25,
        include_str!("../../migrations/postgres/0025_traces.sql"),
    ),
    (
        26,
        include_str!("../../migrations/postgres/0026_device_versions.sql"),
    ),
    (
        27,
        include_str!("../../migrations/postgres/0027_device_writes.sql"),
    ),
    (
        28,
        include_str!("../../migrations/postgres/0028_events_stamped_by_device.sql"),
    ),
    (
        29,
        include_str!("../../migrations/postgres/0029_alert_receivers.sql"),
    ),
    (
        30,
        include_str!("../../migrations/postgres/0030_alert_reminders.sql"),
    ),
];

/// The database's clock, Unix ms.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Serialises concurrent migrations of several controllers.
const MIGRATION_LOCK: i64 = 0x5741_5244;

/// Devices created since the planner's statistics were last refreshed
/// (by this store) after which they are refreshed again.
const ANALYZE_AFTER_CREATED: usize = 1_000;

/// Connections to the database.
const POOL_SIZE: usize = 16;

/// Write transactions running at once at most: the pool's other
/// connections stay free for reads, so a fleet reconnecting (a thousand
/// agents' reports at once) waits for its turn to write while the REST
/// API, the dashboard and the event stream still read at once.
const WRITERS: usize = 12;

/// The `application_name` of ward's connections unless the URL names one.
pub(super) const CONTROLLER_APPLICATION: &str = "ward-controller";

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// One permit per write transaction running ([`WRITERS`]).
    writers: tokio::sync::Semaphore,
    /// How to open a connection of our own (to listen for announcements).
    config: Box<tokio_postgres::Config>,
    /// TLS as the URL's `sslmode` says (`postgres_tls`).
    tls: RustlsConnector,
    /// A random id of this store, set on every connection as
    /// `ward.origin`, naming the announcements its transactions send.
    origin: String,
    /// Devices created since this store last refreshed the statistics.
    created_unanalyzed: std::sync::atomic::AtomicUsize,
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

impl PostgresStore {
    pub(super) fn open(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let (url, tls_parameters) = postgres_tls::split(url)?;
        let tls = postgres_tls::connector(&tls_parameters)?;
        let mut config = tokio_postgres::Config::from_str(&url)?;
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
        // What `ward-controller restore` looks for: no controller may be
        // connected while a database is put back.
        if config.get_application_name().is_none() {
            config.application_name(CONTROLLER_APPLICATION);
        }
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(pool_error)?;
        Ok(Self {
            pool,
            writers: tokio::sync::Semaphore::new(WRITERS),
            config: Box::new(listen_config),
            tls,
            origin,
            created_unanalyzed: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// This store's id in its announcements.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    /// A connection of its own listening for every controller's
    /// announcements ([`super::announce`]).
    pub(super) async fn listen(&self) -> Result<super::announce::Listening, StoreError> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
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
        let _turn = self
            .writers
            .acquire()
            .await
            .map_err(|_| StoreError::Pool("the store is closing".into()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = operation(&tx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// After `count` devices were created: the planner's statistics are
    /// stale after many inserts until autovacuum gets to the table (a
    /// minute or more), and stale ones make every status commit scan the
    /// whole table, so every [`ANALYZE_AFTER_CREATED`] devices created
    /// (one large import, or many small ones: a fleet's inventory written
    /// site by site) refresh them. The devices stand whatever happens here.
    pub(super) async fn after_created(&self, count: usize) {
        use std::sync::atomic::Ordering;
        let created = self.created_unanalyzed.fetch_add(count, Ordering::Relaxed) + count;
        if created < ANALYZE_AFTER_CREATED {
            return;
        }
        self.created_unanalyzed.store(0, Ordering::Relaxed);
        let analyzed = match self.client().await {
            Ok(client) => client
                .batch_execute("ANALYZE devices, alerts")
                .await
                .map_err(StoreError::from),
            Err(error) => Err(error),
        };
        if let Err(error) = analyzed {
            tracing::warn!(%error, created, "refreshing PostgreSQL's statistics after devices were created failed; they stand, status commits may be slow until autovacuum runs");
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
        super::known_schema(current, MIGRATIONS)?;
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
}

impl WriteTx for Transaction<'_> {
    // A lock of its own (held to the commit): taking the data-version row
    // here, before device rows, would invert the order every other writer
    // takes them in.
    const LOCK_SETTLEMENTS: &'static str = "SELECT pg_advisory_xact_lock(7727001)";
    const LOCKING: &'static str = "FOR UPDATE";
    const SKIP_LOCKED: &'static str = "FOR UPDATE OF o SKIP LOCKED";
    const SKIP_LOCKED_ROWS: &'static str = "FOR UPDATE SKIP LOCKED";
    // Controllers of a cluster starting together set the channels one
    // after the other (the lock conflicts with itself).
    const LOCK_CHANNELS: &'static str =
        "LOCK TABLE notification_channels IN SHARE ROW EXCLUSIVE MODE";

    /// One simple-protocol message: the bump, `after`, the notification
    /// (delivered to every listening controller at the commit).
    async fn take_version(
        &self,
        after: &[String],
        announced: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut script = String::from(sql::BUMP_DATA_VERSION);
        for statement in after {
            script.push_str(";\n");
            script.push_str(statement);
        }
        if let Some(announced) = announced {
            script.push_str(&format!(
                ";\nSELECT pg_notify('{}', current_setting('ward.origin') || ' v' || {} || ' ' || {})",
                super::announce::CHANNEL,
                sql::CURRENT_VERSION,
                sql::text_literal(announced)
            ));
        }
        // The bump's row comes first.
        self.simple_query(&script)
            .await?
            .iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
                _ => None,
            })
            .ok_or_else(|| StoreError::Corrupt("the data_version row is missing".into()))
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
}

/// Shared statements on a connection and in a transaction alike; `$prepared`
/// (`|client, statement, args|`) gives the statement prepared already, when
/// the client keeps them.
macro_rules! query_on {
    ($client:ty, |$on:ident, $text:ident, $args:ident| $prepared:expr) => {
        impl Query for $client {
            const NOW_MS: &'static str = NOW_MS;
            const ID_IN_LIST: &'static str = "id = ANY($1)";
            const JSON_ELEMENTS: &'static str =
                "jsonb_array_elements(CAST(CAST($1 AS TEXT) AS JSONB)) WITH ORDINALITY AS e(value, n)";

            async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
                let ($on, $text, $args) = (self, statement, args);
                Ok(match $prepared {
                    Some(prepared) => self.execute(&prepared, &bind(args)).await?,
                    None => self.execute(statement, &bind(args)).await?,
                })
            }

            async fn rows<T>(
                &self,
                statement: &str,
                args: &[Arg<'_>],
                read: fn(&dyn Columns) -> Result<T, StoreError>,
            ) -> Result<Vec<T>, StoreError> {
                let ($on, $text, $args) = (self, statement, args);
                let rows = match $prepared {
                    Some(prepared) => self.query(&prepared, &bind(args)).await?,
                    None => self.query(statement, &bind(args)).await?,
                };
                rows.iter().map(|row| read(row)).collect()
            }
        }
    };
}

query_on!(tokio_postgres::Client, |_client, _statement, _args| None::<
    tokio_postgres::Statement,
>);
query_on!(Transaction<'_>, |tx, statement, args| kept(
    tx, statement, args
)
.await?);

/// Statements a connection keeps prepared at most (each a few KiB in its
/// server process).
const MOST_KEPT: usize = 512;

/// `statement` as the transaction's connection keeps it prepared, when it
/// has parameters (their text is constant; statements with values written
/// in are prepared each time), so running it again is one round trip, not
/// two (prepare, then run). `None` once the connection keeps
/// [`MOST_KEPT`].
async fn kept(
    tx: &Transaction<'_>,
    statement: &str,
    args: &[Arg<'_>],
) -> Result<Option<tokio_postgres::Statement>, StoreError> {
    if args.is_empty() || tx.statement_cache.size() >= MOST_KEPT {
        return Ok(None);
    }
    Ok(Some(tx.prepare_cached(statement).await?))
}

/// `args` as tokio-postgres binds them.
fn bind<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|arg| arg as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}
