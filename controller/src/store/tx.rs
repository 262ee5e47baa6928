//! The database layer the store's operations are written once over:
//! [`Query`], statements on a connection or in a transaction of either
//! backend (its dialect constants, `$n` placeholders rewritten for SQLite),
//! and [`WriteTx`], the steps of one write transaction in the store's
//! terms, written once over [`Query`]; a backend supplies only its locks
//! and how it announces a commit. The operations over them live in
//! `operations`, `principals`, `ownership`, `presence`, ….

use std::collections::{HashMap, HashSet};

use super::args::Arg;
use super::model::{AgentRecord, Device, DeviceSpec, TransitionReport};
use super::plan::CurrentDevice;
use super::rows;
use super::rows::Columns;
use super::{StoreError, sql};

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

    /// A `FROM` item `e(value, n)`: the elements of the JSON array bound
    /// as `$1` (text), each `value` read with `e.value ->> k`, `n` its
    /// position. How a set of rows is passed in one argument.
    const JSON_ELEMENTS: &'static str;

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

    /// Takes the next data version ([`sql::BUMP_DATA_VERSION`]) and runs
    /// `after` (statements without parameters that read it as
    /// [`sql::CURRENT_VERSION`]); at the commit the other controllers on
    /// the database are told `announced` (`announce::payload`) with the
    /// version. From the bump to the commit every other writer waits, so
    /// PostgreSQL gets it all in one round trip (each one through a busy
    /// controller cost milliseconds of the whole fleet's commits); SQLite
    /// runs them in turn.
    async fn take_version(
        &self,
        after: &[String],
        announced: Option<&str>,
    ) -> Result<i64, StoreError>;

    /// What ends the due-notifications query to take its rows for this
    /// transaction, passing over rows another controller is taking.
    const SKIP_LOCKED: &'static str;

    /// What ends a `SELECT` of one table to lock its rows, passing over
    /// rows another transaction holds (empty where the backend has one
    /// writer at a time).
    const SKIP_LOCKED_ROWS: &'static str;

    /// Creates `site` if it does not exist.
    async fn add_site(&self, site: &str) -> Result<(), StoreError> {
        self.run(sql::ADD_SITE, &[Arg::Text(site)]).await?;
        Ok(())
    }

    /// Inserts a device with status `unknown`; returns its id. A duplicate
    /// name or a missing parent is named ([`super::duplicate_name`],
    /// [`super::missing_parent`]).
    async fn insert_device(&self, spec: &DeviceSpec, now_ms: i64) -> Result<i64, StoreError> {
        let address = spec.address.to_string();
        let tags = tags_json(&spec.tags);
        let check = spec.check.to_string();
        let args = spec_args(spec, &address, &tags, &check, Arg::Int(now_ms));
        let ids = self
            .rows(sql::INSERT_DEVICE, &args, |row| row.int(0))
            .await
            .map_err(|error| super::constraint_error(error, spec))?;
        ids.into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("an inserted device without an id".into()))
    }

    /// Replaces device `id`'s configuration; `false` if there is no such
    /// device.
    async fn update_spec(&self, id: i64, spec: &DeviceSpec) -> Result<bool, StoreError> {
        let address = spec.address.to_string();
        let tags = tags_json(&spec.tags);
        let check = spec.check.to_string();
        let args = spec_args(spec, &address, &tags, &check, Arg::Int(id));
        let updated = self
            .run(sql::UPDATE_SPEC, &args)
            .await
            .map_err(|error| super::constraint_error(error, spec))?;
        Ok(updated > 0)
    }

    /// Deletes device `id` at `now_ms`, keeping its name, address and site
    /// on its alerts for the notifications still to be delivered, and a
    /// tombstone (its status events stay).
    async fn remove_device(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.run(sql::KEEP_ALERT_SUBJECT, &[Arg::Int(id)]).await?;
        self.run(sql::KEEP_TOMBSTONE, &[Arg::Int(id), Arg::Int(now_ms)])
            .await?;
        self.run(sql::DELETE_DEVICE, &[Arg::Int(id)]).await?;
        Ok(())
    }

    /// What the rules need ([`plan`]): the devices `ids`, their parents
    /// and all their descendants, locked in id order against concurrent
    /// writers where the backend locks rows (so they cannot deadlock).
    async fn current_devices(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, CurrentDevice>, StoreError> {
        let statement = format!(
            "WITH RECURSIVE tree(id) AS ( \
                SELECT id FROM devices WHERE {in_list} \
                UNION SELECT d.id FROM devices d JOIN tree t ON d.parent_id = t.id), \
            wanted(id) AS ( \
                SELECT id FROM tree \
                UNION SELECT parent_id FROM devices WHERE {in_list} AND parent_id IS NOT NULL) \
            SELECT d.id, d.status, d.status_changed_at_ms, d.down_since_ms, d.reported_status, \
                d.reported_at_ms, d.parent_id, d.enabled, \
                EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.resolved_at_ms IS NULL), \
                d.flapping, d.flap_started_at_ms, d.recent_changes, d.degraded, \
                EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id \
                    AND a.resolved_at_ms IS NULL AND a.alertname = 'DeviceDegraded') \
            FROM devices d WHERE d.id IN (SELECT id FROM wanted) \
            ORDER BY d.id {locking}",
            in_list = Self::ID_IN_LIST,
            locking = Self::LOCKING,
        );
        let current = self
            .rows(&statement, &[Arg::Ids(ids)], |row| rows::current(row))
            .await?;
        Ok(current.into_iter().collect())
    }

    /// Records that each of `reports` (with the time it is applied at) is
    /// being applied, in one statement: for each, in order, `false` if it
    /// already was (or is the same report as one before it here).
    async fn first_applications(
        &self,
        reports: &[(TransitionReport, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|(report, now_ms)| {
                serde_json::json!([
                    report.agent_id,
                    report.boot_id,
                    i64::try_from(report.seq).unwrap_or(i64::MAX),
                    now_ms
                ])
            })
            .collect();
        let statement = format!(
            "INSERT INTO applied_reports (agent_id, boot_id, seq, applied_at_ms) \
             SELECT CAST(e.value ->> 0 AS TEXT), CAST(e.value ->> 1 AS TEXT), \
                CAST(e.value ->> 2 AS BIGINT), CAST(e.value ->> 3 AS BIGINT) FROM {} \
             WHERE true ON CONFLICT DO NOTHING RETURNING agent_id, boot_id, seq",
            Self::JSON_ELEMENTS
        );
        let rows = serde_json::Value::from(rows).to_string();
        let mut inserted: HashSet<(String, String, i64)> = self
            .rows(&statement, &[Arg::Text(&rows)], |row| {
                Ok((row.text(0)?, row.text(1)?, row.int(2)?))
            })
            .await?
            .into_iter()
            .collect();
        Ok(reports
            .iter()
            .map(|(report, _)| {
                let seq = i64::try_from(report.seq).unwrap_or(i64::MAX);
                inserted.remove(&(report.agent_id.clone(), report.boot_id.clone(), seq))
            })
            .collect())
    }

    /// Registers agent `id` for `site` unless it is registered already;
    /// returns the agent as stored.
    async fn add_agent(
        &self,
        id: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        self.run(
            sql::ADD_AGENT,
            &[Arg::Text(id), Arg::Text(site), Arg::Int(now_ms)],
        )
        .await?;
        let agents = self
            .rows(sql::AGENT, &[Arg::Text(id)], |row| rows::agent(row))
            .await?;
        agents
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt(format!("agent `{id}` missing after its insert")))
    }
}

/// The fourteen configured columns of a device (name … rst_alive, in
/// schema order), then `last` (the id to update, or the creation time).
fn spec_args<'a>(
    spec: &'a DeviceSpec,
    address: &'a str,
    tags: &'a str,
    check: &'a str,
    last: Arg<'a>,
) -> [Arg<'a>; 15] {
    [
        Arg::Text(&spec.name),
        Arg::Text(address),
        Arg::Text(&spec.site),
        Arg::OptInt(spec.parent_id),
        Arg::int32(spec.interval_ms),
        Arg::int32(spec.timeout_ms),
        Arg::int32(spec.down_after),
        Arg::int32(spec.up_after),
        Arg::Text(tags),
        Arg::Flag(spec.enabled),
        Arg::Text(spec.severity.as_str()),
        Arg::OptText(spec.profile.as_deref()),
        Arg::Text(check),
        Arg::Flag(spec.rst_alive),
        last,
    ]
}

/// A device's tags as stored: a JSON array.
fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
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
