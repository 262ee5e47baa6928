//! Notifications leave through the outbox to a real HTTP webhook: only a
//! 2xx removes them, failures are retried later, order per alert holds,
//! and nothing is lost while the receiver is down.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Receiver, start_receiver};
use serde_json::Value;
use ward_controller::notify::{Channel, Webhook, deliver_due};
use ward_controller::services::App;
use ward_controller::store::{Status, TransitionReport};

async fn controller_with_device() -> (tempfile::TempDir, App, i64) {
    common::webhook_controller_with_device(ward_controller::services::AppSettings::default()).await
}

fn report(device_id: i64, seq: u64, status: Status, at_ms: i64) -> TransitionReport {
    common::transition_report("agent", device_id, seq, status, at_ms)
}

#[tokio::test]
async fn a_down_receiver_loses_nothing_and_gets_firing_before_resolved() {
    let (receiver, url) = start_receiver().await;
    let (_dir, controller, id) = controller_with_device().await;
    let webhook = Channel::Webhook(Webhook::new(&url));
    receiver.failing.store(true, Ordering::Relaxed);

    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        10_000,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    controller
        .reports
        .apply_report(&report(id, 2, Status::Up, 11_000), 11_000)
        .await
        .expect("up");
    // Not due yet (backoff), and the resolved one waits behind the firing one.
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        10_500,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 0));
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        12_000,
    )
    .await
    .expect("round");
    assert_eq!(
        (round.delivered, round.failed),
        (0, 1),
        "the resolved one is not due while its firing waits"
    );
    assert_eq!(
        controller
            .core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .len(),
        2,
        "nothing lost"
    );
    assert!(controller.notifications.failing("webhook"));

    receiver.failing.store(false, Ordering::Relaxed);
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        60_000,
    )
    .await
    .expect("round");
    assert_eq!(round.delivered, 2);
    assert!(
        controller
            .core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .is_empty()
    );
    let accepted = receiver.accepted.lock().expect("lock").clone();
    let kinds: Vec<&str> = accepted
        .iter()
        .map(|body| body["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["firing", "resolved"]);
    assert_eq!(accepted[0]["device"]["name"], "atm-1");
    assert_eq!(accepted[0]["device"]["site"], "branch-7");
    assert_eq!(accepted[0]["severity"], "critical");
    assert!(accepted[1]["resolved_at"].is_string());
    assert!(!controller.notifications.failing("webhook"));
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_is_a_failure_not_a_loss() {
    let (_dir, controller, id) = controller_with_device().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("address"));
    drop(closed);
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &Channel::Webhook(Webhook::new(&url)),
        10_000,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    let outbox = controller
        .core
        .store
        .pending_notifications()
        .await
        .expect("outbox");
    assert_eq!((outbox.len(), outbox[0].attempts), (1, 1));
}

#[tokio::test]
async fn the_worker_delivers_right_after_the_commit() {
    let (receiver, url) = start_receiver().await;
    let (_dir, controller, id) = controller_with_device().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(ward_controller::notify::run(
        std::sync::Arc::clone(&controller.notifications),
        std::sync::Arc::clone(&controller.maintenance),
        std::sync::Arc::clone(&controller.cluster),
        Channel::Webhook(Webhook::new(&url)),
        async {
            let _ = stopped.await;
        },
    ));
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, now), now)
        .await
        .expect("down");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while receiver.accepted.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.accepted.lock().expect("lock")[0]["kind"], "firing");
    let _ = stop.send(());
    worker.await.expect("worker stops");
}

/// Alertmanager's active alerts (`GET /api/v2/alerts`).
async fn active_alerts(alertmanager: &ward_testkit::services::Alertmanager) -> Vec<Value> {
    reqwest::get(format!("{}/api/v2/alerts", alertmanager.url()))
        .await
        .expect("GET alerts")
        .json()
        .await
        .expect("JSON alerts")
}

/// Waits until `receiver` has a notification with `status`, and returns it.
async fn notification_with_status(receiver: &Receiver, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = receiver
            .accepted
            .lock()
            .expect("lock")
            .iter()
            .find(|body| body["status"] == status)
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Alertmanager sent no {status} notification"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn alertmanager_gets_the_firing_then_the_resolved_alert_and_nothing_is_lost_while_it_is_down()
{
    use ward_controller::notify::{Alertmanager, resend_open_alerts};

    let (receiver, hook) = start_receiver().await;
    let mut alertmanager =
        ward_testkit::services::Alertmanager::start(&hook).expect("start Alertmanager");
    let (_dir, controller, id) = controller_with_device().await;
    controller
        .core
        .store
        .set_notification_channels(&["alertmanager"])
        .await
        .expect("channels");
    let channel = Channel::Alertmanager(Alertmanager::new(
        &alertmanager.url(),
        Duration::from_secs(60),
    ));

    // Alertmanager down when the device goes down: the firing alert waits.
    alertmanager.stop();
    let down_at = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, down_at), down_at)
        .await
        .expect("down");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channel,
        down_at,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    assert!(controller.notifications.failing("alertmanager"));

    alertmanager.resume().expect("restart Alertmanager");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channel,
        down_at + 120_000,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    let active = active_alerts(&alertmanager).await;
    assert_eq!(active.len(), 1, "{active:?}");
    let labels = &active[0]["labels"];
    assert_eq!(labels["alertname"], "DeviceDown");
    assert_eq!(labels["device"], "atm-1");
    assert_eq!(labels["address"], "198.18.1.10");
    assert_eq!(labels["site"], "branch-7");
    assert_eq!(labels["severity"], "critical");
    let firing = notification_with_status(&receiver, "firing").await;
    assert_eq!(firing["alerts"][0]["labels"]["device"], "atm-1");

    // Alertmanager restarted and forgot it: the periodic re-send restores it.
    alertmanager.stop();
    alertmanager.resume().expect("restart Alertmanager");
    assert!(active_alerts(&alertmanager).await.is_empty());
    let resent = resend_open_alerts(
        &controller.notifications,
        match &channel {
            Channel::Alertmanager(alertmanager) => alertmanager,
            _ => unreachable!("an Alertmanager channel"),
        },
        ward_controller::time::now_ms(),
    )
    .await
    .expect("re-send");
    assert_eq!(resent, 1);
    assert_eq!(active_alerts(&alertmanager).await.len(), 1);

    let up_at = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(id, 2, Status::Up, up_at), up_at)
        .await
        .expect("up");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channel,
        up_at,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    let resolved = notification_with_status(&receiver, "resolved").await;
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["labels"]["device"], "atm-1");
    assert_eq!(alert["status"], "resolved");
    assert!(active_alerts(&alertmanager).await.is_empty());
    assert!(
        controller
            .core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .is_empty()
    );
}

#[tokio::test]
async fn an_agent_down_reaches_alertmanager_with_its_own_labels_and_is_resent_and_resolved() {
    use ward_controller::notify::{Alertmanager, resend_open_alerts};
    use ward_domain::sight::Blindness;

    let (receiver, hook) = start_receiver().await;
    let mut alertmanager =
        ward_testkit::services::Alertmanager::start(&hook).expect("start Alertmanager");
    let (_dir, controller, id) = controller_with_device().await;
    controller
        .core
        .store
        .set_notification_channels(&["alertmanager"])
        .await
        .expect("channels");
    let am = Alertmanager::new(&alertmanager.url(), Duration::from_secs(60));
    let agent = controller
        .presence
        .register_agent(
            "branch-7-agent",
            "branch-7",
            &ward_controller::store::Actor::console(),
            1_000,
        )
        .await
        .expect("agent");
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(id, 1, Status::Up, now), now)
        .await
        .expect("up");
    // Connected but blind to its only device: AgentDown opens.
    let blind = Blindness {
        devices: vec![(id, Status::Up)],
        families: vec!["ipv4"],
    };
    controller
        .presence
        .link_opened(&agent, "test", "boot-1", now);
    controller
        .presence
        .agent_sight(&agent, &["ipv6"], &blind, ("sight", 1), now)
        .await
        .expect("blind");
    let channel = Channel::Alertmanager(am);
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channel,
        now,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    let active = active_alerts(&alertmanager).await;
    assert_eq!(active.len(), 1, "{active:?}");
    let labels = &active[0]["labels"];
    assert_eq!(labels["alertname"], "AgentDown");
    assert_eq!(labels["agent"], "branch-7-agent");
    assert_eq!(labels["site"], "branch-7");
    assert!(labels.get("device").is_none(), "{labels}");
    notification_with_status(&receiver, "firing").await;

    // Alertmanager restarted: the re-send brings the agent alert back too.
    alertmanager.stop();
    alertmanager.resume().expect("restart Alertmanager");
    assert!(active_alerts(&alertmanager).await.is_empty());
    let Channel::Alertmanager(am) = &channel else {
        unreachable!("an Alertmanager channel")
    };
    assert_eq!(
        resend_open_alerts(
            &controller.notifications,
            am,
            ward_controller::time::now_ms()
        )
        .await
        .expect("re-send"),
        1
    );
    assert_eq!(active_alerts(&alertmanager).await.len(), 1);

    // It sees everything again: resolved, with the reason as annotation.
    controller
        .presence
        .agent_sight(
            &agent,
            &["ipv4", "ipv6"],
            &Blindness::default(),
            ("sight", 2),
            now + 1,
        )
        .await
        .expect("back");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channel,
        now + 1,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    let resolved = notification_with_status(&receiver, "resolved").await;
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "AgentDown");
    assert!(
        alert["annotations"]["resolution"]
            .as_str()
            .is_some_and(|reason| reason.contains("probes every device")),
        "{alert}"
    );
}

#[tokio::test]
async fn every_alertmanager_of_a_cluster_gets_every_alert_and_one_down_holds_back_no_other() {
    use ward_controller::notify::Alertmanager;

    let (_receiver, hook) = start_receiver().await;
    let mut first = ward_testkit::services::Alertmanager::start(&hook).expect("start Alertmanager");
    let second = ward_testkit::services::Alertmanager::start(&hook).expect("start Alertmanager");
    let (_dir, controller, id) = controller_with_device().await;
    let channels = [
        Channel::Alertmanager(Alertmanager::new(&first.url(), Duration::from_secs(60)).instance(1)),
        Channel::Alertmanager(
            Alertmanager::new(&second.url(), Duration::from_secs(60)).instance(2),
        ),
    ];
    let names: Vec<&str> = channels.iter().map(Channel::name).collect();
    assert_eq!(names, ["alertmanager", "alertmanager-2"]);
    controller
        .core
        .store
        .set_notification_channels(&names)
        .await
        .expect("channels");

    first.stop();
    let down_at = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, down_at), down_at)
        .await
        .expect("down");
    let mut rounds = Vec::new();
    for channel in &channels {
        let round = deliver_due(
            &controller.notifications,
            &controller.maintenance,
            channel,
            down_at,
        )
        .await
        .expect("round");
        rounds.push((round.delivered, round.failed));
    }
    assert_eq!(rounds, [(0, 1), (1, 0)], "the second is not held back");
    assert_eq!(active_alerts(&second).await.len(), 1);
    assert!(controller.notifications.failing("alertmanager"));
    assert!(!controller.notifications.failing("alertmanager-2"));

    first.resume().expect("restart Alertmanager");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &channels[0],
        down_at + 120_000,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    assert_eq!(
        active_alerts(&first).await.len(),
        1,
        "the first gets it once back"
    );
    assert!(!controller.notifications.failing("alertmanager"));
}

#[tokio::test]
async fn an_acknowledgement_is_shown_notified_audited_and_refused_for_a_viewer() {
    use reqwest::Method;
    use ward_controller::auth::Role;
    let (receiver, url) = start_receiver().await;
    let (_dir, controller, id) = controller_with_device().await;
    // With `public_url`, each body links to the device in the dashboard.
    let webhook = Channel::Webhook(Webhook::new(&url).linking(Some("https://ward.example/")));
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let api = common::Api::serve(controller.clone()).await;
    let operator = common::token_for(&controller, "olga", Role::Operator, None).await;
    let viewer = common::token_for(&controller, "victor", Role::Viewer, None).await;
    let (_, alerts) = api.get("/api/v1/alerts?state=open").await;
    let alert = alerts[0]["id"].as_i64().expect("an open alert");
    assert_eq!(alerts[0]["acknowledged"], Value::Null);
    let ack = format!("/api/v1/alerts/{alert}/ack");
    let comment = serde_json::json!({"comment": "on my way, ticket INC-42"});

    let (status, _) = api
        .send(Method::POST, &ack, Some(comment.clone()), Some(&viewer))
        .await;
    assert_eq!(status, 403, "a viewer may not acknowledge");
    let (status, acked) = api
        .send(Method::POST, &ack, Some(comment), Some(&operator))
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged"]["comment"], "on my way, ticket INC-42");
    assert!(
        acked["acknowledged"]["by"]
            .as_str()
            .is_some_and(|by| by.contains("olga")),
        "{acked}"
    );
    let (_, listed) = api.get("/api/v1/alerts").await;
    assert_eq!(listed[0]["acknowledged"], acked["acknowledged"]);
    assert_eq!(listed[0]["state"], "open", "still open");
    let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(device["status"], "down", "the status does not change");

    // The acknowledgement was queued at the real time of the request.
    deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        ward_controller::time::now_ms() + 1_000,
    )
    .await
    .expect("round");
    let accepted = receiver.accepted.lock().expect("lock").clone();
    let kinds: Vec<&str> = accepted
        .iter()
        .map(|body| body["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["firing", "acknowledged"]);
    assert_eq!(
        accepted[0]["url"],
        format!("https://ward.example/?device={id}")
    );
    assert_eq!(
        accepted[1]["acknowledged"]["comment"],
        "on my way, ticket INC-42"
    );

    let audit = controller
        .core
        .store
        .audit(&ward_controller::store::AuditFilter::newest(20))
        .await
        .expect("audit");
    let entry = audit
        .iter()
        .find(|entry| entry.action == "alert.acknowledge")
        .expect("audited");
    assert_eq!(entry.object, format!("alert {alert}"));
    assert!(entry.principal.contains("olga"), "{}", entry.principal);

    let (status, withdrawn) = api.send(Method::DELETE, &ack, None, Some(&operator)).await;
    assert_eq!((status, &withdrawn["acknowledged"]), (200, &Value::Null));
    controller
        .reports
        .apply_report(&report(id, 2, Status::Up, 11_000), 11_000)
        .await
        .expect("up");
    let (status, refused) = api
        .send(
            Method::POST,
            &ack,
            Some(serde_json::json!({"comment": "late"})),
            Some(&operator),
        )
        .await;
    assert_eq!(status, 409, "a resolved alert: {refused}");
    let (status, _) = api
        .send(
            Method::POST,
            "/api/v1/alerts/999999/ack",
            Some(serde_json::json!({})),
            Some(&operator),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn maintenance_holds_a_firing_back_until_the_window_ends_with_the_device_still_down() {
    use ward_controller::store::{Actor, MaintenanceSpec};
    let (receiver, url) = start_receiver().await;
    let (_dir, controller, id) = controller_with_device().await;
    let webhook = Channel::Webhook(Webhook::new(&url));
    let now = ward_controller::time::now_ms();
    let window = |starts_at_ms: i64, ends_at_ms: i64| MaintenanceSpec {
        name: "branch 7 closed".into(),
        starts_at_ms,
        ends_at_ms,
        time_zone: "UTC".into(),
        every: None,
        until_ms: None,
        devices: vec![],
        sites: vec!["branch-7".into()],
        tags: vec![],
        comment: String::new(),
    };
    let planned = controller
        .maintenance
        .change_maintenance(
            None,
            Some(window(now - 60_000, now + 3_600_000)),
            &Actor::console(),
        )
        .await
        .expect("window")
        .expect("created");
    controller
        .reports
        .apply_report(&report(id, 1, Status::Down, now), now)
        .await
        .expect("down");
    let round = deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        now + 1_000,
    )
    .await
    .expect("round");
    assert_eq!((round.delivered, round.held), (0, 1), "held back, not sent");
    assert!(receiver.accepted.lock().expect("lock").is_empty());
    let device = controller
        .core
        .store
        .get_device(id)
        .await
        .expect("get")
        .expect("device");
    assert_eq!(device.status, Status::Down, "still shown as it is");
    assert_eq!(
        controller
            .maintenance
            .release_held()
            .await
            .expect("release"),
        0,
        "not while the window is open"
    );

    // The window ends with the device still down: its firing goes out.
    controller
        .maintenance
        .change_maintenance(
            Some(planned.id),
            Some(window(now - 60_000, ward_controller::time::now_ms() - 1)),
            &Actor::console(),
        )
        .await
        .expect("ended");
    assert_eq!(
        controller
            .maintenance
            .release_held()
            .await
            .expect("release"),
        1
    );
    deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        ward_controller::time::now_ms() + 1_000,
    )
    .await
    .expect("round");
    let kinds: Vec<String> = receiver
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .map(|body| body["kind"].as_str().expect("kind").to_owned())
        .collect();
    assert_eq!(kinds, ["firing"]);

    // Sent before a window opened, its resolution is sent during it: the
    // receiver is never left firing.
    let later = ward_controller::time::now_ms();
    controller
        .maintenance
        .change_maintenance(
            None,
            Some(window(later - 1_000, later + 3_600_000)),
            &Actor::console(),
        )
        .await
        .expect("second window");
    controller
        .reports
        .apply_report(&report(id, 2, Status::Up, later + 10), later + 10)
        .await
        .expect("up");
    deliver_due(
        &controller.notifications,
        &controller.maintenance,
        &webhook,
        later + 2_000,
    )
    .await
    .expect("round");
    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(accepted[1]["kind"], "resolved");
}
