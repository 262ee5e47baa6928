//! Acknowledgements: an operator says "I have this one" on an open alert.
//! It changes neither the alert nor the device's status; it is shown with
//! the alert, audited, and sent on every channel as a notification of
//! kind `acknowledged` (after the alert's `firing`, like every
//! notification of one alert).

use super::args::Arg;
use super::model::{Acknowledgement, Alert};
use super::principals::{Actor, Change, audit_change, json};
use super::tx::WriteTx;
use super::{ALERT_COLUMNS, ALERTS_JOINED, StoreError, rows, sql};

/// The most characters a comment keeps.
pub const MAX_COMMENT: usize = 2000;

/// What an acknowledgement (or its withdrawal) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Done; the alert as it is now.
    Done(Alert),
    /// There is no such alert.
    NotFound,
    /// The alert is resolved: there is nothing left to take.
    Resolved(Alert),
}

async fn alert(tx: &impl WriteTx, id: i64) -> Result<Option<Alert>, StoreError> {
    Ok(tx
        .rows(
            &format!("SELECT {ALERT_COLUMNS} FROM {ALERTS_JOINED} WHERE a.id = $1"),
            &[Arg::Int(id)],
            |row| rows::alert(row, 0),
        )
        .await?
        .pop())
}

/// Acknowledges open alert `id` as `actor` with `comment` (replacing an
/// earlier acknowledgement), or withdraws its acknowledgement (`comment`
/// `None`); audited. An acknowledgement queues an `acknowledged`
/// notification on every channel.
pub(super) async fn acknowledge(
    tx: &impl WriteTx,
    id: i64,
    comment: Option<&str>,
    actor: &Actor,
    now_ms: i64,
) -> Result<AckOutcome, StoreError> {
    let Some(before) = alert(tx, id).await? else {
        return Ok(AckOutcome::NotFound);
    };
    if before.resolved_at_ms.is_some() {
        return Ok(AckOutcome::Resolved(before));
    }
    let acknowledged = comment.map(|comment| Acknowledgement {
        by: actor.principal.clone(),
        at_ms: now_ms,
        comment: comment.chars().take(MAX_COMMENT).collect(),
    });
    tx.run(
        "UPDATE alerts SET ack_by = $2, ack_at_ms = $3, ack_comment = $4 WHERE id = $1",
        &[
            Arg::Int(id),
            Arg::OptText(acknowledged.as_ref().map(|ack| ack.by.as_str())),
            Arg::OptInt(acknowledged.as_ref().map(|ack| ack.at_ms)),
            Arg::OptText(acknowledged.as_ref().map(|ack| ack.comment.as_str())),
        ],
    )
    .await?;
    if acknowledged.is_some() {
        tx.run(
            sql::QUEUE_ON_EVERY_CHANNEL,
            &[Arg::Int(id), Arg::Text("acknowledged"), Arg::Int(now_ms)],
        )
        .await?;
    }
    let change = Change {
        action: if acknowledged.is_some() {
            "alert.acknowledge"
        } else {
            "alert.unacknowledge"
        },
        object: format!("alert {id}"),
        before: Some(json(&before.acknowledged)),
        after: Some(json(&acknowledged)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(AckOutcome::Done(Alert {
        acknowledged,
        ..before
    }))
}
