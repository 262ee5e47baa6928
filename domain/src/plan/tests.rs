use super::*;
use crate::model::{AlertName, Degradation, DegradedLevel, ReportedTransition};

fn report(transitions: &[(i64, Status, i64)]) -> TransitionReport {
    TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: "a".into(),
        boot_id: "b".into(),
        seq: 1,
        transitions: transitions
            .iter()
            .map(|&(device_id, status, probed_at_ms)| ReportedTransition {
                degraded: None,
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
        alert_degraded: false,
        degraded: None,
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
            degraded: None,
            status: Status::Down,
            at_ms: 500,
            last_rtt_us: None
        }),
    }));
    assert!(plan.writes.contains(&Write::OpenAlert {
        alertname: AlertName::DeviceDown,
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
            degraded: None,
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
            degraded: None,
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
            degraded: None,
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
            degraded: None,
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
        alert_degraded: false,
        degraded: None,
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
            Write::OpenAlert { notice, .. } | Write::ResolveAlert { notice, .. } => Some(*notice),
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

/// A report of device 7 degraded at `level` at `at`.
fn degraded_report(level: DegradedLevel, at: i64) -> TransitionReport {
    let mut report = report(&[(7, Status::Degraded, at)]);
    report.transitions[0].degraded = Some(Degradation {
        level,
        loss_permille: 300,
        rtt_us: Some(20_000),
    });
    report
}

/// Applies `plan`'s device rows to `current` (as the store would).
fn applied(current: &mut HashMap<i64, CurrentDevice>, plan: &Plan) {
    for row in plan.device_rows() {
        let device = current.get_mut(&row.device_id).expect("device");
        if let Some((status, down_since, at)) = row.status {
            device.status = status;
            device.down_since_ms = down_since;
            device.status_changed_at_ms = at;
        }
        if let Some((status, at)) = row.reported {
            device.reported = status;
            device.reported_at_ms = at;
            device.degraded = row.degraded;
        }
    }
    device_alerts(current, plan);
}

fn device_alerts(current: &mut HashMap<i64, CurrentDevice>, plan: &Plan) {
    for write in &plan.writes {
        match write {
            Write::OpenAlert {
                device_id,
                alertname,
                ..
            } => {
                let device = current.get_mut(device_id).expect("device");
                device.alert_open = true;
                device.alert_degraded = *alertname == AlertName::DeviceDegraded;
            }
            Write::ResolveAlert { device_id, .. } => {
                let device = current.get_mut(device_id).expect("device");
                device.alert_open = false;
                device.alert_degraded = false;
            }
            _ => {}
        }
    }
}

/// The alert writes of `plan`, as (what, alertname or reason).
fn alert_writes(plan: &Plan) -> Vec<(&'static str, String)> {
    plan.writes
        .iter()
        .filter_map(|write| match write {
            Write::OpenAlert { alertname, .. } => Some(("open", alertname.as_str().to_owned())),
            Write::ResolveAlert { reason, .. } => Some(("resolve", reason.clone())),
            Write::UpdateAlert { .. } => Some(("update", String::new())),
            _ => None,
        })
        .collect()
}

#[test]
fn degraded_is_a_status_without_an_outage_and_its_level_changes_are_changes() {
    let mut current = HashMap::from([(7, up_since(100)), (8, child_of(7, 100))]);
    let warning = plan(&degraded_report(DegradedLevel::Warning, 500), &current);
    assert_eq!(warning.changed, [7], "the child stays as it is");
    assert!(warning.writes.contains(&Write::UpdateDevice {
        device_id: 7,
        status: Status::Degraded,
        down_since_ms: None,
        changed_at_ms: 500,
        reported: Some(Reported {
            status: Status::Degraded,
            at_ms: 500,
            last_rtt_us: None,
            degraded: degraded_report(DegradedLevel::Warning, 500).transitions[0].degraded,
        }),
    }));
    assert_eq!(alert_writes(&warning), [("open", "DeviceDegraded".into())]);
    applied(&mut current, &warning);
    assert_eq!(
        current[&7].degraded.map(|d| d.level),
        Some(DegradedLevel::Warning)
    );
    // The same level said again (a replay, a resync) changes nothing.
    let again = plan(&degraded_report(DegradedLevel::Warning, 600), &current);
    assert!(again.changed.is_empty());
    assert_eq!(again.ignored, [(7, Ignored::NoChange)]);
    // Critical: a change of its own, with an event.
    let critical = plan(&degraded_report(DegradedLevel::Critical, 700), &current);
    assert_eq!(critical.changed, [7]);
    assert!(critical.writes.iter().any(|write| matches!(
        write,
        Write::InsertEvent {
            previous: Status::Degraded,
            status: Status::Degraded,
            at_ms: 700,
            ..
        }
    )));
    assert_eq!(alert_writes(&critical), [("update", String::new())]);
    applied(&mut current, &critical);
    assert_eq!(
        current[&7].degraded.map(|d| d.level),
        Some(DegradedLevel::Critical)
    );
    // Healthy again.
    let up = plan(&report(&[(7, Status::Up, 800)]), &current);
    assert_eq!(up.changed, [7]);
    assert_eq!(alert_writes(&up), [("resolve", "test".into())]);
    applied(&mut current, &up);
    assert_eq!(
        (current[&7].status, current[&7].degraded),
        (Status::Up, None)
    );
}

#[test]
fn down_supersedes_degraded() {
    let mut current = HashMap::from([(7, up_since(100)), (8, child_of(7, 100))]);
    let warning = plan(&degraded_report(DegradedLevel::Warning, 500), &current);
    applied(&mut current, &warning);
    let down = plan(&report(&[(7, Status::Down, 900)]), &current);
    assert_eq!(down.changed, [7, 8], "the child is unreachable under it");
    assert_eq!(
        alert_writes(&down),
        [
            ("resolve", "superseded by DeviceDown".into()),
            ("open", "DeviceDown".into())
        ],
        "one story: the degraded alert resolves as the outage's opens"
    );
    applied(&mut current, &down);
    assert_eq!(current[&7].status, Status::Down);
    assert_eq!(current[&7].degraded, None);
    assert!(current[&7].alert_open && !current[&7].alert_degraded);
    assert_eq!(current[&8].status, Status::Unreachable);
}
