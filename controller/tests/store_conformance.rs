//! One suite, two backends: every test runs against a real PostgreSQL
//! (private server from the testkit) and against SQLite (temporary file).

mod common;

use std::any::Any;

use ward_domain::model::{Degradation, DegradedLevel};

use ward_controller::store::{
    AlertName, ApplyOutcome, DeviceSpec, FlapPolicy, Ignored, ReportedTransition, Status, Store,
    StoreError, TransitionReport,
};

/// Keeps the backing server or directory alive for the test.
type Guard = Box<dyn Any>;

async fn postgres_store() -> (Guard, Store) {
    let server = ward_testkit::services::Postgres::start().expect("start PostgreSQL");
    let store = Store::open(&server.url()).await.expect("open store");
    store.migrate().await.expect("migrate");
    store
        .set_notification_channels(&["webhook"])
        .await
        .expect("channels");
    (Box::new(server), store)
}

async fn sqlite_store() -> (Guard, Store) {
    let (dir, url) = common::sqlite_url();
    let store = Store::open(&url).await.expect("open store");
    store.migrate().await.expect("migrate");
    store
        .set_notification_channels(&["webhook"])
        .await
        .expect("channels");
    (Box::new(dir), store)
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                let (_guard, store) = super::postgres_store().await;
                super::$test(&store).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                let (_guard, store) = super::sqlite_store().await;
                super::$test(&store).await;
            })*
        }
    };
}

conformance!(
    the_devices_written_or_deleted_after_a_version_are_read_back,
    a_report_that_changes_nothing_takes_no_data_version,
    a_trace_is_kept_and_attached_to_the_open_alert_once_naming_the_last_hops_device,
    a_devices_tcp_check_round_trips,
    profiles_judge_devices_before_their_sites_default_and_are_not_deleted_in_use,
    a_degraded_device_has_its_own_alert_updated_by_level_and_superseded_by_down,
    migrations_are_versioned_and_run_once,
    devices_round_trip_and_bad_input_writes_nothing,
    a_down_transition_sets_down_since_and_opens_an_alert_with_a_notification,
    replaying_a_report_changes_nothing,
    an_up_transition_resolves_the_alert,
    stale_and_unknown_entries_are_ignored,
    children_of_a_down_parent_are_unreachable_and_do_not_alert,
    updates_and_deletes_keep_status_and_name_bad_input,
    an_import_is_all_or_nothing,
    each_configured_channel_gets_its_own_notifications,
    deleting_a_down_parent_returns_its_children_to_their_reported_status,
    re_parenting_a_child_settles_it_under_its_new_parent,
    disabling_a_down_device_resolves_its_alert_and_notifies,
    a_device_whose_address_changes_is_unknown_until_reported_on_the_new_one,
    a_parent_cycle_is_refused_naming_parent_id,
    deleting_a_down_device_resolves_its_alert_with_a_notification_that_outlives_it,
    a_device_created_under_a_down_parent_is_unreachable,
    pings_reads_by_id_and_failed_deliveries_are_kept_for_retry,
    agents_are_registered_once_per_site_and_listed,
    users_and_tokens_are_kept_without_secrets_and_every_change_is_audited,
    inventory_and_agent_changes_are_audited_with_who_and_before_and_after,
    an_agents_certificates_are_revoked_by_fingerprint_and_new_ones_are_not,
    sessions_follow_their_user_and_wrong_passwords_lock_a_name_out,
    the_audit_log_is_pruned_past_its_retention_and_says_so,
    the_history_lists_every_change_newest_first_in_pages_and_is_pruned,
    a_devices_severity_is_kept_and_its_alert_carries_it_after_the_device_is_gone,
    acknowledgements_and_held_alerts_queue_their_notifications,
    maintenance_windows_round_trip_and_every_change_is_audited,
    availability_read_through_the_store_matches_a_second_by_second_count,
    controllers_starting_together_set_their_channels_without_colliding,
    a_flapping_device_notifies_once_withholds_its_changes_and_settles_once,
    events_are_logged_at_their_commits_version_with_their_text_as_reported,
);

fn spec(name: &str, address: &str) -> DeviceSpec {
    DeviceSpec {
        tags: vec!["atm".into()],
        severity: ward_controller::store::Severity::Critical,
        ..DeviceSpec::new(
            name.into(),
            address.parse().expect("address"),
            "branch-0421".into(),
        )
    }
}

fn report(seq: u64, transitions: &[(i64, Status, i64)]) -> TransitionReport {
    TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: "agent-1".into(),
        boot_id: "boot-1".into(),
        seq,
        transitions: transitions
            .iter()
            .map(|&(device_id, status, probed_at_ms)| ReportedTransition {
                degraded: None,
                device_id,
                status,
                probed_at_ms,
                last_rtt_us: Some(850),
                reason: "test".into(),
            })
            .collect(),
    }
}

async fn migrations_are_versioned_and_run_once(store: &Store) {
    // The fixture migrated once already.
    assert_eq!(store.migrate().await.expect("migrate again"), 0);
}

async fn devices_round_trip_and_bad_input_writes_nothing(store: &Store) {
    let router = store
        .create_device(
            &spec("router", "198.18.1.1"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    assert_eq!(router.status, Status::Unknown);
    assert_eq!(router.down_since_ms, None);
    let mut atm_spec = spec("atm-2", "2001:2:0:1::2");
    atm_spec.parent_id = Some(router.id);
    let atm = store
        .create_device(&atm_spec, &ward_controller::store::Actor::console(), 1_000)
        .await
        .expect("create child");
    assert_eq!(
        store.get_device(atm.id).await.expect("get"),
        Some(atm.clone())
    );
    assert_eq!(atm.spec, atm_spec);
    let names: Vec<String> = store
        .list_devices()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.spec.name)
        .collect();
    assert_eq!(names, ["atm-2", "router"], "by site, then name");

    let duplicate = store
        .create_device(
            &spec("router", "198.18.1.9"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict { ref message, .. }) if message.contains("router")),
        "{duplicate:?}"
    );
    let mut orphan = spec("camera", "198.18.1.3");
    orphan.parent_id = Some(999_999);
    let orphan = store
        .create_device(&orphan, &ward_controller::store::Actor::console(), 1_000)
        .await;
    assert!(
        matches!(orphan, Err(StoreError::Invalid(ref e)) if e.field == "parent_id"),
        "{orphan:?}"
    );
    let mut invalid = spec("camera", "198.18.1.3");
    invalid.interval_ms = 0;
    let invalid = store
        .create_device(&invalid, &ward_controller::store::Actor::console(), 1_000)
        .await;
    assert!(
        matches!(invalid, Err(StoreError::Invalid(ref e)) if e.field == "interval_ms"),
        "{invalid:?}"
    );
    assert_eq!(
        store.list_devices().await.expect("list").len(),
        2,
        "nothing half-written"
    );
    assert_eq!(store.get_device(999_999).await.expect("get"), None);
}

async fn a_down_transition_sets_down_since_and_opens_an_alert_with_a_notification(store: &Store) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    let outcome = store
        .apply(
            &report(1, &[(device.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("apply");
    let ApplyOutcome::Applied { changes, ignored } = outcome else {
        panic!("applied once: {outcome:?}");
    };
    assert_eq!(
        (changes.changed, changes.previous, ignored),
        (vec![device.id], vec![Status::Unknown], vec![])
    );
    assert!(changes.version.is_some(), "committed at a data version");
    assert_eq!(
        changes
            .devices
            .iter()
            .map(|d| (d.id, d.status, d.down_since_ms))
            .collect::<Vec<_>>(),
        [(device.id, Status::Down, Some(5_000))],
        "the device as its commit left it, for live events"
    );
    let now = store
        .get_device(device.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (now.status, now.down_since_ms, now.status_changed_at_ms),
        (Status::Down, Some(5_000), 5_000)
    );
    assert_eq!(now.last_rtt_us, Some(850));
    let alerts = store.alerts(true).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].device_id, alerts[0].opened_at_ms),
        (Some(device.id), 5_000)
    );
    let queued = store.pending_notifications().await.expect("outbox");
    let kinds: Vec<&str> = queued.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["firing"]);
    assert_eq!(queued[0].alert_id, alerts[0].id);
}

async fn replaying_a_report_changes_nothing(store: &Store) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    let down = report(1, &[(device.id, Status::Down, 5_000)]);
    store
        .apply(&down, &FlapPolicy::default(), 5_100)
        .await
        .expect("apply");
    let before = store.get_device(device.id).await.expect("get");
    assert_eq!(
        store
            .apply(&down, &FlapPolicy::default(), 9_000)
            .await
            .expect("replay"),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(store.get_device(device.id).await.expect("get"), before);
    assert_eq!(store.alerts(false).await.expect("alerts").len(), 1);
    assert_eq!(
        store.pending_notifications().await.expect("outbox").len(),
        1
    );
    // The same sequence number from a new boot is a new report.
    let mut rebooted = report(1, &[(device.id, Status::Up, 6_000)]);
    rebooted.boot_id = "boot-2".into();
    assert!(matches!(
        store
            .apply(&rebooted, &FlapPolicy::default(), 6_100)
            .await
            .expect("apply"),
        ApplyOutcome::Applied { .. }
    ));
}

async fn an_up_transition_resolves_the_alert(store: &Store) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    store
        .apply(
            &report(1, &[(device.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("down");
    store
        .apply(
            &report(2, &[(device.id, Status::Up, 8_000)]),
            &FlapPolicy::default(),
            8_100,
        )
        .await
        .expect("up");
    let now = store
        .get_device(device.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((now.status, now.down_since_ms), (Status::Up, None));
    assert!(store.alerts(true).await.expect("open alerts").is_empty());
    let all = store.alerts(false).await.expect("alerts");
    assert_eq!((all.len(), all[0].resolved_at_ms), (1, Some(8_000)));
    let kinds: Vec<String> = store
        .pending_notifications()
        .await
        .expect("outbox")
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(kinds, ["firing", "resolved"]);
}

async fn stale_and_unknown_entries_are_ignored(store: &Store) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    store
        .apply(
            &report(1, &[(device.id, Status::Up, 2_000)]),
            &FlapPolicy::default(),
            2_100,
        )
        .await
        .expect("up");
    let outcome = store
        .apply(
            &report(
                2,
                &[
                    (device.id, Status::Down, 1_500),
                    (424_242, Status::Down, 3_000),
                ],
            ),
            &FlapPolicy::default(),
            3_100,
        )
        .await
        .expect("apply");
    let ApplyOutcome::Applied { changes, ignored } = outcome else {
        panic!("applied once: {outcome:?}");
    };
    assert_eq!(
        (changes.changed, changes.previous, ignored),
        (
            vec![],
            vec![],
            vec![
                (device.id, Ignored::Stale),
                (424_242, Ignored::UnknownDevice)
            ]
        )
    );
    assert!(
        changes.version.is_none(),
        "nothing changed: no data version taken"
    );
    let now = store
        .get_device(device.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((now.status, now.status_changed_at_ms), (Status::Up, 2_000));
    assert!(store.alerts(false).await.expect("alerts").is_empty());
}

async fn children_of_a_down_parent_are_unreachable_and_do_not_alert(store: &Store) {
    let router = store
        .create_device(
            &spec("router", "198.18.1.1"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("router");
    let child = |name: &str, address: &str, parent: i64| {
        let mut spec = spec(name, address);
        spec.parent_id = Some(parent);
        spec
    };
    let atm = store
        .create_device(
            &child("atm", "198.18.1.2", router.id),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("atm");
    let camera = store
        .create_device(
            &child("camera", "198.18.1.3", router.id),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("camera");
    let sensor = store
        .create_device(
            &child("sensor", "198.18.1.4", camera.id),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("sensor");
    let all_up: Vec<_> = [router.id, atm.id, camera.id, sensor.id]
        .iter()
        .map(|&id| (id, Status::Up, 2_000))
        .collect();
    store
        .apply(&report(1, &all_up), &FlapPolicy::default(), 2_000)
        .await
        .expect("all up");

    // The site router dies: everything behind it is unreachable, one alert.
    store
        .apply(
            &report(2, &[(router.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("router down");
    for id in [atm.id, camera.id, sensor.id] {
        let device = store.get_device(id).await.expect("get").expect("exists");
        assert_eq!(
            (device.status, device.down_since_ms),
            (Status::Unreachable, Some(5_000)),
            "{}",
            device.spec.name
        );
    }
    let open: Vec<i64> = store
        .alerts(true)
        .await
        .expect("alerts")
        .iter()
        .filter_map(|a| a.device_id)
        .collect();
    assert_eq!(open, [router.id]);

    // The ATM's agent also reports it down: still unreachable, no alert.
    store
        .apply(
            &report(3, &[(atm.id, Status::Down, 5_500)]),
            &FlapPolicy::default(),
            5_600,
        )
        .await
        .expect("atm down");
    assert_eq!(
        store
            .get_device(atm.id)
            .await
            .expect("get")
            .expect("exists")
            .status,
        Status::Unreachable
    );
    assert_eq!(store.alerts(true).await.expect("alerts").len(), 1);

    // The router comes back: its children show what their agent reported.
    store
        .apply(
            &report(4, &[(router.id, Status::Up, 9_000)]),
            &FlapPolicy::default(),
            9_100,
        )
        .await
        .expect("router up");
    let status = |device: Option<ward_controller::store::Device>| device.expect("exists").status;
    assert_eq!(
        status(store.get_device(camera.id).await.expect("get")),
        Status::Up
    );
    assert_eq!(
        status(store.get_device(sensor.id).await.expect("get")),
        Status::Up
    );
    let atm_now = store
        .get_device(atm.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (atm_now.status, atm_now.down_since_ms),
        (Status::Down, Some(5_000))
    );
    let open: Vec<i64> = store
        .alerts(true)
        .await
        .expect("alerts")
        .iter()
        .filter_map(|a| a.device_id)
        .collect();
    assert_eq!(
        open,
        [atm.id],
        "the ATM is down on its own now; the router's alert is resolved"
    );
}

async fn updates_and_deletes_keep_status_and_name_bad_input(store: &Store) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    store
        .apply(
            &report(1, &[(device.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("down");
    let mut changed = spec("atm-1b", "198.18.1.10");
    changed.interval_ms = 200;
    changed.timeout_ms = 100;
    let (updated, _) = store
        .update_device(
            device.id,
            &changed,
            &ward_controller::store::Actor::console(),
            6_000,
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.spec, changed);
    assert_eq!(
        (updated.status, updated.down_since_ms),
        (Status::Down, Some(5_000)),
        "status kept"
    );
    assert_eq!(
        store
            .update_device(
                999_999,
                &changed,
                &ward_controller::store::Actor::console(),
                6_000
            )
            .await
            .expect("update"),
        None
    );
    let mut own_parent = changed.clone();
    own_parent.parent_id = Some(device.id);
    let refused = store
        .update_device(
            device.id,
            &own_parent,
            &ward_controller::store::Actor::console(),
            6_000,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(ref e)) if e.field == "parent_id"),
        "{refused:?}"
    );
    let other = store
        .create_device(
            &spec("atm-2", "198.18.1.12"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    let clash = store
        .update_device(
            other.id,
            &changed,
            &ward_controller::store::Actor::console(),
            6_000,
        )
        .await;
    assert!(
        matches!(clash, Err(StoreError::Conflict { .. })),
        "{clash:?}"
    );
    let unchanged = store
        .get_device(other.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        unchanged.spec.name, "atm-2",
        "a refused update writes nothing"
    );

    assert!(
        store
            .delete_device(device.id, &ward_controller::store::Actor::console(), 7_000)
            .await
            .expect("delete")
            .is_some()
    );
    assert!(
        store
            .delete_device(device.id, &ward_controller::store::Actor::console(), 7_000)
            .await
            .expect("delete again")
            .is_none()
    );
    assert_eq!(store.get_device(device.id).await.expect("get"), None);
}

async fn an_import_is_all_or_nothing(store: &Store) {
    let good = [spec("a", "198.18.1.1"), spec("b", "198.18.1.2")];
    let imported = store
        .import_devices(&good, &ward_controller::store::Actor::console(), 1_000)
        .await
        .expect("import");
    assert_eq!(imported.len(), 2);
    let mut bad = vec![
        spec("c", "198.18.1.3"),
        spec("d", "198.18.1.4"),
        spec("e", "198.18.1.5"),
    ];
    bad[2].timeout_ms = 0;
    let refused = store
        .import_devices(&bad, &ward_controller::store::Actor::console(), 1_000)
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::InvalidEntry {
                index: 2,
                field: "timeout_ms",
                ..
            })
        ),
        "{refused:?}"
    );
    let duplicate = vec![spec("c", "198.18.1.3"), spec("a", "198.18.1.9")];
    let refused = store
        .import_devices(&duplicate, &ward_controller::store::Actor::console(), 1_000)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { ref message, .. }) if message.starts_with("entry 1:")),
        "{refused:?}"
    );
    let names: Vec<String> = store
        .list_devices()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.spec.name)
        .collect();
    assert_eq!(names, ["a", "b"], "nothing of a refused import is written");
}

async fn each_configured_channel_gets_its_own_notifications(store: &Store) {
    store
        .set_notification_channels(&["webhook", "alertmanager"])
        .await
        .expect("channels");
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    store
        .apply(
            &report(1, &[(device.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("apply");
    let mut queued: Vec<(String, String)> = store
        .pending_notifications()
        .await
        .expect("outbox")
        .into_iter()
        .map(|n| (n.channel, n.kind))
        .collect();
    queued.sort();
    assert_eq!(
        queued,
        [
            ("alertmanager".into(), "firing".into()),
            ("webhook".into(), "firing".into())
        ]
    );
    let due = store
        .due_notifications("alertmanager", 5_100, 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].alert.name.as_str(), due[0].kind.as_str()),
        ("atm-1", "firing")
    );
    assert_eq!(store.outbox_depth().await.expect("depth"), 2);
    // Alertmanager taken out of the configuration: its row goes, counted.
    let discarded = store
        .set_notification_channels(&["webhook"])
        .await
        .expect("channels");
    assert_eq!(discarded, 1);
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);
    store
        .apply(
            &report(2, &[(device.id, Status::Up, 6_000)]),
            &FlapPolicy::default(),
            6_100,
        )
        .await
        .expect("apply");
    let channels: Vec<String> = store
        .pending_notifications()
        .await
        .expect("outbox")
        .into_iter()
        .map(|n| n.channel)
        .collect();
    assert_eq!(channels, ["webhook", "webhook"]);
}

fn child_spec(name: &str, address: &str, parent: i64) -> DeviceSpec {
    DeviceSpec {
        parent_id: Some(parent),
        ..spec(name, address)
    }
}

async fn device(store: &Store, id: i64) -> ward_controller::store::Device {
    store.get_device(id).await.expect("get").expect("exists")
}

async fn open_alerts(store: &Store) -> Vec<i64> {
    let mut open: Vec<i64> = store
        .alerts(true)
        .await
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert.device_id)
        .collect();
    open.sort_unstable();
    open
}

/// The (kind, device name, resolved reason) of every waiting webhook
/// notification, oldest first, delivering each as it is read (the outbox
/// only hands out the oldest of an alert at a time).
async fn drain_notifications(store: &Store) -> Vec<(String, String, Option<String>)> {
    let mut seen = Vec::new();
    loop {
        let due = store
            .due_notifications("webhook", i64::MAX / 2, 100)
            .await
            .expect("due");
        if due.is_empty() {
            return seen;
        }
        for notification in due {
            seen.push((
                notification.kind.clone(),
                notification.alert.name.clone(),
                notification.alert.resolved_reason.clone(),
            ));
            store
                .notification_delivered(notification.id)
                .await
                .expect("delivered");
        }
    }
}

/// A router with two children, all up at 2,000; then the router down at
/// 5,000 and the ATM reported down at 5,500 (unreachable behind it).
async fn router_outage(store: &Store) -> (i64, i64, i64) {
    let router = store
        .create_device(
            &spec("router", "198.18.1.1"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("router")
        .id;
    let atm = store
        .create_device(
            &child_spec("atm", "198.18.1.2", router),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("atm")
        .id;
    let camera = store
        .create_device(
            &child_spec("camera", "198.18.1.3", router),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("camera")
        .id;
    let up: Vec<_> = [router, atm, camera]
        .iter()
        .map(|&id| (id, Status::Up, 2_000))
        .collect();
    store
        .apply(&report(1, &up), &FlapPolicy::default(), 2_000)
        .await
        .expect("up");
    store
        .apply(
            &report(2, &[(router, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_000,
        )
        .await
        .expect("router down");
    store
        .apply(
            &report(3, &[(atm, Status::Down, 5_500)]),
            &FlapPolicy::default(),
            5_500,
        )
        .await
        .expect("atm down");
    assert_eq!(device(store, atm).await.status, Status::Unreachable);
    assert_eq!(open_alerts(store).await, [router]);
    (router, atm, camera)
}

async fn deleting_a_down_parent_returns_its_children_to_their_reported_status(store: &Store) {
    let (router, atm, camera) = router_outage(store).await;
    drain_notifications(store).await;
    let changes = store
        .delete_device(router, &ward_controller::store::Actor::console(), 8_000)
        .await
        .expect("delete")
        .expect("existed");
    let mut changed = changes.changed.clone();
    changed.sort_unstable();
    assert_eq!(changed, [atm, camera]);
    let camera_now = device(store, camera).await;
    assert_eq!(
        (camera_now.status, camera_now.down_since_ms),
        (Status::Up, None)
    );
    let atm_now = device(store, atm).await;
    assert_eq!(
        (
            atm_now.status,
            atm_now.down_since_ms,
            atm_now.spec.parent_id
        ),
        (Status::Down, Some(5_000), None),
        "down on its own since the outage began"
    );
    assert_eq!(
        open_alerts(store).await,
        [atm],
        "the ATM alerts on its own now"
    );
    let sent = drain_notifications(store).await;
    assert!(
        sent.contains(&(
            "resolved".into(),
            "router".into(),
            Some("device deleted".into())
        )),
        "{sent:?}"
    );
    assert!(
        sent.contains(&("firing".into(), "atm".into(), None)),
        "{sent:?}"
    );
}

async fn re_parenting_a_child_settles_it_under_its_new_parent(store: &Store) {
    let (router, atm, camera) = router_outage(store).await;
    // PUT without the parent: the camera answers, so it is up at once.
    let orphaned = store
        .update_device(
            camera,
            &spec("camera", "198.18.1.3"),
            &ward_controller::store::Actor::console(),
            8_000,
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (orphaned.0.status, orphaned.0.down_since_ms),
        (Status::Up, None)
    );
    assert_eq!(orphaned.1.changed, [camera]);
    // And back under the down router: unreachable again, no alert of its own.
    let (back, _) = store
        .update_device(
            camera,
            &child_spec("camera", "198.18.1.3", router),
            &ward_controller::store::Actor::console(),
            9_000,
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (back.status, back.down_since_ms),
        (Status::Unreachable, Some(9_000))
    );
    // The ATM moves away from the router: it is down on its own.
    store
        .update_device(
            atm,
            &spec("atm", "198.18.1.2"),
            &ward_controller::store::Actor::console(),
            9_500,
        )
        .await
        .expect("update");
    assert_eq!(device(store, atm).await.status, Status::Down);
    assert_eq!(open_alerts(store).await, {
        let mut both = [router, atm];
        both.sort_unstable();
        both
    });
}

async fn disabling_a_down_device_resolves_its_alert_and_notifies(store: &Store) {
    let (router, atm, camera) = router_outage(store).await;
    drain_notifications(store).await;
    let disabled = DeviceSpec {
        enabled: false,
        ..spec("router", "198.18.1.1")
    };
    let (router_now, changes) = store
        .update_device(
            router,
            &disabled,
            &ward_controller::store::Actor::console(),
            8_000,
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (router_now.status, router_now.down_since_ms),
        (Status::Unknown, None)
    );
    assert!(
        open_alerts(store).await.contains(&atm),
        "the ATM is down on its own"
    );
    assert!(!open_alerts(store).await.contains(&router));
    assert!(changes.changed.contains(&camera));
    assert_eq!(device(store, camera).await.status, Status::Up);
    let sent = drain_notifications(store).await;
    assert!(
        sent.contains(&(
            "resolved".into(),
            "router".into(),
            Some("device disabled".into())
        )),
        "{sent:?}"
    );
    // A late report about the disabled device changes nothing.
    let outcome = store
        .apply(
            &report(9, &[(router, Status::Down, 9_000)]),
            &FlapPolicy::default(),
            9_000,
        )
        .await
        .expect("apply");
    let ApplyOutcome::Applied { changes, ignored } = outcome else {
        panic!("applied once: {outcome:?}");
    };
    assert_eq!(
        (changes.changed, changes.previous, ignored),
        (vec![], vec![], vec![(router, Ignored::Disabled)])
    );
    assert!(
        changes.version.is_none(),
        "nothing changed: no data version taken"
    );
    assert!(!open_alerts(store).await.contains(&router));
}

async fn a_device_whose_address_changes_is_unknown_until_reported_on_the_new_one(store: &Store) {
    let id = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create")
        .id;
    store
        .apply(
            &report(1, &[(id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_000,
        )
        .await
        .expect("down");
    drain_notifications(store).await;
    let (moved, _) = store
        .update_device(
            id,
            &spec("atm-1", "198.18.1.99"),
            &ward_controller::store::Actor::console(),
            6_000,
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!((moved.status, moved.down_since_ms), (Status::Unknown, None));
    assert!(open_alerts(store).await.is_empty());
    let sent = drain_notifications(store).await;
    assert_eq!(
        sent,
        [(
            "resolved".into(),
            "atm-1".into(),
            Some("address changed".into())
        )]
    );
    store
        .apply(
            &report(2, &[(id, Status::Up, 6_500)]),
            &FlapPolicy::default(),
            6_500,
        )
        .await
        .expect("up");
    assert_eq!(device(store, id).await.status, Status::Up);
}

async fn a_parent_cycle_is_refused_naming_parent_id(store: &Store) {
    let (router, atm, _camera) = router_outage(store).await;
    let refused = store
        .update_device(
            router,
            &child_spec("router", "198.18.1.1", atm),
            &ward_controller::store::Actor::console(),
            8_000,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(ref e)) if e.field == "parent_id"),
        "{refused:?}"
    );
    assert_eq!(
        device(store, router).await.spec.parent_id,
        None,
        "nothing written"
    );
}

async fn deleting_a_down_device_resolves_its_alert_with_a_notification_that_outlives_it(
    store: &Store,
) {
    let id = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create")
        .id;
    store
        .apply(
            &report(1, &[(id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_000,
        )
        .await
        .expect("down");
    store
        .delete_device(id, &ward_controller::store::Actor::console(), 6_000)
        .await
        .expect("delete");
    let alerts = store.alerts(false).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].resolved_at_ms, Some(6_000));
    assert_eq!(
        drain_notifications(store).await,
        [
            (
                "firing".into(),
                "atm-1".into(),
                Some("device deleted".into())
            ),
            (
                "resolved".into(),
                "atm-1".into(),
                Some("device deleted".into())
            ),
        ],
        "firing first, then resolved, both naming the deleted device"
    );
}

async fn a_device_created_under_a_down_parent_is_unreachable(store: &Store) {
    let (router, _atm, _camera) = router_outage(store).await;
    let created = store
        .create_device(
            &child_spec("printer", "198.18.1.7", router),
            &ward_controller::store::Actor::console(),
            8_000,
        )
        .await
        .expect("create");
    assert_eq!(
        (created.status, created.down_since_ms),
        (Status::Unreachable, Some(8_000))
    );
    let imported = store
        .import_devices(
            &[child_spec("scanner", "198.18.1.8", router)],
            &ward_controller::store::Actor::console(),
            8_500,
        )
        .await
        .expect("import");
    assert_eq!(imported[0].status, Status::Unreachable);
}

async fn pings_reads_by_id_and_failed_deliveries_are_kept_for_retry(store: &Store) {
    store.ping().await.expect("ping");
    let a = store
        .create_device(
            &spec("a", "198.18.1.1"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("a");
    let b = store
        .create_device(
            &spec("b", "198.18.1.2"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("b");
    let found = store
        .get_devices(&[b.id, 999_999, a.id])
        .await
        .expect("by ids");
    assert_eq!(
        found.iter().map(|d| d.id).collect::<Vec<_>>(),
        [a.id, b.id],
        "by id, missing ones skipped"
    );
    store
        .apply(
            &report(1, &[(a.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_000,
        )
        .await
        .expect("down");
    let due = store
        .due_notifications("webhook", 5_000, 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    store
        .notification_failed(due[0].id, 9_000, "HTTP 503")
        .await
        .expect("failed");
    let pending = store.pending_notifications().await.expect("pending");
    assert_eq!(
        (pending.len(), pending[0].attempts),
        (1, 1),
        "kept, counted"
    );
    assert!(
        store
            .due_notifications("webhook", 8_999, 10)
            .await
            .expect("due")
            .is_empty(),
        "not due before its retry time"
    );
    let again = store
        .due_notifications("webhook", 9_000, 10)
        .await
        .expect("due");
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);
}

async fn agents_are_registered_once_per_site_and_listed(store: &Store) {
    let first = store
        .register_agent(
            "agent-b",
            "branch-2",
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("register");
    let again = store
        .register_agent(
            "agent-b",
            "branch-2",
            &ward_controller::store::Actor::console(),
            2_000,
        )
        .await
        .expect("again");
    assert_eq!(first, again, "registering again changes nothing");
    let moved = store
        .register_agent(
            "agent-b",
            "branch-3",
            &ward_controller::store::Actor::console(),
            3_000,
        )
        .await;
    assert!(
        matches!(moved, Err(StoreError::Conflict { .. })),
        "{moved:?}"
    );
    let bad = store
        .register_agent(
            "no spaces",
            "branch-2",
            &ward_controller::store::Actor::console(),
            3_000,
        )
        .await;
    assert!(
        matches!(bad, Err(StoreError::Invalid(ref e)) if e.field == "id"),
        "{bad:?}"
    );
    store
        .register_agent(
            "agent-a",
            "branch-1",
            &ward_controller::store::Actor::console(),
            4_000,
        )
        .await
        .expect("register");
    let listed: Vec<(String, String)> = store
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .map(|agent| (agent.id, agent.site))
        .collect();
    assert_eq!(
        listed,
        [
            ("agent-a".to_owned(), "branch-1".to_owned()),
            ("agent-b".to_owned(), "branch-2".to_owned())
        ]
    );
}

async fn users_and_tokens_are_kept_without_secrets_and_every_change_is_audited(store: &Store) {
    use ward_controller::auth::Role;
    use ward_controller::store::{Actor, AuditEntry};
    let actor = Actor {
        principal: "console".into(),
        source: "test".into(),
    };
    let alice = store
        .add_user(
            "alice",
            Role::Operator,
            Some("$argon2id$hash"),
            &actor,
            1_000,
        )
        .await
        .expect("add");
    assert_eq!((alice.role, alice.enabled), (Role::Operator, true));
    let again = store
        .add_user("alice", Role::Admin, None, &actor, 1_001)
        .await
        .expect_err("refused");
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    let bad = store
        .add_user("no spaces", Role::Viewer, None, &actor, 1_002)
        .await
        .expect_err("refused");
    assert!(bad.to_string().contains("name"), "{bad}");
    store
        .add_user("bob", Role::Viewer, None, &actor, 1_003)
        .await
        .expect("bob");
    let names: Vec<String> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|user| user.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let token = store
        .create_token("alice", "grafana", "digest-1", Some(9_000), &actor, 2_000)
        .await
        .expect("token");
    assert_eq!(
        (token.user.as_str(), token.expires_at_ms),
        ("alice", Some(9_000))
    );
    let nobody = store
        .create_token("carol", "x", "digest-2", None, &actor, 2_001)
        .await
        .expect_err("refused");
    assert!(nobody.to_string().contains("carol"), "{nobody}");
    let owner = store
        .token_owner("digest-1")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (owner.token.id, owner.role, owner.user_enabled),
        (token.id, Role::Operator, true)
    );
    assert!(
        store
            .token_owner("digest-9")
            .await
            .expect("lookup")
            .is_none()
    );

    store
        .set_user_enabled("alice", false, &actor, 3_000)
        .await
        .expect("disable")
        .expect("alice");
    let owner = store
        .token_owner("digest-1")
        .await
        .expect("lookup")
        .expect("found");
    assert!(!owner.user_enabled, "a disabled user's tokens say so");
    assert!(
        store
            .set_user_enabled("carol", false, &actor, 3_001)
            .await
            .expect("disable")
            .is_none()
    );
    let revoked = store
        .revoke_token(token.id, &actor, 4_000)
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(revoked.revoked_at_ms, Some(4_000));
    assert_eq!(store.tokens().await.expect("tokens"), [revoked]);
    assert!(
        store
            .revoke_token(999, &actor, 4_001)
            .await
            .expect("revoke")
            .is_none()
    );

    store
        .record_audit(&AuditEntry {
            id: 0,
            at_ms: 5_000,
            principal: "agent branch-0421 (certificate)".into(),
            source: "198.18.0.2:40000".into(),
            action: "grpc Inventory/DeleteDevice".into(),
            object: "device 9".into(),
            outcome: "refused: agents may use ward.v1.AgentLink only".into(),
            before: None,
            after: None,
        })
        .await
        .expect("record");
    let audit = store
        .audit(&ward_controller::store::AuditFilter::newest(100))
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "grpc Inventory/DeleteDevice",
            "token.revoke",
            "user.disable",
            "token.create",
            "user.add",
            "user.add"
        ],
        "newest first; refused changes left no row"
    );
    let disabled = &audit[2];
    assert_eq!(disabled.object, "user alice");
    assert!(
        disabled
            .before
            .as_deref()
            .is_some_and(|before| before.contains("\"enabled\":true"))
    );
    assert!(
        disabled
            .after
            .as_deref()
            .is_some_and(|after| after.contains("\"enabled\":false"))
    );
    assert!(
        audit
            .iter()
            .all(|entry| !format!("{entry:?}").contains("argon2")),
        "no secret in the audit log"
    );
}

async fn inventory_and_agent_changes_are_audited_with_who_and_before_and_after(store: &Store) {
    use ward_controller::store::Actor;
    let alice = Actor {
        principal: "user alice (token 3)".into(),
        source: "192.0.2.7:50000".into(),
    };
    let device = store
        .create_device(&spec("atm-1", "198.18.1.1"), &alice, 1_000)
        .await
        .expect("create");
    let mut changed = spec("atm-1", "198.18.1.2");
    changed.enabled = false;
    store
        .update_device(device.id, &changed, &alice, 2_000)
        .await
        .expect("update")
        .expect("found");
    store
        .import_devices(&[spec("atm-2", "198.18.1.3")], &alice, 3_000)
        .await
        .expect("import");
    store
        .delete_device(device.id, &alice, 4_000)
        .await
        .expect("delete")
        .expect("found");
    store
        .register_agent("branch-1-agent", "branch-1", &alice, 5_000)
        .await
        .expect("register");
    // Refused changes leave nothing.
    let duplicate = store
        .create_device(&spec("atm-2", "198.18.1.9"), &alice, 6_000)
        .await;
    assert!(duplicate.is_err());
    assert!(
        store
            .delete_device(999, &alice, 6_001)
            .await
            .expect("delete")
            .is_none()
    );

    let audit = store
        .audit(&ward_controller::store::AuditFilter::newest(100))
        .await
        .expect("audit");
    let rows: Vec<(&str, &str, i64)> = audit
        .iter()
        .map(|entry| (entry.action.as_str(), entry.object.as_str(), entry.at_ms))
        .collect();
    let id = device.id;
    assert_eq!(
        rows,
        [
            ("agent.register", "agent branch-1-agent", 5_000),
            ("device.delete", &*format!("device {id}"), 4_000),
            ("device.import", "1 devices", 3_000),
            ("device.update", &*format!("device {id}"), 2_000),
            ("device.create", &*format!("device {id}"), 1_000),
        ]
    );
    assert!(audit.iter().all(|entry| entry.principal == alice.principal
        && entry.source == alice.source
        && entry.outcome == "ok"));
    let update = &audit[3];
    assert!(
        update
            .before
            .as_deref()
            .is_some_and(|before| before.contains("198.18.1.1"))
    );
    assert!(
        update.after.as_deref().is_some_and(
            |after| after.contains("198.18.1.2") && after.contains("\"enabled\":false")
        )
    );
    assert!(
        audit[1]
            .before
            .as_deref()
            .is_some_and(|before| before.contains("atm-1"))
    );
    assert!(audit[1].after.is_none());
}

async fn an_agents_certificates_are_revoked_by_fingerprint_and_new_ones_are_not(store: &Store) {
    let console = ward_controller::store::Actor::console();
    assert_eq!(store.revocations().await.expect("count"), 0);
    let unknown = store
        .revoke_agent("branch-1-agent", &[], &console, 1_000)
        .await
        .expect_err("nothing to revoke");
    assert!(unknown.to_string().contains("--certificate"), "{unknown}");
    assert_eq!(
        store
            .certificate_presented("aa11", "branch-1-agent", 1_000)
            .await
            .expect("seen"),
        None
    );
    let revoked = store
        .revoke_agent("branch-1-agent", &["bb22".into()], &console, 2_000)
        .await
        .expect("revoke");
    assert_eq!(revoked, 2, "the one presented and the one named");
    assert_eq!(store.revocations().await.expect("count"), 2);
    for fingerprint in ["aa11", "bb22"] {
        assert_eq!(
            store
                .certificate_presented(fingerprint, "branch-1-agent", 3_000)
                .await
                .expect("seen"),
            Some(2_000),
            "{fingerprint}"
        );
    }
    assert_eq!(
        store
            .certificate_presented("cc33", "branch-1-agent", 3_000)
            .await
            .expect("seen"),
        None,
        "a certificate issued later is not revoked"
    );
    let again = store
        .revoke_agent("branch-1-agent", &[], &console, 4_000)
        .await
        .expect("revoke");
    assert_eq!(again, 1, "only the new one");
    let audit = store
        .audit(&ward_controller::store::AuditFilter::newest(10))
        .await
        .expect("audit");
    assert_eq!(
        audit.len(),
        2,
        "two revocations, the refused one left nothing"
    );
    assert!(audit.iter().all(|entry| entry.action == "agent.revoke"));
}

async fn sessions_follow_their_user_and_wrong_passwords_lock_a_name_out(store: &Store) {
    use ward_controller::auth::Role;
    use ward_controller::store::{Actor, LockoutPolicy, NewSession, SessionOrigin, SessionRecord};
    let actor = Actor::console();
    store
        .add_user(
            "alice",
            Role::Operator,
            Some("$argon2id$hash"),
            &actor,
            1_000,
        )
        .await
        .expect("add");
    let (user, hash) = store
        .credentials("alice")
        .await
        .expect("read")
        .expect("alice");
    assert_eq!(
        (user.role, hash.as_deref()),
        (Role::Operator, Some("$argon2id$hash"))
    );
    assert!(store.credentials("nobody").await.expect("read").is_none());
    let session = |user: &str, role, origin| NewSession {
        digest: format!("digest-{user}"),
        session: SessionRecord {
            user: user.into(),
            role,
            origin,
            csrf: "csrf".into(),
            expires_at_ms: 10_000,
        },
    };
    store
        .start_session(
            &session("alice", Role::Admin, SessionOrigin::Local),
            &actor,
            2_000,
        )
        .await
        .expect("start");
    store
        .start_session(
            &session("lena", Role::Viewer, SessionOrigin::Ldap),
            &actor,
            2_000,
        )
        .await
        .expect("start an LDAP user's session");
    let live = store.session("digest-alice", 3_000).await.expect("read");
    assert_eq!(
        live.map(|s| s.role),
        Some(Role::Operator),
        "a local user's session has the user's role now"
    );
    let ldap = store.session("digest-lena", 3_000).await.expect("read");
    assert_eq!(
        ldap.map(|s| s.role),
        Some(Role::Viewer),
        "an LDAP session keeps its own"
    );
    assert!(
        store
            .session("digest-alice", 10_000)
            .await
            .expect("read")
            .is_none(),
        "expired"
    );
    store
        .set_user_enabled("alice", false, &actor, 4_000)
        .await
        .expect("disable");
    assert!(
        store
            .session("digest-alice", 5_000)
            .await
            .expect("read")
            .is_none(),
        "disabled"
    );
    assert!(
        store
            .end_session("digest-lena", &actor, 5_000)
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_session("digest-lena", &actor, 5_001)
            .await
            .expect("end again")
    );
    assert!(
        store
            .session("digest-lena", 5_002)
            .await
            .expect("read")
            .is_none(),
        "ended"
    );

    let policy = LockoutPolicy {
        failures: 3,
        window_ms: 60_000,
        lock_ms: 900_000,
    };
    let mut locked = Vec::new();
    for at in [100_000, 100_001, 100_002] {
        locked.push(
            store
                .login_failed("bob", "wrong password", policy, &actor, at)
                .await
                .expect("fail"),
        );
    }
    assert_eq!(
        locked,
        [None, None, Some(1_000_002)],
        "the third failure locks"
    );
    assert_eq!(
        store.lockout("bob", 1_000_001).await.expect("read"),
        Some(1_000_002)
    );
    assert_eq!(
        store.lockout("bob", 1_000_002).await.expect("read"),
        None,
        "lifted"
    );
    assert_eq!(
        store
            .login_failed("bob", "wrong password", policy, &actor, 1_000_003)
            .await
            .expect("fail"),
        None,
        "failures outside the window do not count"
    );
    store
        .login_refused("bob", "locked out", &actor, 1_000_004)
        .await
        .expect("refuse");
    let audited: Vec<String> = store
        .audit(&ward_controller::store::AuditFilter {
            object: Some("user bob".into()),
            ..ward_controller::store::AuditFilter::newest(100)
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert_eq!(
        audited,
        [
            "login.refused",
            "login.failed",
            "login.lockout",
            "login.failed",
            "login.failed",
            "login.failed"
        ]
    );
}

async fn the_audit_log_is_pruned_past_its_retention_and_says_so(store: &Store) {
    use ward_controller::store::{AuditEntry, AuditFilter};
    for at_ms in [1_000, 2_000, 3_000] {
        store
            .record_audit(&AuditEntry {
                id: 0,
                at_ms,
                principal: "anonymous".into(),
                source: "test".into(),
                action: "GET /api/v1/devices".into(),
                object: format!("request {at_ms}"),
                outcome: "refused: test".into(),
                before: None,
                after: None,
            })
            .await
            .expect("record");
    }
    assert_eq!(store.prune_audit(2_500, 5_000).await.expect("prune"), 2);
    let left: Vec<(String, String)> = store
        .audit(&AuditFilter::newest(10))
        .await
        .expect("audit")
        .into_iter()
        .map(|entry| (entry.action, entry.object))
        .collect();
    assert_eq!(
        left,
        [
            ("audit.prune".to_owned(), "audit log".to_owned()),
            ("GET /api/v1/devices".to_owned(), "request 3000".to_owned()),
        ],
        "what is left, and the pruning itself"
    );
    assert_eq!(store.prune_audit(2_500, 6_000).await.expect("prune"), 0);
    assert_eq!(
        store
            .audit(&AuditFilter::newest(10))
            .await
            .expect("audit")
            .len(),
        2,
        "nothing to note"
    );
}

async fn the_history_lists_every_change_newest_first_in_pages_and_is_pruned(store: &Store) {
    use ward_controller::store::{HistoryEntry, HistoryFilter};
    let console = ward_controller::store::Actor::console();
    let atm = store
        .create_device(&spec("atm", "198.18.1.2"), &console, 1_000)
        .await
        .expect("atm")
        .id;
    let other_site = DeviceSpec {
        site: "branch-0999".into(),
        ..spec("camera", "198.18.2.3")
    };
    let camera = store
        .create_device(&other_site, &console, 1_000)
        .await
        .expect("camera")
        .id;
    let steps = [
        (
            1,
            vec![(atm, Status::Up, 2_000), (camera, Status::Up, 2_000)],
        ),
        (2, vec![(atm, Status::Down, 5_000)]),
        (3, vec![(atm, Status::Up, 8_000)]),
    ];
    for (seq, transitions) in steps {
        let at = transitions[0].2;
        store
            .apply(&report(seq, &transitions), &FlapPolicy::default(), at + 100)
            .await
            .expect("report");
    }
    let history =
        |filter: HistoryFilter| async move { store.history(&filter).await.expect("history") };
    let all = HistoryFilter {
        limit: 10,
        ..HistoryFilter::default()
    };
    let shown = |changes: &[HistoryEntry]| -> Vec<(i64, Status, Status, i64)> {
        changes
            .iter()
            .map(|change| (change.device_id, change.from, change.to, change.at_ms))
            .collect()
    };
    let everything = history(all.clone()).await;
    assert_eq!(everything.next, None);
    let newest = shown(&everything.changes);
    assert_eq!(
        newest[..2],
        [
            (atm, Status::Down, Status::Up, 8_000),
            (atm, Status::Up, Status::Down, 5_000)
        ]
    );
    assert_eq!(newest.len(), 4, "{newest:?}");
    let first = &everything.changes[0];
    assert_eq!(
        (
            first.device_name.as_str(),
            first.site.as_str(),
            first.reason.as_str(),
            first.agent.as_str()
        ),
        ("atm", "branch-0421", "test", "agent-1")
    );
    // Pages of three: the second holds the rest and says it is the last.
    let page = history(HistoryFilter {
        limit: 3,
        ..all.clone()
    })
    .await;
    assert_eq!(shown(&page.changes), newest[..3]);
    let rest = history(HistoryFilter {
        limit: 3,
        after: page.next,
        ..all.clone()
    })
    .await;
    assert_eq!(
        (shown(&rest.changes), rest.next),
        (newest[3..].to_vec(), None)
    );
    let of_camera = history(HistoryFilter {
        device: Some(camera),
        ..all.clone()
    })
    .await;
    assert_eq!(
        shown(&of_camera.changes),
        [(camera, Status::Unknown, Status::Up, 2_000)]
    );
    let of_site = history(HistoryFilter {
        site: Some("branch-0999".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(shown(&of_site.changes), shown(&of_camera.changes));
    let window = history(HistoryFilter {
        from_ms: Some(5_000),
        to_ms: Some(8_000),
        ..all.clone()
    })
    .await;
    assert_eq!(shown(&window.changes), newest[1..2]);
    assert_eq!(store.prune_history(6_000).await.expect("prune"), 3);
    assert_eq!(shown(&history(all).await.changes), newest[..1]);
}

async fn a_devices_severity_is_kept_and_its_alert_carries_it_after_the_device_is_gone(
    store: &Store,
) {
    use ward_controller::store::Severity;
    let console = ward_controller::store::Actor::console();
    let atm = store
        .create_device(&spec("atm", "198.18.1.2"), &console, 1_000)
        .await
        .expect("atm");
    assert_eq!(atm.spec.severity, Severity::Critical);
    let minor = DeviceSpec {
        severity: Severity::Minor,
        ..spec("camera", "198.18.1.3")
    };
    let camera = store
        .create_device(&minor, &console, 1_000)
        .await
        .expect("camera");
    assert_eq!(
        device(store, camera.id).await.spec.severity,
        Severity::Minor
    );
    let info = DeviceSpec {
        severity: Severity::Info,
        ..minor
    };
    store
        .update_device(camera.id, &info, &console, 1_500)
        .await
        .expect("update");
    assert_eq!(device(store, camera.id).await.spec.severity, Severity::Info);
    store
        .apply(
            &report(1, &[(atm.id, Status::Down, 2_000)]),
            &FlapPolicy::default(),
            2_000,
        )
        .await
        .expect("down");
    let open = store
        .alerts(true)
        .await
        .expect("alerts")
        .pop()
        .expect("one open alert");
    assert_eq!(
        (open.severity, open.tags.as_slice()),
        (Severity::Critical, &["atm".to_owned()][..])
    );
    store
        .delete_device(atm.id, &console, 3_000)
        .await
        .expect("delete");
    let resolved = store.alerts(false).await.expect("alerts");
    let kept = resolved
        .iter()
        .find(|alert| alert.device_id == Some(atm.id))
        .expect("the deleted device's alert");
    assert_eq!(
        kept.severity,
        Severity::Critical,
        "kept after the device is gone"
    );
}

async fn acknowledgements_and_held_alerts_queue_their_notifications(store: &Store) {
    use ward_controller::store::AckOutcome;
    let console = ward_controller::store::Actor::console();
    let atm = store
        .create_device(&spec("atm", "198.18.1.2"), &console, 1_000)
        .await
        .expect("atm");
    store
        .apply(
            &report(1, &[(atm.id, Status::Down, 2_000)]),
            &FlapPolicy::default(),
            2_000,
        )
        .await
        .expect("down");
    let alert = store.alerts(true).await.expect("alerts")[0].id;
    let firing = store
        .pending_notifications()
        .await
        .expect("outbox")
        .pop()
        .expect("the firing");
    // Held: the firing leaves the outbox, the alert is marked.
    store
        .hold_notification(firing.id, alert)
        .await
        .expect("hold");
    assert!(
        store
            .pending_notifications()
            .await
            .expect("outbox")
            .is_empty()
    );
    assert_eq!(store.held_alerts().await.expect("held").len(), 1);
    match store
        .acknowledge(alert, Some("on it"), &console, 2_500)
        .await
        .expect("ack")
    {
        AckOutcome::Done(acked) => {
            let ack = acked.acknowledged.expect("acknowledged");
            assert_eq!((ack.comment.as_str(), ack.at_ms), ("on it", 2_500));
        }
        other => panic!("{other:?}"),
    }
    assert!(store.release_alert(alert, 3_000).await.expect("release"));
    assert!(
        !store.release_alert(alert, 3_000).await.expect("again"),
        "released once"
    );
    let kinds: Vec<String> = store
        .pending_notifications()
        .await
        .expect("outbox")
        .into_iter()
        .map(|notification| notification.kind)
        .collect();
    assert_eq!(kinds, ["acknowledged", "firing"]);
    assert!(store.held_alerts().await.expect("held").is_empty());
    assert!(matches!(
        store.acknowledge(999_999, None, &console, 3_000).await,
        Ok(AckOutcome::NotFound)
    ));
}

async fn maintenance_windows_round_trip_and_every_change_is_audited(store: &Store) {
    use ward_controller::store::{AuditFilter, MaintenanceSpec};
    use ward_domain::maintenance::{Day, Every};
    let console = ward_controller::store::Actor::console();
    // A window names devices and sites that exist.
    let atm = store
        .create_device(&spec("atm-7", "198.18.1.7"), &console, 1_000)
        .await
        .expect("device");
    let spec = MaintenanceSpec {
        name: "ATM service".into(),
        starts_at_ms: 1_796_018_400_000,
        ends_at_ms: 1_796_025_600_000,
        time_zone: "Asia/Tbilisi".into(),
        every: Some(Every::Weekly {
            days: vec![Day::Mon, Day::Thu],
        }),
        until_ms: Some(1_800_000_000_000),
        devices: vec![atm.id],
        sites: vec!["branch-0421".into()],
        tags: vec!["atm".into()],
        comment: "call +995".into(),
    };
    let created = store
        .create_maintenance(&spec, &console, 5_000)
        .await
        .expect("create");
    let read = store
        .maintenance_window(created.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, created);
    let once = MaintenanceSpec {
        every: None,
        until_ms: None,
        ..spec.clone()
    };
    let changed = store
        .change_maintenance(created.id, Some(&once), &console, 6_000)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(changed.spec, once);
    let refused = store
        .create_maintenance(
            &MaintenanceSpec {
                time_zone: "Mars/Olympus".into(),
                ..spec
            },
            &console,
            7_000,
        )
        .await
        .expect_err("a bad zone");
    assert!(refused.to_string().contains("time_zone"), "{refused}");
    store
        .change_maintenance(created.id, None, &console, 8_000)
        .await
        .expect("delete")
        .expect("existed");
    assert!(store.maintenance_windows().await.expect("list").is_empty());
    let actions: Vec<String> = store
        .audit(&AuditFilter::newest(10))
        .await
        .expect("audit")
        .into_iter()
        .filter(|entry| entry.object == format!("maintenance {}", created.id))
        .map(|entry| entry.action)
        .collect();
    assert_eq!(
        actions,
        [
            "maintenance.delete",
            "maintenance.update",
            "maintenance.create"
        ]
    );
}

/// A small deterministic generator (xorshift), so a failing case can be
/// replayed from its seed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }

    /// Whole seconds below `bound` s, as ms after `base`.
    fn at(&mut self, base: i64, bound: u64) -> i64 {
        base + i64::try_from(self.below(bound)).unwrap_or(0) * 1000
    }
}

/// Cases per backend (each a device with its own random timeline).
const AVAILABILITY_CASES: u64 = 300;

async fn availability_read_through_the_store_matches_a_second_by_second_count(store: &Store) {
    use ward_controller::store::MaintenanceSpec;
    use ward_domain::availability::{
        By, ReportFilter, Timeline, account, report as availability_report, second_by_second,
    };
    let console = ward_controller::store::Actor::console();
    let seed = 0x5eed_a11a_b1e5_u64;
    let mut random = Random(seed);
    let mut seq = 0u64;
    let statuses = [Status::Up, Status::Down, Status::Unreachable];
    for case in 0..AVAILABILITY_CASES {
        // Each case lives in its own hour, far from the others.
        let base = 1_800_000_000_000 + i64::try_from(case).unwrap_or(0) * 3_600_000;
        let created = random.at(base, 300);
        let device = store
            .create_device(
                &spec(
                    &format!("case-{case}"),
                    &format!("198.18.{}.{}", case / 250, case % 250 + 1),
                ),
                &console,
                created,
            )
            .await
            .expect("device");
        // Changes after the creation, each to another status (an unchanged
        // status records nothing), some of them `unknown` (the
        // controller's own, as for an agent gone offline).
        let mut changes = Vec::new();
        let mut at = created;
        let mut current = Status::Unknown;
        for _ in 0..random.below(8) {
            at += i64::try_from(1 + random.below(120)).unwrap_or(1) * 1000;
            let next = if random.below(5) == 0 {
                Status::Unknown
            } else {
                statuses[usize::try_from(random.below(3)).unwrap_or(0)]
            };
            if next == current {
                continue;
            }
            seq += 1;
            let mut sent = report(seq, &[(device.id, next, at)]);
            if next == Status::Unknown {
                sent.agent_id = ward_controller::store::CONTROLLER_REPORTS.into();
            }
            store
                .apply(&sent, &FlapPolicy::default(), at)
                .await
                .expect("report");
            changes.push((at, next));
            current = next;
        }
        let mut maintenance = Vec::new();
        for _ in 0..random.below(3) {
            let starts = random.at(base, 900);
            let ends = starts + i64::try_from(1 + random.below(200)).unwrap_or(1) * 1000;
            store
                .create_maintenance(
                    &MaintenanceSpec {
                        name: format!("case {case}"),
                        starts_at_ms: starts,
                        ends_at_ms: ends,
                        time_zone: "UTC".into(),
                        every: None,
                        until_ms: None,
                        devices: vec![device.id],
                        sites: vec![],
                        tags: vec![],
                        comment: String::new(),
                    },
                    &console,
                    at,
                )
                .await
                .expect("window");
            maintenance.push((starts, ends));
        }
        let deleted = if random.below(3) == 0 {
            let when = at + i64::try_from(1 + random.below(300)).unwrap_or(1) * 1000;
            store
                .delete_device(device.id, &console, when)
                .await
                .expect("delete");
            when
        } else {
            i64::MAX
        };
        let from = random.at(base, 1200);
        let to = from + i64::try_from(1 + random.below(1200)).unwrap_or(1) * 1000;
        let timeline = Timeline {
            existed: (created, deleted),
            initial: changes
                .iter()
                .rev()
                .find(|(when, _)| *when < from)
                .map_or(Status::Unknown, |(_, status)| *status),
            changes: changes
                .iter()
                .copied()
                .filter(|(when, _)| *when >= from)
                .collect(),
            maintenance,
        };
        let (devices, recorded) = store.availability_input(from, to).await.expect("read");
        let windows = store.maintenance_windows().await.expect("windows");
        let rows = availability_report(
            &devices,
            &recorded,
            &windows,
            (from, to),
            By::Device,
            &ReportFilter {
                device: Some(device.id),
                ..ReportFilter::default()
            },
        );
        let expected = second_by_second(&timeline, (from, to));
        assert_eq!(
            account(&timeline, (from, to)),
            expected,
            "case {case} (seed {seed:#x})"
        );
        let measured = rows.first().map(|(_, totals)| *totals).unwrap_or_default();
        assert_eq!(
            measured, expected,
            "case {case} (seed {seed:#x}): {timeline:?} over {from}..{to}"
        );
    }
}

async fn controllers_starting_together_set_their_channels_without_colliding(store: &Store) {
    // Three controllers of a cluster start at once (a CI run found the
    // second one refused: duplicate key, and it exited).
    for _ in 0..5 {
        let channels = ["webhook", "alertmanager"];
        let (a, b, c) = tokio::join!(
            store.set_notification_channels(&channels),
            store.set_notification_channels(&channels),
            store.set_notification_channels(&channels),
        );
        for result in [a, b, c] {
            result.expect("set alongside the others");
        }
    }
}

async fn a_flapping_device_notifies_once_withholds_its_changes_and_settles_once(store: &Store) {
    let policy = FlapPolicy {
        changes: 2,
        window_ms: 10_000,
    };
    let id = store
        .create_device(
            &spec("lte-router", "198.18.1.20"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create")
        .id;
    store
        .apply(&report(1, &[(id, Status::Up, 1_000)]), &policy, 1_000)
        .await
        .expect("up");
    let mut withheld = 0;
    for (seq, at) in (2..=6).zip((2..=6).map(|n| n * 1_000)) {
        let status = if seq % 2 == 0 {
            Status::Down
        } else {
            Status::Up
        };
        let outcome = store
            .apply(&report(seq, &[(id, status, at)]), &policy, at)
            .await
            .expect("toggle");
        let ApplyOutcome::Applied { changes, .. } = outcome else {
            panic!("applied once: {outcome:?}");
        };
        withheld += changes.withheld;
    }
    let mut kinds: Vec<String> = drain_notifications(store)
        .await
        .into_iter()
        .map(|(kind, _, _)| kind)
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["firing", "flapping", "resolved"]);
    assert_eq!(withheld, 2, "the last two changes notified nobody");
    let now = device(store, id).await;
    assert!(now.flapping);
    assert_eq!(now.status, Status::Down);
    let alerts = store.alerts(false).await.expect("alerts");
    assert_eq!(alerts.len(), 3, "every outage has its alert: {alerts:?}");
    assert!(alerts.iter().all(|alert| alert.flapping));
    assert_eq!(
        store.flapping_alerts().await.expect("flapping")[0].id,
        alerts[0].id,
        "the latest alert stands for the flapping device"
    );

    assert_eq!(
        store
            .settle_flapping(&policy, 6_000 + 9_999)
            .await
            .expect("settle"),
        Vec::<i64>::new(),
        "not stable for the window yet"
    );
    let before = store.data_version().await.expect("version").version;
    assert_eq!(
        store
            .settle_flapping(&policy, 16_000)
            .await
            .expect("settle"),
        [id]
    );
    let (_, written) = store
        .devices_changed_since(before)
        .await
        .expect("since")
        .expect("on record");
    assert_eq!(
        written
            .iter()
            .map(|d| (d.id, d.flapping))
            .collect::<Vec<_>>(),
        [(id, false)],
        "the device lists see it settle"
    );
    assert_eq!(
        store
            .settle_flapping(&policy, 17_000)
            .await
            .expect("settle"),
        Vec::<i64>::new(),
        "settled once"
    );
    assert!(!device(store, id).await.flapping);
    let due = store
        .due_notifications("webhook", i64::MAX / 2, 100)
        .await
        .expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].kind, "settled");
    assert_eq!(due[0].alert.resolved_at_ms, None, "it settled down");
    assert_eq!(due[0].alert.device_status, Some(Status::Down));
    store
        .notification_delivered(due[0].id)
        .await
        .expect("delivered");

    store
        .apply(&report(7, &[(id, Status::Up, 20_000)]), &policy, 20_000)
        .await
        .expect("up again");
    let sent = drain_notifications(store).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "resolved", "a settled device notifies as usual");
}

/// A report of `device_id` degraded at `level` (30 % loss, 160 ms).
fn degraded(seq: u64, device_id: i64, level: DegradedLevel, at_ms: i64) -> TransitionReport {
    let mut report = report(seq, &[(device_id, Status::Degraded, at_ms)]);
    report.transitions[0].degraded = Some(Degradation {
        level,
        loss_permille: 300,
        rtt_us: Some(160_000),
    });
    report
}

async fn a_degraded_device_has_its_own_alert_updated_by_level_and_superseded_by_down(
    store: &Store,
) {
    let device = store
        .create_device(
            &spec("atm-1", "198.18.1.10"),
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("create");
    let flapping = FlapPolicy::default();
    let apply = |report: TransitionReport, at_ms: i64| async move {
        store.apply(&report, &flapping, at_ms).await.expect("apply")
    };
    apply(report(1, &[(device.id, Status::Up, 2_000)]), 2_000).await;
    apply(degraded(2, device.id, DegradedLevel::Warning, 5_000), 5_000).await;
    let now = store
        .get_device(device.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((now.status, now.down_since_ms), (Status::Degraded, None));
    assert_eq!(
        now.degraded,
        Some(Degradation {
            level: DegradedLevel::Warning,
            loss_permille: 300,
            rtt_us: Some(160_000)
        })
    );
    let alerts = store.alerts(true).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alertname, AlertName::DeviceDegraded);
    assert_eq!(alerts[0].severity_label(), "warning");
    // The same level again (a replay of another seq) changes nothing;
    // critical updates the alert.
    apply(degraded(3, device.id, DegradedLevel::Warning, 6_000), 6_000).await;
    apply(
        degraded(4, device.id, DegradedLevel::Critical, 7_000),
        7_000,
    )
    .await;
    let alerts = store.alerts(true).await.expect("alerts");
    assert_eq!(alerts.len(), 1, "still one alert");
    assert_eq!(alerts[0].severity_label(), "critical");
    // Cut entirely: the degraded alert resolves, superseded, as the
    // outage's opens.
    apply(report(5, &[(device.id, Status::Down, 9_000)]), 9_000).await;
    let now = store
        .get_device(device.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((now.status, now.degraded), (Status::Down, None));
    let every = store.alerts(false).await.expect("alerts");
    let story: Vec<(AlertName, Option<&str>)> = every
        .iter()
        .rev()
        .map(|alert| (alert.alertname, alert.resolved_reason.as_deref()))
        .collect();
    assert_eq!(
        story,
        [
            (AlertName::DeviceDegraded, Some("superseded by DeviceDown")),
            (AlertName::DeviceDown, None)
        ]
    );
    let queued = store.pending_notifications().await.expect("outbox");
    let kinds: Vec<&str> = queued.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["firing", "updated", "resolved", "firing"]);
}

async fn profiles_judge_devices_before_their_sites_default_and_are_not_deleted_in_use(
    store: &Store,
) {
    use ward_domain::quality::{Profile, Thresholds};
    let console = ward_controller::store::Actor::console();
    let profile = |name: &str, loss_warn_permille| Profile {
        name: name.into(),
        thresholds: Thresholds {
            loss_warn_permille,
            ..Thresholds::default()
        },
    };
    // A device naming a profile that does not exist is refused by field.
    let strict_atm = DeviceSpec {
        profile: Some("strict".into()),
        ..spec("atm-1", "198.18.1.1")
    };
    match store.create_device(&strict_atm, &console, 1_000).await {
        Err(StoreError::Invalid(error)) => assert_eq!(error.field, "profile"),
        other => panic!("expected the profile named: {other:?}"),
    }
    store
        .create_profile(&profile("strict", 50), &console, 1_000)
        .await
        .expect("strict");
    store
        .create_profile(&profile("dsl", 400), &console, 1_000)
        .await
        .expect("dsl");
    match store
        .create_profile(&profile("dsl", 300), &console, 1_000)
        .await
    {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "name"),
        other => panic!("expected a conflict: {other:?}"),
    }
    let atm = store
        .create_device(&strict_atm, &console, 2_000)
        .await
        .expect("a device with a profile");
    assert_eq!(atm.spec.profile.as_deref(), Some("strict"));
    store
        .create_device(&spec("atm-2", "198.18.1.2"), &console, 2_000)
        .await
        .expect("a device without one");
    let site = store
        .set_site_profile("branch-0421", Some("dsl"), &console, 3_000)
        .await
        .expect("site default")
        .expect("the site exists");
    assert_eq!((site.profile.as_deref(), site.devices), (Some("dsl"), 2));

    let book = store.profile_book().await.expect("book");
    let default = Thresholds::default();
    let judged = |profile: Option<&str>| {
        book.thresholds_for(profile, "branch-0421", default)
            .loss_warn_permille
    };
    assert_eq!((judged(Some("strict")), judged(None)), (50, 400));

    // In use by a device, then by a site: refused, saying how many.
    for (name, devices, sites) in [("strict", 1, 0), ("dsl", 0, 1)] {
        match store.change_profile(name, None, &console, 4_000).await {
            Err(StoreError::Conflict { message, .. }) => assert!(
                message.contains(&format!("{devices} devices and {sites} sites")),
                "{message}"
            ),
            other => panic!("expected {name} in use: {other:?}"),
        }
    }
    store
        .update_device(atm.id, &spec("atm-1", "198.18.1.1"), &console, 5_000)
        .await
        .expect("profile cleared");
    let replaced = store
        .change_profile(
            "strict",
            Some(&Thresholds {
                loss_warn_permille: 70,
                ..default
            }),
            &console,
            6_000,
        )
        .await
        .expect("replace")
        .expect("exists");
    assert_eq!(replaced.profile.thresholds.loss_warn_permille, 70);
    store
        .change_profile("strict", None, &console, 7_000)
        .await
        .expect("delete")
        .expect("existed");
    assert!(store.profile("strict").await.expect("read").is_none());
    let listed = store.profiles().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sites, ["branch-0421"]);
    let actions: Vec<String> = store
        .audit(&ward_controller::store::AuditFilter::newest(100))
        .await
        .expect("audit")
        .into_iter()
        .map(|entry| entry.action)
        .filter(|action| action.starts_with("profile.") || action.starts_with("site."))
        .collect();
    assert_eq!(
        actions,
        [
            "profile.delete",
            "profile.update",
            "site.update",
            "profile.create",
            "profile.create"
        ]
    );
}

async fn a_devices_tcp_check_round_trips(store: &Store) {
    use ward_domain::check::Check;
    let console = ward_controller::store::Actor::console();
    let firewall = DeviceSpec {
        check: Check::IcmpOrTcp(443),
        rst_alive: false,
        ..spec("fw-1", "198.18.1.1")
    };
    let created = store
        .create_device(&firewall, &console, 1_000)
        .await
        .expect("create");
    let read = device(store, created.id).await;
    assert_eq!(
        (read.spec.check, read.spec.rst_alive),
        (Check::IcmpOrTcp(443), false)
    );
    let icmp = DeviceSpec {
        check: Check::Icmp,
        ..firewall
    };
    store
        .update_device(created.id, &icmp, &console, 2_000)
        .await
        .expect("update");
    assert_eq!(device(store, created.id).await.spec.check, Check::Icmp);
}

/// Attaches one trace (`Store::attach_traces` of one).
async fn attach(
    store: &Store,
    devices: &[i64],
    trace: &ward_domain::trace::Trace,
    now_ms: i64,
) -> ward_controller::store::Attached {
    store
        .attach_traces(&[(devices.to_vec(), trace.clone())], now_ms)
        .await
        .expect("attach")
        .pop()
        .expect("one")
}

/// A trace of 198.18.40.17 that ends at the router (198.18.0.2), its
/// second hop silent, finished at `at_ms`.
fn router_trace(at_ms: i64) -> ward_domain::trace::Trace {
    use ward_domain::trace::{Trace, TraceHop};
    Trace::new(
        at_ms,
        "198.18.40.17".into(),
        false,
        vec![
            TraceHop {
                ttl: 1,
                address: Some("198.18.0.2".into()),
                rtt_us: Some(420),
            },
            TraceHop {
                ttl: 2,
                address: None,
                rtt_us: None,
            },
        ],
    )
}

async fn a_trace_is_kept_and_attached_to_the_open_alert_once_naming_the_last_hops_device(
    store: &Store,
) {
    let console = ward_controller::store::Actor::console();
    let create = |name: &'static str, address: &'static str| {
        let console = console.clone();
        async move {
            store
                .create_device(&spec(name, address), &console, 1_000)
                .await
                .expect("create")
                .id
        }
    };
    let router = create("core-router", "198.18.0.2").await;
    let atm = create("atm-17", "198.18.40.17").await;
    let neighbour = create("atm-18", "198.18.40.18").await;
    let up = [router, atm, neighbour].map(|id| (id, Status::Up, 2_000));
    store
        .apply(&report(1, &up), &FlapPolicy::default(), 2_100)
        .await
        .expect("up");
    store
        .apply(
            &report(2, &[(atm, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("down");
    assert_eq!(drain_notifications(store).await.len(), 1, "the firing");

    // The ATM's trace answers for its neighbour too (one prefix).
    let trace = router_trace(6_000);
    let attached = attach(store, &[atm, neighbour], &trace, 6_100).await;
    let alert = store.alerts(true).await.expect("alerts")[0].clone();
    assert_eq!(
        (attached.open, attached.now.as_slice()),
        (1, [alert.id].as_slice())
    );
    let kept = alert.trace.expect("the alert's trace");
    assert_eq!(kept.last_hop.as_deref(), Some("198.18.0.2"));
    assert_eq!(kept.last_hop_device.as_deref(), Some("core-router"));
    assert_eq!(kept.hops, trace.hops);
    for id in [atm, neighbour] {
        assert_eq!(
            store.last_trace(id).await.expect("read"),
            Some(kept.clone())
        );
    }
    assert_eq!(store.last_trace(router).await.expect("read"), None);
    assert_eq!(
        drain_notifications(store).await,
        [("traced".to_owned(), "atm-17".to_owned(), None)]
    );

    // A replayed report attaches nothing again, and notifies nobody.
    let again = attach(store, &[atm, neighbour], &trace, 6_200).await;
    assert_eq!((again.open, again.now.len()), (1, 0));
    assert_eq!(drain_notifications(store).await, []);

    // Once the alert is resolved, a trace only becomes the last one.
    store
        .apply(
            &report(3, &[(atm, Status::Up, 7_000)]),
            &FlapPolicy::default(),
            7_100,
        )
        .await
        .expect("back up");
    drain_notifications(store).await;
    let later = router_trace(8_000);
    let attached = attach(store, &[atm], &later, 8_100).await;
    assert_eq!((attached.open, attached.now.len()), (0, 0));
    assert_eq!(
        store
            .last_trace(atm)
            .await
            .expect("read")
            .map(|t| t.traced_at_ms),
        Some(8_000)
    );
    let resolved = store.alerts(false).await.expect("alerts");
    assert_eq!(
        resolved[0].trace.as_ref().map(|t| t.traced_at_ms),
        Some(6_000)
    );
    assert_eq!(drain_notifications(store).await, []);
}

/// What changed in the device list after a data version, as each
/// controller's list in memory reads it (`services::device_table`): the
/// devices a commit wrote and the ids it deleted, each once it committed.
/// An agent's settlement when it connects with no alert open, or a report
/// of stale entries, writes nothing any reader sees: it must not queue on
/// the data-version row (a fleet reconnecting sends a thousand of them).
async fn a_report_that_changes_nothing_takes_no_data_version(store: &Store) {
    let console = ward_controller::store::Actor::console();
    let atm = store
        .create_device(&spec("atm-1", "198.18.1.10"), &console, 1_000)
        .await
        .expect("create");
    let flapping = FlapPolicy::default();
    store
        .apply(&report(1, &[(atm.id, Status::Up, 5_000)]), &flapping, 5_100)
        .await
        .expect("up");
    let before = store.data_version().await.expect("version").version;
    let agent_alert = |open: bool| ward_domain::model::AgentAlertChange {
        agent_id: "agent-1".into(),
        site: "branch-0421".into(),
        open,
        at_ms: 6_000,
        reason: "test".into(),
    };
    let mut back = report(2, &[(atm.id, Status::Down, 4_000)]);
    back.agent_alerts = vec![agent_alert(false)];
    let outcome = store.apply(&back, &flapping, 6_100).await.expect("apply");
    assert!(
        matches!(&outcome, ApplyOutcome::Applied { changes, ignored }
            if changes.changed.is_empty() && changes.version.is_none() && ignored.len() == 1),
        "a stale entry and no alert to resolve: {outcome:?}"
    );
    assert_eq!(
        store.data_version().await.expect("version").version,
        before,
        "nothing changed, no version taken"
    );
    let mut lost = report(3, &[]);
    lost.agent_alerts = vec![agent_alert(true)];
    store.apply(&lost, &flapping, 6_200).await.expect("open");
    let opened = store.data_version().await.expect("version").version;
    assert!(opened > before, "an alert opened moves the version on");
    let mut back = report(4, &[]);
    back.agent_alerts = vec![agent_alert(false)];
    store.apply(&back, &flapping, 6_300).await.expect("resolve");
    assert!(
        store.data_version().await.expect("version").version > opened,
        "an alert resolved moves it on"
    );
}

async fn the_devices_written_or_deleted_after_a_version_are_read_back(store: &Store) {
    let console = ward_controller::store::Actor::console();
    let a = store
        .create_device(&spec("atm-1", "198.18.1.10"), &console, 1_000)
        .await
        .expect("create");
    let b = store
        .create_device(&spec("atm-2", "198.18.1.11"), &console, 1_000)
        .await
        .expect("create");
    let since = async |version: i64| -> (Vec<i64>, Vec<ward_controller::store::Device>) {
        let (deleted, mut written) = store
            .devices_changed_since(version)
            .await
            .expect("since")
            .expect("the writes since are all on record");
        written.sort_by_key(|device| device.id);
        (deleted, written)
    };
    let ids = |written: &[ward_controller::store::Device]| -> Vec<i64> {
        written.iter().map(|device| device.id).collect()
    };
    let created = store.data_version().await.expect("version").version;
    let (deleted, written) = since(created - 2).await;
    assert_eq!((deleted, ids(&written)), (vec![], vec![a.id, b.id]));
    let (deleted, written) = since(created).await;
    assert_eq!((deleted, ids(&written)), (vec![], vec![]), "nothing since");

    store
        .apply(
            &report(1, &[(a.id, Status::Down, 5_000)]),
            &FlapPolicy::default(),
            5_100,
        )
        .await
        .expect("down");
    let (deleted, written) = since(created).await;
    assert_eq!((deleted, ids(&written)), (vec![], vec![a.id]));
    assert_eq!(written[0].status, Status::Down, "as it is now");
    let reported = store.data_version().await.expect("version").version;
    let (deleted, written) = since(reported).await;
    assert_eq!(
        (deleted, ids(&written)),
        (vec![], vec![]),
        "the report's device is recorded under its commit's version"
    );

    // A status an inventory change writes: disabling a down parent returns
    // its child to what its agent reports.
    let mut child_spec = spec("atm-3", "198.18.1.12");
    child_spec.parent_id = Some(a.id);
    let child = store
        .create_device(&child_spec, &console, 5_200)
        .await
        .expect("create a child");
    assert_eq!(child.status, Status::Unreachable);
    store
        .apply(
            &report(2, &[(child.id, Status::Up, 5_300)]),
            &FlapPolicy::default(),
            5_400,
        )
        .await
        .expect("the child answers");
    let with_child = store.data_version().await.expect("version").version;
    store
        .update_device(b.id, &spec("atm-2b", "198.18.1.11"), &console, 6_000)
        .await
        .expect("update")
        .expect("exists");
    let mut disabled = spec("atm-1", "198.18.1.10");
    disabled.enabled = false;
    store
        .update_device(a.id, &disabled, &console, 6_500)
        .await
        .expect("disable")
        .expect("exists");
    let (deleted, written) = since(with_child).await;
    assert_eq!(
        (deleted, ids(&written)),
        (vec![], vec![a.id, b.id, child.id])
    );
    assert_eq!(written[1].spec.name, "atm-2b");
    assert_eq!(written[2].status, Status::Up, "the child as it is now");
    store
        .delete_device(a.id, &console, 7_000)
        .await
        .expect("delete")
        .expect("existed");
    let (deleted, written) = since(with_child).await;
    assert_eq!((deleted, ids(&written)), (vec![a.id], vec![b.id, child.id]));
    let (deleted, written) = since(created).await;
    assert_eq!(
        (deleted, ids(&written)),
        (vec![a.id], vec![b.id, child.id]),
        "a device written then deleted is only deleted"
    );

    // The record is pruned up to a version: a reader older than that is
    // told to load the whole list; a newer one is still patched.
    let now = store.data_version().await.expect("version").version;
    store
        .forget_device_writes(with_child)
        .await
        .expect("forget");
    assert!(
        store
            .devices_changed_since(with_child - 1)
            .await
            .expect("since")
            .is_none(),
        "older than the record"
    );
    let (deleted, written) = since(with_child).await;
    assert_eq!((deleted, ids(&written)), (vec![a.id], vec![b.id, child.id]));
    let (deleted, written) = since(now).await;
    assert_eq!((deleted, ids(&written)), (vec![], vec![]));
}

async fn events_are_logged_at_their_commits_version_with_their_text_as_reported(store: &Store) {
    use ward_controller::store::{HistoryFilter, LoggedChange};
    let console = ward_controller::store::Actor::console();
    let router = store
        .create_device(&spec("router", "198.18.1.1"), &console, 1_000)
        .await
        .expect("router")
        .id;
    // Quotes, backslashes and what a placeholder looks like: the events
    // go to the database inside the statement's text.
    let reason = "it's $1 and $2 -- \"quoted\" \\ \u{fc}";
    let mut down = report(1, &[(router, Status::Down, 5_000)]);
    down.agent_id = "agent-'1".into();
    down.transitions[0].reason = reason.into();
    let outcome = store
        .apply(&down, &FlapPolicy::default(), 5_100)
        .await
        .expect("down");
    let ApplyOutcome::Applied { changes, .. } = outcome else {
        panic!("applied: {outcome:?}");
    };
    let version = changes.version.expect("a version");
    assert_eq!(
        store.changes_at(version, 10).await.expect("at"),
        [LoggedChange {
            version,
            device_id: router,
            previous: Status::Unknown,
            status: Status::Down,
        }]
    );
    let history = store
        .history(&HistoryFilter {
            limit: 10,
            ..HistoryFilter::default()
        })
        .await
        .expect("history");
    let recorded = &history.changes[0];
    assert_eq!(
        (recorded.reason.as_str(), recorded.agent.as_str()),
        (reason, "agent-'1")
    );
    // A device created under the down router settles unreachable in its
    // own commit, logged at that commit's version.
    let child = store
        .create_device(&child_spec("atm", "198.18.1.2", router), &console, 6_000)
        .await
        .expect("child");
    let after = store.changes_since(version, 10).await.expect("since");
    let now = store.data_version().await.expect("version").version;
    assert_eq!(
        after,
        [LoggedChange {
            version: now,
            device_id: child.id,
            previous: Status::Unknown,
            status: Status::Unreachable,
        }]
    );
}
