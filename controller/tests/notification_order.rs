//! Notifications of one alert arrive in order on a channel, whatever the
//! receiver does: a property test over random failure sequences (first N
//! requests, every other one, only `firing`, only `resolved`, random), with
//! outages that flap, delivery rounds at random moments, and controller
//! restarts in between, against a real HTTP receiver and a real store
//! (PostgreSQL and SQLite).
#![allow(
    clippy::disallowed_types,
    reason = "the test's webhook receiver records bodies under a mutex"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use ward_controller::cache::Cache;
use ward_controller::notify::{Channel, Webhook, deliver_due};
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{DeviceSpec, FlapPolicy, Status, Store};

/// Random failure sequences per backend (the issue asks for ≥ 200).
const CASES: u32 = 200;

/// Which requests the receiver refuses.
#[derive(Clone, Debug)]
enum Failing {
    /// The first N requests.
    FirstN(usize),
    /// Every other request.
    EveryOther,
    /// The first N `firing` requests, every `resolved` one accepted.
    OnlyFiring(usize),
    /// The first N `resolved` requests, every `firing` one accepted.
    OnlyResolved(usize),
    /// Request i fails when `pattern[i]` says so (accepted after its end).
    Random(Vec<bool>),
}

/// One step of a case.
#[derive(Clone, Debug)]
enum Step {
    /// The device's agent reports the other status (down ↔ up).
    Flip,
    /// A delivery round, this many ms after the previous step.
    Deliver(i64),
    /// The controller restarts on the same store.
    Restart,
}

#[derive(Default)]
struct Receiver {
    failing: Option<Failing>,
    requests: usize,
    by_kind: HashMap<String, usize>,
    accepted: Vec<Value>,
}

impl Receiver {
    fn refuses(&mut self, kind: &str) -> bool {
        let index = self.requests;
        self.requests += 1;
        let of_kind = self.by_kind.entry(kind.to_owned()).or_default();
        let kind_index = *of_kind;
        *of_kind += 1;
        match &self.failing {
            None => false,
            Some(Failing::FirstN(n)) => index < *n,
            Some(Failing::EveryOther) => index.is_multiple_of(2),
            Some(Failing::OnlyFiring(n)) => kind == "firing" && kind_index < *n,
            Some(Failing::OnlyResolved(n)) => kind == "resolved" && kind_index < *n,
            Some(Failing::Random(pattern)) => pattern.get(index).copied().unwrap_or(false),
        }
    }
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(receiver): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let mut receiver = receiver.lock().expect("lock");
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    if receiver.refuses(&kind) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    receiver.accepted.push(body);
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Shared, String) {
    let receiver = Shared::default();
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

fn failing() -> impl Strategy<Value = Failing> {
    prop_oneof![
        (0usize..6).prop_map(Failing::FirstN),
        Just(Failing::EveryOther),
        (1usize..5).prop_map(Failing::OnlyFiring),
        (1usize..5).prop_map(Failing::OnlyResolved),
        proptest::collection::vec(any::<bool>(), 0..16).prop_map(Failing::Random),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => Just(Step::Flip),
        5 => (0i64..4_000).prop_map(Step::Deliver),
        1 => Just(Step::Restart),
    ];
    proptest::collection::vec(step, 1..14)
}

/// The outages here flap faster than any device should: flap detection
/// (its own tests: `store::flap`, the conformance suite, e2e `flapping`)
/// is set never to withhold their notifications.
const NEVER_FLAPPING: FlapPolicy = FlapPolicy {
    changes: 1_000,
    window_ms: 1,
};

async fn controller(url: &str) -> App {
    let store = Store::open(url).await.expect("open store");
    let settings = AppSettings {
        flapping: NEVER_FLAPPING,
        receivers: common::webhook_receivers(&["webhook"]),
        ..AppSettings::default()
    };
    App::new(store, Cache::in_process(), settings)
        .await
        .expect("channels")
}

/// Runs one case on a fresh device; checks what the receiver got.
async fn run_case(
    store_url: &str,
    receiver: &Shared,
    webhook: &Channel,
    case: usize,
    failing: Failing,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    *receiver.lock().expect("lock") = Receiver {
        failing: Some(failing),
        ..Receiver::default()
    };
    let mut controller = controller(store_url).await;
    let spec = DeviceSpec::new(
        format!("atm-{case}"),
        "198.18.1.10".parse().expect("address"),
        "branch-7".into(),
    );
    let mut now = 1_000_000;
    let id = controller
        .inventory
        .create_device(&spec, &ward_controller::store::Actor::console(), now)
        .await
        .expect("device")
        .id;
    let mut status = Status::Up;
    let mut seq = 0;
    let mut flip = |status: &mut Status, now: i64| {
        *status = if *status == Status::Up {
            Status::Down
        } else {
            Status::Up
        };
        seq += 1;
        common::transition_report(&format!("agent-{case}"), id, seq, *status, now)
    };
    controller
        .reports
        .apply_report(&flip(&mut Status::Down, now), now)
        .await
        .expect("up");
    for step in steps {
        now += 100;
        match step {
            Step::Flip => {
                let report = flip(&mut status, now);
                controller
                    .reports
                    .apply_report(&report, now)
                    .await
                    .expect("apply");
            }
            Step::Deliver(after) => {
                now += after;
                deliver_due(
                    &controller.notifications,
                    &controller.maintenance,
                    webhook,
                    now,
                )
                .await
                .expect("round");
            }
            Step::Restart => controller = self::controller(store_url).await,
        }
    }
    // The receiver heals: everything left is delivered.
    receiver.lock().expect("lock").failing = None;
    for _ in 0..50 {
        now += 120_000;
        deliver_due(
            &controller.notifications,
            &controller.maintenance,
            webhook,
            now,
        )
        .await
        .expect("round");
        if controller
            .core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .is_empty()
        {
            break;
        }
    }
    prop_assert!(
        controller
            .core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .is_empty(),
        "nothing left behind"
    );
    let accepted = receiver.lock().expect("lock").accepted.clone();
    let mut by_alert: HashMap<i64, Vec<String>> = HashMap::new();
    for body in &accepted {
        prop_assert_eq!(body["device"]["id"].as_i64(), Some(id));
        let alert = body["alert_id"].as_i64().expect("alert_id");
        by_alert
            .entry(alert)
            .or_default()
            .push(body["kind"].as_str().expect("kind").to_owned());
    }
    let alerts = controller.core.store.alerts(false).await.expect("alerts");
    for alert in alerts.iter().filter(|alert| alert.device_id == Some(id)) {
        let expected: &[&str] = if alert.resolved_at_ms.is_some() {
            &["firing", "resolved"]
        } else {
            &["firing"]
        };
        prop_assert_eq!(
            by_alert.get(&alert.id).cloned().unwrap_or_default(),
            expected,
            "alert {} (every request: {:?})",
            alert.id,
            accepted
                .iter()
                .map(|body| (body["alert_id"].clone(), body["kind"].clone()))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

fn property(store_url: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, url) = runtime.block_on(start_receiver());
    let webhook = Channel::Webhook(Webhook::new(&url));
    let case = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(failing(), steps()), |(failing, steps)| {
            case.set(case.get() + 1);
            runtime.block_on(run_case(
                store_url,
                &receiver,
                &webhook,
                case.get(),
                failing,
                steps,
            ))
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(case.get() >= CASES as usize, "ran {} cases", case.get());
    eprintln!(
        "notification order held in {} random failure sequences",
        case.get()
    );
}

#[test]
fn resolved_is_never_delivered_before_its_firing_on_sqlite() {
    let (_dir, url) = common::sqlite_url();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        Store::open(&url)
            .await
            .expect("open")
            .migrate()
            .await
            .expect("migrate")
    });
    drop(runtime);
    property(&url);
}

#[test]
fn resolved_is_never_delivered_before_its_firing_on_postgres() {
    let server = ward_testkit::services::Postgres::start().expect("start PostgreSQL");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        Store::open(&server.url())
            .await
            .expect("open")
            .migrate()
            .await
            .expect("migrate")
    });
    drop(runtime);
    property(&server.url());
}
