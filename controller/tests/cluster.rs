//! Several controllers on one PostgreSQL: a change committed through one
//! is read at once through every other — device, lists, filters, summary —
//! with each controller's own in-process cache and with one Redis shared
//! by all.

mod common;

use std::sync::Arc;

use common::Api;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::Status;
use ward_testkit::services::{Postgres, Redis};

/// Every read path of `api` shows device `id` as `status`, and the summary
/// counts `down` devices down.
async fn reads_show(api: &Api, id: i64, status: &str, down: u64) {
    let (_, one) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(one["status"], status, "device: {one}");
    let (_, all) = api.get("/api/v1/devices").await;
    assert_eq!(all[0]["status"], status, "list: {all}");
    let (_, filtered) = api.get(&format!("/api/v1/devices?status={status}")).await;
    assert_eq!(filtered[0]["id"], id, "?status={status}: {filtered}");
    let (_, summary) = api.get("/api/v1/summary").await;
    assert_eq!(summary["down"], down, "summary: {summary}");
}

/// Creates device `name` at `address` of `site` through `api`; its id.
async fn create_device(api: &Api, name: &str, address: &str, site: &str) -> i64 {
    let (code, created) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": name, "address": address, "site": site}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    created["id"].as_i64().expect("id")
}

/// A device created through A and its status changed through A's agent
/// link: A and B read every change at once.
async fn two_controllers_agree(a: &App, api_a: &Api, api_b: &Api) {
    let id = create_device(api_a, "atm-1", "198.18.1.10", "branch-7").await;
    let now = ward_controller::time::now_ms();
    let mut seq = 0;
    for (status, down) in [(Status::Up, 0), (Status::Down, 1), (Status::Up, 0)] {
        seq += 1;
        let report =
            common::transition_report("agent-1", id, seq, status, now + 1_000 * seq as i64);
        a.reports.apply_report(&report, now).await.expect("apply");
        let name = status.as_str();
        // Twice: the second round is served from the list held.
        for _ in 0..2 {
            reads_show(api_a, id, name, down).await;
            reads_show(api_b, id, name, down).await;
        }
    }
    assert!(
        api_b.metric("ward_device_list_held_total").await > 0,
        "B held its list between commits"
    );
    assert!(
        api_b.metric("ward_device_list_patched_total").await >= 2,
        "B patched its list with A's two commits after its first read"
    );
    assert_eq!(
        api_b.metric("ward_device_list_loaded_total").await,
        1,
        "B loaded its list whole once only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_one_controller_is_read_at_once_through_another() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = common::controller(&postgres.url(), Cache::in_process()).await;
    let b = common::controller(&postgres.url(), Cache::in_process()).await;
    let (api_a, api_b) = (Api::serve(a.clone()).await, Api::serve(b).await);
    two_controllers_agree(&a, &api_a, &api_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_sharing_redis_never_read_a_stale_list() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let redis = Redis::start().expect("start Redis");
    let cache = || async { Cache::redis(&redis.url()).await.expect("redis") };
    let a = common::controller(&postgres.url(), cache().await).await;
    let b = common::controller(&postgres.url(), cache().await).await;
    let (api_a, api_b) = (Api::serve(a.clone()).await, Api::serve(b.clone()).await);
    two_controllers_agree(&a, &api_a, &api_b).await;
    // A commits and reads; B's next read shows the commit too.
    let report = common::transition_report(
        "agent-1",
        1,
        10,
        Status::Down,
        ward_controller::time::now_ms() + 60_000,
    );
    a.reports
        .apply_report(&report, ward_controller::time::now_ms())
        .await
        .expect("apply");
    let _ = api_a.get("/api/v1/devices").await;
    let (_, listed) = api_b.get("/api/v1/devices").await;
    assert_eq!(listed[0]["status"], "down", "{listed}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_linked_to_one_controller_keeps_its_site_watched_by_every_other() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = common::controller(&postgres.url(), Cache::in_process()).await;
    let b = common::controller(&postgres.url(), Cache::in_process()).await;
    let actor = ward_controller::store::Actor::console();
    let now = ward_controller::time::now_ms();
    let agent = a
        .core
        .store
        .register_agent("branch-5-agent", "branch-5", &actor, now)
        .await
        .expect("agent");
    let api_a = Api::serve(a.clone()).await;
    let id = create_device(&api_a, "atm-1", "198.18.5.10", "branch-5").await;
    let report = common::transition_report("branch-5-agent", id, 1, Status::Up, now + 1);
    a.reports.apply_report(&report, now).await.expect("up");

    // The agent holds a link to A, which says so; B started without it.
    a.presence.link_opened(&agent, "1.0", "boot-1", now);
    a.presence.share_presence().await.expect("share");
    let later = now + 60_000;
    assert_eq!(
        b.presence.forget_offline_sites(later).await.expect("sweep"),
        Vec::<String>::new(),
        "B must not take A's agent for gone"
    );
    assert_eq!(
        a.presence.forget_offline_sites(later).await.expect("sweep"),
        Vec::<String>::new()
    );
    let device = b
        .core
        .store
        .get_device(id)
        .await
        .expect("read")
        .expect("device");
    assert_eq!(device.status, Status::Up);
    let api_b = Api::serve(b.clone()).await;
    let (_, agents) = api_b.get("/api/v1/agents").await;
    assert_eq!(
        (
            &agents[0]["connected"],
            &agents[0]["state"],
            &agents[0]["controller"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!("online"),
            &serde_json::json!(a.cluster.instance)
        ),
        "B shows the agent linked to A: {agents}"
    );
    let (_, ready) = api_b.get("/readyz").await;
    assert_eq!(ready["components"]["agents"]["status"], "ok", "{ready}");

    // The link to A ends and A stops hearing it: once the grace period has
    // passed since it was last heard (by the database's clock), B marks the
    // site unknown.
    a.presence
        .link_closed("branch-5-agent", ward_controller::time::now_ms());
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    assert_eq!(
        b.presence
            .forget_offline_sites(ward_controller::time::now_ms())
            .await
            .expect("sweep"),
        ["branch-5"]
    );
    let device = b
        .core
        .store
        .get_device(id)
        .await
        .expect("read")
        .expect("device");
    assert_eq!(device.status, Status::Unknown);
}

/// A webhook receiver that takes its time (so two controllers' rounds
/// overlap) and records every body.
async fn slow_receiver() -> (Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>, String) {
    let received = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<
                    Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>,
                >,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    received.lock().await.push(body);
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(Arc::clone(&received));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (received, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_deliver_each_notification_once() {
    use ward_controller::notify::{Channel, Webhook, deliver_due};
    let postgres = Postgres::start().expect("start PostgreSQL");
    let with_webhook = || async {
        let store = ward_controller::store::Store::open(&postgres.url())
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let settings = AppSettings {
            receivers: common::webhook_receivers(&["webhook"]),
            ..AppSettings::default()
        };
        App::new(store, Cache::in_process(), settings)
            .await
            .expect("channels")
    };
    let (a, b) = (with_webhook().await, with_webhook().await);
    let api_a = Api::serve(a.clone()).await;
    let devices: Vec<serde_json::Value> = (1..=30)
        .map(|i| serde_json::json!({"name": format!("atm-{i}"), "address": format!("198.18.2.{i}"), "site": "branch-2"}))
        .collect();
    let (code, imported) = api_a
        .post("/api/v1/devices/import", serde_json::Value::Array(devices))
        .await;
    assert_eq!(code, 201, "{imported}");
    let now = ward_controller::time::now_ms();
    let (_, listed) = api_a.get("/api/v1/devices").await;
    let mut report = common::transition_report("agent-2", 0, 1, Status::Down, now + 1);
    report.transitions = listed
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| ward_controller::store::ReportedTransition {
            degraded: None,
            device_id: device["id"].as_i64().expect("id"),
            status: Status::Down,
            probed_at_ms: now + 1,
            last_rtt_us: None,
            reason: "test".into(),
        })
        .collect();
    a.reports.apply_report(&report, now).await.expect("down");

    let (received, url) = slow_receiver().await;
    let (channel_a, channel_b) = (
        Channel::Webhook(Webhook::new(&url)),
        Channel::Webhook(Webhook::new(&url)),
    );
    let later = ward_controller::time::now_ms();
    let (round_a, round_b) = tokio::join!(
        deliver_due(&a.notifications, &a.maintenance, &channel_a, later),
        deliver_due(&b.notifications, &b.maintenance, &channel_b, later)
    );
    let (round_a, round_b) = (round_a.expect("A"), round_b.expect("B"));
    let received = received.lock().await;
    let mut ids: Vec<i64> = received
        .iter()
        .map(|body| body["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (received.len(), ids.len()),
        (30, 30),
        "each firing once: A delivered {}, B {}",
        round_a.delivered,
        round_b.delivered
    );
    assert_eq!(round_a.delivered + round_b.delivered, 30);
    eprintln!(
        "two controllers: A delivered {}, B {}",
        round_a.delivered, round_b.delivered
    );
}

/// The next live event of `events` within 2 s, as (device id, status).
async fn next_change(
    events: &mut tokio::sync::broadcast::Receiver<ward_controller::services::LiveEvent>,
) -> Option<(i64, Status)> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), events.recv()).await {
        Ok(Ok(ward_controller::services::LiveEvent::Status(event))) => {
            Some((event.device.id, event.device.status))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_streams_the_changes_committed_through_any() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = common::controller(&postgres.url(), Cache::in_process()).await;
    let b = common::controller(&postgres.url(), Cache::in_process()).await;
    for controller in [&a, &b] {
        tokio::spawn(ward_controller::services::follow_other_controllers(
            std::sync::Arc::clone(&controller.core),
            std::future::pending(),
        ));
    }
    let (mut from_a, mut from_b) = (a.core.live.subscribe(), b.core.live.subscribe());
    let api_a = Api::serve(a.clone()).await;
    let id = create_device(&api_a, "atm-1", "198.18.1.10", "branch-7").await;
    // Both listen before the first change is committed.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let now = ward_controller::time::now_ms();
    for (seq, status) in [(1, Status::Up), (2, Status::Down), (3, Status::Up)] {
        let report = common::transition_report("agent-1", id, seq, status, now + seq as i64);
        a.reports.apply_report(&report, now).await.expect("apply");
        assert_eq!(
            next_change(&mut from_b).await,
            Some((id, status)),
            "B streams A's commit"
        );
        assert_eq!(next_change(&mut from_a).await, Some((id, status)));
    }
    assert_eq!(
        tokio::time::timeout(std::time::Duration::from_millis(500), from_a.recv())
            .await
            .ok()
            .map(|event| event.is_ok()),
        None,
        "A streams its own changes once, not again from the database"
    );
}

/// A commit of more changes than an announcement names (a group of
/// agents' reports, a site's outage) reaches the other controllers'
/// subscribers change by change, read from the event log, not as a
/// resync (with group commit every busy fleet made those: the fleet run
/// with three controllers had an event client fall behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_too_large_to_name_reaches_every_controllers_stream_change_by_change() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let (a, b) = common::two_controllers_the_second_following(&postgres.url()).await;
    let specs: Vec<ward_controller::store::DeviceSpec> = (0..1_000)
        .map(|i| {
            ward_controller::store::DeviceSpec::new(
                format!("atm-{i}"),
                format!("198.18.{}.{}", 10 + i / 250, 1 + i % 250)
                    .parse()
                    .expect("address"),
                "branch-7".into(),
            )
        })
        .collect();
    let ids: Vec<i64> = a
        .inventory
        .import_devices(&specs, &ward_controller::store::Actor::console(), 1_000)
        .await
        .expect("import")
        .iter()
        .map(|device| device.id)
        .collect();
    let mut from_b = b.core.live.subscribe();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let now = ward_controller::time::now_ms();
    let mut report = common::transition_report("agent-1", ids[0], 1, Status::Down, now);
    let template = report.transitions[0].clone();
    report.transitions = ids
        .iter()
        .map(|&device_id| ward_controller::store::ReportedTransition {
            device_id,
            ..template.clone()
        })
        .collect();
    a.reports.apply_report(&report, now).await.expect("apply");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ids.len() {
        match tokio::time::timeout(std::time::Duration::from_secs(5), from_b.recv()).await {
            Ok(Ok(ward_controller::services::LiveEvent::Status(event))) => {
                assert_eq!(event.device.status, Status::Down);
                seen.insert(event.device.id);
            }
            Ok(Ok(ward_controller::services::LiveEvent::Resync)) => {
                panic!(
                    "B's subscribers were told to resync after {} changes",
                    seen.len()
                )
            }
            other => panic!("B streamed {} of 1,000 changes, then {other:?}", seen.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_per_cluster_job_moves_to_another_controller_when_its_holder_stops() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let delay = std::time::Duration::from_secs(1);
    let with_delay = || async {
        let store = ward_controller::store::Store::open(&postgres.url())
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let settings = AppSettings {
            failover_delay: delay,
            ..AppSettings::default()
        };
        App::new(store, Cache::in_process(), settings)
            .await
            .expect("services")
    };
    let (a, b) = (with_delay().await, with_delay().await);
    assert!(
        a.cluster.holds("offline sweep").await,
        "the first to ask holds it"
    );
    assert!(
        !b.cluster.holds("offline sweep").await,
        "one holder at a time"
    );
    assert!(a.cluster.holds("offline sweep").await, "renewed");
    assert!(
        b.cluster.holds("audit retention").await,
        "each job has its own lease"
    );

    // A stops renewing, as a dead controller would: B takes the job once
    // the lease expired, and not before.
    let stopped = std::time::Instant::now();
    while !b.cluster.holds("offline sweep").await {
        assert!(
            stopped.elapsed() < delay + std::time::Duration::from_secs(1),
            "B takes over within the failover delay + 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let took = stopped.elapsed();
    eprintln!("lease: B took the job {took:?} after A's last renewal (delay {delay:?})");
    assert!(
        took >= delay - std::time::Duration::from_millis(100),
        "{took:?}"
    );
    assert!(
        !a.cluster.holds("offline sweep").await,
        "A, back, does not take it back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_lists_the_members_of_the_cluster_and_the_jobs_each_holds() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = common::controller(&postgres.url(), Cache::in_process()).await;
    let settings = AppSettings {
        failover_delay: std::time::Duration::from_secs(1),
        ..AppSettings::default()
    };
    let b = common::controller_with(&postgres.url(), Cache::in_process(), settings).await;
    let (api_a, api_b) = (Api::serve(a.clone()).await, Api::serve(b.clone()).await);
    a.presence.share_presence().await.expect("A heartbeats");
    b.presence.share_presence().await.expect("B heartbeats");
    assert!(a.cluster.holds("offline sweep").await);
    let members = |listed: &serde_json::Value| -> Vec<(String, bool, bool, Vec<String>)> {
        listed
            .as_array()
            .expect("controllers")
            .iter()
            .map(|c| {
                (
                    c["instance"].as_str().expect("instance").to_owned(),
                    c["this"].as_bool().expect("this"),
                    c["alive"].as_bool().expect("alive"),
                    serde_json::from_value(c["jobs"].clone()).expect("jobs"),
                )
            })
            .collect()
    };
    let (code, listed) = api_b.get("/api/v1/controllers").await;
    assert_eq!(code, 200, "{listed}");
    assert_eq!(
        members(&listed),
        [
            (
                a.cluster.instance.clone(),
                false,
                true,
                vec!["offline sweep".to_owned()]
            ),
            (b.cluster.instance.clone(), true, true, vec![]),
        ],
        "{listed}"
    );
    // A stops heartbeating: after B's failover delay, B shows it dead.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    b.presence.share_presence().await.expect("B heartbeats");
    let (_, listed) = api_b.get("/api/v1/controllers").await;
    let alive: Vec<bool> = members(&listed).iter().map(|m| m.2).collect();
    assert_eq!(alive, [false, true], "{listed}");
    let (_, from_a) = api_a.get("/api/v1/controllers").await;
    assert_eq!(from_a[0]["this"], true, "{from_a}");
}
