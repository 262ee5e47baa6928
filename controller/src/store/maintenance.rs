//! Maintenance windows as stored: created, replaced and deleted by an
//! operator (audited), read by every controller. When one is open is
//! [`ward_domain::maintenance`]'s to say.

use super::StoreError;
use super::args::Arg;
use super::principals::{Actor, Change, audit_change, json};
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use ward_domain::maintenance::{MaintenanceSpec, MaintenanceWindow};

const COLUMNS: &str = "id, name, starts_at_ms, ends_at_ms, time_zone, recurrence, until_ms, \
    devices, sites, tags, comment, created_by, created_at_ms";

fn list_of<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}`")))
}

fn window(row: &dyn Columns) -> Result<MaintenanceWindow, StoreError> {
    Ok(MaintenanceWindow {
        id: row.int(0)?,
        spec: MaintenanceSpec {
            name: row.text(1)?,
            starts_at_ms: row.int(2)?,
            ends_at_ms: row.int(3)?,
            time_zone: row.text(4)?,
            every: row
                .opt_text(5)?
                .map(|text| list_of("recurrence", &text))
                .transpose()?,
            until_ms: row.opt_int(6)?,
            devices: list_of("devices", &row.text(7)?)?,
            sites: list_of("sites", &row.text(8)?)?,
            tags: list_of("tags", &row.text(9)?)?,
            comment: row.text(10)?,
        },
        created_by: row.text(11)?,
        created_at_ms: row.int(12)?,
    })
}

/// Every window (`id` given: that one), by id.
pub(super) async fn windows<T: Query>(
    tx: &T,
    id: Option<i64>,
) -> Result<Vec<MaintenanceWindow>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {COLUMNS} FROM maintenance_windows \
             WHERE CAST($1 AS BIGINT) = 0 OR id = $1 ORDER BY id"
        ),
        &[Arg::Int(id.unwrap_or(0))],
        window,
    )
    .await
}

/// The spec's columns name … comment, as stored.
struct Stored {
    every: Option<String>,
    devices: String,
    sites: String,
    tags: String,
}

impl Stored {
    fn of(spec: &MaintenanceSpec) -> Self {
        Self {
            every: spec.every.as_ref().map(json),
            devices: json(&spec.devices),
            sites: json(&spec.sites),
            tags: json(&spec.tags),
        }
    }

    fn args<'a>(&'a self, spec: &'a MaintenanceSpec) -> [Arg<'a>; 10] {
        [
            Arg::Text(&spec.name),
            Arg::Int(spec.starts_at_ms),
            Arg::Int(spec.ends_at_ms),
            Arg::Text(&spec.time_zone),
            Arg::OptText(self.every.as_deref()),
            Arg::OptInt(spec.until_ms),
            Arg::Text(&self.devices),
            Arg::Text(&self.sites),
            Arg::Text(&self.tags),
            Arg::Text(&spec.comment),
        ]
    }
}

/// Refuses a window naming a device or a site that does not exist.
async fn subjects_exist<T: Query>(tx: &T, spec: &MaintenanceSpec) -> Result<(), StoreError> {
    let invalid = |field, message| StoreError::Invalid(super::FieldError { field, message });
    if !spec.devices.is_empty() {
        let statement = format!("SELECT id FROM devices WHERE {}", T::ID_IN_LIST);
        let found = tx
            .rows(&statement, &[Arg::Ids(&spec.devices)], |row| row.int(0))
            .await?;
        if let Some(missing) = spec.devices.iter().find(|id| !found.contains(id)) {
            return Err(invalid("devices", format!("no device with id {missing}")));
        }
    }
    for site in &spec.sites {
        let known = tx
            .rows(
                "SELECT 1 FROM sites WHERE name = $1",
                &[Arg::Text(site)],
                |_| Ok(()),
            )
            .await?;
        if known.is_empty() {
            return Err(invalid(
                "sites",
                format!("no site named `{site}` (a site exists once a device is in it)"),
            ));
        }
    }
    Ok(())
}

/// Creates a window; audited.
pub(super) async fn create<T: WriteTx>(
    tx: &T,
    spec: &MaintenanceSpec,
    actor: &Actor,
    now_ms: i64,
) -> Result<MaintenanceWindow, StoreError> {
    subjects_exist(tx, spec).await?;
    let stored = Stored::of(spec);
    let mut args = stored.args(spec).to_vec();
    args.extend([Arg::Text(&actor.principal), Arg::Int(now_ms)]);
    let id = tx
        .rows(
            "INSERT INTO maintenance_windows (name, starts_at_ms, ends_at_ms, time_zone, \
             recurrence, until_ms, devices, sites, tags, comment, created_by, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &args,
            |row| row.int(0),
        )
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("no id for the new window".into()))?;
    let change = Change {
        action: "maintenance.create",
        object: format!("maintenance {id}"),
        before: None,
        after: Some(json(spec)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(MaintenanceWindow {
        id,
        spec: spec.clone(),
        created_by: actor.principal.clone(),
        created_at_ms: now_ms,
    })
}

/// Replaces window `id`'s spec (`Some`), or deletes it (`None`); audited.
/// `None` if there is no such window.
pub(super) async fn change<T: WriteTx>(
    tx: &T,
    id: i64,
    spec: Option<&MaintenanceSpec>,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<MaintenanceWindow>, StoreError> {
    let Some(before) = windows(tx, Some(id)).await?.pop() else {
        return Ok(None);
    };
    if let Some(spec) = spec {
        subjects_exist(tx, spec).await?;
    }
    let after = match spec {
        Some(spec) => {
            let stored = Stored::of(spec);
            let mut args = stored.args(spec).to_vec();
            args.push(Arg::Int(id));
            tx.run(
                "UPDATE maintenance_windows SET name = $1, starts_at_ms = $2, ends_at_ms = $3, \
                 time_zone = $4, recurrence = $5, until_ms = $6, devices = $7, sites = $8, \
                 tags = $9, comment = $10 WHERE id = $11",
                &args,
            )
            .await?;
            Some(MaintenanceWindow {
                spec: spec.clone(),
                ..before.clone()
            })
        }
        None => {
            tx.run(
                "DELETE FROM maintenance_windows WHERE id = $1",
                &[Arg::Int(id)],
            )
            .await?;
            None
        }
    };
    let change = Change {
        action: if spec.is_some() {
            "maintenance.update"
        } else {
            "maintenance.delete"
        },
        object: format!("maintenance {id}"),
        before: Some(json(&before.spec)),
        after: after.as_ref().map(|window| json(&window.spec)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(after.unwrap_or(before)))
}
