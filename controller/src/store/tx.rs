//! The database layer the store's operations are written once over:
//! [`Query`], statements on a connection or in a transaction of either
//! backend (its dialect constants, `$n` placeholders rewritten for SQLite),
//! and [`WriteTx`], what one write transaction can do in the store's terms
//! (each backend says it in its own SQL: set-based on PostgreSQL,
//! statement by statement on SQLite). The operations over them live in
//! `operations`, `principals`, `ownership`, `presence`, ….

use std::collections::HashMap;

use super::StoreError;
use super::args::Arg;
use super::model::{AgentRecord, Device, DeviceSpec, StatusChanges, TransitionReport};
use super::plan::{CurrentDevice, Plan};
use super::rows;
use super::rows::Columns;

/// Shared statements ([`super::sql`], `$n` placeholders) on a connection
/// or in a transaction. SQLite's never wait: an operation over them is
/// polled once on the blocking thread that holds the connection.
pub(super) trait Query {
    /// An SQL expression for the database's clock, Unix ms: what several
    /// controllers agree on.
    const NOW_MS: &'static str;

    /// A condition true for an `id` in the list bound as `$1`
    /// ([`Arg::Ids`]).
    const ID_IN_LIST: &'static str;

    /// Runs `statement` with `args`; returns how many rows it changed.
    async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// The rows `statement` returns, each read by `read`.
    async fn rows<T>(
        &self,
        statement: &str,
        args: &[Arg<'_>],
        read: fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>;
}

/// The steps of a write transaction.
pub(super) trait WriteTx: Query {
    /// A query that waits for any other transaction settling every agent
    /// group to end, and holds them off until this one ends.
    const LOCK_SETTLEMENTS: &'static str;

    /// A query that waits for any other transaction setting the
    /// notification channels to end (controllers starting together).
    const LOCK_CHANNELS: &'static str;

    /// What ends a `SELECT … ORDER BY id` to lock the rows it reads in that
    /// order (empty where the backend has one writer at a time).
    const LOCKING: &'static str;

    /// Tells the other controllers on the database, at the commit, that
    /// the inventory (devices, their owners) changed.
    async fn announce_inventory(&self) -> Result<(), StoreError>;

    /// Tells the other controllers on the database, at the commit, of
    /// these status changes, committed at data version `version`.
    async fn announce_changes(
        &self,
        changes: &StatusChanges,
        version: i64,
    ) -> Result<(), StoreError>;

    /// Creates `site` if it does not exist.
    async fn add_site(&self, site: &str) -> Result<(), StoreError>;

    /// Inserts a device with status `unknown`; returns its id. A duplicate
    /// name or a missing parent is named ([`super::duplicate_name`],
    /// [`super::missing_parent`]).
    async fn insert_device(&self, spec: &DeviceSpec, now_ms: i64) -> Result<i64, StoreError>;

    /// Replaces device `id`'s configuration; `false` if there is no such
    /// device.
    async fn update_spec(&self, id: i64, spec: &DeviceSpec) -> Result<bool, StoreError>;

    /// Deletes device `id` at `now_ms`, keeping its name, address and site
    /// on its alerts for the notifications still to be delivered, and a
    /// tombstone (its status events stay).
    async fn remove_device(&self, id: i64, now_ms: i64) -> Result<(), StoreError>;

    /// What the rules need ([`plan`]): the devices `ids`, their parents
    /// and all their descendants, locked against concurrent writers where
    /// the backend locks rows.
    async fn current_devices(&self, ids: &[i64])
    -> Result<HashMap<i64, CurrentDevice>, StoreError>;

    /// Executes every write of `plan`, events recorded as by `actor`.
    async fn execute_plan(&self, plan: &Plan, actor: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Records that `report` is being applied; `false` if it already was.
    async fn first_application(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Registers agent `id` for `site` unless it is registered already;
    /// returns the agent as stored.
    async fn add_agent(&self, id: &str, site: &str, now_ms: i64)
    -> Result<AgentRecord, StoreError>;
}

/// The devices `ids` as they are now, by id.
pub(super) async fn devices_by_id<Q: Query>(q: &Q, ids: &[i64]) -> Result<Vec<Device>, StoreError> {
    let statement = format!(
        "SELECT {} FROM devices WHERE {} ORDER BY id",
        super::sql::device_columns!(),
        Q::ID_IN_LIST
    );
    q.rows(&statement, &[Arg::Ids(ids)], |row| rows::device(row))
        .await
}
