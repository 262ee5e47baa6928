//! Notifications leave through the outbox to a real HTTP webhook: only a
//! 2xx removes them, failures are retried later, order per alert holds,
//! and nothing is lost while the receiver is down.
#![allow(
    clippy::disallowed_types,
    reason = "the test's webhook receiver records bodies under a mutex"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use ward_controller::notify::{Channel, Webhook, deliver_due};
use ward_controller::state::Controller;
use ward_controller::store::{DeviceSpec, ReportedTransition, Status, TransitionReport};

/// A webhook receiver that records what it accepted.
#[derive(Default)]
struct Receiver {
    failing: AtomicBool,
    accepted: Mutex<Vec<Value>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, Json(body): Json<Value>) -> StatusCode {
    if receiver.failing.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    receiver.accepted.lock().expect("lock").push(body);
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (receiver, url)
}

async fn controller_with_device() -> (tempfile::TempDir, Arc<Controller>, i64) {
    let (dir, controller) = common::sqlite_controller().await;
    controller
        .store
        .set_notification_channels(&["webhook"])
        .await
        .expect("channels");
    let spec = DeviceSpec {
        name: "atm-1".into(),
        address: "198.18.1.10".parse().expect("address"),
        site: "branch-7".into(),
        parent_id: None,
        interval_ms: 1000,
        timeout_ms: 500,
        down_after: 3,
        up_after: 2,
        tags: vec![],
        enabled: true,
    };
    let id = controller
        .create_device(&spec, 1_000)
        .await
        .expect("device")
        .id;
    (dir, controller, id)
}

fn report(device_id: i64, seq: u64, status: Status, at_ms: i64) -> TransitionReport {
    TransitionReport {
        agent_id: "agent".into(),
        boot_id: "boot".into(),
        seq,
        transitions: vec![ReportedTransition {
            device_id,
            status,
            probed_at_ms: at_ms,
            last_rtt_us: None,
            reason: "test".into(),
        }],
    }
}

#[tokio::test]
async fn a_down_receiver_loses_nothing_and_gets_firing_before_resolved() {
    let (receiver, url) = start_receiver().await;
    let (_dir, controller, id) = controller_with_device().await;
    let webhook = Channel::Webhook(Webhook::new(&url));
    receiver.failing.store(true, Ordering::Relaxed);

    controller
        .apply_report(&report(id, 1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let round = deliver_due(&controller, &webhook, 10_000)
        .await
        .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    controller
        .apply_report(&report(id, 2, Status::Up, 11_000), 11_000)
        .await
        .expect("up");
    // Not due yet (backoff), and the resolved one waits behind the firing one.
    let round = deliver_due(&controller, &webhook, 10_500)
        .await
        .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 0));
    let round = deliver_due(&controller, &webhook, 12_000)
        .await
        .expect("round");
    assert_eq!(
        (round.failed, round.held),
        (1, 1),
        "resolved held behind firing"
    );
    assert_eq!(
        controller
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .len(),
        2,
        "nothing lost"
    );
    assert!(controller.metrics.webhook_failing.load(Ordering::Relaxed));

    receiver.failing.store(false, Ordering::Relaxed);
    let round = deliver_due(&controller, &webhook, 60_000)
        .await
        .expect("round");
    assert_eq!(round.delivered, 2);
    assert!(
        controller
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
    assert!(accepted[1]["resolved_at"].is_string());
    assert!(!controller.metrics.webhook_failing.load(Ordering::Relaxed));
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_is_a_failure_not_a_loss() {
    let (_dir, controller, id) = controller_with_device().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("address"));
    drop(closed);
    controller
        .apply_report(&report(id, 1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let round = deliver_due(&controller, &Channel::Webhook(Webhook::new(&url)), 10_000)
        .await
        .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    let outbox = controller
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
        Arc::clone(&controller),
        Channel::Webhook(Webhook::new(&url)),
        async {
            let _ = stopped.await;
        },
    ));
    let now = ward_controller::time::now_ms();
    controller
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
