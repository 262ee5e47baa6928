//! Flapping devices settle ([`super::flap`]): one that has had no outage
//! start or end for the flap window stops flapping, and its latest alert
//! gets one `settled` notification on every channel, which says how it
//! ended (the alert still open: down; resolved: no longer down).

use super::args::Arg;
use super::flap::{Flap, FlapPolicy};
use super::model::Alert;
use super::operations::data_changed;
use super::plan_execution::StatusWrites;
use super::tx::{Query, WriteTx};
use super::{ALERT_COLUMNS, ALERTS_JOINED, StatusChanges, rows};
use super::{StoreError, sql};

/// Settles the flapping devices stable for `policy`'s window at `now_ms`;
/// returns their ids. A device whose changes moved on meanwhile (another
/// transaction counted one) is left flapping.
pub(super) async fn settle_flapping<T: WriteTx>(
    tx: &T,
    policy: &FlapPolicy,
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let flapping = tx
        .rows(
            "SELECT id, flap_started_at_ms, recent_changes FROM devices \
             WHERE flapping ORDER BY id",
            &[],
            |row| {
                let flap = Flap::stored(true, row.opt_int(1)?, &row.text(2)?)?;
                Ok((row.int(0)?, flap))
            },
        )
        .await?;
    let mut settled = Vec::new();
    for (id, flap) in flapping {
        if !flap.settled(policy, now_ms) {
            continue;
        }
        let ended = tx
            .run(
                "UPDATE devices SET flapping = FALSE, recent_changes = '[]' \
                 WHERE id = $1 AND flapping = TRUE AND recent_changes = $2",
                &[Arg::Int(id), Arg::Text(&flap.recent_changes())],
            )
            .await?;
        if ended == 0 {
            continue;
        }
        let latest = tx
            .rows(
                "SELECT MAX(id) FROM alerts WHERE device_id = $1",
                &[Arg::Int(id)],
                |row| row.opt_int(0),
            )
            .await?;
        if let Some(alert) = latest.into_iter().flatten().next() {
            tx.run(
                sql::QUEUE_ON_EVERY_CHANNEL,
                &[Arg::Int(alert), Arg::Text("settled"), Arg::Int(now_ms)],
            )
            .await?;
        }
        settled.push(id);
    }
    if !settled.is_empty() {
        let written = StatusWrites::of(settled.clone());
        data_changed(tx, &mut StatusChanges::default(), written).await?;
    }
    Ok(settled)
}

/// The latest alert of each flapping device, by device.
pub(super) async fn latest_of_flapping<T: Query>(tx: &T) -> Result<Vec<Alert>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM {ALERTS_JOINED} \
             WHERE d.flapping \
             AND a.id = (SELECT MAX(id) FROM alerts WHERE device_id = d.id) ORDER BY d.id"
        ),
        &[],
        |row| rows::alert(row, 0),
    )
    .await
}
