//! The transition rules, written once for every backend and free of I/O:
//! given a report, or a change to the inventory, and the current rows of
//! the devices it touches, decide what to write. Backends read the rows and
//! execute the writes inside one short transaction, so a device created,
//! re-parented, disabled, readdressed or deleted goes through the same
//! rules as a probe report.

mod planner;

use std::collections::HashMap;

use planner::Planner;

use super::flap::{Flap, FlapPolicy, Notice};
use super::model::{
    AlertName, Degradation, Device, FieldError, Ignored, Status, StatusChanges, TransitionReport,
};

/// What the planner needs to know about a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentDevice {
    /// Effective status (what every screen shows).
    pub status: Status,
    /// When the effective status last changed, Unix ms.
    pub status_changed_at_ms: i64,
    /// Start of the current outage, Unix ms.
    pub down_since_ms: Option<i64>,
    /// What its agent last reported.
    pub reported: Status,
    /// Probe time of that report, Unix ms.
    pub reported_at_ms: i64,
    /// With `reported` degraded: how.
    pub degraded: Option<Degradation>,
    /// The device it is reached through.
    pub parent_id: Option<i64>,
    /// It has an open alert.
    pub alert_open: bool,
    /// That alert is a `DeviceDegraded` (else a `DeviceDown`).
    pub alert_degraded: bool,
    /// It is probed (a disabled device is `unknown` and never alerts).
    pub enabled: bool,
    /// Its flap state.
    pub flap: Flap,
}

/// A change an operator made to the inventory (REST, gRPC, import).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryChange {
    /// The device was just inserted (its row is in `current`).
    Created {
        /// The new device.
        device_id: i64,
    },
    /// The device's configuration was replaced.
    Updated {
        /// The device.
        device_id: i64,
        /// Its parent from now on.
        parent_id: Option<i64>,
        /// Whether it is probed from now on.
        enabled: bool,
        /// Its address changed: what was reported was about the old one.
        address_changed: bool,
    },
    /// The device is about to be deleted.
    Deleted {
        /// The device.
        device_id: i64,
    },
}

impl InventoryChange {
    /// The device changed.
    pub fn device_id(&self) -> i64 {
        match self {
            InventoryChange::Created { device_id }
            | InventoryChange::Updated { device_id, .. }
            | InventoryChange::Deleted { device_id } => *device_id,
        }
    }
}

/// One write, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Record what the agent reported.
    SetReported {
        /// The device.
        device_id: i64,
        /// Reported status.
        status: Status,
        /// Probe time, Unix ms.
        at_ms: i64,
        /// Last RTT reported.
        last_rtt_us: Option<u32>,
        /// With a degraded report: how.
        degraded: Option<Degradation>,
    },
    /// Set a device's effective status (and, when its own report caused
    /// the change, the reported columns in the same statement).
    UpdateDevice {
        /// The device.
        device_id: i64,
        /// New status.
        status: Status,
        /// Start of the outage, `None` when not in one.
        down_since_ms: Option<i64>,
        /// When the change happened (probe time), Unix ms.
        changed_at_ms: i64,
        /// The report that caused it, if any.
        reported: Option<Reported>,
    },
    /// Append to the status event log.
    InsertEvent {
        /// The device.
        device_id: i64,
        /// Status before.
        previous: Status,
        /// Status after.
        status: Status,
        /// When, Unix ms.
        at_ms: i64,
        /// Why.
        reason: String,
    },
    /// Open an alert for the device and queue its `firing` notification
    /// (or what `notice` says instead).
    OpenAlert {
        /// The device.
        device_id: i64,
        /// `DeviceDown` or `DeviceDegraded`.
        alertname: AlertName,
        /// Outage start, Unix ms.
        opened_at_ms: i64,
        /// The notification queued.
        notice: Notice,
    },
    /// Resolve the device's open alert and queue its `resolved`
    /// notification (or what `notice` says instead).
    ResolveAlert {
        /// The device.
        device_id: i64,
        /// When, Unix ms.
        resolved_at_ms: i64,
        /// Why (sent with the notification).
        reason: String,
        /// The notification queued.
        notice: Notice,
    },
    /// Queue an `updated` notification of the device's open alert (a
    /// degraded device's level changed: its severity with it), or what
    /// `notice` says instead.
    UpdateAlert {
        /// The device.
        device_id: i64,
        /// The notification queued.
        notice: Notice,
    },
    /// Store the device's flap state.
    SetFlap {
        /// The device.
        device_id: i64,
        /// Its state from now on.
        flap: Flap,
    },
    /// Open an `AgentDown` alert (unless one is open) and queue its
    /// `firing` notification.
    OpenAgentAlert {
        /// The agent.
        agent_id: String,
        /// Its site.
        site: String,
        /// When, Unix ms.
        opened_at_ms: i64,
        /// Why (logged).
        reason: String,
    },
    /// Resolve the agent's open `AgentDown` alert and queue its `resolved`
    /// notification.
    ResolveAgentAlert {
        /// The agent.
        agent_id: String,
        /// When, Unix ms.
        resolved_at_ms: i64,
        /// Why (sent with the notification).
        reason: String,
    },
}

/// What an agent reported, written with the status it caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// Reported status.
    pub status: Status,
    /// Probe time, Unix ms.
    pub at_ms: i64,
    /// Last RTT reported.
    pub last_rtt_us: Option<u32>,
    /// With a degraded report: how.
    pub degraded: Option<Degradation>,
}

/// The writes for a report, and the entries left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes, in order.
    pub writes: Vec<Write>,
    /// Devices whose effective status changed, in order of first change.
    pub changed: Vec<i64>,
    /// Their status before the report, in the order of `changed`.
    pub previous: Vec<Status>,
    /// Entries not applied.
    pub ignored: Vec<(i64, Ignored)>,
    /// Alert changes whose notification was withheld (flapping devices).
    pub withheld: u64,
}

/// A device's row after all of a plan's writes to it: what a set-based
/// backend writes in one statement per plan instead of one per write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceRow {
    /// The device.
    pub device_id: i64,
    /// Its effective status, outage start and change time, when the plan
    /// changed them.
    pub status: Option<(Status, Option<i64>, i64)>,
    /// What its agent reported and when, when the plan recorded a report.
    pub reported: Option<(Status, i64)>,
    /// How the report says it is degraded (with `reported`).
    pub degraded: Option<Degradation>,
    /// The last RTT reported, when one was.
    pub last_rtt_us: Option<u32>,
    /// Its flap state, when the plan changed it.
    pub flap: Option<Flap>,
}

impl Plan {
    /// The device rows the plan's `SetReported` and `UpdateDevice` writes
    /// leave, one per device, in order of first write: applying them at
    /// once equals applying those writes in order.
    pub fn device_rows(&self) -> Vec<DeviceRow> {
        let mut rows: Vec<DeviceRow> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        for write in &self.writes {
            let (device_id, status, reported, flap) = match write {
                Write::SetReported {
                    device_id,
                    status,
                    at_ms,
                    last_rtt_us,
                    degraded,
                } => (
                    *device_id,
                    None,
                    Some(Reported {
                        status: *status,
                        at_ms: *at_ms,
                        last_rtt_us: *last_rtt_us,
                        degraded: *degraded,
                    }),
                    None,
                ),
                Write::UpdateDevice {
                    device_id,
                    status,
                    down_since_ms,
                    changed_at_ms,
                    reported,
                } => (
                    *device_id,
                    Some((*status, *down_since_ms, *changed_at_ms)),
                    *reported,
                    None,
                ),
                Write::SetFlap { device_id, flap } => (*device_id, None, None, Some(flap)),
                _ => continue,
            };
            let at = *index.entry(device_id).or_insert_with(|| {
                rows.push(DeviceRow {
                    device_id,
                    ..DeviceRow::default()
                });
                rows.len() - 1
            });
            let row = &mut rows[at];
            if status.is_some() {
                row.status = status;
            }
            if let Some(reported) = reported {
                row.reported = Some((reported.status, reported.at_ms));
                row.degraded = reported.degraded;
                row.last_rtt_us = reported.last_rtt_us.or(row.last_rtt_us);
            }
            if let Some(flap) = flap {
                row.flap = Some(flap.clone());
            }
        }
        rows
    }

    /// The device alert writes (`OpenAlert`, `ResolveAlert`,
    /// `UpdateAlert`) in rounds:
    /// round k holds each device's k-th one, so within a round no device
    /// appears twice and its writes may run as one statement per kind,
    /// while the rounds keep each device's order.
    pub fn alert_rounds(&self) -> Vec<Vec<&Write>> {
        let mut rounds: Vec<Vec<&Write>> = Vec::new();
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for write in &self.writes {
            if let Write::OpenAlert { device_id, .. }
            | Write::ResolveAlert { device_id, .. }
            | Write::UpdateAlert { device_id, .. } = write
            {
                let round = seen.entry(*device_id).or_default();
                if rounds.len() <= *round {
                    rounds.push(Vec::new());
                }
                rounds[*round].push(write);
                *round += 1;
            }
        }
        rounds
    }
}

/// Decides the writes for `report`. `current` must hold the reported
/// devices, their parents and all their descendants.
///
/// Rules: a device whose parent is in an outage is `unreachable` and has no
/// alert of its own; otherwise it shows what its agent reported, with an
/// alert while that is an outage. A report older than the device's last
/// report is ignored. `Unknown` (the controller's "its agent is gone") is
/// never stale, keeps the alert as it is, and leaves the last report's
/// time, so the agent's replayed reports still apply. Each outage start
/// or end counts towards flapping ([`super::flap`]) under `flapping`.
pub fn plan(
    report: &TransitionReport,
    current: &HashMap<i64, CurrentDevice>,
    flapping: &FlapPolicy,
) -> Plan {
    let mut planner = Planner::new(current);
    planner.flapping = Some(*flapping);
    for transition in &report.transitions {
        planner.report(transition);
    }
    // The agent alerts go with the `unknown` they explain, in one
    // transaction; opening an open one or resolving none changes nothing.
    for change in &report.agent_alerts {
        let at_ms = change.at_ms;
        planner.plan.writes.push(if change.open {
            Write::OpenAgentAlert {
                agent_id: change.agent_id.clone(),
                site: change.site.clone(),
                opened_at_ms: at_ms,
                reason: change.reason.clone(),
            }
        } else {
            Write::ResolveAgentAlert {
                agent_id: change.agent_id.clone(),
                resolved_at_ms: at_ms,
                reason: change.reason.clone(),
            }
        });
    }
    planner.plan
}

/// Decides the writes for an inventory change made at `at_ms`. `current`
/// must hold the device, its parents old and new, and all the descendants
/// of both.
///
/// Rules: children of a deleted, re-parented, disabled or recovered parent
/// settle again at once (back to their own reported status when the
/// parent's outage no longer covers them); a disabled or deleted device's
/// open alert is resolved (with a notification naming why); a device whose
/// address changed is `unknown` until its agent reports on the new address.
/// A parent that would make a cycle is refused, naming `parent_id`. An
/// alert change of a flapping device notifies nobody (it settles later);
/// inventory changes do not count towards flapping.
pub fn plan_inventory(
    changes: &[InventoryChange],
    current: &HashMap<i64, CurrentDevice>,
    at_ms: i64,
) -> Result<Plan, FieldError> {
    let mut planner = Planner::new(current);
    for change in changes {
        planner.change(change, at_ms)?;
    }
    Ok(planner.plan)
}

/// The changes that settle devices just inserted: only a device with a
/// parent can start as anything but `unknown` (`unreachable`, under a
/// parent in an outage). Empty when there is nothing to settle.
pub fn created(devices: &[Device]) -> Vec<InventoryChange> {
    devices
        .iter()
        .filter(|device| device.spec.parent_id.is_some())
        .map(|device| InventoryChange::Created {
            device_id: device.id,
        })
        .collect()
}

impl From<Plan> for StatusChanges {
    fn from(plan: Plan) -> Self {
        Self {
            changed: plan.changed,
            previous: plan.previous,
            version: None,
            withheld: plan.withheld,
            devices: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
