//! Traces: the path to failed devices, as their agent traced it. A trace
//! is kept as each device's last one and attached to each one's open
//! device alert, which is notified of as `traced` on every channel (not
//! while its notifications are held for maintenance, nor while its device
//! is flapping: its changes are withheld until it settles).

use serde_json::Value;

use super::args::Arg;
use super::tx::{Query, WriteTx};
use super::{StoreError, rows};
use ward_domain::trace::Trace;

/// The name of the device at `address`, if a device has it (the oldest,
/// should several).
async fn device_at(tx: &impl Query, address: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .rows(
            "SELECT name FROM devices WHERE address = $1 ORDER BY id LIMIT 1",
            &[Arg::Text(address)],
            |row| row.text(0),
        )
        .await?
        .pop())
}

/// Keeps `trace` (its last hop's device looked up) as the last trace of
/// `devices` and attaches it to their open device alerts that do not have
/// it yet, queueing `traced` for those neither held nor flapping; returns the alerts it was
/// attached to now. Attaching the same trace again (a replayed report)
/// changes nothing and notifies nobody.
async fn attach<T: WriteTx>(
    tx: &T,
    devices: &[i64],
    trace: &Trace,
    now_ms: i64,
) -> Result<Attached, StoreError> {
    let mut trace = trace.clone();
    if let Some(last_hop) = &trace.last_hop {
        trace.last_hop_device = device_at(tx, last_hop).await?;
    }
    let stored = serde_json::to_string(&trace)
        .map_err(|error| StoreError::Corrupt(format!("a trace that does not encode: {error}")))?;
    let ids = Value::from(
        devices
            .iter()
            .map(|id| Value::from([*id]))
            .collect::<Vec<_>>(),
    )
    .to_string();
    let chosen = format!(
        "(SELECT CAST(e.value ->> 0 AS BIGINT) FROM {})",
        T::JSON_ELEMENTS
    );
    tx.run(
        &format!("UPDATE devices SET last_trace = $2 WHERE id IN {chosen}"),
        &[Arg::Text(&ids), Arg::Text(&stored)],
    )
    .await?;
    let open = tx
        .rows(
            &format!(
                "SELECT a.id, a.held OR COALESCE(d.flapping, FALSE), a.trace FROM alerts a \
                 LEFT JOIN devices d ON d.id = a.device_id WHERE a.resolved_at_ms IS NULL \
                 AND a.alertname IN ('DeviceDown', 'DeviceDegraded') AND a.device_id IN {chosen} \
                 ORDER BY a.id"
            ),
            &[Arg::Text(&ids)],
            |row| Ok((row.int(0)?, row.flag(1)?, row.opt_text(2)?)),
        )
        .await?;
    let mut attached = Attached {
        open: open.len(),
        now: Vec::new(),
    };
    for (alert, withheld, before) in open {
        if before.as_deref() == Some(stored.as_str()) {
            continue; // a replay
        }
        tx.run(
            "UPDATE alerts SET trace = $2 WHERE id = $1",
            &[Arg::Int(alert), Arg::Text(&stored)],
        )
        .await?;
        if !withheld {
            tx.run(
                super::sql::QUEUE_ON_EVERY_CHANNEL,
                &[Arg::Int(alert), Arg::Text("traced"), Arg::Int(now_ms)],
            )
            .await?;
        }
        attached.now.push(alert);
    }
    Ok(attached)
}

/// Where a trace went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Open device alerts of its devices.
    pub open: usize,
    /// Of those, the ones it was attached to now (not before).
    pub now: Vec<i64>,
}

/// [`attach`] for each of `traces`, in order.
pub(super) async fn attach_all<T: WriteTx>(
    tx: &T,
    traces: &[(Vec<i64>, Trace)],
    now_ms: i64,
) -> Result<Vec<Attached>, StoreError> {
    let mut attached = Vec::with_capacity(traces.len());
    for (devices, trace) in traces {
        attached.push(attach(tx, devices, trace, now_ms).await?);
    }
    Ok(attached)
}

/// Device `id`'s last trace, if it has one.
pub(super) async fn last_of(tx: &impl Query, id: i64) -> Result<Option<Trace>, StoreError> {
    let stored = tx
        .rows(
            "SELECT last_trace FROM devices WHERE id = $1",
            &[Arg::Int(id)],
            |row| row.opt_text(0),
        )
        .await?
        .pop()
        .flatten();
    rows::trace(stored)
}
