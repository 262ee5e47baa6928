//! What a commit records of the devices it wrote, for every controller's
//! device list (`services::device_table`), and how that record is read
//! and pruned.
//!
//! Two records, by what was written:
//!
//! - **A status write** (a report, and the status changes an inventory
//!   change or a flap settling makes) is listed in `device_writes`, one row
//!   per device with the commit's data version (migration 0027). The
//!   device row itself is not written again: stamping each row inside the
//!   commits' serialized section wrote every index of `devices` once more
//!   per device (26 ms for a report of 200 devices, every other writer
//!   waiting).
//! - **Any other write** (configuration, owner, last trace, a new row, a
//!   tombstone) leaves the row unstamped (`version` NULL, the
//!   `devices_touched` trigger: 0026, 0027) and its commit stamps what it
//!   holds. An unstamped row is read as changed by every reader: never
//!   missed.
//!
//! `device_writes` holds every write of the versions after
//! `device_writes_kept.after`; older rows are pruned, and a list older
//! than that loads the whole list again.

use super::StoreError;
use super::args::Arg;
use super::ownership::IDS_PER_STATEMENT;
use super::sql;
use super::tx::{Query, WriteTx};

/// The columns of `devices` a status write sets, listed by device in
/// `device_writes`; every other column but `id` and `version` is named by
/// the `devices_touched` trigger (migration 0027).
#[cfg(test)]
pub(super) const STATUS_COLUMNS: [&str; 10] = [
    "status",
    "down_since_ms",
    "status_changed_at_ms",
    "reported_status",
    "reported_at_ms",
    "degraded",
    "last_rtt_us",
    "flapping",
    "flap_started_at_ms",
    "recent_changes",
];

/// The statements that list devices `ids`, whose status this transaction
/// wrote, under its data version (after its bump).
pub(super) fn listings(ids: &[i64]) -> Vec<String> {
    ids.chunks(IDS_PER_STATEMENT)
        .map(|chunk| {
            let rows: Vec<String> = chunk.iter().map(|id| format!("({id})")).collect();
            format!(
                "INSERT INTO device_writes (version, device_id) \
                 SELECT {}, written.column1 FROM (VALUES {}) AS written",
                sql::CURRENT_VERSION,
                rows.join(", ")
            )
        })
        .collect()
}

/// Stamps the device rows and tombstones this transaction left unstamped
/// with its data `version`. Rows another transaction holds are passed
/// over: that one stamps them (and a row left unstamped is read as changed
/// by every reader until then).
pub(super) async fn stamp_unstamped<T: WriteTx>(tx: &T, version: i64) -> Result<(), StoreError> {
    for table in ["devices", "deleted_devices"] {
        let stamp = format!(
            "UPDATE {table} SET version = $1 WHERE id IN \
             (SELECT id FROM {table} WHERE version IS NULL {})",
            T::SKIP_LOCKED_ROWS
        );
        tx.run(&stamp, &[Arg::Int(version)]).await?;
    }
    Ok(())
}

/// The version after which `device_writes` holds every write.
pub(super) async fn kept_after(q: &impl Query) -> Result<i64, StoreError> {
    q.rows("SELECT after FROM device_writes_kept", &[], |row| {
        row.int(0)
    })
    .await?
    .pop()
    .ok_or_else(|| StoreError::Corrupt("the device_writes_kept row is missing".into()))
}

/// Forgets the writes of versions up to `through`; returns how many rows
/// went. The mark moves with the deletion, at the commit, so a reader
/// never takes a pruned record for a complete one.
pub(super) async fn forget_through(tx: &impl WriteTx, through: i64) -> Result<u64, StoreError> {
    let forgotten = tx
        .run(
            "DELETE FROM device_writes WHERE version <= $1",
            &[Arg::Int(through)],
        )
        .await?;
    tx.run(
        "UPDATE device_writes_kept SET after = $1 WHERE after < $1",
        &[Arg::Int(through)],
    )
    .await?;
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::STATUS_COLUMNS;

    /// The columns the `devices_touched` trigger of `migration` names.
    fn touched_columns(migration: &str) -> BTreeSet<String> {
        let start = migration
            .find("UPDATE OF")
            .expect("the trigger's column list")
            + 9;
        let end = start + migration[start..].find(" ON devices").expect("its end");
        migration[start..end]
            .split(',')
            .map(|column| column.trim().to_owned())
            .collect()
    }

    fn added_columns(migrations: &[(i64, &str)]) -> BTreeSet<String> {
        let mut columns = BTreeSet::new();
        for (_, migration) in migrations {
            for line in migration.lines() {
                if let Some(rest) = line.trim().strip_prefix("ALTER TABLE devices ADD COLUMN ") {
                    columns.insert(rest.split_whitespace().next().expect("name").to_owned());
                }
            }
        }
        columns
    }

    #[test]
    fn every_column_of_devices_is_either_touched_or_listed_by_its_status_write() {
        let postgres = super::super::postgres::MIGRATIONS;
        let sqlite = super::super::sqlite::MIGRATIONS;
        let touched = touched_columns(postgres[26].1);
        assert_eq!(touched, touched_columns(sqlite[26].1), "the backends agree");
        let first: BTreeSet<String> = [
            "id",
            "name",
            "address",
            "site",
            "parent_id",
            "interval_ms",
            "timeout_ms",
            "down_after",
            "up_after",
            "tags",
            "enabled",
            "status",
            "down_since_ms",
            "status_changed_at_ms",
            "last_rtt_us",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(
            added_columns(postgres),
            added_columns(sqlite),
            "the backends agree"
        );
        let mut every = first;
        every.extend(added_columns(postgres));
        let status: BTreeSet<String> = STATUS_COLUMNS.map(str::to_owned).into();
        let covered: BTreeSet<String> = touched
            .union(&status)
            .cloned()
            .chain(["id".to_owned(), "version".to_owned()])
            .collect();
        assert_eq!(
            every.difference(&covered).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "a column of devices neither the trigger nor the status write names: add it to one"
        );
        let written = super::super::sql::write_device_rows("u");
        for column in &status {
            assert!(
                written.contains(&format!("{column} =")),
                "{column} is written by a plan's device rows"
            );
        }
    }
}
