//! The status database: one record per device is the single source of
//! truth. Two backends with the same semantics, checked by one conformance
//! suite: PostgreSQL (production) and SQLite (the embedded default).
//!
//! Applying an agent report is one short transaction (report id, device
//! rows, events, alerts, outbox) and is idempotent by (agent, boot, seq).
//! The rules live in [`plan`], once; backends only read and write.
//! Only this module knows SQL.

mod acknowledgements;
mod announce;
mod applying;
mod args;
mod availability;
mod certificates;
mod device_writes;
mod event_log;
mod held;
mod history;
mod maintenance;
mod operations;
mod ownership;
mod plan_execution;
mod postgres;
mod postgres_tls;
mod presence;
mod principals;
mod profiles;
mod reminders;
mod rows;
mod sessions;
mod settling;
mod sql;
mod sqlite;
mod sync;
mod traces;
mod tx;

use ward_domain::model;
pub use ward_domain::{flap, groups, plan};

pub use model::{
    Acknowledgement, AgentAlertChange, AgentRecord, Alert, AlertName, ApplyOutcome,
    CONTROLLER_REPORTS, DataVersion, Device, DeviceSpec, DueNotification, FieldError, Ignored,
    Notification, ReportedTransition, Severity, Status, StatusChanges, TransitionReport,
};

pub use acknowledgements::{AckOutcome, MAX_COMMENT as MAX_ACK_COMMENT};
pub use announce::{Announced, Announcement, Listening};
pub use applying::{AppliedTogether, Received};
pub use event_log::LoggedChange;
pub use flap::FlapPolicy;
pub use history::{
    DEFAULT_LIMIT as HISTORY_DEFAULT_LIMIT, HistoryCursor, HistoryEntry, HistoryFilter,
    HistoryPage, MAX_LIMIT as HISTORY_MAX_LIMIT,
};
pub use ownership::Settlement;
pub use presence::{HEARD_RECENTLY, HeardAgent, Member as ControllerMember, SHARE_INTERVAL};
pub use principals::{
    Actor, AuditEntry, AuditFilter, TokenOwner, TokenRecord, UserRecord, validate_user_name,
};
pub use profiles::{Site, StoredProfile};
pub use sessions::{LockoutPolicy, NewSession, SessionOrigin, SessionRecord};
pub use sync::{SyncDiff, SyncMode, SyncedDevice};
pub use traces::Attached;
pub use ward_domain::availability::ReportedDevice;
pub use ward_domain::maintenance::{MaintenanceSpec, MaintenanceWindow};

use args::Arg;
use postgres::PostgresStore;
use sqlite::SqliteStore;
use tx::Query as _;

use std::sync::atomic::{AtomicU64, Ordering};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one we support.
    #[error("unsupported database URL `{0}`: use postgres://USER@HOST:PORT/DB or sqlite:PATH")]
    Url(String),
    /// Invalid input; nothing was written.
    #[error("invalid {0}")]
    Invalid(#[from] FieldError),
    /// Entry `index` of a bulk import is invalid; nothing was written.
    #[error("entry {index}: {field}: {message}")]
    InvalidEntry {
        /// Position in the import, from 0.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The write conflicts with existing data (e.g. a duplicate name).
    #[error("conflict: {message}")]
    Conflict {
        /// The input field that conflicts (`name`, `devices[3].name`).
        field: String,
        /// What it conflicts with.
        message: String,
    },
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    /// The URL's TLS parameters or files (`sslmode`, `sslrootcert`, …).
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
    /// A row the store cannot read back (a bug or manual tampering).
    #[error("unreadable row: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer release than this one.
    #[error(
        "the status database's schema is at migration {database}, newer than this controller knows ({known}): \
         a newer ward-controller migrated it; run that release (or newer) here too (migrations never go back), \
         or restore a backup taken before the upgrade"
    )]
    SchemaNewer {
        /// The database's last migration.
        database: i64,
        /// This build's last migration.
        known: i64,
    },
    /// The blocking task running a SQLite call failed.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<ward_domain::Unreadable> for StoreError {
    fn from(unreadable: ward_domain::Unreadable) -> Self {
        StoreError::Corrupt(unreadable.0)
    }
}

/// The status database. It counts and logs its own failures (every
/// operation's error but bad input and conflicts): callers pass errors on
/// and never count them again.
pub struct Store {
    backend: Backend,
    /// Operations that failed (`ward_store_errors_total`).
    failures: AtomicU64,
}

enum Backend {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        $self.counted(match &$self.backend {
            $crate::store::Backend::Postgres(store) => store.$method($($arg),*).await,
            $crate::store::Backend::Sqlite(store) => store.$method($($arg),*).await,
        })
    };
}

/// Runs `$operation`, statements over `$q` (a [`tx::Query`]) on a
/// connection of either backend outside any explicit transaction: a read,
/// or a write of one statement. What it uses must be owned: SQLite runs it
/// on a blocking thread.
macro_rules! on_connection {
    ($self:ident, |$q:ident| $operation:expr) => {
        $self.counted(match &$self.backend {
            $crate::store::Backend::Postgres(store) => {
                async {
                    let client = store.client().await?;
                    let $q: &tokio_postgres::Client = &client;
                    $operation.await
                }
                .await
            }
            $crate::store::Backend::Sqlite(store) => {
                store.on_connection(async move |$q| $operation.await).await
            }
        })
    };
}

/// Runs `$operation`, an operation over `$tx` (a
/// [`tx::WriteTx`]), in one transaction of either backend,
/// committed if it succeeds. What it uses must be owned: SQLite runs it on
/// a blocking thread.
macro_rules! transaction {
    ($self:ident, |$tx:ident| $operation:expr) => {
        $self.counted(match &$self.backend {
            $crate::store::Backend::Postgres(store) => {
                store.transaction(async |$tx| $operation.await).await
            }
            $crate::store::Backend::Sqlite(store) => {
                store.write(async move |$tx| $operation.await).await
            }
        })
    };
}

mod facade;

/// Refuses a database whose last migration (`database`) is past the last
/// of `migrations` (this build's): a newer release migrated it, and this
/// one would misread what it does not know.
fn known_schema(database: i64, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    let known = migrations.last().map_or(0, |(version, _)| *version);
    if database > known {
        return Err(StoreError::SchemaNewer { database, known });
    }
    Ok(())
}

impl Store {
    fn over(backend: Backend) -> Self {
        Self {
            backend,
            failures: AtomicU64::new(0),
        }
    }

    /// `result`, its error counted and logged unless it is the caller's
    /// (bad input, a conflict).
    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result
            && !matches!(
                error,
                StoreError::Invalid(_)
                    | StoreError::InvalidEntry { .. }
                    | StoreError::Conflict { .. }
            )
        {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "store operation failed");
        }
        result
    }

    /// How many operations failed (`ward_store_errors_total`).
    pub fn failures(&self) -> &AtomicU64 {
        &self.failures
    }

    /// Opens `postgres://…` or `sqlite:PATH` (created if missing). Does not
    /// migrate: call [`Store::migrate`].
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, None).await
    }

    /// Like [`Store::open`], with PostgreSQL's `password` kept apart from
    /// the URL (read from a file or a credential; SQLite has none).
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::over(Backend::Postgres(PostgresStore::open(
                url, password,
            )?)))
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Store::over(Backend::Sqlite(SqliteStore::open(path).await?)))
        } else {
            Err(StoreError::Url(ward_settings::redact_secrets(url)))
        }
    }

    /// A cheap round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_connection!(self, |q| q.rows("SELECT 1", &[], |_| Ok(())))?;
        Ok(())
    }

    /// Applies the migrations not applied yet; returns how many ran.
    pub async fn migrate(&self) -> Result<u32, StoreError> {
        dispatch!(self.migrate())
    }

    /// Creates a device (status `unknown`, site created on first use).
    pub async fn create_device(
        &self,
        spec: &DeviceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        spec.validate()?;
        let (spec, actor) = (spec.clone(), actor.clone());
        let device = transaction!(self, |tx| operations::create_device(
            tx, &spec, &actor, now_ms
        ))?;
        if let Backend::Postgres(store) = &self.backend {
            store.after_created(1).await;
        }
        Ok(device)
    }

    /// Replaces a device's configuration; `None` if it does not exist. The
    /// change goes through the rules ([`plan::plan_inventory`]): children
    /// of a re-parented, disabled or recovered device settle again, a
    /// disabled device's alert is resolved, a device whose address changed
    /// is `unknown` until its agent reports on the new address; a parent
    /// that would make a cycle is refused.
    pub async fn update_device(
        &self,
        id: i64,
        spec: &DeviceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<(Device, StatusChanges)>, StoreError> {
        spec.validate()?;
        if spec.parent_id == Some(id) {
            return Err(StoreError::Invalid(FieldError {
                field: "parent_id",
                message: "a device cannot be its own parent".into(),
            }));
        }
        let (spec, actor) = (spec.clone(), actor.clone());
        transaction!(self, |tx| operations::update_device(
            tx, id, &spec, &actor, now_ms
        ))
    }

    /// Deletes a device; `None` if it did not exist. Its open alert is
    /// resolved (a `resolved` notification naming the deletion is queued
    /// and outlives the device), its events go with it, and its children
    /// lose their parent and return to their own reported status.
    pub async fn delete_device(
        &self,
        id: i64,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<StatusChanges>, StoreError> {
        let actor = actor.clone();
        transaction!(self, |tx| operations::delete_device(tx, id, &actor, now_ms))
    }

    /// Creates all `specs` in one transaction, or none: the first invalid,
    /// duplicate or orphan entry is named by position.
    pub async fn import_devices(
        &self,
        specs: &[DeviceSpec],
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Vec<Device>, StoreError> {
        validate_entries(specs)?;
        let (specs, actor) = (specs.to_vec(), actor.clone());
        let devices = transaction!(self, |tx| operations::import_devices(
            tx, &specs, &actor, now_ms
        ))?;
        if let Backend::Postgres(store) = &self.backend {
            store.after_created(devices.len()).await;
        }
        Ok(devices)
    }

    /// Makes the inventory equal to `specs`, keyed by name within a site
    /// ([`sync`]): one transaction, or (`dry_run`) the diff only. Every
    /// entry is checked first; a bad one is named by position and nothing
    /// is written.
    pub async fn sync_devices(
        &self,
        specs: &[DeviceSpec],
        mode: SyncMode,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<(SyncDiff, StatusChanges), StoreError> {
        validate_entries(specs)?;
        let (specs, actor) = (specs.to_vec(), actor.clone());
        transaction!(self, |tx| sync::sync_devices(
            tx, &specs, mode, &actor, now_ms
        ))
    }

    /// One device.
    pub async fn get_device(&self, id: i64) -> Result<Option<Device>, StoreError> {
        Ok(self.get_devices(&[id]).await?.pop())
    }

    /// The devices with these ids (missing ids are skipped), by id.
    pub async fn get_devices(&self, ids: &[i64]) -> Result<Vec<Device>, StoreError> {
        let ids = ids.to_vec();
        on_connection!(self, |q| tx::devices_by_id(q, &ids))
    }

    /// All devices, by site then name in natural order
    /// ([`ward_domain::natural`]: `lo-2` before `lo-10`).
    pub async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut devices =
            on_connection!(self, |q| q.rows(sql::DEVICES, &[], |row| rows::device(row)))?;
        devices.sort_by(|a, b| {
            ward_domain::natural::cmp(&a.spec.site, &b.spec.site)
                .then_with(|| ward_domain::natural::cmp(&a.spec.name, &b.spec.name))
        });
        Ok(devices)
    }

    /// What changed in the device list after data version `version`: the
    /// ids deleted, then the devices written (as they are now), each
    /// possibly also written later (services::device_table applies the
    /// deletions first). `None` when the record of writes that old was
    /// pruned ([`Store::forget_device_writes`]): load the whole list.
    pub async fn devices_changed_since(
        &self,
        version: i64,
    ) -> Result<Option<(Vec<i64>, Vec<Device>)>, StoreError> {
        on_connection!(self, |q| async move {
            let deleted = q
                .rows(sql::DEVICES_DELETED, &[Arg::Int(version)], |row| row.int(0))
                .await?;
            let written = q
                .rows(sql::DEVICES_CHANGED, &[Arg::Int(version)], |row| {
                    rows::device(row)
                })
                .await?;
            // Read after the writes: a prune committed before that read
            // is seen here.
            if version < device_writes::kept_after(q).await? {
                return Ok(None);
            }
            Ok(Some((deleted, written)))
        })
    }

    /// Forgets which devices' status the commits up to data version
    /// `through` wrote (a device list older than that loads the whole
    /// list again); returns how many records went.
    pub async fn forget_device_writes(&self, through: i64) -> Result<u64, StoreError> {
        transaction!(self, |tx| device_writes::forget_through(tx, through))
    }

    /// Applies an agent report in one transaction, once per (agent, boot,
    /// seq).
    /// Outage starts and ends count towards flapping under `flapping`.
    pub async fn apply(
        &self,
        report: &TransitionReport,
        flapping: &FlapPolicy,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let flapping = *flapping;
        let received = (report.clone(), now_ms);
        self.counted(match &self.backend {
            Backend::Postgres(store) => {
                store
                    .transaction(async |tx| applying::apply(tx, &received, &flapping).await)
                    .await
            }
            Backend::Sqlite(store) => {
                store
                    .write(async move |tx| applying::apply(tx, &received, &flapping).await)
                    .await
            }
        })
    }

    /// Applies agents' `reports` in order in one transaction, each once
    /// per (agent, boot, seq), at one data version (group commit).
    pub async fn apply_together(
        &self,
        reports: &[Received],
        flapping: &FlapPolicy,
    ) -> Result<AppliedTogether, StoreError> {
        let flapping = *flapping;
        self.counted(match &self.backend {
            Backend::Postgres(store) => {
                store
                    .transaction(async |tx| applying::apply_together(tx, reports, &flapping).await)
                    .await
            }
            Backend::Sqlite(store) => {
                // Run on the writer's thread, which needs its own copy.
                let reports = reports.to_vec();
                store
                    .write(async move |tx| applying::apply_together(tx, &reports, &flapping).await)
                    .await
            }
        })
    }

    /// Alerts, newest first; only open ones if `open_only`.
    pub async fn alerts(&self, open_only: bool) -> Result<Vec<Alert>, StoreError> {
        on_connection!(self, |q| q
            .rows(&alerts_query(open_only), &[], |row| { rows::alert(row, 0) }))
    }

    /// Up to `limit` of `channel`'s notifications due at `now_ms`, oldest
    /// first, taken for delivery: on PostgreSQL no other controller gets
    /// them for [`NOTIFICATION_CLAIM_MS`] unless they are rescheduled (an
    /// SQLite database has one controller).
    pub async fn due_notifications(
        &self,
        channel: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let channel = channel.to_owned();
        transaction!(self, |tx| operations::take_due_notifications(
            tx, &channel, now_ms, limit
        ))
    }

    /// Hands back taken notifications `ids` not attempted (due again at
    /// `now_ms`, for any controller).
    pub async fn release_notifications(&self, ids: &[i64], now_ms: i64) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        on_connection!(self, |q| operations::reschedule_notifications(
            q, &ids, now_ms
        ))
    }

    /// Makes `channels` the ones every new alert notification is queued
    /// for; returns how many waiting notifications of other channels were
    /// discarded (a channel taken out of the configuration).
    pub async fn set_notification_channels(&self, channels: &[&str]) -> Result<u64, StoreError> {
        let channels: Vec<String> = channels.iter().map(|&channel| channel.to_owned()).collect();
        transaction!(self, |tx| operations::set_notification_channels(
            tx, &channels
        ))
    }

    /// A notification was delivered (2xx): it leaves the outbox.
    pub async fn notification_delivered(&self, id: i64) -> Result<(), StoreError> {
        on_connection!(self, |q| q
            .run(sql::NOTIFICATION_DELIVERED, &[Arg::Int(id)]))?;
        Ok(())
    }

    /// Whether `receiver` gets alert `alert_id`'s notifications: the
    /// routes' answer at its first notification (`routed`), kept for the
    /// alert's life, so its resolution goes where its firing went.
    pub async fn route_once(
        &self,
        alert_id: i64,
        receiver: &str,
        routed: bool,
    ) -> Result<bool, StoreError> {
        let receiver = receiver.to_owned();
        on_connection!(self, |q| q.rows(
            sql::ROUTE_ONCE,
            &[Arg::Int(alert_id), Arg::Text(&receiver), Arg::Flag(routed)],
            |row| row.flag(0)
        ))?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("routing an alert returned no row".into()))
    }

    /// Where each open alert's reminders and escalations stand, by (alert,
    /// route number): when last reminded, whether escalated.
    pub async fn reminder_states(
        &self,
    ) -> Result<std::collections::HashMap<(i64, usize), (i64, bool)>, StoreError> {
        on_connection!(self, |q| reminders::states(q))
    }

    /// Queues a `reminder` of alert `alert_id` for `receivers` if route
    /// `route`'s last one (or the alert's opening) is older than
    /// `due_before_ms`: once per period whichever controllers ask.
    pub async fn remind(
        &self,
        alert_id: i64,
        route: usize,
        receivers: &[String],
        (now_ms, due_before_ms): (i64, i64),
    ) -> Result<bool, StoreError> {
        let route = i32::try_from(route).unwrap_or(i32::MAX);
        let receivers = receivers.to_vec();
        transaction!(self, |tx| reminders::remind(
            tx,
            alert_id,
            route,
            &receivers,
            (now_ms, due_before_ms)
        ))
    }

    /// Escalates alert `alert_id` (opened at `opened_at_ms`) on route
    /// `route` to `receivers` unless done: they are told of it and of
    /// everything after it (its acknowledgement, its end).
    pub async fn escalate(
        &self,
        alert_id: i64,
        route: usize,
        receivers: &[String],
        (now_ms, opened_at_ms): (i64, i64),
    ) -> Result<bool, StoreError> {
        let route = i32::try_from(route).unwrap_or(i32::MAX);
        let receivers = receivers.to_vec();
        transaction!(self, |tx| reminders::escalate(
            tx,
            alert_id,
            route,
            &receivers,
            (now_ms, opened_at_ms)
        ))
    }

    /// A delivery failed: count it and try again at `retry_at_ms`.
    pub async fn notification_failed(
        &self,
        id: i64,
        retry_at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        on_connection!(self, |q| q.run(
            sql::NOTIFICATION_FAILED,
            &[Arg::Int(id), Arg::Int(retry_at_ms), Arg::Text(&error)]
        ))?;
        Ok(())
    }

    /// Registers agent `id` for `site` (created on first use). Registering
    /// it again for the same site changes nothing; for another site it is
    /// a conflict.
    pub async fn register_agent(
        &self,
        id: &str,
        site: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        AgentRecord::validate(id, site).map_err(StoreError::Invalid)?;
        let (id, site, actor) = (id.to_owned(), site.to_owned(), actor.clone());
        transaction!(self, |tx| operations::register_agent(
            tx, &id, &site, &actor, now_ms
        ))
    }

    /// Every registered agent, by id.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        on_connection!(self, |q| q.rows(sql::AGENTS, &[], |row| rows::agent(row)))
    }

    /// The database's id and data version, read now.
    pub async fn data_version(&self) -> Result<DataVersion, StoreError> {
        on_connection!(self, |q| q
            .rows(sql::DATA_VERSION, &[], |row| { rows::data_version(row) }))?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("the data_version row is missing".into()))
    }

    /// How many notifications wait in the outbox.
    pub async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let depth = on_connection!(self, |q| q.rows(sql::OUTBOX_DEPTH, &[], |row| row.int(0)))?;
        Ok(depth
            .first()
            .map_or(0, |&depth| u64::try_from(depth).unwrap_or(0)))
    }

    /// Notifications waiting in the outbox, oldest first.
    pub async fn pending_notifications(&self) -> Result<Vec<Notification>, StoreError> {
        on_connection!(self, |q| q.rows(sql::PENDING_NOTIFICATIONS, &[], |row| {
            rows::notification(row)
        }))
    }
}

/// An alert's columns as [`Alert`] reads them (`alerts a` joined to its
/// device, if it still exists). A deleted device's alert keeps the name,
/// address and site it had; an agent alert is named by its agent.
const ALERT_COLUMNS: &str = "a.id, a.alertname, a.device_id, a.agent_id, \
    COALESCE(d.name, a.device_name, a.agent_id, ''), COALESCE(d.address, a.address, ''), \
    COALESCE(d.site, a.site, ''), a.opened_at_ms, a.resolved_at_ms, a.resolved_reason, \
    COALESCE(d.severity, a.severity, 'major'), COALESCE(d.tags, '[]'), \
    a.ack_by, a.ack_at_ms, a.ack_comment, a.held, COALESCE(d.flapping, FALSE), \
    d.flap_started_at_ms, d.status, d.degraded, a.trace, \
    (SELECT p.name FROM devices p WHERE p.id = d.parent_id)";

/// Where [`ALERT_COLUMNS`] come from.
const ALERTS_JOINED: &str = "alerts a LEFT JOIN devices d ON d.id = a.device_id";

/// Alerts, newest first (`{FILTER}` is empty or a WHERE clause).
fn alerts_query(open_only: bool) -> String {
    let filter = if open_only {
        "WHERE a.resolved_at_ms IS NULL"
    } else {
        ""
    };
    format!("SELECT {ALERT_COLUMNS} FROM {ALERTS_JOINED} {filter} ORDER BY a.id DESC")
}

/// Due notifications (`{P1}`…`{P3}` become the backend's placeholders).
///
/// Only the oldest waiting row of each (alert, channel) is ever due: a
/// later one (a `resolved` behind its `firing`) waits until the earlier one
/// has left the outbox, whatever their retry times say.
fn due_notifications_query() -> String {
    format!(
        "SELECT o.id, o.kind, o.attempts, {ALERT_COLUMNS} \
         FROM notification_outbox o JOIN alerts a ON a.id = o.alert_id \
         LEFT JOIN devices d ON d.id = a.device_id \
         WHERE o.next_attempt_at_ms <= $1 AND o.channel = $3 \
         AND NOT EXISTS (SELECT 1 FROM notification_outbox earlier \
             WHERE earlier.alert_id = o.alert_id AND earlier.channel = o.channel AND earlier.id < o.id) \
         ORDER BY o.id LIMIT $2"
    )
}

/// How long a controller holds the notifications it took for delivery
/// (PostgreSQL, where several controllers share the outbox): another
/// controller takes one only after this, if it was neither delivered nor
/// rescheduled (its holder died).
pub const NOTIFICATION_CLAIM_MS: i64 = 15_000;

/// Who inventory changes are recorded as in the status event log.
const INVENTORY_ACTOR: &str = "inventory";

/// Turns stored text back into a [`DeviceSpec`]'s typed fields.
fn parse_stored<T: std::str::FromStr>(column: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} `{text}`")))
}

/// The conflict for an agent registered again for another site.
fn agent_conflict(agent: &AgentRecord) -> StoreError {
    StoreError::Conflict {
        field: "site".into(),
        message: format!(
            "agent `{}` is already registered for site `{}`",
            agent.id, agent.site
        ),
    }
}

/// The conflict message for a duplicate device name.
fn duplicate_name(spec: &DeviceSpec) -> StoreError {
    StoreError::Conflict {
        field: "name".into(),
        message: format!(
            "a device named `{}` already exists in site `{}`",
            spec.name, spec.site
        ),
    }
}

/// Checks every entry of a bulk write; the first bad one is named by
/// position.
fn validate_entries(specs: &[DeviceSpec]) -> Result<(), StoreError> {
    for (index, spec) in specs.iter().enumerate() {
        spec.validate().map_err(|error| StoreError::InvalidEntry {
            index,
            field: error.field,
            message: error.message,
        })?;
    }
    Ok(())
}

/// Positions a per-device error within a bulk import.
fn entry_error(index: usize, error: StoreError) -> StoreError {
    match error {
        StoreError::Invalid(field) => StoreError::InvalidEntry {
            index,
            field: field.field,
            message: field.message,
        },
        StoreError::Conflict { field, message } => StoreError::Conflict {
            field: format!("devices[{index}].{field}"),
            message: format!("entry {index}: {message}"),
        },
        other => other,
    }
}

/// Names a duplicate name or a missing parent of `spec` (a constraint
/// either backend reports in its own words); passes anything else on.
fn constraint_error(error: StoreError, spec: &DeviceSpec) -> StoreError {
    use tokio_postgres::error::SqlState;
    let (duplicate, missing) = match &error {
        StoreError::Postgres(error) => (
            error.code() == Some(&SqlState::UNIQUE_VIOLATION),
            error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION),
        ),
        StoreError::Sqlite(error) => (
            sqlite::is_constraint(error, "UNIQUE"),
            sqlite::is_constraint(error, "FOREIGN KEY"),
        ),
        _ => (false, false),
    };
    if duplicate {
        duplicate_name(spec)
    } else if missing {
        missing_parent(spec)
    } else {
        error
    }
}

/// The error for a parent that does not exist.
fn missing_parent(spec: &DeviceSpec) -> StoreError {
    StoreError::Invalid(FieldError {
        field: "parent_id",
        message: format!("no device with id {}", spec.parent_id.unwrap_or_default()),
    })
}
