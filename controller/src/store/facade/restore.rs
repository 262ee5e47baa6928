//! What a backup records and what a restore must do to the database it
//! put back (`ward-controller backup` and `restore`).

use std::path::Path;

use ward_domain::field::FieldError;

use super::super::model::{CONTROLLER_REPORTS, ReportedTransition, TransitionReport};
use super::super::postgres::CONTROLLER_APPLICATION;
use super::super::tx::Query as _;
use super::super::{Arg, Backend, FlapPolicy, Status, Store, StoreError, sql};

/// The schema a PostgreSQL restore puts back into.
const PUBLIC: &str = "public";

impl Store {
    /// `"sqlite"` or `"postgres"`: which backend holds the database.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The last migration applied to the database (0 for a new one).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let versions = on_connection!(self, |q| q
            .rows(sql::MIGRATED_VERSION, &[], |row| row.int(0)))?;
        Ok(versions.first().copied().unwrap_or(0))
    }

    /// The last migration this build knows.
    pub fn latest_migration(&self) -> i64 {
        let migrations = match self.backend {
            Backend::Postgres(_) => super::super::postgres::MIGRATIONS,
            Backend::Sqlite(_) => super::super::sqlite::MIGRATIONS,
        };
        migrations.last().map_or(0, |(version, _)| *version)
    }

    /// After a restore: every device the backup shows other than
    /// `unknown` becomes `unknown` with `reason` (in its history, as the
    /// controller's own report `restore_id`), so nothing from the backup
    /// is shown as the truth until its agent reports again; then the
    /// database takes a new cluster id, so no cache entry made before the
    /// restore is ever read for it. Returns how many devices changed.
    /// Alerts and history stay as the backup has them.
    pub async fn forget_statuses(
        &self,
        reason: &str,
        restore_id: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let transitions: Vec<ReportedTransition> = self
            .list_devices()
            .await?
            .into_iter()
            .filter(|device| device.status != Status::Unknown)
            .map(|device| ReportedTransition {
                device_id: device.id,
                status: Status::Unknown,
                probed_at_ms: now_ms,
                last_rtt_us: None,
                degraded: None,
                reason: reason.to_owned(),
            })
            .collect();
        let forgotten = transitions.len();
        if forgotten > 0 {
            let report = TransitionReport {
                agent_id: CONTROLLER_REPORTS.into(),
                boot_id: restore_id.to_owned(),
                seq: 1,
                transitions,
                agent_alerts: Vec::new(),
            };
            self.apply(&report, &FlapPolicy::default(), now_ms).await?;
        }
        let cluster = crate::auth::instance_id();
        on_connection!(self, |q| q.run(
            "UPDATE data_version SET cluster = $1",
            &[Arg::Text(&cluster)]
        ))?;
        Ok(forgotten)
    }

    /// SQLite: a consistent copy of the whole database in the new file
    /// `path` (`VACUUM INTO`, one read transaction: a controller writing
    /// meanwhile is neither held up nor half copied).
    pub async fn copy_into(&self, path: &Path) -> Result<(), StoreError> {
        if !matches!(self.backend, Backend::Sqlite(_)) {
            return Err(StoreError::Invalid(FieldError {
                field: "database",
                message: "only an SQLite database is copied by ward; PostgreSQL's is dumped \
                          with pg_dump"
                    .into(),
            }));
        }
        let path = path.to_string_lossy().into_owned();
        on_connection!(self, |q| q.run("VACUUM INTO $1", &[Arg::Text(&path)]))?;
        Ok(())
    }

    /// PostgreSQL: how many other connections to this database are a
    /// ward controller's (by `application_name`). Ask before anything
    /// else on a new store: its own pool has one connection then.
    pub async fn controllers_connected(&self) -> Result<i64, StoreError> {
        let counts = on_connection!(self, |q| q.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = $1 AND pid <> pg_backend_pid()",
            &[Arg::Text(CONTROLLER_APPLICATION)],
            |row| row.int(0)
        ))?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// PostgreSQL: renames schema `public` (ward's tables) to `aside` and
    /// makes an empty `public` for a dump to be restored into, in one
    /// transaction. `aside` is ward's own name (letters, digits, `_`).
    /// Drop this store afterwards: its connections' prepared statements
    /// name the tables set aside.
    pub async fn set_aside(&self, aside: &str) -> Result<(), StoreError> {
        let (rename, create) = (
            format!("ALTER SCHEMA {PUBLIC} RENAME TO {}", identifier(aside)?),
            format!("CREATE SCHEMA {PUBLIC}"),
        );
        transaction!(self, |tx| async move {
            tx.run(&rename, &[]).await?;
            tx.run(&create, &[]).await?;
            Ok(())
        })
    }

    /// PostgreSQL: undoes [`Store::set_aside`] after a failed restore:
    /// what was restored goes, `aside` is `public` again.
    pub async fn put_back(&self, aside: &str) -> Result<(), StoreError> {
        let (drop, rename) = (
            format!("DROP SCHEMA {PUBLIC} CASCADE"),
            format!("ALTER SCHEMA {} RENAME TO {PUBLIC}", identifier(aside)?),
        );
        transaction!(self, |tx| async move {
            tx.run(&drop, &[]).await?;
            tx.run(&rename, &[]).await?;
            Ok(())
        })
    }
}

/// `name` as an SQL identifier, if it is one of ward's (lower-case
/// letters, digits and `_`, not starting with a digit).
fn identifier(name: &str) -> Result<&str, StoreError> {
    let ours = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ours {
        Ok(name)
    } else {
        Err(StoreError::Invalid(FieldError {
            field: "schema",
            message: format!("{name:?} is not a schema name ward makes"),
        }))
    }
}
