//! Rows read into the model, once for both backends: a backend's row type
//! only says how to get one column ([`Columns`]); which column holds what,
//! and how stored text becomes a typed value, is written here.

use super::flap::Flap;
use super::model::{
    Acknowledgement, AgentRecord, Alert, DataVersion, Degradation, Device, DeviceSpec,
    DueNotification, Notification, Status,
};
use super::plan::CurrentDevice;
use super::{StoreError, parse_stored};
use ward_domain::trace::Trace;

/// How a backend's row hands over one column.
pub(super) trait Columns {
    /// A 64-bit integer (ids, times).
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    /// A nullable 64-bit integer.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// A 32-bit integer (intervals, thresholds, counts).
    fn int32(&self, index: usize) -> Result<i32, StoreError>;
    /// A nullable 32-bit integer.
    fn opt_int32(&self, index: usize) -> Result<Option<i32>, StoreError>;
    /// Text.
    fn text(&self, index: usize) -> Result<String, StoreError>;
    /// Nullable text.
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    /// A boolean.
    fn flag(&self, index: usize) -> Result<bool, StoreError>;
}

macro_rules! columns {
    ($row:ty, $get:ident) => {
        impl Columns for $row {
            fn int(&self, index: usize) -> Result<i64, StoreError> {
                Ok(self.$get(index)?)
            }
            fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
                Ok(self.$get(index)?)
            }
            fn int32(&self, index: usize) -> Result<i32, StoreError> {
                Ok(self.$get(index)?)
            }
            fn opt_int32(&self, index: usize) -> Result<Option<i32>, StoreError> {
                Ok(self.$get(index)?)
            }
            fn text(&self, index: usize) -> Result<String, StoreError> {
                Ok(self.$get(index)?)
            }
            fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
                Ok(self.$get(index)?)
            }
            fn flag(&self, index: usize) -> Result<bool, StoreError> {
                Ok(self.$get(index)?)
            }
        }
    };
}

columns!(rusqlite::Row<'_>, get);
columns!(tokio_postgres::Row, try_get);

/// The data version row.
pub(super) fn data_version(row: &(impl Columns + ?Sized)) -> Result<DataVersion, StoreError> {
    Ok(DataVersion {
        cluster: row.text(0)?,
        version: row.int(1)?,
    })
}

/// A non-negative 32-bit column as `u32` (out of range: a corrupt row).
fn unsigned(row: &(impl Columns + ?Sized), index: usize, name: &str) -> Result<u32, StoreError> {
    let value = row.int32(index)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{name} {value}")))
}

/// A threshold column as `u8`.
fn threshold(row: &(impl Columns + ?Sized), index: usize, name: &str) -> Result<u8, StoreError> {
    let value = row.int32(index)?;
    u8::try_from(value).map_err(|_| StoreError::Corrupt(format!("{name} {value}")))
}

/// A device from `DEVICE_COLUMNS`.
pub(super) fn device(row: &(impl Columns + ?Sized)) -> Result<Device, StoreError> {
    let status = parse_stored("status", &row.text(11)?)?;
    Ok(Device {
        id: row.int(0)?,
        spec: DeviceSpec {
            name: row.text(1)?,
            address: parse_stored("address", &row.text(2)?)?,
            site: row.text(3)?,
            parent_id: row.opt_int(4)?,
            interval_ms: unsigned(row, 5, "interval_ms")?,
            timeout_ms: unsigned(row, 6, "timeout_ms")?,
            down_after: threshold(row, 7, "down_after")?,
            up_after: threshold(row, 8, "up_after")?,
            tags: tags(&row.text(9)?)?,
            enabled: row.flag(10)?,
            severity: parse_stored("severity", &row.text(16)?)?,
            profile: row.opt_text(19)?,
            check: parse_stored("probe_check", &row.text(20)?)?,
            rst_alive: row.flag(21)?,
        },
        status,
        down_since_ms: row.opt_int(12)?,
        status_changed_at_ms: row.int(13)?,
        last_rtt_us: row.opt_int32(14)?.and_then(|rtt| u32::try_from(rtt).ok()),
        agent: row.opt_text(15)?,
        flapping: row.flag(17)?,
        degraded: degradation(row.opt_text(18)?)?.filter(|_| status == Status::Degraded),
    })
}

/// A stored degradation (JSON), if any.
fn degradation(text: Option<String>) -> Result<Option<Degradation>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|error| {
            StoreError::Corrupt(format!(
                "devices.degraded `{text}` is not a degradation: {error}"
            ))
        })
    })
    .transpose()
}

/// An alert from `ALERT_COLUMNS`, starting at column `at`.
pub(super) fn alert(row: &(impl Columns + ?Sized), at: usize) -> Result<Alert, StoreError> {
    let device_status = row
        .opt_text(at + 18)?
        .map(|status| parse_stored("status", &status))
        .transpose()?;
    Ok(Alert {
        id: row.int(at)?,
        alertname: parse_stored("alertname", &row.text(at + 1)?)?,
        device_id: row.opt_int(at + 2)?,
        agent_id: row.opt_text(at + 3)?,
        name: row.text(at + 4)?,
        address: row.text(at + 5)?,
        site: row.text(at + 6)?,
        opened_at_ms: row.int(at + 7)?,
        resolved_at_ms: row.opt_int(at + 8)?,
        resolved_reason: row.opt_text(at + 9)?,
        severity: parse_stored("severity", &row.text(at + 10)?)?,
        tags: tags(&row.text(at + 11)?)?,
        parent: row.opt_text(at + 21)?,
        acknowledged: match row.opt_text(at + 12)? {
            Some(by) => Some(Acknowledgement {
                by,
                at_ms: row.opt_int(at + 13)?.unwrap_or_default(),
                comment: row.opt_text(at + 14)?.unwrap_or_default(),
            }),
            None => None,
        },
        held: row.flag(at + 15)?,
        flapping: row.flag(at + 16)?,
        flap_started_at_ms: row.opt_int(at + 17)?,
        device_status,
        degraded: degradation(row.opt_text(at + 19)?)?
            .filter(|_| device_status == Some(Status::Degraded)),
        trace: trace(row.opt_text(at + 20)?)?,
    })
}

/// A trace as stored (JSON), if any.
pub(super) fn trace(text: Option<String>) -> Result<Option<Trace>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|error| StoreError::Corrupt(format!("trace `{text}` is not a trace: {error}")))
    })
    .transpose()
}

/// Tags as stored (a JSON array of strings).
fn tags(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("tags `{text}`")))
}

/// A due notification: outbox id, kind, attempts, then `ALERT_COLUMNS`.
pub(super) fn due_notification(
    row: &(impl Columns + ?Sized),
) -> Result<DueNotification, StoreError> {
    Ok(DueNotification {
        id: row.int(0)?,
        kind: row.text(1)?,
        attempts: unsigned(row, 2, "attempts")?,
        alert: alert(row, 3)?,
    })
}

/// A waiting notification: id, alert_id, kind, attempts, channel.
pub(super) fn notification(row: &(impl Columns + ?Sized)) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.int(0)?,
        alert_id: row.int(1)?,
        kind: row.text(2)?,
        attempts: unsigned(row, 3, "attempts")?,
        channel: row.text(4)?,
    })
}

/// An agent: id, site, created_at_ms.
pub(super) fn agent(row: &(impl Columns + ?Sized)) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        id: row.text(0)?,
        site: row.text(1)?,
        created_at_ms: row.int(2)?,
    })
}

/// What the planner needs of a device: id, status, status_changed_at_ms,
/// down_since_ms, reported_status, reported_at_ms, parent_id, enabled,
/// whether it has an open alert, then flapping, flap_started_at_ms,
/// recent_changes, degraded, whether its open alert is a `DeviceDegraded`.
pub(super) fn current(row: &(impl Columns + ?Sized)) -> Result<(i64, CurrentDevice), StoreError> {
    Ok((
        row.int(0)?,
        CurrentDevice {
            status: parse_stored("status", &row.text(1)?)?,
            status_changed_at_ms: row.int(2)?,
            down_since_ms: row.opt_int(3)?,
            reported: parse_stored("reported_status", &row.text(4)?)?,
            reported_at_ms: row.int(5)?,
            parent_id: row.opt_int(6)?,
            enabled: row.flag(7)?,
            alert_open: row.flag(8)?,
            alert_degraded: row.flag(13)?,
            flap: Flap::stored(row.flag(9)?, row.opt_int(10)?, &row.text(11)?)?,
            degraded: degradation(row.opt_text(12)?)?,
        },
    ))
}
