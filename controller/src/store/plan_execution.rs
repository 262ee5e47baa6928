//! A plan executed set-based, written once for both backends: each set of
//! rows goes to the database as one JSON array ([`Query::JSON_ELEMENTS`]).
//! Every device row in one `UPDATE` (the rows the writes leave,
//! [`Plan::device_rows`]), every event in one `INSERT`, device alerts in
//! one statement per kind and round ([`Plan::alert_rounds`]), and the
//! notifications of the alerts each opened, resolved or updated in one
//! more. Plans of distinct devices (a wave of a group of reports) go
//! together, each set of rows of them all in one statement. On
//! PostgreSQL the independent parts are pipelined on the connection: a
//! 10,000-device outage is a handful of statements. The status events are
//! the exception: they are recorded at the commit's data version
//! ([`StatusWrites`]).

use serde_json::{Value, json};

use super::StoreError;
use super::args::Arg;
use super::plan::{DeviceRow, Plan, Write};
use super::sql;
use super::tx::Query;

/// What executing a plan wrote.
#[derive(Default)]
pub(super) struct Executed {
    /// The device statuses it wrote, and their events still to record
    /// (for `operations::data_changed`).
    pub status_written: StatusWrites,
    /// How many agent alerts it opened or resolved.
    pub agent_alerts: usize,
}

impl Executed {
    /// Nothing any reader sees changed: no device row and no alert.
    pub fn changed_nothing(&self) -> bool {
        self.status_written.devices.is_empty() && self.agent_alerts == 0
    }
}

/// The devices whose status a transaction wrote, and the status events
/// those writes make, which are recorded only with the commit's data
/// version (`operations::next_version`): inserted with it in the section
/// commits go through one at a time, where inserting them before and
/// stamping them there wrote every event twice (a 10,000-device outage
/// held every other writer for the stamp).
#[derive(Default)]
#[must_use = "its status events are recorded only by `operations::data_changed`"]
pub(super) struct StatusWrites {
    /// The devices, possibly repeated.
    pub devices: Vec<i64>,
    /// The events as JSON rows (device, previous, status, at, reason,
    /// actor), in order.
    events: Vec<Value>,
}

impl StatusWrites {
    /// Status writes of `devices` that made no event.
    pub fn of(devices: Vec<i64>) -> Self {
        Self {
            devices,
            events: Vec::new(),
        }
    }

    /// Adds `other`'s writes after these.
    pub fn extend(&mut self, other: StatusWrites) {
        self.devices.extend(other.devices);
        self.events.extend(other.events);
    }

    /// The statement that records the events under the data version
    /// ([`sql::CURRENT_VERSION`]), without parameters (the events are a
    /// literal): one of those that run right after the version's bump.
    pub fn recording<T: Query + ?Sized>(&self) -> Option<String> {
        if self.events.is_empty() {
            return None;
        }
        let rows: Vec<String> = self.events.iter().map(Value::to_string).collect();
        let events = sql::text_literal(&format!("[{}]", rows.join(",")));
        Some(format!(
            "INSERT INTO status_events (version, device_id, previous, status, at_ms, agent_id, reason) \
             SELECT {}, {}, {}, {}, {}, {}, {} FROM {} ORDER BY e.n",
            sql::CURRENT_VERSION,
            column(0, "BIGINT"),
            column(1, "TEXT"),
            column(2, "TEXT"),
            column(3, "BIGINT"),
            column(5, "TEXT"),
            column(4, "TEXT"),
            T::JSON_ELEMENTS.replace("$1", &events)
        ))
    }
}

/// A plan to execute, its events recorded as by `actor`, its
/// notifications due at `now_ms`.
pub(super) struct Planned<'a> {
    pub plan: &'a Plan,
    pub actor: &'a str,
    pub now_ms: i64,
}

/// Executes every write of `plan`, events recorded as by `actor`.
pub(super) async fn execute<T: Query + ?Sized>(
    tx: &T,
    plan: &Plan,
    actor: &str,
    now_ms: i64,
) -> Result<Executed, StoreError> {
    let planned = Planned {
        plan,
        actor,
        now_ms,
    };
    let mut executed = execute_together(tx, std::slice::from_ref(&planned)).await?;
    Ok(executed.pop().unwrap_or_default())
}

/// Executes plans of distinct devices and agents together, each set of
/// rows of them all in one statement (a wave of a group of reports:
/// 256 reports are a handful of statements, not a thousand); what each
/// wrote, in order. Their notifications are due at the latest `now_ms`.
pub(super) async fn execute_together<T: Query + ?Sized>(
    tx: &T,
    plans: &[Planned<'_>],
) -> Result<Vec<Executed>, StoreError> {
    let rows: Vec<Vec<DeviceRow>> = plans.iter().map(|p| p.plan.device_rows()).collect();
    let every_row: Vec<&DeviceRow> = rows.iter().flatten().collect();
    let now_ms = plans.iter().map(|p| p.now_ms).max().unwrap_or_default();
    let devices = write_device_rows(tx, &every_row);
    let device_alerts = async {
        let rounds: Vec<Vec<Vec<&Write>>> = plans.iter().map(|p| p.plan.alert_rounds()).collect();
        let most = rounds.iter().map(Vec::len).max().unwrap_or_default();
        for k in 0..most {
            // Each plan's k-th round, at most one write a device.
            let round: Vec<&Write> = rounds
                .iter()
                .filter_map(|plan| plan.get(k))
                .flatten()
                .copied()
                .collect();
            futures_util::try_join!(
                open_alerts(tx, &round, now_ms),
                resolve_alerts(tx, &round, now_ms),
                update_alerts(tx, &round, now_ms)
            )?;
        }
        Ok::<_, StoreError>(())
    };
    let agent_alerts = futures_util::future::try_join_all(plans.iter().map(|p| {
        futures_util::future::try_join_all(
            p.plan
                .writes
                .iter()
                .map(|write| execute_agent_alert(tx, write, p.now_ms)),
        )
    }));
    let (_, _, agent_alerts) = futures_util::try_join!(devices, device_alerts, agent_alerts)?;
    Ok(rows
        .iter()
        .zip(plans)
        .zip(agent_alerts)
        .map(|((rows, planned), alerts)| Executed {
            status_written: StatusWrites {
                devices: rows.iter().map(|row| row.device_id).collect(),
                events: events(planned),
            },
            agent_alerts: alerts.into_iter().sum(),
        })
        .collect())
}

/// Column `index` of the JSON rows, as SQL type `ty`.
fn column(index: usize, ty: &str) -> String {
    format!("CAST(e.value ->> {index} AS {ty})")
}

/// Every device row of a plan in one `UPDATE … FROM` the JSON rows.
async fn write_device_rows<T: Query + ?Sized>(
    tx: &T,
    rows: &[&DeviceRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!([
                row.device_id,
                row.status.is_some(),
                row.status.map(|(status, _, _)| status.as_str()),
                row.status.and_then(|(_, down_since, _)| down_since),
                row.status.map(|(_, _, at)| at),
                row.reported.map(|(status, _)| status.as_str()),
                row.reported.map(|(_, at)| at),
                row.last_rtt_us
                    .map(|rtt| i32::try_from(rtt).unwrap_or(i32::MAX)),
                row.flap.is_some(),
                row.flap.as_ref().is_some_and(|flap| flap.flapping),
                row.flap.as_ref().and_then(|flap| flap.started_at_ms),
                row.flap.as_ref().map(|flap| flap.recent_changes()),
                row.degraded.map(|degraded| json!(degraded).to_string()),
            ])
        })
        .collect();
    let columns = [
        ("id", "BIGINT"),
        ("changed", "BOOLEAN"),
        ("status", "TEXT"),
        ("down_since", "BIGINT"),
        ("changed_at", "BIGINT"),
        ("reported", "TEXT"),
        ("reported_at", "BIGINT"),
        ("rtt", "INTEGER"),
        ("flap_changed", "BOOLEAN"),
        ("flapping", "BOOLEAN"),
        ("flap_started", "BIGINT"),
        ("recent", "TEXT"),
        ("degraded", "TEXT"),
    ]
    .iter()
    .enumerate()
    .map(|(index, (name, ty))| format!("{} AS {name}", column(index, ty)))
    .collect::<Vec<_>>()
    .join(", ");
    let source = format!("(SELECT {columns} FROM {}) AS u", T::JSON_ELEMENTS);
    let rows = Value::from(rows).to_string();
    tx.run(&sql::write_device_rows(&source), &[Arg::Text(&rows)])
        .await?;
    Ok(())
}

/// The events of a plan, as JSON rows, in order, each recorded as by its
/// actor.
fn events(planned: &Planned<'_>) -> Vec<Value> {
    planned
        .plan
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::InsertEvent {
                device_id,
                previous,
                status,
                at_ms,
                reason,
            } => Some(json!([
                device_id,
                previous.as_str(),
                status.as_str(),
                at_ms,
                reason,
                planned.actor
            ])),
            _ => None,
        })
        .collect()
}

/// The `OpenAlert`s of one round (at most one per device), with their
/// `firing` notifications (or what each one's notice says).
async fn open_alerts<T: Query + ?Sized>(
    tx: &T,
    round: &[&Write],
    now_ms: i64,
) -> Result<(), StoreError> {
    let opened: Vec<(i64, Option<&str>, Value)> = round
        .iter()
        .filter_map(|write| match write {
            Write::OpenAlert {
                device_id,
                alertname,
                opened_at_ms,
                notice,
            } => Some((
                *device_id,
                notice.kind("firing"),
                json!([device_id, opened_at_ms, alertname.as_str()]),
            )),
            _ => None,
        })
        .collect();
    let statement = format!(
        "INSERT INTO alerts (device_id, opened_at_ms, alertname) SELECT {}, {}, {} FROM {} \
         WHERE true ON CONFLICT DO NOTHING RETURNING id, device_id",
        column(0, "BIGINT"),
        column(1, "BIGINT"),
        column(2, "TEXT"),
        T::JSON_ELEMENTS
    );
    notify_changed(tx, &statement, opened, now_ms).await
}

/// The `ResolveAlert`s of one round (at most one per device), with their
/// `resolved` notifications (or what each one's notice says).
async fn resolve_alerts<T: Query + ?Sized>(
    tx: &T,
    round: &[&Write],
    now_ms: i64,
) -> Result<(), StoreError> {
    let resolved: Vec<(i64, Option<&str>, Value)> = round
        .iter()
        .filter_map(|write| match write {
            Write::ResolveAlert {
                device_id,
                resolved_at_ms,
                reason,
                notice,
            } => Some((
                *device_id,
                notice.kind("resolved"),
                json!([device_id, resolved_at_ms, reason]),
            )),
            _ => None,
        })
        .collect();
    let statement = format!(
        "UPDATE alerts SET resolved_at_ms = u.at, resolved_reason = u.reason \
         FROM (SELECT {} AS device_id, {} AS at, {} AS reason FROM {}) AS u \
         WHERE alerts.device_id = u.device_id AND alerts.resolved_at_ms IS NULL \
         RETURNING alerts.id, alerts.device_id",
        column(0, "BIGINT"),
        column(1, "BIGINT"),
        column(2, "TEXT"),
        T::JSON_ELEMENTS
    );
    notify_changed(tx, &statement, resolved, now_ms).await
}

/// The `UpdateAlert`s of one round (at most one per device): an `updated`
/// notification of each device's open alert (or what each one's notice
/// says).
async fn update_alerts<T: Query + ?Sized>(
    tx: &T,
    round: &[&Write],
    now_ms: i64,
) -> Result<(), StoreError> {
    let updated: Vec<(i64, Option<&str>, Value)> = round
        .iter()
        .filter_map(|write| match write {
            Write::UpdateAlert { device_id, notice } => {
                Some((*device_id, notice.kind("updated"), json!([device_id])))
            }
            _ => None,
        })
        .collect();
    let statement = format!(
        "SELECT alerts.id, alerts.device_id FROM alerts \
         JOIN (SELECT {} AS device_id FROM {}) AS u ON alerts.device_id = u.device_id \
         WHERE alerts.resolved_at_ms IS NULL",
        column(0, "BIGINT"),
        T::JSON_ELEMENTS
    );
    notify_changed(tx, &statement, updated, now_ms).await
}

/// Runs `statement` over `writes`' JSON rows (device id, notification
/// kind, row); it returns the (alert id, device id) of each alert it
/// opened or resolved, and each is notified of on every channel (none for
/// an alert already open or none to resolve, none where the kind is
/// `None`).
async fn notify_changed<T: Query + ?Sized>(
    tx: &T,
    statement: &str,
    writes: Vec<(i64, Option<&str>, Value)>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let (kinds, rows): (Vec<_>, Vec<_>) = writes
        .into_iter()
        .map(|(device_id, kind, row)| ((device_id, kind), row))
        .unzip();
    let kinds: std::collections::HashMap<i64, Option<&str>> = kinds.into_iter().collect();
    let rows = Value::from(rows).to_string();
    let changed = tx
        .rows(statement, &[Arg::Text(&rows)], |row| {
            Ok((row.int(0)?, row.int(1)?))
        })
        .await?;
    let mut notices: Vec<(i64, &str)> = changed
        .into_iter()
        .filter_map(|(alert_id, device_id)| Some((alert_id, kinds.get(&device_id).copied()??)))
        .collect();
    notices.sort_unstable();
    queue_notifications(tx, &notices, now_ms).await
}

/// Queues each (alert id, kind) on every channel, due at `now_ms`, in
/// the order given.
async fn queue_notifications<T: Query + ?Sized>(
    tx: &T,
    notices: &[(i64, &str)],
    now_ms: i64,
) -> Result<(), StoreError> {
    if notices.is_empty() {
        return Ok(());
    }
    let statement = format!(
        "INSERT INTO notification_outbox \
         (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
         SELECT {}, {}, c.name, $2, $2 FROM {} CROSS JOIN notification_channels c \
         ORDER BY e.n",
        column(0, "BIGINT"),
        column(1, "TEXT"),
        T::JSON_ELEMENTS
    );
    let notices = Value::from(
        notices
            .iter()
            .map(|(alert_id, kind)| json!([alert_id, kind]))
            .collect::<Vec<_>>(),
    )
    .to_string();
    tx.run(&statement, &[Arg::Text(&notices), Arg::Int(now_ms)])
        .await?;
    Ok(())
}

/// An agent alert write, with its notification; every other write is
/// executed set-based. Returns how many alerts it opened or resolved.
async fn execute_agent_alert<T: Query + ?Sized>(
    tx: &T,
    write: &Write,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let (alert_ids, kind) = match write {
        Write::OpenAgentAlert {
            agent_id,
            site,
            opened_at_ms,
            reason: _,
        } => (
            tx.rows(
                "INSERT INTO alerts (alertname, agent_id, site, opened_at_ms) \
                 VALUES ('AgentDown', $1, $2, $3) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    Arg::Text(agent_id),
                    Arg::Text(site),
                    Arg::Int(*opened_at_ms),
                ],
                |row| row.int(0),
            )
            .await?,
            "firing",
        ),
        Write::ResolveAgentAlert {
            agent_id,
            resolved_at_ms,
            reason,
        } => (
            tx.rows(
                "UPDATE alerts SET resolved_at_ms = $1, resolved_reason = $3 \
                 WHERE agent_id = $2 AND resolved_at_ms IS NULL RETURNING id",
                &[
                    Arg::Int(*resolved_at_ms),
                    Arg::Text(agent_id),
                    Arg::Text(reason),
                ],
                |row| row.int(0),
            )
            .await?,
            "resolved",
        ),
        _ => return Ok(0),
    };
    let notices: Vec<(i64, &str)> = alert_ids.into_iter().map(|id| (id, kind)).collect();
    queue_notifications(tx, &notices, now_ms).await?;
    Ok(notices.len())
}
