//! The transition rules, written once for every backend and free of I/O:
//! given a report and the current rows of its devices, decide what to
//! write. Backends read the rows and execute the writes inside one short
//! transaction.

use std::collections::HashMap;

use super::model::{Ignored, ReportedTransition, Status, TransitionReport};

/// What the planner needs to know about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentDevice {
    /// Current status.
    pub status: Status,
    /// When it last changed, Unix ms.
    pub status_changed_at_ms: i64,
    /// Start of the current outage, Unix ms.
    pub down_since_ms: Option<i64>,
}

/// One write, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Set a device's status columns.
    UpdateDevice {
        /// The device.
        device_id: i64,
        /// New status.
        status: Status,
        /// Start of the outage, `None` when not in one.
        down_since_ms: Option<i64>,
        /// When the change happened (probe time), Unix ms.
        changed_at_ms: i64,
        /// Last RTT reported.
        last_rtt_us: Option<u32>,
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
    /// Open an alert for the device and queue its `firing` notification.
    OpenAlert {
        /// The device.
        device_id: i64,
        /// Outage start, Unix ms.
        opened_at_ms: i64,
    },
    /// Resolve the device's open alert and queue its `resolved` notification.
    ResolveAlert {
        /// The device.
        device_id: i64,
        /// When it came back, Unix ms.
        resolved_at_ms: i64,
    },
}

/// The writes for a report, and the entries left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes, in order.
    pub writes: Vec<Write>,
    /// Devices whose status changed, in order of first change.
    pub changed: Vec<i64>,
    /// Entries not applied.
    pub ignored: Vec<(i64, Ignored)>,
}

/// Decides the writes for `report` given the devices' `current` rows.
pub fn plan(report: &TransitionReport, current: &HashMap<i64, CurrentDevice>) -> Plan {
    let mut state = current.clone();
    let mut plan = Plan::default();
    for transition in &report.transitions {
        let Some(device) = state.get_mut(&transition.device_id) else {
            plan.ignored
                .push((transition.device_id, Ignored::UnknownDevice));
            continue;
        };
        if transition.probed_at_ms < device.status_changed_at_ms {
            plan.ignored.push((transition.device_id, Ignored::Stale));
            continue;
        }
        if transition.status == device.status {
            plan.ignored.push((transition.device_id, Ignored::NoChange));
            continue;
        }
        apply(&mut plan, device, transition);
    }
    plan
}

fn apply(plan: &mut Plan, device: &mut CurrentDevice, transition: &ReportedTransition) {
    let (id, at) = (transition.device_id, transition.probed_at_ms);
    let previous = device.status;
    let down_since_ms = match (previous.is_outage(), transition.status.is_outage()) {
        // Down ↔ unreachable: the same outage goes on.
        (true, true) => device.down_since_ms,
        (false, true) => Some(at),
        (_, false) => None,
    };
    plan.writes.push(Write::UpdateDevice {
        device_id: id,
        status: transition.status,
        down_since_ms,
        changed_at_ms: at,
        last_rtt_us: transition.last_rtt_us,
    });
    plan.writes.push(Write::InsertEvent {
        device_id: id,
        previous,
        status: transition.status,
        at_ms: at,
        reason: transition.reason.clone(),
    });
    match (previous.is_outage(), transition.status.is_outage()) {
        (false, true) => plan.writes.push(Write::OpenAlert {
            device_id: id,
            opened_at_ms: at,
        }),
        (true, false) => plan.writes.push(Write::ResolveAlert {
            device_id: id,
            resolved_at_ms: at,
        }),
        _ => {}
    }
    *device = CurrentDevice {
        status: transition.status,
        status_changed_at_ms: at,
        down_since_ms,
    };
    if !plan.changed.contains(&id) {
        plan.changed.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(transitions: &[(i64, Status, i64)]) -> TransitionReport {
        TransitionReport {
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

    fn up_since(at: i64) -> CurrentDevice {
        CurrentDevice {
            status: Status::Up,
            status_changed_at_ms: at,
            down_since_ms: None,
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
            last_rtt_us: None,
        }));
        assert!(plan.writes.contains(&Write::OpenAlert {
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
            last_rtt_us: None,
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
}
