//! The transition rules, written once for every backend and free of I/O:
//! given a report, or a change to the inventory, and the current rows of
//! the devices it touches, decide what to write. Backends read the rows and
//! execute the writes inside one short transaction, so a device created,
//! re-parented, disabled, readdressed or deleted goes through the same
//! rules as a probe report.

use std::collections::{HashMap, HashSet};

use super::flap::{Flap, FlapPolicy, Notice};
use super::model::{
    Device, FieldError, Ignored, ReportedTransition, Status, StatusChanges, TransitionReport,
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
    /// The device it is reached through.
    pub parent_id: Option<i64>,
    /// It has an open alert.
    pub alert_open: bool,
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
                } => (
                    *device_id,
                    None,
                    Some(Reported {
                        status: *status,
                        at_ms: *at_ms,
                        last_rtt_us: *last_rtt_us,
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
                row.last_rtt_us = reported.last_rtt_us.or(row.last_rtt_us);
            }
            if let Some(flap) = flap {
                row.flap = Some(flap.clone());
            }
        }
        rows
    }

    /// The device alert writes (`OpenAlert`, `ResolveAlert`) in rounds:
    /// round k holds each device's k-th one, so within a round no device
    /// appears twice and its writes may run as one statement per kind,
    /// while the rounds keep each device's order.
    pub fn alert_rounds(&self) -> Vec<Vec<&Write>> {
        let mut rounds: Vec<Vec<&Write>> = Vec::new();
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for write in &self.writes {
            if let Write::OpenAlert { device_id, .. } | Write::ResolveAlert { device_id, .. } =
                write
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

impl Planner {
    fn change(&mut self, change: &InventoryChange, at_ms: i64) -> Result<(), FieldError> {
        let id = change.device_id();
        if !self.state.contains_key(&id) {
            return Ok(());
        }
        match *change {
            InventoryChange::Created { .. } => {
                self.settle(id, at_ms, "device created", &mut HashSet::new());
            }
            InventoryChange::Updated {
                parent_id,
                enabled,
                address_changed,
                ..
            } => {
                if let Some(parent) = parent_id
                    && (parent == id || self.descendants(id).contains(&parent))
                {
                    return Err(FieldError {
                        field: "parent_id",
                        message: format!(
                            "device {parent} is reached through device {id}: that would be a cycle"
                        ),
                    });
                }
                self.reparent(id, parent_id);
                let was_enabled = self.state[&id].enabled;
                if let Some(device) = self.state.get_mut(&id) {
                    device.enabled = enabled;
                }
                let reason = if was_enabled && !enabled {
                    self.forget_report(id, at_ms, "device disabled");
                    "device disabled"
                } else if address_changed {
                    self.forget_report(id, at_ms, "address changed");
                    "address changed"
                } else {
                    "device updated"
                };
                self.settle(id, at_ms, reason, &mut HashSet::new());
                self.flush_pending_report();
            }
            InventoryChange::Deleted { .. } => {
                if self.state[&id].alert_open {
                    self.plan.writes.push(Write::ResolveAlert {
                        device_id: id,
                        resolved_at_ms: at_ms,
                        reason: "device deleted".into(),
                        notice: Notice::Change,
                    });
                }
                self.reparent(id, None);
                self.state.remove(&id);
                for child in self.children.remove(&id).unwrap_or_default() {
                    if let Some(device) = self.state.get_mut(&child) {
                        device.parent_id = None;
                    }
                    self.settle(child, at_ms, "parent device deleted", &mut HashSet::new());
                }
            }
        }
        Ok(())
    }
}

struct Planner {
    state: HashMap<i64, CurrentDevice>,
    children: HashMap<i64, Vec<i64>>,
    plan: Plan,
    /// The devices in `plan.changed`.
    changed: HashSet<i64>,
    /// The report being settled, until a status update carries it.
    pending_report: Option<(i64, Reported)>,
    /// Outage starts and ends count towards flapping (reports, not
    /// inventory changes).
    flapping: Option<FlapPolicy>,
}

impl Planner {
    fn new(current: &HashMap<i64, CurrentDevice>) -> Self {
        let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut ids: Vec<i64> = current.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(parent) = current[&id].parent_id {
                children.entry(parent).or_default().push(id);
            }
        }
        Self {
            state: current.clone(),
            children,
            plan: Plan::default(),
            changed: HashSet::new(),
            pending_report: None,
            flapping: None,
        }
    }

    /// Every device reached through `id`, at any depth.
    fn descendants(&self, id: i64) -> HashSet<i64> {
        let mut found = HashSet::new();
        let mut next = vec![id];
        while let Some(device) = next.pop() {
            for &child in self.children.get(&device).into_iter().flatten() {
                if found.insert(child) {
                    next.push(child);
                }
            }
        }
        found
    }

    /// Moves `id` under `parent` in the planner's view.
    fn reparent(&mut self, id: i64, parent: Option<i64>) {
        let Some(device) = self.state.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut device.parent_id, parent);
        if let Some(old) = old
            && let Some(siblings) = self.children.get_mut(&old)
        {
            siblings.retain(|&child| child != id);
        }
        if let Some(parent) = parent {
            self.children.entry(parent).or_default().push(id);
        }
    }

    /// What was reported no longer describes the device (disabled, or its
    /// address changed): it is `unknown` until its agent reports again, and
    /// an open alert is resolved now, naming `reason`.
    fn forget_report(&mut self, id: i64, at_ms: i64, reason: &str) {
        let Some(device) = self.state.get_mut(&id) else {
            return;
        };
        if device.alert_open {
            device.alert_open = false;
            self.plan.writes.push(Write::ResolveAlert {
                device_id: id,
                resolved_at_ms: at_ms,
                reason: reason.to_owned(),
                notice: Notice::Change,
            });
        }
        device.reported = Status::Unknown;
        self.pending_report = Some((
            id,
            Reported {
                status: Status::Unknown,
                at_ms: device.reported_at_ms,
                last_rtt_us: None,
            },
        ));
    }

    /// Writes a report that no status change carried (e.g. reported down
    /// under a down parent).
    fn flush_pending_report(&mut self) {
        if let Some((device_id, reported)) = self.pending_report.take() {
            self.plan.writes.push(Write::SetReported {
                device_id,
                status: reported.status,
                at_ms: reported.at_ms,
                last_rtt_us: reported.last_rtt_us,
            });
        }
    }

    fn report(&mut self, transition: &ReportedTransition) {
        let id = transition.device_id;
        let Some(device) = self.state.get_mut(&id) else {
            self.plan.ignored.push((id, Ignored::UnknownDevice));
            return;
        };
        if !device.enabled {
            self.plan.ignored.push((id, Ignored::Disabled));
            return;
        }
        // `Unknown` comes from the controller when the agent is gone: it
        // is never stale, and keeps the time of the agent's last report so
        // that anything the agent decided meanwhile still applies when it
        // is replayed.
        let forgetting = transition.status == Status::Unknown;
        if !forgetting && transition.probed_at_ms < device.reported_at_ms {
            self.plan.ignored.push((id, Ignored::Stale));
            return;
        }
        if transition.status == device.reported {
            self.plan.ignored.push((id, Ignored::NoChange));
            return;
        }
        device.reported = transition.status;
        if !forgetting {
            device.reported_at_ms = transition.probed_at_ms;
        }
        let reported = Reported {
            status: transition.status,
            at_ms: device.reported_at_ms,
            last_rtt_us: transition.last_rtt_us,
        };
        self.pending_report = Some((id, reported));
        self.settle(
            id,
            transition.probed_at_ms,
            &transition.reason,
            &mut HashSet::new(),
        );
        self.flush_pending_report();
    }

    /// Recomputes a device's effective status and alert from its report and
    /// its parent, and cascades to its children when its outage begins or
    /// ends.
    fn settle(&mut self, id: i64, at: i64, reason: &str, visited: &mut HashSet<i64>) {
        if !visited.insert(id) {
            return; // a parent cycle: each device settles once
        }
        let Some(device) = self.state.get(&id).cloned() else {
            return;
        };
        let parent_outage = device
            .parent_id
            .and_then(|parent| self.state.get(&parent))
            .is_some_and(|parent| parent.status.is_outage());
        let status = if !device.enabled {
            Status::Unknown
        } else if parent_outage {
            Status::Unreachable
        } else {
            device.reported
        };
        // Nobody can tell while it is `unknown`: an open alert stays open
        // (and no new one opens) until its agent reports again. A disabled
        // device never alerts.
        let alert_wanted = if !device.enabled {
            false
        } else if status == Status::Unknown {
            device.alert_open
        } else {
            status.is_outage() && !parent_outage
        };
        let previous = device.status;
        let mut next = device.clone();
        if status != previous {
            next.down_since_ms = match (previous.is_outage(), status.is_outage()) {
                (true, true) => device.down_since_ms,
                (false, true) => Some(at),
                (_, false) => None,
            };
            next.status = status;
            next.status_changed_at_ms = at;
            let reported = match self.pending_report {
                Some((device_id, reported)) if device_id == id => {
                    self.pending_report = None;
                    Some(reported)
                }
                _ => None,
            };
            self.plan.writes.push(Write::UpdateDevice {
                device_id: id,
                status,
                down_since_ms: next.down_since_ms,
                changed_at_ms: at,
                reported,
            });
            let reason = match (parent_outage && device.enabled, device.parent_id) {
                (true, Some(parent)) => format!("parent device {parent} is not reachable"),
                _ => reason.to_owned(),
            };
            self.plan.writes.push(Write::InsertEvent {
                device_id: id,
                previous,
                status,
                at_ms: at,
                reason,
            });
            if self.changed.insert(id) {
                self.plan.changed.push(id);
                self.plan.previous.push(previous);
            }
        }
        if alert_wanted != device.alert_open {
            let notice = self.count_change(id, &mut next.flap, at);
            self.plan.writes.push(if alert_wanted {
                Write::OpenAlert {
                    device_id: id,
                    opened_at_ms: at,
                    notice,
                }
            } else {
                Write::ResolveAlert {
                    device_id: id,
                    resolved_at_ms: at,
                    reason: reason.to_owned(),
                    notice,
                }
            });
            next.alert_open = alert_wanted;
        }
        self.state.insert(id, next);
        if previous.is_outage() != status.is_outage() {
            let children = self.children.get(&id).cloned().unwrap_or_default();
            for child in children {
                self.settle(child, at, reason, visited);
            }
        }
    }

    /// Counts device `id`'s outage start or end at `at` towards flapping
    /// (when the planner counts) and says what its alert change queues.
    fn count_change(&mut self, id: i64, flap: &mut Flap, at: i64) -> Notice {
        let notice = match &self.flapping {
            Some(policy) => {
                let notice = flap.record(at, policy);
                self.plan.writes.push(Write::SetFlap {
                    device_id: id,
                    flap: flap.clone(),
                });
                notice
            }
            None if flap.flapping => Notice::Withheld,
            None => Notice::Change,
        };
        if notice == Notice::Withheld {
            self.plan.withheld += 1;
        }
        notice
    }
}

impl From<Plan> for StatusChanges {
    fn from(plan: Plan) -> Self {
        Self {
            changed: plan.changed,
            previous: plan.previous,
            version: None,
            withheld: plan.withheld,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(transitions: &[(i64, Status, i64)]) -> TransitionReport {
        TransitionReport {
            agent_alerts: Vec::new(),
            agent_id: "a".into(),
            boot_id: "b".into(),
            seq: 1,
            transitions: transitions
                .iter()
                .map(|&(device_id, status, probed_at_ms)| ReportedTransition {
                    device_id,
                    status,
                    probed_at_ms,
                    last_rtt_us: None,
                    reason: "test".into(),
                })
                .collect(),
        }
    }

    /// The rules with the default flap policy.
    fn plan(report: &TransitionReport, current: &HashMap<i64, CurrentDevice>) -> Plan {
        super::plan(report, current, &FlapPolicy::default())
    }

    fn up_since(at: i64) -> CurrentDevice {
        CurrentDevice {
            status: Status::Up,
            status_changed_at_ms: at,
            down_since_ms: None,
            reported: Status::Up,
            reported_at_ms: at,
            parent_id: None,
            alert_open: false,
            enabled: true,
            flap: Flap::default(),
        }
    }

    fn child_of(parent: i64, at: i64) -> CurrentDevice {
        CurrentDevice {
            parent_id: Some(parent),
            ..up_since(at)
        }
    }

    #[test]
    fn down_opens_an_alert_with_down_since_the_deciding_probe() {
        let current = HashMap::from([(7, up_since(100))]);
        let plan = plan(&report(&[(7, Status::Down, 500)]), &current);
        assert_eq!(plan.changed, [7]);
        assert!(plan.writes.contains(&Write::UpdateDevice {
            device_id: 7,
            status: Status::Down,
            down_since_ms: Some(500),
            changed_at_ms: 500,
            reported: Some(Reported {
                status: Status::Down,
                at_ms: 500,
                last_rtt_us: None
            }),
        }));
        assert!(plan.writes.contains(&Write::OpenAlert {
            notice: Notice::Change,
            device_id: 7,
            opened_at_ms: 500
        }));
    }

    #[test]
    fn down_then_unreachable_keeps_the_outage_and_the_alert() {
        let current = HashMap::from([(7, up_since(100))]);
        let plan = plan(
            &report(&[
                (7, Status::Down, 500),
                (7, Status::Unreachable, 900),
                (7, Status::Up, 1500),
            ]),
            &current,
        );
        let opens = plan
            .writes
            .iter()
            .filter(|w| matches!(w, Write::OpenAlert { .. }))
            .count();
        let resolves = plan
            .writes
            .iter()
            .filter(|w| matches!(w, Write::ResolveAlert { .. }))
            .count();
        assert_eq!((opens, resolves), (1, 1));
        assert!(plan.writes.contains(&Write::UpdateDevice {
            device_id: 7,
            status: Status::Unreachable,
            down_since_ms: Some(500),
            changed_at_ms: 900,
            reported: Some(Reported {
                status: Status::Unreachable,
                at_ms: 900,
                last_rtt_us: None
            }),
        }));
    }

    #[test]
    fn stale_unknown_and_unchanged_entries_are_ignored() {
        let current = HashMap::from([(7, up_since(1000))]);
        let plan = plan(
            &report(&[
                (7, Status::Down, 999),
                (8, Status::Down, 2000),
                (7, Status::Up, 2000),
            ]),
            &current,
        );
        assert!(plan.writes.is_empty());
        assert_eq!(
            plan.ignored,
            [
                (7, Ignored::Stale),
                (8, Ignored::UnknownDevice),
                (7, Ignored::NoChange)
            ]
        );
    }

    fn alerts_opened(plan: &Plan) -> Vec<i64> {
        plan.writes
            .iter()
            .filter_map(|write| match write {
                Write::OpenAlert { device_id, .. } => Some(*device_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn children_of_a_down_parent_are_unreachable_without_alerts() {
        let current = HashMap::from([
            (1, up_since(100)),
            (2, child_of(1, 100)),
            (3, child_of(2, 100)),
        ]);
        let plan = plan(&report(&[(1, Status::Down, 500)]), &current);
        assert_eq!(plan.changed, [1, 2, 3], "grandchildren too");
        assert_eq!(alerts_opened(&plan), [1], "only the parent alerts");
        assert!(plan.writes.contains(&Write::UpdateDevice {
            device_id: 3,
            status: Status::Unreachable,
            down_since_ms: Some(500),
            changed_at_ms: 500,
            reported: None,
        }));
    }

    #[test]
    fn a_child_reported_down_under_a_down_parent_alerts_only_when_the_parent_returns() {
        let mut current = HashMap::from([(1, up_since(100)), (2, child_of(1, 100))]);
        let first = plan(
            &report(&[(1, Status::Down, 500), (2, Status::Down, 600)]),
            &current,
        );
        assert_eq!(alerts_opened(&first), [1]);
        // Apply the first plan's end state, then the parent comes back.
        current.insert(
            1,
            CurrentDevice {
                status: Status::Down,
                reported: Status::Down,
                reported_at_ms: 500,
                alert_open: true,
                ..up_since(500)
            },
        );
        current.insert(
            2,
            CurrentDevice {
                status: Status::Unreachable,
                reported: Status::Down,
                reported_at_ms: 600,
                down_since_ms: Some(500),
                ..child_of(1, 500)
            },
        );
        let second = plan(&report(&[(1, Status::Up, 900)]), &current);
        assert_eq!(alerts_opened(&second), [2], "the child is down on its own");
        assert!(second.writes.contains(&Write::UpdateDevice {
            device_id: 2,
            status: Status::Down,
            down_since_ms: Some(500),
            changed_at_ms: 900,
            reported: None,
        }));
    }

    #[test]
    fn device_rows_equal_the_writes_applied_in_order() {
        let current = HashMap::from([(7, up_since(100))]);
        let plan = plan(
            &report(&[
                (7, Status::Down, 500),
                (7, Status::Unreachable, 900),
                (7, Status::Up, 1500),
            ]),
            &current,
        );
        let rounds = plan.alert_rounds();
        assert_eq!(rounds.len(), 2, "opened, then resolved: {rounds:?}");
        assert!(matches!(rounds[0][..], [Write::OpenAlert { .. }]));
        assert!(matches!(rounds[1][..], [Write::ResolveAlert { .. }]));
        assert_eq!(
            plan.device_rows(),
            [DeviceRow {
                device_id: 7,
                status: Some((Status::Up, None, 1500)),
                reported: Some((Status::Up, 1500)),
                last_rtt_us: None,
                flap: Some(Flap {
                    recent_ms: vec![500, 1500],
                    ..Flap::default()
                }),
            }]
        );
        // A report under a down parent changes no status: only the report.
        let mut current = HashMap::from([(1, up_since(100)), (2, child_of(1, 100))]);
        current.get_mut(&1).expect("parent").status = Status::Down;
        let under = self::plan(&report(&[(2, Status::Down, 600)]), &current);
        assert_eq!(
            under.device_rows(),
            [DeviceRow {
                device_id: 2,
                status: Some((Status::Unreachable, Some(600), 600)),
                reported: Some((Status::Down, 600)),
                last_rtt_us: None,
                flap: None,
            }]
        );
    }

    #[test]
    fn a_parent_cycle_settles_each_device_once() {
        let current = HashMap::from([(1, child_of(2, 100)), (2, child_of(1, 100))]);
        let plan = plan(&report(&[(1, Status::Down, 500)]), &current);
        assert_eq!(plan.changed, [1, 2]);
    }

    #[test]
    fn unknown_keeps_the_alert_and_the_report_time_so_replays_still_apply() {
        let down = CurrentDevice {
            status: Status::Down,
            down_since_ms: Some(500),
            status_changed_at_ms: 500,
            reported: Status::Down,
            reported_at_ms: 500,
            alert_open: true,
            ..up_since(100)
        };
        let current = HashMap::from([(7, down), (8, up_since(400))]);
        // The agent has been gone a while: the controller says `unknown` at
        // 9,000, even though the devices' last reports are older.
        let plan = plan(
            &report(&[(7, Status::Unknown, 9_000), (8, Status::Unknown, 9_000)]),
            &current,
        );
        assert_eq!(plan.changed, [7, 8]);
        assert!(plan.writes.contains(&Write::UpdateDevice {
            device_id: 7,
            status: Status::Unknown,
            down_since_ms: None,
            changed_at_ms: 9_000,
            reported: Some(Reported {
                status: Status::Unknown,
                at_ms: 500,
                last_rtt_us: None
            }),
        }));
        assert!(
            !plan
                .writes
                .iter()
                .any(|w| matches!(w, Write::ResolveAlert { .. } | Write::OpenAlert { .. })),
            "the alert stays open: {:?}",
            plan.writes
        );

        // The agent returns and replays what it decided at 2,000: it applies.
        let unknown = |reported_at_ms, alert_open| CurrentDevice {
            status: Status::Unknown,
            status_changed_at_ms: 9_000,
            down_since_ms: None,
            reported: Status::Unknown,
            reported_at_ms,
            parent_id: None,
            alert_open,
            enabled: true,
            flap: Flap::default(),
        };
        let current = HashMap::from([(7, unknown(500, true)), (8, unknown(400, false))]);
        let replayed = self::plan(
            &report(&[(7, Status::Up, 2_000), (8, Status::Up, 400)]),
            &current,
        );
        assert_eq!(replayed.changed, [7, 8], "{:?}", replayed.ignored);
        assert!(replayed.writes.contains(&Write::ResolveAlert {
            device_id: 7,
            resolved_at_ms: 2_000,
            reason: "test".into(),
            notice: Notice::Change,
        }));
    }

    #[test]
    fn a_flapping_device_sends_one_flapping_notice_then_withholds_its_changes() {
        let policy = FlapPolicy {
            changes: 2,
            window_ms: 10_000,
        };
        let current = HashMap::from([(7, up_since(100)), (8, child_of(7, 100))]);
        let toggles: Vec<(i64, Status, i64)> = (1..=5)
            .map(|n| {
                let status = if n % 2 == 1 { Status::Down } else { Status::Up };
                (7, status, n * 1_000)
            })
            .collect();
        let plan = super::plan(&report(&toggles), &current, &policy);
        let notices: Vec<Notice> = plan
            .writes
            .iter()
            .filter_map(|write| match write {
                Write::OpenAlert { notice, .. } | Write::ResolveAlert { notice, .. } => {
                    Some(*notice)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            notices,
            [
                Notice::Change,
                Notice::Change,
                Notice::Flapping,
                Notice::Withheld,
                Notice::Withheld
            ]
        );
        assert_eq!(plan.withheld, 2);
        let events = plan
            .writes
            .iter()
            .filter(|write| matches!(write, Write::InsertEvent { device_id: 7, .. }))
            .count();
        assert_eq!(events, 5, "every change is recorded");
        let flap = plan.device_rows()[0]
            .flap
            .clone()
            .expect("flap state written");
        assert!(flap.flapping);
        assert_eq!(flap.started_at_ms, Some(3_000));

        // An inventory change does not count, and notifies nobody while
        // the device flaps.
        let mut flapping = up_since(5_000);
        flapping.status = Status::Down;
        flapping.reported = Status::Down;
        flapping.alert_open = true;
        flapping.flap = flap;
        let mut down_parent = up_since(100);
        down_parent.status = Status::Down;
        let current = HashMap::from([(7, flapping), (9, down_parent)]);
        let moved = plan_inventory(
            &[InventoryChange::Updated {
                device_id: 7,
                parent_id: Some(9),
                enabled: true,
                address_changed: false,
            }],
            &current,
            6_000,
        )
        .expect("valid");
        assert!(moved.writes.contains(&Write::ResolveAlert {
            device_id: 7,
            resolved_at_ms: 6_000,
            reason: "device updated".into(),
            notice: Notice::Withheld,
        }));
        assert!(
            !moved
                .writes
                .iter()
                .any(|write| matches!(write, Write::SetFlap { .. }))
        );
    }
}
