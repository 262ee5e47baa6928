//! The planner's state while it decides: every device it may touch, with
//! parents and children, and what it has decided so far.

use std::collections::{HashMap, HashSet};

use super::{CurrentDevice, InventoryChange, Plan, Reported, Write};
use crate::flap::{Flap, FlapPolicy, Notice};
use crate::model::{AlertName, Degradation, FieldError, Ignored, ReportedTransition, Status};

/// The alert `device` has open, if any.
fn open_alert(device: &CurrentDevice) -> Option<AlertName> {
    device.alert_open.then_some(if device.alert_degraded {
        AlertName::DeviceDegraded
    } else {
        AlertName::DeviceDown
    })
}

pub(super) struct Planner {
    state: HashMap<i64, CurrentDevice>,
    children: HashMap<i64, Vec<i64>>,
    pub(super) plan: Plan,
    /// The devices in `plan.changed`.
    changed: HashSet<i64>,
    /// The report being settled, until a status update carries it.
    pending_report: Option<(i64, Reported)>,
    /// Outage starts and ends count towards flapping (reports, not
    /// inventory changes).
    pub(super) flapping: Option<FlapPolicy>,
}

impl Planner {
    pub(super) fn change(
        &mut self,
        change: &InventoryChange,
        at_ms: i64,
    ) -> Result<(), FieldError> {
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

impl Planner {
    pub(super) fn new(current: &HashMap<i64, CurrentDevice>) -> Self {
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
            device.alert_degraded = false;
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
                degraded: None,
            },
        ));
        device.degraded = None;
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
                degraded: reported.degraded,
            });
        }
    }

    pub(super) fn report(&mut self, transition: &ReportedTransition) {
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
        let level = |degraded: Option<Degradation>| degraded.map(|degraded| degraded.level);
        if transition.status == device.reported
            && level(transition.degraded) == level(device.degraded)
        {
            self.plan.ignored.push((id, Ignored::NoChange));
            return;
        }
        device.reported = transition.status;
        device.degraded = transition.degraded;
        if !forgetting {
            device.reported_at_ms = transition.probed_at_ms;
        }
        let reported = Reported {
            status: transition.status,
            at_ms: device.reported_at_ms,
            last_rtt_us: transition.last_rtt_us,
            degraded: transition.degraded,
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
        let (status, wanted_alert, parent_outage) = self.wanted(&device);
        let previous = device.status;
        let mut next = device.clone();
        // A degraded device's change of level is a change: its own event,
        // and every screen told.
        let level_changed = status == Status::Degraded && self.pending_report_of(id);
        if status != previous || level_changed {
            let reason = match (parent_outage && device.enabled, device.parent_id) {
                (true, Some(parent)) => format!("parent device {parent} is not reachable"),
                _ => reason.to_owned(),
            };
            self.change_status(id, &mut next, status, at, reason);
        }
        let open_alert = open_alert(&device);
        if wanted_alert != open_alert {
            if let Some(open) = open_alert {
                let notice = self.alert_notice(id, open, &mut next.flap, at);
                let reason = match wanted_alert {
                    Some(wanted) => format!("superseded by {}", wanted.as_str()),
                    None => reason.to_owned(),
                };
                self.plan.writes.push(Write::ResolveAlert {
                    device_id: id,
                    resolved_at_ms: at,
                    reason,
                    notice,
                });
            }
            if let Some(alertname) = wanted_alert {
                let notice = self.alert_notice(id, alertname, &mut next.flap, at);
                self.plan.writes.push(Write::OpenAlert {
                    device_id: id,
                    alertname,
                    opened_at_ms: at,
                    notice,
                });
            }
            next.alert_open = wanted_alert.is_some();
            next.alert_degraded = wanted_alert == Some(AlertName::DeviceDegraded);
        } else if level_changed && open_alert == Some(AlertName::DeviceDegraded) {
            let notice = self.alert_notice(id, AlertName::DeviceDegraded, &mut next.flap, at);
            self.plan.writes.push(Write::UpdateAlert {
                device_id: id,
                notice,
            });
        }
        self.state.insert(id, next);
        if previous.is_outage() != status.is_outage() {
            let children = self.children.get(&id).cloned().unwrap_or_default();
            for child in children {
                self.settle(child, at, reason, visited);
            }
        }
    }

    /// A report of device `id` waits to be written with a status change.
    fn pending_report_of(&self, id: i64) -> bool {
        self.pending_report
            .is_some_and(|(device_id, _)| device_id == id)
    }

    /// What `device`'s status and alert should be now: (status, the alert
    /// wanted, whether its parent is in an outage).
    fn wanted(&self, device: &CurrentDevice) -> (Status, Option<AlertName>, bool) {
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
            None
        } else if status == Status::Unknown {
            open_alert(device)
        } else if status.is_outage() && !parent_outage {
            Some(AlertName::DeviceDown)
        } else if status == Status::Degraded {
            Some(AlertName::DeviceDegraded)
        } else {
            None
        };
        (status, alert_wanted, parent_outage)
    }

    /// What opening or resolving device `id`'s `alertname` alert at `at`
    /// queues: an outage's start or end counts towards flapping (when the
    /// planner counts); a degraded alert's changes do not, and notify
    /// nobody while the device is flapping.
    fn alert_notice(&mut self, id: i64, alertname: AlertName, flap: &mut Flap, at: i64) -> Notice {
        if alertname == AlertName::DeviceDown {
            return self.count_change(id, flap, at);
        }
        if flap.flapping {
            self.plan.withheld += 1;
            Notice::Withheld
        } else {
            Notice::Change
        }
    }

    /// Changes device `id` (`next`, as it was) to `status` at `at`: its
    /// row (with the report that caused it, if pending), an event saying
    /// `reason`, and its place among the plan's changed devices.
    fn change_status(
        &mut self,
        id: i64,
        next: &mut CurrentDevice,
        status: Status,
        at: i64,
        reason: String,
    ) {
        let previous = next.status;
        next.down_since_ms = match (previous.is_outage(), status.is_outage()) {
            (true, true) => next.down_since_ms,
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
