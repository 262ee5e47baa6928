//! A plan executed set-based on PostgreSQL: every device row in one
//! `UPDATE … FROM unnest(…)`, every event in one `INSERT`, alerts in
//! rounds (`Plan::alert_rounds`), agent alerts one by one.

use deadpool_postgres::Transaction;

use super::super::plan::{DeviceRow, Plan, Write};
use super::super::{StoreError, sql};
use super::to_i32;

/// Every device row of a plan in one `UPDATE … FROM unnest(…)`.
pub(super) async fn write_device_rows(
    tx: &Transaction<'_>,
    rows: &[DeviceRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.device_id).collect();
    let changed: Vec<bool> = rows.iter().map(|row| row.status.is_some()).collect();
    let status: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.status.map(|(status, _, _)| status.as_str()))
        .collect();
    let down_since: Vec<Option<i64>> = rows
        .iter()
        .map(|row| row.status.and_then(|(_, down_since, _)| down_since))
        .collect();
    let changed_at: Vec<Option<i64>> = rows
        .iter()
        .map(|row| row.status.map(|(_, _, at)| at))
        .collect();
    let reported: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.reported.map(|(status, _)| status.as_str()))
        .collect();
    let reported_at: Vec<Option<i64>> = rows
        .iter()
        .map(|row| row.reported.map(|(_, at)| at))
        .collect();
    let rtt: Vec<Option<i32>> = rows.iter().map(|row| row.last_rtt_us.map(to_i32)).collect();
    let flap_changed: Vec<bool> = rows.iter().map(|row| row.flap.is_some()).collect();
    let flapping: Vec<bool> = rows
        .iter()
        .map(|row| row.flap.as_ref().is_some_and(|flap| flap.flapping))
        .collect();
    let flap_started: Vec<Option<i64>> = rows
        .iter()
        .map(|row| row.flap.as_ref().and_then(|flap| flap.started_at_ms))
        .collect();
    let recent: Vec<Option<String>> = rows
        .iter()
        .map(|row| row.flap.as_ref().map(|flap| flap.recent_changes()))
        .collect();
    let statement = sql::write_device_rows(
        "unnest($1::bigint[], $2::bool[], $3::text[], $4::bigint[], $5::bigint[], \
                $6::text[], $7::bigint[], $8::int[], $9::bool[], $10::bool[], $11::bigint[], \
                $12::text[]) \
         AS u(id, changed, status, down_since, changed_at, reported, reported_at, rtt, \
              flap_changed, flapping, flap_started, recent)",
    );
    tx.execute(
        &statement,
        &[
            &ids,
            &changed,
            &status,
            &down_since,
            &changed_at,
            &reported,
            &reported_at,
            &rtt,
            &flap_changed,
            &flapping,
            &flap_started,
            &recent,
        ],
    )
    .await?;
    Ok(())
}

/// Every event of a plan in one `INSERT … SELECT FROM unnest(…)`, in order.
pub(super) async fn insert_events(
    tx: &Transaction<'_>,
    plan: &Plan,
    actor: &str,
) -> Result<(), StoreError> {
    let mut device_ids = Vec::new();
    let mut previous = Vec::new();
    let mut statuses = Vec::new();
    let mut at = Vec::new();
    let mut reasons = Vec::new();
    for write in &plan.writes {
        if let Write::InsertEvent {
            device_id,
            previous: before,
            status,
            at_ms,
            reason,
        } = write
        {
            device_ids.push(*device_id);
            previous.push(before.as_str());
            statuses.push(status.as_str());
            at.push(*at_ms);
            reasons.push(reason.as_str());
        }
    }
    if device_ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO status_events (device_id, previous, status, at_ms, agent_id, reason) \
         SELECT device_id, previous, status, at_ms, $6, reason \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
              WITH ORDINALITY AS e(device_id, previous, status, at_ms, reason, n) ORDER BY n",
        &[&device_ids, &previous, &statuses, &at, &reasons, &actor],
    )
    .await?;
    Ok(())
}

/// The `OpenAlert`s of one round (at most one per device) with their
/// `firing` notifications (or what each one's notice says), in one
/// statement.
pub(super) async fn open_alerts(
    tx: &Transaction<'_>,
    round: &[&Write],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut device_ids = Vec::new();
    let mut opened_at = Vec::new();
    let mut kinds = Vec::new();
    for write in round {
        if let Write::OpenAlert {
            device_id,
            opened_at_ms,
            notice,
        } = write
        {
            device_ids.push(*device_id);
            opened_at.push(*opened_at_ms);
            kinds.push(notice.kind("firing"));
        }
    }
    if device_ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) \
                AS u(device_id, opened_at, kind)), \
            opened AS (INSERT INTO alerts (device_id, opened_at_ms) \
            SELECT device_id, opened_at FROM u \
            ON CONFLICT (device_id) WHERE resolved_at_ms IS NULL DO NOTHING \
            RETURNING id, device_id) \
         INSERT INTO notification_outbox (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
         SELECT opened.id, u.kind, c.name, $4, $4 \
         FROM opened JOIN u ON u.device_id = opened.device_id CROSS JOIN notification_channels c \
         WHERE u.kind IS NOT NULL ORDER BY opened.id",
        &[&device_ids, &opened_at, &kinds, &now_ms],
    )
    .await?;
    Ok(())
}

/// The `ResolveAlert`s of one round (at most one per device) with their
/// `resolved` notifications (or what each one's notice says), in one
/// statement.
pub(super) async fn resolve_alerts(
    tx: &Transaction<'_>,
    round: &[&Write],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut device_ids = Vec::new();
    let mut resolved_at = Vec::new();
    let mut reasons = Vec::new();
    let mut kinds = Vec::new();
    for write in round {
        if let Write::ResolveAlert {
            device_id,
            resolved_at_ms,
            reason,
            notice,
        } = write
        {
            device_ids.push(*device_id);
            resolved_at.push(*resolved_at_ms);
            reasons.push(reason.as_str());
            kinds.push(notice.kind("resolved"));
        }
    }
    if device_ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
                AS u(device_id, at, reason, kind)), \
            resolved AS (UPDATE alerts a SET resolved_at_ms = u.at, resolved_reason = u.reason \
            FROM u WHERE a.device_id = u.device_id AND a.resolved_at_ms IS NULL \
            RETURNING a.id, a.device_id) \
         INSERT INTO notification_outbox (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
         SELECT resolved.id, u.kind, c.name, $5, $5 \
         FROM resolved JOIN u ON u.device_id = resolved.device_id \
         CROSS JOIN notification_channels c WHERE u.kind IS NOT NULL ORDER BY resolved.id",
        &[&device_ids, &resolved_at, &reasons, &kinds, &now_ms],
    )
    .await?;
    Ok(())
}

/// An agent alert write; every other write is executed set-based.
pub(super) async fn execute_agent_alert(
    tx: &Transaction<'_>,
    write: &Write,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let rows = match write {
        Write::OpenAgentAlert { agent_id, site, opened_at_ms, reason: _ } => {
            tx.execute(
                "WITH opened AS (INSERT INTO alerts (alertname, agent_id, site, opened_at_ms) \
                 VALUES ('AgentDown', $1, $2, $3) \
                 ON CONFLICT (agent_id) WHERE resolved_at_ms IS NULL DO NOTHING RETURNING id) \
                 INSERT INTO notification_outbox (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
                 SELECT opened.id, 'firing', c.name, $4, $4 FROM opened CROSS JOIN notification_channels c",
                &[agent_id, site, opened_at_ms, &now_ms],
            )
            .await?
        }
        Write::ResolveAgentAlert { agent_id, resolved_at_ms, reason } => {
            tx.execute(
                "WITH resolved AS (UPDATE alerts SET resolved_at_ms = $1, resolved_reason = $4 \
                 WHERE agent_id = $2 AND resolved_at_ms IS NULL RETURNING id) \
                 INSERT INTO notification_outbox (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
                 SELECT resolved.id, 'resolved', c.name, $3, $3 FROM resolved CROSS JOIN notification_channels c",
                &[resolved_at_ms, agent_id, &now_ms, reason],
            )
            .await?
        }
        _ => 0,
    };
    Ok(rows)
}
