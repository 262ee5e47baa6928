//! Reminders and escalations of open alerts, each queued once per period
//! whichever controllers run the round: the row of (alert, route) in
//! `alert_reminders` is updated only when due, in the transaction that
//! queues the notifications, and a notification is queued only if that
//! update happened.

use std::collections::HashMap;

use super::StoreError;
use super::args::Arg;
use super::tx::WriteTx;

/// Takes the reminder of `route` for alert `$1` if the last one (or the
/// alert's opening) is older than `$4`; answers a row if taken.
const TAKE_REMINDER: &str = "INSERT INTO alert_reminders (alert_id, route, reminded_at_ms, escalated) \
    VALUES ($1, $2, $3, FALSE) ON CONFLICT (alert_id, route) \
    DO UPDATE SET reminded_at_ms = excluded.reminded_at_ms \
    WHERE alert_reminders.reminded_at_ms <= $4 RETURNING alert_id";

/// Takes the escalation of `route` for alert `$1` unless done; a new row
/// counts reminders from the alert's opening (`$3`).
const TAKE_ESCALATION: &str = "INSERT INTO alert_reminders (alert_id, route, reminded_at_ms, escalated) \
    VALUES ($1, $2, $3, TRUE) ON CONFLICT (alert_id, route) \
    DO UPDATE SET escalated = TRUE WHERE NOT alert_reminders.escalated RETURNING alert_id";

/// The receiver `$2` is told of alert `$1` from now on (its end too).
const TELL_FROM_NOW: &str = "INSERT INTO alert_receivers (alert_id, receiver, routed) \
    VALUES ($1, $2, TRUE) ON CONFLICT (alert_id, receiver) DO UPDATE SET routed = TRUE";

/// Queues a notification of kind `$2` about alert `$1` for channel `$4`
/// (if configured), due at `$3`.
const QUEUE_FOR: &str = "INSERT INTO notification_outbox \
    (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
    SELECT $1, $2, name, $3, $3 FROM notification_channels WHERE name = $4";

/// Where each open alert's reminders and escalations stand, by (alert,
/// route): when last reminded, whether escalated.
pub(super) async fn states<T: super::tx::Query>(
    tx: &T,
) -> Result<HashMap<(i64, usize), (i64, bool)>, StoreError> {
    let rows = tx
        .rows(
            "SELECT r.alert_id, CAST(r.route AS BIGINT), r.reminded_at_ms, r.escalated FROM alert_reminders r \
             JOIN alerts a ON a.id = r.alert_id WHERE a.resolved_at_ms IS NULL",
            &[],
            |row| {
                let route = usize::try_from(row.int(1)?).unwrap_or_default();
                Ok(((row.int(0)?, route), (row.int(2)?, row.flag(3)?)))
            },
        )
        .await?;
    Ok(rows.into_iter().collect())
}

/// Queues a `reminder` of alert `alert_id` for `receivers` if route
/// `route`'s last one is older than `due_before_ms`; whether it did.
pub(super) async fn remind<T: WriteTx>(
    tx: &T,
    alert_id: i64,
    route: i32,
    receivers: &[String],
    (now_ms, due_before_ms): (i64, i64),
) -> Result<bool, StoreError> {
    let taken = tx
        .rows(
            TAKE_REMINDER,
            &[
                Arg::Int(alert_id),
                Arg::Int32(route),
                Arg::Int(now_ms),
                Arg::Int(due_before_ms),
            ],
            |row| row.int(0),
        )
        .await?;
    if taken.is_empty() {
        return Ok(false);
    }
    queue(tx, alert_id, "reminder", receivers, now_ms).await?;
    Ok(true)
}

/// Escalates alert `alert_id` (opened at `opened_at_ms`) on route `route`
/// to `receivers` unless done: they are told of it (`escalated`) and of
/// everything after it; whether it did.
pub(super) async fn escalate<T: WriteTx>(
    tx: &T,
    alert_id: i64,
    route: i32,
    receivers: &[String],
    (now_ms, opened_at_ms): (i64, i64),
) -> Result<bool, StoreError> {
    let taken = tx
        .rows(
            TAKE_ESCALATION,
            &[
                Arg::Int(alert_id),
                Arg::Int32(route),
                Arg::Int(opened_at_ms),
            ],
            |row| row.int(0),
        )
        .await?;
    if taken.is_empty() {
        return Ok(false);
    }
    for receiver in receivers {
        tx.run(TELL_FROM_NOW, &[Arg::Int(alert_id), Arg::Text(receiver)])
            .await?;
    }
    queue(tx, alert_id, "escalated", receivers, now_ms).await?;
    Ok(true)
}

async fn queue<T: WriteTx>(
    tx: &T,
    alert_id: i64,
    kind: &str,
    receivers: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    for receiver in receivers {
        tx.run(
            QUEUE_FOR,
            &[
                Arg::Int(alert_id),
                Arg::Text(kind),
                Arg::Int(now_ms),
                Arg::Text(receiver),
            ],
        )
        .await?;
    }
    Ok(())
}
