//! Notifications held back by maintenance: a device alert whose `firing`
//! came due while its device was in an open window is marked `held` and
//! that notification dropped, as are its later ones (`resolved`,
//! `acknowledged`); when no window covers the device any more and the
//! alert is still open, it is released and its `firing` queued on every
//! channel.

use super::args::Arg;
use super::model::Alert;
use super::tx::{Query, WriteTx};
use super::{ALERT_COLUMNS, ALERTS_JOINED, StoreError, rows, sql};

/// Drops outbox row `notification` and marks its alert held.
pub(super) async fn hold<T: WriteTx>(
    tx: &T,
    notification: i64,
    alert: i64,
) -> Result<(), StoreError> {
    tx.run(
        "DELETE FROM notification_outbox WHERE id = $1",
        &[Arg::Int(notification)],
    )
    .await?;
    tx.run(
        "UPDATE alerts SET held = TRUE WHERE id = $1",
        &[Arg::Int(alert)],
    )
    .await?;
    Ok(())
}

/// The open alerts whose notifications are held.
pub(super) async fn held_open<T: Query>(tx: &T) -> Result<Vec<Alert>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM {ALERTS_JOINED} \
             WHERE a.held = TRUE AND a.resolved_at_ms IS NULL ORDER BY a.id"
        ),
        &[],
        |row| rows::alert(row, 0),
    )
    .await
}

/// Releases held alert `alert` and queues its `firing` on every channel;
/// false if it was not held (another controller released it).
pub(super) async fn release<T: WriteTx>(
    tx: &T,
    alert: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let released = tx
        .run(
            "UPDATE alerts SET held = FALSE WHERE id = $1 AND held = TRUE \
             AND resolved_at_ms IS NULL",
            &[Arg::Int(alert)],
        )
        .await?;
    if released == 0 {
        return Ok(false);
    }
    tx.run(
        sql::QUEUE_ON_EVERY_CHANNEL,
        &[Arg::Int(alert), Arg::Text("firing"), Arg::Int(now_ms)],
    )
    .await?;
    Ok(true)
}
