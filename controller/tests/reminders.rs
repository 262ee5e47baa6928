//! Reminders and escalation on a controlled clock, on both store backends:
//! an open alert nobody acknowledged reminds its route's receivers every
//! `repeat_every` and escalates once after `escalate_after`; an
//! acknowledgement stops both (a reminder queued before it is not sent);
//! the escalation's receivers are told of the acknowledgement and the end;
//! an alert acknowledged in time never escalates; and two controllers
//! running the same round queue each reminder and escalation once.

mod common;

use serde_json::Value;
use ward_controller::cache::Cache;
use ward_controller::notify::{Channel, Webhook, deliver_due};
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Actor, DeviceSpec, Status};
use ward_domain::routing::{Match, Route};
use ward_testkit::services::Postgres;

const MINUTE: i64 = 60_000;
const T0: i64 = 1_000 * MINUTE;

/// The NOC is reminded every 10 minutes; the duty manager is told after
/// 30 minutes without an acknowledgement.
fn settings() -> AppSettings {
    AppSettings {
        receivers: common::webhook_receivers(&["noc", "boss"]),
        routes: vec![
            Route::new(Match::default(), ["noc"], false)
                .repeating(10 * MINUTE)
                .escalating(30 * MINUTE, ["boss"]),
        ],
        ..AppSettings::default()
    }
}

async fn device(app: &App, name: &str) -> i64 {
    let spec = DeviceSpec::new(
        name.into(),
        "198.18.1.10".parse().expect("address"),
        "branch-7".into(),
    );
    common::add_device(app, &spec).await
}

async fn acknowledge(app: &App, device_id: i64, at_ms: i64) {
    let alert = app
        .core
        .store
        .alerts(true)
        .await
        .expect("alerts")
        .into_iter()
        .find(|alert| alert.device_id == Some(device_id))
        .expect("an open alert");
    app.inventory
        .acknowledge(alert.id, Some("on it"), &Actor::console(), at_ms)
        .await
        .expect("acknowledge");
}

/// The kinds `receiver` was sent about `device`, in order.
fn kinds(receiver: &common::Receiver, device: &str) -> Vec<String> {
    receiver
        .bodies()
        .iter()
        .filter(|body| body["device"]["name"] == device)
        .map(|body| body["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn chased_and_escalated_until_acknowledged(url: &str) {
    let app = common::controller_with(url, Cache::in_process(), settings()).await;
    let (noc, noc_url) = common::start_receiver().await;
    let (boss, boss_url) = common::start_receiver().await;
    let channels = [
        Channel::Webhook(Webhook::new(&noc_url).named("noc")),
        Channel::Webhook(Webhook::new(&boss_url).named("boss")),
    ];
    let deliver = async |now_ms: i64| {
        for channel in &channels {
            let round = deliver_due(&app.notifications, &app.maintenance, channel, now_ms)
                .await
                .expect("round");
            assert_eq!(round.failed, 0);
        }
    };
    let chase = async |now_ms: i64| app.notifications.chase(now_ms).await.expect("chase");
    let atm = device(&app, "atm-1").await;
    let taken = device(&app, "atm-2").await;
    common::report_status(&app, atm, 1, Status::Down, T0).await;
    common::report_status(&app, taken, 2, Status::Down, T0).await;
    deliver(T0).await;
    acknowledge(&app, taken, T0 + 5 * MINUTE).await;
    deliver(T0 + 5 * MINUTE).await;

    assert_eq!(chase(T0 + 9 * MINUTE).await, (0, 0), "not due yet");
    assert_eq!(chase(T0 + 10 * MINUTE).await, (1, 0), "atm-1 only");
    assert_eq!(chase(T0 + 10 * MINUTE).await, (0, 0), "once a period");
    deliver(T0 + 10 * MINUTE).await;
    assert_eq!(chase(T0 + 20 * MINUTE).await, (1, 0));
    deliver(T0 + 20 * MINUTE).await;
    assert_eq!(
        chase(T0 + 30 * MINUTE).await,
        (1, 1),
        "reminded and escalated"
    );
    assert_eq!(chase(T0 + 31 * MINUTE).await, (0, 0), "escalated once");
    deliver(T0 + 31 * MINUTE).await;
    // A reminder queued, then the alert taken before it left.
    assert_eq!(chase(T0 + 40 * MINUTE).await, (1, 0));
    acknowledge(&app, atm, T0 + 41 * MINUTE).await;
    deliver(T0 + 41 * MINUTE).await;
    assert_eq!(
        chase(T0 + 60 * MINUTE).await,
        (0, 0),
        "acknowledged: no more"
    );
    common::report_status(&app, atm, 3, Status::Up, T0 + 61 * MINUTE).await;
    deliver(T0 + 61 * MINUTE).await;

    assert_eq!(
        kinds(&noc, "atm-1"),
        [
            "firing",
            "reminder",
            "reminder",
            "reminder",
            "acknowledged",
            "resolved"
        ]
    );
    assert_eq!(
        kinds(&boss, "atm-1"),
        ["escalated", "acknowledged", "resolved"],
        "the escalation's receiver hears of its acknowledgement and its end"
    );
    assert_eq!(kinds(&noc, "atm-2"), ["firing", "acknowledged"]);
    assert!(
        kinds(&boss, "atm-2").is_empty(),
        "acknowledged in time: never escalated"
    );
    let reminder: Vec<Value> = noc
        .bodies()
        .into_iter()
        .filter(|body| body["kind"] == "reminder")
        .collect();
    assert_eq!(reminder[0]["device"]["status"], "down", "{:?}", reminder[0]);
    let api = common::Api::serve(app.clone()).await;
    for (series, count) in [
        (
            "ward_notifications_total{receiver=\"noc\",outcome=\"superseded\"}",
            1,
        ),
        ("ward_notification_reminders_total", 4),
        ("ward_notification_escalations_total", 1),
    ] {
        assert_eq!(api.metric(series).await, count, "{series}");
    }
}

#[tokio::test]
async fn reminders_and_escalation_on_sqlite() {
    let (_dir, url) = common::sqlite_url();
    chased_and_escalated_until_acknowledged(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_and_escalation_on_postgresql() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    chased_and_escalated_until_acknowledged(&postgres.url()).await;
}

/// Two controllers of a cluster running the same round (the lease moving
/// from one to the other as its holder dies) queue each reminder and each
/// escalation once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_queue_each_reminder_and_escalation_once() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = common::controller_with(&postgres.url(), Cache::in_process(), settings()).await;
    let b = common::controller_with(&postgres.url(), Cache::in_process(), settings()).await;
    let id = device(&a, "atm-1").await;
    common::report_status(&a, id, 1, Status::Down, T0).await;
    for now in [T0 + 30 * MINUTE, T0 + 40 * MINUTE] {
        let (from_a, from_b) = tokio::join!(a.notifications.chase(now), b.notifications.chase(now));
        let (from_a, from_b) = (from_a.expect("a"), from_b.expect("b"));
        assert_eq!(from_a.0 + from_b.0, 1, "one reminder at {now}");
        let escalations = from_a.1 + from_b.1;
        assert_eq!(escalations, u32::from(now == T0 + 30 * MINUTE));
    }
    let pending = a.core.store.pending_notifications().await.expect("outbox");
    let count = |kind: &str, channel: &str| {
        pending
            .iter()
            .filter(|n| n.kind == kind && n.channel == channel)
            .count()
    };
    assert_eq!(count("reminder", "noc"), 2);
    assert_eq!(count("escalated", "boss"), 1);
    assert_eq!(count("reminder", "boss"), 0);
}
