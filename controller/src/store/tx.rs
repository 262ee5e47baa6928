//! [`WriteTx`]: what one write transaction can do in the store's terms.
//! Each backend says it in its own SQL (set-based on PostgreSQL, statement
//! by statement on SQLite); the operations over it are written once
//! (`operations`, `principals`, `ownership`, …).

use std::collections::HashMap;

use super::StoreError;
use super::args::Arg;
use super::model::{AgentRecord, Device, DeviceSpec, StatusChanges, TransitionReport};
use super::plan::{CurrentDevice, Plan};
use super::rows::Columns;

/// The steps of a write transaction. SQLite's steps never wait: its
/// operations are polled once on the blocking thread that holds the
/// connection.
pub(super) trait WriteTx {
    /// An SQL expression for the database's clock, Unix ms: what several
    /// controllers agree on.
    const NOW_MS: &'static str;

    /// A query that waits for any other transaction settling every agent
    /// group to end, and holds them off until this one ends.
    const LOCK_SETTLEMENTS: &'static str;

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

    /// The devices `ids` as they are now in this transaction, by id.
    async fn devices(&self, ids: &[i64]) -> Result<Vec<Device>, StoreError>;

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

    /// Runs a shared statement ([`super::sql`], `$n` placeholders) with
    /// `args`; returns how many rows it changed.
    async fn run(&self, statement: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// The rows a shared statement returns, each read by `read`.
    async fn rows<T>(
        &self,
        statement: &str,
        args: &[Arg<'_>],
        read: fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>;
}
