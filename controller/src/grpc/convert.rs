//! Between the `ward.v1` messages and the store's types: devices,
//! severities, alerts, maintenance windows, and the store's errors as gRPC
//! statuses (a bad field named, a conflict, an unavailable database).

use tonic::Status as GrpcStatus;
use ward_proto::v1::{self as pb, AlertState, DeviceState};

use crate::services::{DEVICE_PAGE_DEFAULT, DEVICE_PAGE_MAX, DeviceCursor};
use crate::store::{
    Alert, Device, DeviceSpec, MaintenanceSpec, MaintenanceWindow, Severity, Status, StoreError,
};
use ward_domain::check::Check;
use ward_domain::maintenance::{Day, Every, OpenWindow};
use ward_domain::model::{Degradation, DegradedLevel};
use ward_domain::quality::Thresholds;
use ward_domain::trace::{Trace, TraceHop};

pub(super) fn state(status: Status) -> DeviceState {
    match status {
        Status::Up => DeviceState::Up,
        Status::Degraded => DeviceState::Degraded,
        Status::Down => DeviceState::Down,
        Status::Unreachable => DeviceState::Unreachable,
        Status::Unknown => DeviceState::Unknown,
    }
}

/// A device with the `open` maintenance windows that apply to it.
pub(super) fn to_proto(device: &Device, open: &[OpenWindow]) -> pb::Device {
    let maintenance = ward_domain::maintenance::covering(open, device);
    pb::Device {
        flapping: device.flapping,
        in_maintenance: !maintenance.is_empty(),
        maintenance: maintenance
            .into_iter()
            .filter_map(|id| u64::try_from(id).ok())
            .collect(),
        id: u64::try_from(device.id).unwrap_or_default(),
        spec: Some(pb::DeviceSpec {
            name: device.spec.name.clone(),
            address: device.spec.address.to_string(),
            site: device.spec.site.clone(),
            parent_id: device.spec.parent_id.and_then(|id| u64::try_from(id).ok()),
            interval_ms: device.spec.interval_ms,
            timeout_ms: device.spec.timeout_ms,
            down_after: u32::from(device.spec.down_after),
            up_after: u32::from(device.spec.up_after),
            tags: device.spec.tags.clone(),
            enabled: device.spec.enabled,
            severity: to_proto_severity(device.spec.severity).into(),
            profile: device.spec.profile.clone().unwrap_or_default(),
            check: device.spec.check.to_string(),
            rst_alive: Some(device.spec.rst_alive),
        }),
        status: state(device.status).into(),
        down_since_unix_ms: device.down_since_ms,
        last_change_unix_ms: device.status_changed_at_ms,
        last_rtt_us: device.current_rtt_us(),
        agent: device.agent.clone().unwrap_or_default(),
        degraded: device.degraded.map(|degraded| degradation(&degraded)),
    }
}

/// A degradation as the wire carries it.
pub(crate) fn degradation(degraded: &Degradation) -> pb::Degradation {
    pb::Degradation {
        level: match degraded.level {
            DegradedLevel::Warning => pb::DegradedLevel::Warning,
            DegradedLevel::Critical => pb::DegradedLevel::Critical,
        }
        .into(),
        loss_permille: u32::from(degraded.loss_permille),
        rtt_us: degraded.rtt_us,
    }
}

/// A degradation from the wire; `None` without a level.
pub(crate) fn from_degradation(degraded: &pb::Degradation) -> Option<Degradation> {
    let level = match pb::DegradedLevel::try_from(degraded.level) {
        Ok(pb::DegradedLevel::Warning) => DegradedLevel::Warning,
        Ok(pb::DegradedLevel::Critical) => DegradedLevel::Critical,
        _ => return None,
    };
    Some(Degradation {
        level,
        loss_permille: u16::try_from(degraded.loss_permille.min(1000)).unwrap_or(1000),
        rtt_us: degraded.rtt_us,
    })
}

/// Thresholds as agents and gRPC clients get them (RTT in µs).
pub(crate) fn quality(thresholds: &Thresholds) -> pb::QualityThresholds {
    pb::QualityThresholds {
        window_ms: thresholds.window_ms,
        clear_window_ms: thresholds.clear_window_ms,
        loss_warn_permille: u32::from(thresholds.loss_warn_permille),
        loss_crit_permille: u32::from(thresholds.loss_crit_permille),
        rtt_warn_us: thresholds.rtt_warn_ms.saturating_mul(1000),
        rtt_crit_us: thresholds.rtt_crit_ms.saturating_mul(1000),
        rtt_p90: thresholds.rtt_p90,
    }
}

/// A client's thresholds; a field out of range is named.
pub(super) fn quality_from_proto(
    quality: Option<pb::QualityThresholds>,
) -> Result<Thresholds, GrpcStatus> {
    let quality = quality.ok_or_else(|| GrpcStatus::invalid_argument("thresholds: required"))?;
    let permille = |field: &str, value: u32| {
        u16::try_from(value)
            .ok()
            .filter(|&permille| permille <= 1000)
            .ok_or_else(|| {
                GrpcStatus::invalid_argument(format!(
                    "{field}: must be from 0 to 1000, not {value}"
                ))
            })
    };
    let thresholds = Thresholds {
        window_ms: quality.window_ms,
        clear_window_ms: quality.clear_window_ms,
        loss_warn_permille: permille("loss_warn_permille", quality.loss_warn_permille)?,
        loss_crit_permille: permille("loss_crit_permille", quality.loss_crit_permille)?,
        rtt_warn_ms: quality.rtt_warn_us / 1000,
        rtt_crit_ms: quality.rtt_crit_us / 1000,
        rtt_p90: quality.rtt_p90,
    };
    thresholds
        .validate()
        .map_err(|error| GrpcStatus::invalid_argument(error.to_string()))?;
    Ok(thresholds)
}

/// A proto spec with the documented defaults for zero fields.
pub(super) fn from_proto(spec: Option<pb::DeviceSpec>) -> Result<DeviceSpec, GrpcStatus> {
    let spec = spec.ok_or_else(|| GrpcStatus::invalid_argument("spec: required"))?;
    let address = spec.address.parse().map_err(|_| {
        GrpcStatus::invalid_argument(format!(
            "address: `{}` is not an IPv4 or IPv6 address",
            spec.address
        ))
    })?;
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    let threshold = |field: &str, value: u32, default: u8| {
        if value == 0 {
            Ok(default)
        } else {
            u8::try_from(value).map_err(|_| {
                GrpcStatus::invalid_argument(format!("{field}: must be between 1 and 100"))
            })
        }
    };
    Ok(DeviceSpec {
        check: match given(&spec.check) {
            None => Check::Icmp,
            Some(text) => text
                .parse()
                .map_err(|error: String| GrpcStatus::invalid_argument(format!("check: {error}")))?,
        },
        rst_alive: spec.rst_alive.unwrap_or(true),
        profile: given(&spec.profile).map(str::to_owned),
        name: spec.name,
        address,
        site: spec.site,
        parent_id: spec
            .parent_id
            .map(|id| i64::try_from(id).unwrap_or(i64::MAX)),
        interval_ms: or(spec.interval_ms, 1000),
        timeout_ms: or(
            spec.timeout_ms,
            DeviceSpec::default_timeout_ms(or(spec.interval_ms, 1000)),
        ),
        down_after: threshold("down_after", spec.down_after, 3)?,
        up_after: threshold("up_after", spec.up_after, 2)?,
        tags: spec.tags,
        enabled: spec.enabled,
        severity: from_proto_severity(spec.severity)?.unwrap_or_default(),
    })
}

pub(super) fn to_proto_severity(severity: Severity) -> pb::Severity {
    match severity {
        Severity::Critical => pb::Severity::Critical,
        Severity::Major => pb::Severity::Major,
        Severity::Minor => pb::Severity::Minor,
        Severity::Info => pb::Severity::Info,
    }
}

/// A proto severity; `None` for UNSPECIFIED (any, or the default).
pub(super) fn from_proto_severity(value: i32) -> Result<Option<Severity>, GrpcStatus> {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Unspecified) => Ok(None),
        Ok(pb::Severity::Critical) => Ok(Some(Severity::Critical)),
        Ok(pb::Severity::Major) => Ok(Some(Severity::Major)),
        Ok(pb::Severity::Minor) => Ok(Some(Severity::Minor)),
        Ok(pb::Severity::Info) => Ok(Some(Severity::Info)),
        Err(_) => Err(GrpcStatus::invalid_argument(format!(
            "severity: unknown value {value}"
        ))),
    }
}

pub(super) fn alert_to_proto(alert: &Alert) -> pb::Alert {
    let is_device = alert.alertname.is_device();
    pb::Alert {
        id: u64::try_from(alert.id).unwrap_or_default(),
        device_id: alert
            .device_id
            .and_then(|id| u64::try_from(id).ok())
            .unwrap_or_default(),
        device_name: if is_device {
            alert.name.clone()
        } else {
            String::new()
        },
        site: alert.site.clone(),
        alertname: alert.alertname.as_str().to_owned(),
        agent_id: alert.agent_id.clone().unwrap_or_default(),
        resolved_reason: alert.resolved_reason.clone(),
        severity: to_proto_severity(alert.severity).into(),
        state: if alert.resolved_at_ms.is_some() {
            AlertState::Resolved
        } else {
            AlertState::Open
        }
        .into(),
        opened_at_unix_ms: alert.opened_at_ms,
        resolved_at_unix_ms: alert.resolved_at_ms,
        acknowledgement: alert.acknowledged.as_ref().map(|ack| pb::Acknowledgement {
            by: ack.by.clone(),
            at_unix_ms: ack.at_ms,
            comment: ack.comment.clone(),
        }),
        degraded: alert.degraded.as_ref().map(degradation),
        trace: alert.trace.as_ref().map(trace),
    }
}

/// A trace as gRPC clients get it.
fn trace(trace: &Trace) -> pb::AlertTrace {
    pb::AlertTrace {
        hops: trace
            .hops
            .iter()
            .map(|hop| pb::TraceHop {
                ttl: u32::from(hop.ttl),
                address: hop.address.clone().unwrap_or_default(),
                rtt_us: hop.rtt_us,
            })
            .collect(),
        last_hop: trace.last_hop.clone().unwrap_or_default(),
        last_hop_device: trace.last_hop_device.clone().unwrap_or_default(),
        target: trace.target.clone(),
        reached: trace.reached,
        traced_at_unix_ms: trace.traced_at_ms,
    }
}

/// A trace an agent reported; `None` if an address is not one, or a TTL
/// is out of range.
pub(crate) fn trace_from_proto(trace: &pb::Trace) -> Option<Trace> {
    let target: std::net::IpAddr = trace.target.parse().ok()?;
    let hops = trace
        .hops
        .iter()
        .map(|hop| {
            let address = match hop.address.as_str() {
                "" => None,
                text => Some(text.parse::<std::net::IpAddr>().ok()?.to_string()),
            };
            Some(TraceHop {
                ttl: u8::try_from(hop.ttl).ok().filter(|ttl| *ttl > 0)?,
                address,
                rtt_us: hop.rtt_us,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Trace::new(
        trace.traced_at_unix_ms,
        target.to_string(),
        trace.reached,
        hops,
    ))
}

pub(super) fn window_to_proto(
    window: MaintenanceWindow,
    open: Option<&OpenWindow>,
) -> pb::MaintenanceWindow {
    let spec = window.spec;
    let recurrence = spec.every.map(|every| {
        let (name, days, day) = match every {
            Every::Daily => ("daily", Vec::new(), 0),
            Every::Weekly { days } => ("weekly", days, 0),
            Every::Monthly { day } => ("monthly", Vec::new(), u32::from(day)),
        };
        pb::Recurrence {
            every: name.to_owned(),
            days: days
                .iter()
                .map(|day| {
                    serde_json::to_value(day)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect(),
            day,
            until_unix_ms: spec.until_ms,
        }
    });
    pb::MaintenanceWindow {
        id: u64::try_from(window.id).unwrap_or_default(),
        spec: Some(pb::MaintenanceSpec {
            name: spec.name,
            starts_at_unix_ms: spec.starts_at_ms,
            ends_at_unix_ms: spec.ends_at_ms,
            time_zone: spec.time_zone,
            recurrence,
            devices: spec
                .devices
                .into_iter()
                .filter_map(|id| u64::try_from(id).ok())
                .collect(),
            sites: spec.sites,
            tags: spec.tags,
            comment: spec.comment,
        }),
        created_by: window.created_by,
        created_at_unix_ms: window.created_at_ms,
        active: open.is_some(),
        current_starts_unix_ms: open.map(|open| open.starts_ms),
        current_ends_unix_ms: open.map(|open| open.ends_ms),
    }
}

/// A proto window spec; a bad field is named.
pub(super) fn maintenance_from_proto(
    spec: Option<pb::MaintenanceSpec>,
) -> Result<MaintenanceSpec, GrpcStatus> {
    let spec = spec.ok_or_else(|| GrpcStatus::invalid_argument("spec: required"))?;
    let named = |error: ward_domain::maintenance::ScheduleError| {
        GrpcStatus::invalid_argument(format!("{}: {}", error.field, error.message))
    };
    let (every, until_ms) = match spec.recurrence {
        None => (None, None),
        Some(recurrence) => {
            let days = recurrence
                .days
                .iter()
                .map(|day| day.parse::<Day>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(named)?;
            let day = u8::try_from(recurrence.day).unwrap_or(u8::MAX);
            let every = Every::named(
                &recurrence.every,
                Some(days).filter(|days| !days.is_empty()),
                Some(day).filter(|day| *day != 0),
            )
            .map_err(named)?;
            (Some(every), recurrence.until_unix_ms)
        }
    };
    Ok(MaintenanceSpec {
        name: spec.name,
        starts_at_ms: spec.starts_at_unix_ms,
        ends_at_ms: spec.ends_at_unix_ms,
        time_zone: Some(spec.time_zone)
            .filter(|zone| !zone.is_empty())
            .unwrap_or_else(|| "UTC".into()),
        every,
        until_ms,
        devices: spec
            .devices
            .into_iter()
            .map(|id| i64::try_from(id).unwrap_or(i64::MAX))
            .collect(),
        sites: spec.sites,
        tags: spec.tags,
        comment: spec.comment,
    })
}

pub(super) fn grpc_error(error: StoreError) -> GrpcStatus {
    match error {
        StoreError::Invalid(field) => {
            GrpcStatus::invalid_argument(format!("{}: {}", field.field, field.message))
        }
        StoreError::InvalidEntry {
            index,
            field,
            message,
        } => GrpcStatus::invalid_argument(format!("devices[{index}].{field}: {message}")),
        StoreError::Conflict { field, message } => {
            GrpcStatus::already_exists(format!("{field}: {message}"))
        }
        other => GrpcStatus::unavailable(format!("the status database is not answering: {other}")),
    }
}

/// A `ListDevices` status filter (UNSPECIFIED: any).
pub(super) fn status_filter(value: i32) -> Result<Option<Status>, GrpcStatus> {
    Ok(match DeviceState::try_from(value) {
        Ok(DeviceState::Unspecified) => None,
        Ok(DeviceState::Up) => Some(Status::Up),
        Ok(DeviceState::Degraded) => Some(Status::Degraded),
        Ok(DeviceState::Down) => Some(Status::Down),
        Ok(DeviceState::Unreachable) => Some(Status::Unreachable),
        Ok(DeviceState::Unknown) => Some(Status::Unknown),
        Err(_) => {
            return Err(GrpcStatus::invalid_argument(format!(
                "status: unknown value {value}"
            )));
        }
    })
}

/// A page's size (0: the default) and where it starts, as REST's
/// `limit` and `cursor`.
pub(super) fn page_request(
    page_size: u32,
    page_token: &str,
) -> Result<(usize, Option<DeviceCursor>), GrpcStatus> {
    let limit = match usize::try_from(page_size).unwrap_or(usize::MAX) {
        0 => DEVICE_PAGE_DEFAULT,
        limit if limit <= DEVICE_PAGE_MAX => limit,
        _ => {
            return Err(GrpcStatus::invalid_argument(format!(
                "page_size: must be at most {DEVICE_PAGE_MAX}"
            )));
        }
    };
    let after = given(page_token)
        .map(str::parse::<DeviceCursor>)
        .transpose()
        .map_err(|error| GrpcStatus::invalid_argument(format!("page_token: {error}")))?;
    Ok((limit, after))
}

/// A filter's text; empty: not given.
pub(super) fn given(text: &str) -> Option<&str> {
    Some(text).filter(|text| !text.is_empty())
}

pub(super) fn device_id(id: u64) -> Result<i64, GrpcStatus> {
    i64::try_from(id).map_err(|_| GrpcStatus::invalid_argument(format!("id: {id} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeviceSpec;

    #[test]
    fn a_degraded_device_and_its_figures_cross_the_wire() {
        let degraded = Degradation {
            level: DegradedLevel::Critical,
            loss_permille: 612,
            rtt_us: Some(480_000),
        };
        let device = Device {
            id: 7,
            spec: DeviceSpec {
                severity: Severity::Major,
                ..DeviceSpec::new(
                    "atm-7".into(),
                    "198.18.1.7".parse().expect("address"),
                    "branch-7".into(),
                )
            },
            status: Status::Degraded,
            down_since_ms: None,
            status_changed_at_ms: 5_000,
            last_rtt_us: Some(470_000),
            agent: Some("branch-7-agent".into()),
            flapping: false,
            degraded: Some(degraded),
        };
        let shown = to_proto(&device, &[]);
        assert_eq!(shown.status, DeviceState::Degraded as i32);
        assert_eq!(
            shown.last_rtt_us,
            Some(470_000),
            "a degraded device answers"
        );
        let wire = shown.degraded.expect("its degradation");
        assert_eq!(
            (wire.level, wire.loss_permille, wire.rtt_us),
            (pb::DegradedLevel::Critical as i32, 612, Some(480_000))
        );
        assert_eq!(from_degradation(&wire), Some(degraded));
        let unleveled = pb::Degradation::default();
        assert_eq!(from_degradation(&unleveled), None);
    }
}
