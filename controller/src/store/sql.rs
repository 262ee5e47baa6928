//! The SQL statements both backends run as they are, written once with
//! PostgreSQL's `$n` placeholders; SQLite runs them through [`sqlite`]
//! (`?n`). Statements whose SQL really differs (upserts with a data-changing
//! CTE, `= ANY($1)` against `json_each`, the migration table's types) stay
//! in their backend.

/// A statement with `$n` placeholders written as SQLite's `?n`.
pub(super) fn sqlite(statement: &str) -> String {
    let mut converted = String::with_capacity(statement.len());
    let mut chars = statement.chars().peekable();
    let mut in_literal = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A doubled quote inside a literal leaves it and enters again.
            in_literal = !in_literal;
            converted.push(c);
        } else if !in_literal && c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            converted.push('?');
        } else {
            converted.push(c);
        }
    }
    converted
}

/// `text` as an SQL string literal (both backends: standard strings, a
/// quote doubled), for the statements that run without parameters.
pub(super) fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A device's columns in the order `rows::device` reads them.
macro_rules! device_columns {
    () => {
        "id, name, address, site, parent_id, interval_ms, timeout_ms, down_after, up_after, \
         tags, enabled, status, down_since_ms, status_changed_at_ms, last_rtt_us, agent, severity, \
         flapping, degraded, profile, probe_check, rst_alive"
    };
}

pub(super) use device_columns;

/// Every device, by site then name.
pub(super) const DEVICES: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices ORDER BY site, name"
);

/// The devices written at a data version after `$1` (stamped on the row,
/// or their status listed in `device_writes`), or not stamped yet.
pub(super) const DEVICES_CHANGED: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE id IN (SELECT id FROM devices WHERE version > $1 OR version IS NULL \
     UNION SELECT device_id FROM device_writes WHERE version > $1)"
);

/// The devices deleted at a data version after `$1`, or not stamped yet.
pub(super) const DEVICES_DELETED: &str =
    "SELECT id FROM deleted_devices WHERE version > $1 OR version IS NULL";

pub(super) const ADD_SITE: &str = "INSERT INTO sites (name) VALUES ($1) ON CONFLICT DO NOTHING";

/// The fourteen configured columns `$1`…`$14` (name … rst_alive), the id
/// `$15`.
pub(super) const UPDATE_SPEC: &str = "UPDATE devices SET name = $1, address = $2, site = $3, \
    parent_id = $4, interval_ms = $5, timeout_ms = $6, down_after = $7, up_after = $8, \
    tags = $9, enabled = $10, severity = $11, profile = $12, probe_check = $13, \
    rst_alive = $14 WHERE id = $15";

/// The fourteen configured columns `$1`…`$14`, the creation time `$15`.
pub(super) const INSERT_DEVICE: &str = "INSERT INTO devices (name, address, site, parent_id, \
    interval_ms, timeout_ms, down_after, up_after, tags, enabled, severity, profile, \
    probe_check, rst_alive, status, status_changed_at_ms, created_at_ms) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'unknown', $15, $15) \
    RETURNING id";

/// Writes a plan's device rows ([`super::plan::DeviceRow`]) from
/// `source`, a table `u(id, changed, status, down_since, changed_at,
/// reported, reported_at, rtt, flap_changed, flapping, flap_started,
/// recent, degraded)`: the effective status only where the plan changed
/// it, the report (with how it is degraded) and RTT only where there is
/// one, the flap state where the plan changed it.
pub(super) fn write_device_rows(source: &str) -> String {
    format!(
        "UPDATE devices SET \
            status = CASE WHEN u.changed THEN u.status ELSE devices.status END, \
            down_since_ms = CASE WHEN u.changed THEN u.down_since ELSE devices.down_since_ms END, \
            status_changed_at_ms = \
                CASE WHEN u.changed THEN u.changed_at ELSE devices.status_changed_at_ms END, \
            reported_status = COALESCE(u.reported, devices.reported_status), \
            reported_at_ms = COALESCE(u.reported_at, devices.reported_at_ms), \
            degraded = CASE WHEN u.reported IS NULL THEN devices.degraded ELSE u.degraded END, \
            last_rtt_us = COALESCE(u.rtt, devices.last_rtt_us), \
            flapping = CASE WHEN u.flap_changed THEN u.flapping ELSE devices.flapping END, \
            flap_started_at_ms = \
                CASE WHEN u.flap_changed THEN u.flap_started ELSE devices.flap_started_at_ms END, \
            recent_changes = COALESCE(u.recent, devices.recent_changes) \
         FROM {source} WHERE devices.id = u.id"
    )
}

/// Queues a notification of kind `$2` about alert `$1` on every channel,
/// due at `$3`.
pub(super) const QUEUE_ON_EVERY_CHANNEL: &str = "INSERT INTO notification_outbox \
    (alert_id, kind, channel, created_at_ms, next_attempt_at_ms) \
    SELECT $1, $2, name, $3, $3 FROM notification_channels";

pub(super) const DELETE_DEVICE: &str = "DELETE FROM devices WHERE id = $1";

/// Device `$1`'s tombstone, written just before it is deleted at `$2`
/// (its status events stay, for the history and availability).
pub(super) const KEEP_TOMBSTONE: &str = "INSERT INTO deleted_devices \
    (id, name, site, tags, created_at_ms, deleted_at_ms) \
    SELECT id, name, site, tags, COALESCE(created_at_ms, status_changed_at_ms), $2 \
    FROM devices WHERE id = $1";

/// Keeps device `$1`'s name, address and site on its alerts before the
/// device row is deleted, for the notifications still to be delivered.
pub(super) const KEEP_ALERT_SUBJECT: &str = "UPDATE alerts SET \
    device_name = (SELECT name FROM devices WHERE id = $1), \
    address = (SELECT address FROM devices WHERE id = $1), \
    site = (SELECT site FROM devices WHERE id = $1), \
    severity = (SELECT severity FROM devices WHERE id = $1) \
    WHERE device_id = $1";

pub(super) const NOTIFICATION_DELIVERED: &str = "DELETE FROM notification_outbox WHERE id = $1";

pub(super) const NOTIFICATION_FAILED: &str = "UPDATE notification_outbox SET \
    attempts = attempts + 1, next_attempt_at_ms = $2, last_error = $3 WHERE id = $1";

/// Keeps a receiver's first routing of an alert and answers the one kept.
pub(super) const ROUTE_ONCE: &str = "INSERT INTO alert_receivers (alert_id, receiver, routed) \
    VALUES ($1, $2, $3) ON CONFLICT (alert_id, receiver) \
    DO UPDATE SET routed = alert_receivers.routed RETURNING routed";

pub(super) const CLEAR_CHANNELS: &str = "DELETE FROM notification_channels";

/// (A controller of a cluster starting with another may have added it.)
pub(super) const ADD_CHANNEL: &str =
    "INSERT INTO notification_channels (name) VALUES ($1) ON CONFLICT DO NOTHING";

pub(super) const DROP_UNCONFIGURED: &str = "DELETE FROM notification_outbox \
    WHERE channel NOT IN (SELECT name FROM notification_channels)";

pub(super) const ADD_AGENT: &str = "INSERT INTO agents (id, site, created_at_ms) \
    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(super) const AGENT: &str = "SELECT id, site, created_at_ms FROM agents WHERE id = $1";

pub(super) const AGENTS: &str = "SELECT id, site, created_at_ms FROM agents ORDER BY id";

pub(super) const OUTBOX_DEPTH: &str = "SELECT count(*) FROM notification_outbox";

pub(super) const DATA_VERSION: &str = "SELECT cluster, version FROM data_version";

pub(super) const BUMP_DATA_VERSION: &str =
    "UPDATE data_version SET version = version + 1 RETURNING version";

/// The data version, in a statement after the transaction's bump (its own
/// write): what the rest of the serialized section stamps with.
pub(super) const CURRENT_VERSION: &str = "(SELECT version FROM data_version)";

pub(super) const PENDING_NOTIFICATIONS: &str =
    "SELECT id, alert_id, kind, attempts, channel FROM notification_outbox ORDER BY id";

pub(super) const MIGRATED_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

pub(super) const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)";

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_sqlites_and_nothing_else_changes() {
        assert_eq!(
            super::sqlite("SELECT '$x' FROM t WHERE a = $1 AND b = $12"),
            "SELECT '$x' FROM t WHERE a = ?1 AND b = ?12"
        );
    }

    #[test]
    fn a_literal_keeps_what_looks_like_a_placeholder() {
        let literal = super::text_literal("it's $1 and $2");
        assert_eq!(literal, "'it''s $1 and $2'");
        assert_eq!(
            super::sqlite(&format!("SELECT {literal}, $3")),
            "SELECT 'it''s $1 and $2', ?3"
        );
    }
}
