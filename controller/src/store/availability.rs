//! What an availability report reads, in one transaction: every device
//! that existed during the range (deleted ones from their tombstones) with
//! its status at the range's start, and every status change inside it.

use super::args::Arg;
use super::model::Status;
use super::rows::Columns;
use super::tx::WriteTx;
use super::{StoreError, parse_stored};
use ward_domain::availability::ReportedDevice;

/// A device's status at `$1`, as the last column.
const STATUS_AT_START: &str = "(SELECT e.status FROM status_events e \
    WHERE e.device_id = {ID} AND e.at_ms < $1 ORDER BY e.at_ms DESC, e.id DESC LIMIT 1)";

fn device(row: &dyn Columns) -> Result<ReportedDevice, StoreError> {
    let tags = row.text(3)?;
    Ok(ReportedDevice {
        id: row.int(0)?,
        name: row.text(1)?,
        site: row.text(2)?,
        tags: serde_json::from_str(&tags)
            .map_err(|_| StoreError::Corrupt(format!("tags `{tags}`")))?,
        existed: (row.int(4)?, row.opt_int(5)?.unwrap_or(i64::MAX)),
        initial: row
            .opt_text(6)?
            .map(|status| parse_stored("status", &status))
            .transpose()?
            .unwrap_or(Status::Unknown),
    })
}

/// The devices that existed during `from_ms..to_ms`, by id.
pub(super) async fn devices<T: WriteTx>(
    tx: &T,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ReportedDevice>, StoreError> {
    let created = "COALESCE(d.created_at_ms, d.status_changed_at_ms)";
    tx.rows(
        &format!(
            "SELECT d.id, d.name, d.site, d.tags, {created}, NULL, {} \
             FROM devices d WHERE {created} < $2 \
             UNION ALL \
             SELECT x.id, x.name, x.site, x.tags, x.created_at_ms, x.deleted_at_ms, {} \
             FROM deleted_devices x WHERE x.deleted_at_ms > $1 AND x.created_at_ms < $2 \
             ORDER BY 1",
            STATUS_AT_START.replace("{ID}", "d.id"),
            STATUS_AT_START.replace("{ID}", "x.id"),
        ),
        &[Arg::Int(from_ms), Arg::Int(to_ms)],
        device,
    )
    .await
}

/// The status changes inside `from_ms..to_ms`: (device, when, to what),
/// by device, then in order.
pub(super) async fn changes<T: WriteTx>(
    tx: &T,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, i64, Status)>, StoreError> {
    tx.rows(
        "SELECT device_id, at_ms, status FROM status_events \
         WHERE at_ms >= $1 AND at_ms < $2 ORDER BY device_id, at_ms, id",
        &[Arg::Int(from_ms), Arg::Int(to_ms)],
        |row| {
            Ok((
                row.int(0)?,
                row.int(1)?,
                parse_stored("status", &row.text(2)?)?,
            ))
        },
    )
    .await
}

/// Both, read in one transaction.
pub(super) async fn read<T: WriteTx>(
    tx: &T,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Vec<ReportedDevice>, Vec<(i64, i64, Status)>), StoreError> {
    Ok((
        devices(tx, from_ms, to_ms).await?,
        changes(tx, from_ms, to_ms).await?,
    ))
}
