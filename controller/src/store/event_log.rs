//! The status event log read back in commit order: what the live event
//! stream replays to a client resuming after the last version it saw.

use super::StoreError;
use super::args::Arg;
use super::model::Status;
use super::parse_stored;
use super::tx::Query;

/// One recorded status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedChange {
    /// The data version it was committed at.
    pub version: i64,
    /// The device.
    pub device_id: i64,
    /// Its status before.
    pub previous: Status,
    /// Its status after.
    pub status: Status,
}

/// The changes committed after `version`, in commit order, at most
/// `limit`.
pub(super) async fn since<T: Query>(
    tx: &T,
    version: i64,
    limit: i64,
) -> Result<Vec<LoggedChange>, StoreError> {
    logged(tx, "version > $1", version, limit).await
}

/// The changes committed at `version` (one transaction's), in order, at
/// most `limit`.
pub(super) async fn at<T: Query>(
    tx: &T,
    version: i64,
    limit: i64,
) -> Result<Vec<LoggedChange>, StoreError> {
    logged(tx, "version = $1", version, limit).await
}

async fn logged<T: Query>(
    tx: &T,
    condition: &str,
    version: i64,
    limit: i64,
) -> Result<Vec<LoggedChange>, StoreError> {
    tx.rows(
        &format!(
            "SELECT version, device_id, previous, status FROM status_events \
             WHERE {condition} ORDER BY version, id LIMIT $2"
        ),
        &[Arg::Int(version), Arg::Int(limit)],
        |row| {
            Ok(LoggedChange {
                version: row.int(0)?,
                device_id: row.int(1)?,
                previous: parse_stored("previous", &row.text(2)?)?,
                status: parse_stored("status", &row.text(3)?)?,
            })
        },
    )
    .await
}
