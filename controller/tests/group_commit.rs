//! Many agents reporting at once (a 1 % outage across a thousand
//! branches) are committed in groups: fewer data versions than reports,
//! every report applied once with its own outcome, every change on the
//! live feed once in commit order, each version closed once. Both
//! backends.

mod common;

use std::collections::{BTreeMap, HashSet};

use ward_controller::services::{App, LiveEvent};
use ward_controller::store::{Actor, ApplyOutcome, DeviceSpec, Status};
use ward_testkit::services::Postgres;

/// Agents reporting at once, one device each.
const AGENTS: i64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_arriving_together_are_committed_together_on_sqlite() {
    let (_dir, controller) = common::sqlite_controller().await;
    reports_arriving_together_are_committed_together(&controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_arriving_together_are_committed_together_on_postgres() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let controller =
        common::controller(&postgres.url(), ward_controller::cache::Cache::in_process()).await;
    reports_arriving_together_are_committed_together(&controller).await;
}

async fn reports_arriving_together_are_committed_together(controller: &App) {
    let specs: Vec<DeviceSpec> = (0..AGENTS)
        .map(|n| {
            DeviceSpec::new(
                format!("atm-{n}"),
                format!("198.18.{}.{}", n / 200, n % 200 + 1)
                    .parse()
                    .expect("address"),
                format!("branch-{n}"),
            )
        })
        .collect();
    let now = ward_controller::time::now_ms();
    let devices = controller
        .inventory
        .import_devices(&specs, &Actor::console(), now)
        .await
        .expect("import");
    let mut live = controller.core.live.subscribe();
    let before = controller.core.store.data_version().await.expect("version");

    // Every agent reports its device down at once; agent 0's report is
    // also delivered twice (a replay racing its original).
    let mut reports = tokio::task::JoinSet::new();
    for (n, device) in devices.iter().enumerate() {
        let copies = if n == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let report =
                common::transition_report(&format!("agent-{n}"), device.id, 1, Status::Down, now);
            let reports_of = controller.reports.clone();
            reports.spawn(async move {
                let outcome = reports_of.apply_report(&report, now).await;
                (report.transitions[0].device_id, outcome)
            });
        }
    }
    let mut applied = BTreeMap::new();
    let mut replayed = 0;
    while let Some(joined) = reports.join_next().await {
        let (device, outcome) = joined.expect("task");
        match outcome.expect("applied") {
            ApplyOutcome::Applied { changes, ignored } => {
                assert_eq!(
                    (changes.changed.as_slice(), ignored.len()),
                    (&[device][..], 0),
                    "each report's outcome is its own"
                );
                assert!(
                    applied
                        .insert(device, changes.version.expect("version"))
                        .is_none(),
                    "device {device} applied twice"
                );
            }
            ApplyOutcome::AlreadyApplied => replayed += 1,
        }
    }
    assert_eq!(
        (applied.len(), replayed),
        (AGENTS as usize, 1),
        "every report applied once, the replay once refused"
    );

    let after = controller.core.store.data_version().await.expect("version");
    let versions_taken = after.version - before.version;
    let versions: HashSet<i64> = applied.values().copied().collect();
    assert_eq!(
        versions.len() as i64,
        versions_taken,
        "every version taken is some reports' commit"
    );
    assert!(
        versions_taken <= AGENTS / 2,
        "{AGENTS} reports arriving together took {versions_taken} data versions: they were not committed in groups"
    );

    // The live feed: every change once, versions in order, each closed
    // by its last change only.
    let mut seen = HashSet::new();
    let mut last_version = before.version;
    let mut open: Option<i64> = None;
    while seen.len() < AGENTS as usize {
        let LiveEvent::Status(event) = live.recv().await.expect("live event") else {
            panic!("a resync: the feed lost changes");
        };
        let version = event.version.expect("version");
        assert_eq!(event.device.status, Status::Down);
        assert_eq!(event.previous, Status::Unknown);
        assert!(
            seen.insert(event.device.id),
            "device {} twice",
            event.device.id
        );
        assert_eq!(applied[&event.device.id], version, "its outcome's version");
        assert!(version >= last_version, "versions out of commit order");
        if let Some(open) = open {
            assert_eq!(open, version, "version {open} was never closed");
        }
        last_version = version;
        open = (!event.closes_version).then_some(version);
    }
    assert_eq!(open, None, "the last version was never closed");

    let down = controller.inventory.summary().await.expect("summary").down;
    assert_eq!(down, AGENTS as u64, "every device down");
    let alerts = controller.core.store.alerts(true).await.expect("alerts");
    assert_eq!(alerts.len(), AGENTS as usize, "one alert opened per device");
    let commits = controller
        .core
        .metrics
        .report_commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let reports_committed = controller
        .core
        .metrics
        .reports_committed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reports_committed, AGENTS as u64 + 1);
    assert!(
        commits < reports_committed,
        "{commits} commits for {reports_committed} reports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_applies_its_reports_as_if_one_after_another_on_sqlite() {
    let (_dir, controller) = common::sqlite_controller().await;
    a_group_applies_its_reports_as_if_one_after_another(&controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_applies_its_reports_as_if_one_after_another_on_postgres() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let controller =
        common::controller(&postgres.url(), ward_controller::cache::Cache::in_process()).await;
    a_group_applies_its_reports_as_if_one_after_another(&controller).await;
}

/// A report that reads what an earlier one of its group writes sees that
/// write: a child reported down after its parent is `unreachable`, a
/// device reported twice ends as the later report says.
async fn a_group_applies_its_reports_as_if_one_after_another(controller: &App) {
    let now = ward_controller::time::now_ms();
    let create = |name: &str, address: &str, parent: Option<i64>| {
        let spec = DeviceSpec {
            parent_id: parent,
            ..DeviceSpec::new(
                name.into(),
                address.parse().expect("address"),
                "branch-7".into(),
            )
        };
        let inventory = controller.inventory.clone();
        async move {
            inventory
                .create_device(&spec, &Actor::console(), now)
                .await
                .expect("device")
                .id
        }
    };
    let router = create("router-1", "198.18.7.1", None).await;
    let atm = create("atm-1", "198.18.7.20", Some(router)).await;
    let camera = create("camera-1", "198.18.7.30", None).await;
    let report = |agent: &str, device, status, at| {
        (common::transition_report(agent, device, 1, status, at), now)
    };
    let group = [
        report("agent-a", router, Status::Down, now),
        report("agent-b", atm, Status::Down, now),
        report("agent-c", camera, Status::Up, now),
        report("agent-d", camera, Status::Down, now + 1),
        report("agent-a", router, Status::Down, now),
    ];
    let applied = controller
        .core
        .store
        .apply_together(&group, &ward_controller::store::FlapPolicy::default())
        .await
        .expect("applied together");
    let kinds: Vec<bool> = applied
        .outcomes
        .iter()
        .map(|outcome| matches!(outcome, ApplyOutcome::Applied { .. }))
        .collect();
    assert_eq!(kinds, [true, true, true, true, false], "the replay refused");
    let statuses: Vec<Status> = controller
        .core
        .store
        .get_devices(&[router, atm, camera])
        .await
        .expect("devices")
        .iter()
        .map(|device| device.status)
        .collect();
    assert_eq!(
        statuses,
        [Status::Down, Status::Unreachable, Status::Down],
        "the child saw its parent down; the camera as reported last"
    );
    let changes = &applied.changes;
    assert_eq!(changes.changed, [router, atm, camera]);
    assert_eq!(
        changes.previous,
        [Status::Unknown, Status::Unknown, Status::Unknown],
        "each device once, with its status before the group"
    );
    assert!(changes.version.is_some());
    // Each change recorded as by the agent whose report made it.
    let history = controller
        .core
        .store
        .history(&ward_controller::store::HistoryFilter {
            site: Some("branch-7".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("history");
    let mut recorded: Vec<(i64, &str, &str)> = history
        .changes
        .iter()
        .map(|change| (change.device_id, change.to.as_str(), change.agent.as_str()))
        .collect();
    recorded.sort();
    let mut expected = vec![
        (router, "down", "agent-a"),
        // Its parent's report made it unreachable already.
        (atm, "unreachable", "agent-a"),
        (camera, "up", "agent-c"),
        (camera, "down", "agent-d"),
    ];
    expected.sort();
    assert_eq!(recorded, expected, "who reported each change");
    let alerts = controller.core.store.alerts(true).await.expect("alerts");
    let alerted: HashSet<Option<i64>> = alerts.iter().map(|alert| alert.device_id).collect();
    assert_eq!(
        alerted,
        HashSet::from([Some(router), Some(camera)]),
        "no alert for the unreachable child"
    );
}
