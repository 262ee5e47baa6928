//! "Once a transition is committed, no response shows the old status":
//! through a real Redis, through the in-process cache, and with Redis
//! stopped and restarted in the middle.

mod common;

use std::time::Duration;

use common::{Api, controller};
use serde_json::Value;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Status, TransitionReport};
use ward_testkit::services::{Postgres, Redis};

/// A fixed "now" for the test's reports, after the devices' creation.
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| ward_controller::api::now_ms() + 60_000)
}

/// A report of `status` for `device_id`, probed `at_ms` after [`t0`].
fn down(device_id: i64, seq: u64, at_ms: i64, status: Status) -> TransitionReport {
    common::transition_report("agent-1", device_id, seq, status, t0() + at_ms)
}

/// Every read path shows `expected` for device `id`.
async fn every_read_shows(api: &Api, id: i64, expected: &str) {
    let (_, list) = api.get("/api/v1/devices").await;
    assert_eq!(list[0]["status"], expected, "device list: {list}");
    let (_, site) = api.get("/api/v1/devices?site=branch-7").await;
    assert_eq!(site[0]["status"], expected, "site list: {site}");
    let (_, one) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(one["status"], expected, "device: {one}");
    let (_, summary) = api.get("/api/v1/summary").await;
    let counted = if expected == "down" { "down" } else { "up" };
    assert_eq!(summary[counted], 1, "summary: {summary}");
}

async fn create_device(api: &Api) -> i64 {
    let (code, created) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-1", "address": "198.18.1.10", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    created["id"].as_i64().expect("id")
}

async fn read_your_writes(api: &Api, controller: &App) {
    let id = create_device(api).await;
    controller
        .reports
        .apply_report(&down(id, 1, 1_000, Status::Up), 1_000)
        .await
        .expect("up");
    every_read_shows(api, id, "up").await;
    // Second round: served from the list held in memory.
    let held = api.metric("ward_device_list_held_total").await;
    every_read_shows(api, id, "up").await;
    assert!(
        api.metric("ward_device_list_held_total").await > held,
        "the list was held"
    );
    let patched = api.metric("ward_device_list_patched_total").await;

    controller
        .reports
        .apply_report(&down(id, 2, 5_000, Status::Down), 5_100)
        .await
        .expect("down");
    every_read_shows(api, id, "down").await;
    assert!(
        api.metric("ward_device_list_patched_total").await > patched,
        "the list held was patched with the DOWN, not loaded again"
    );
    let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(
        device["down_since"],
        ward_controller::api::rfc3339(t0() + 5_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_a_commit_is_visible_at_once_on_every_read_path() {
    let redis = Redis::start().expect("start Redis");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let controller = controller(
        &postgres.url(),
        Cache::redis(&redis.url()).await.expect("cache"),
    )
    .await;
    let api = Api::serve(controller.clone()).await;
    read_your_writes(&api, &controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_commit_is_visible_at_once_on_every_read_path() {
    let (_dir, url) = common::sqlite_url();
    let controller = controller(&url, Cache::in_process()).await;
    let api = Api::serve(controller.clone()).await;
    read_your_writes(&api, &controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_answers_stay_right_and_readyz_says_degraded() {
    let mut redis = Redis::start().expect("start Redis");
    let (_dir, url) = common::sqlite_url();
    // A receiver configured: without one `/readyz` is degraded already.
    let settings = AppSettings {
        receivers: common::webhook_receivers(&["webhook"]),
        ..AppSettings::default()
    };
    let cache = Cache::redis(&redis.url()).await.expect("cache");
    let controller = common::controller_with(&url, cache, settings).await;
    let api = Api::serve(controller.clone()).await;
    let id = create_device(&api).await;
    controller
        .reports
        .apply_report(&down(id, 1, 1_000, Status::Up), 1_000)
        .await
        .expect("up");
    every_read_shows(&api, id, "up").await;
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some("ok")),
        "{ready}"
    );

    redis.stop();
    every_read_shows(&api, id, "up").await;
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    assert_eq!(ready["components"]["cache"]["status"], "failing");
    assert!(api.metric("ward_cache_errors_total").await > 0);
    assert_eq!(api.metric("ward_cache_degraded").await, 1);

    // A change while Redis is away, then Redis comes back (empty).
    controller
        .reports
        .apply_report(&down(id, 2, 5_000, Status::Down), 5_100)
        .await
        .expect("down");
    every_read_shows(&api, id, "down").await;
    redis.resume().expect("restart Redis");
    every_read_shows(&api, id, "down").await;
    let mut ready = Value::Null;
    for _ in 0..50 {
        ready = api.get("/readyz").await.1;
        if ready["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ready["status"], "ok",
        "cache back after Redis restart: {ready}"
    );
    every_read_shows(&api, id, "down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_naming_the_field_and_writes_nothing() {
    let (_dir, url) = common::sqlite_url();
    let controller = controller(&url, Cache::in_process()).await;
    let api = Api::serve(controller).await;
    let cases = [
        (
            serde_json::json!({"name": "a", "address": "198.18.1.300", "site": "s"}),
            400,
            "address",
        ),
        (
            serde_json::json!({"name": "a", "address": "198.18.1.3", "site": "s", "interval_ms": 0}),
            400,
            "interval_ms",
        ),
        (
            serde_json::json!({"name": "a", "address": "198.18.1.3", "site": "s", "colour": "red"}),
            400,
            "colour",
        ),
        (
            serde_json::json!({"name": "a", "address": "198.18.1.3", "site": "s", "parent_id": 77}),
            400,
            "parent_id",
        ),
    ];
    for (body, code, field) in cases {
        let (status, error) = api.post("/api/v1/devices", body.clone()).await;
        assert_eq!(status, code, "{body} → {error}");
        assert_eq!(error["field"], field, "{body} → {error}");
        assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, list) = api.get("/api/v1/devices").await;
    assert_eq!(list, serde_json::json!([]), "nothing half-written");
    let (status, error) = api.get("/api/v1/devices?status=sideways").await;
    assert_eq!((status, error["field"].as_str()), (400, Some("status")));
    let (status, _) = api.get("/api/v1/devices/12345").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_carry_a_committed_change_at_once() {
    let redis = Redis::start().expect("start Redis");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let controller = controller(
        &postgres.url(),
        Cache::redis(&redis.url()).await.expect("cache"),
    )
    .await;
    let api = Api::serve(controller.clone()).await;
    let id = create_device(&api).await;
    let mut events = api
        .authorized(api.http.get(format!("{}/api/v1/events", api.base)))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(events.status().as_u16(), 200);
    controller
        .reports
        .apply_report(&down(id, 1, 5_000, Status::Down), 5_100)
        .await
        .expect("down");
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !received.contains("\"status\":\"down\"") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("a status event within 5 s")
            .expect("stream")
            .expect("stream open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("event: status"), "{received}");
    let data = received
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("data line");
    let device: Value = serde_json::from_str(data).expect("device JSON");
    assert_eq!(device["id"], id);
    assert_eq!(
        device["down_since"],
        ward_controller::time::rfc3339(t0() + 5_000)
    );
}

#[tokio::test]
async fn a_write_whose_caller_goes_away_still_completes_and_is_published() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = Api::serve(controller.clone()).await;
    let id = create_device(&api).await;
    // Read through the cache first, so a stale entry could be served.
    let (_, before) = api.get("/api/v1/devices").await;
    assert_eq!(before[0]["name"], "atm-1");
    let mut inventory = controller.core.live.inventory_changes();
    inventory.mark_unchanged();
    let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
    let mut spec: ward_controller::store::DeviceSpec = serde_json::from_value(serde_json::json!({
        "name": "renamed", "address": device["address"], "site": device["site"],
        "parent_id": null, "interval_ms": 1000, "timeout_ms": 500,
        "down_after": 3, "up_after": 2, "tags": [], "enabled": true
    }))
    .expect("spec");
    spec.enabled = false;
    // The caller polls the write once and goes away (a REST client that
    // disconnects drops the handler's future the same way).
    let console = ward_controller::store::Actor::console();
    {
        let update = controller
            .inventory
            .update_device(id, &spec, &console, t0());
        tokio::pin!(update);
        let polled = futures_util::poll!(update.as_mut());
        assert!(polled.is_pending(), "the write is still running");
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), inventory.changed())
        .await
        .expect("agents are told of the change although the caller left")
        .expect("controller alive");
    let (_, after) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(after["name"], "renamed", "{after}");
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(
        listed[0]["name"], "renamed",
        "the cached list moved on: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_commit_keeps_the_write_and_tells_subscribers_to_resync() {
    let postgres = Postgres::start().expect("postgres");
    let controller = controller(&postgres.url(), Cache::in_process()).await;
    let api = Api::serve(controller.clone()).await;
    let id = create_device(&api).await;
    let mut events = controller.core.live.subscribe();
    // From now on every status change also leaves an address that cannot
    // be read back: the write commits, reading the changed devices back
    // for live events afterwards fails.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE FUNCTION garble() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.address := 'not an address'; RETURN NEW; END $$; \
             CREATE TRIGGER garble BEFORE UPDATE OF status ON devices \
             FOR EACH ROW EXECUTE FUNCTION garble();",
        )
        .await
        .expect("trigger");

    let outcome = controller
        .reports
        .apply_report(&down(id, 1, 1_000, Status::Down), 1_000)
        .await;
    assert!(
        outcome.is_ok(),
        "a committed report is acknowledged: {outcome:?}"
    );
    let stored: String = client
        .query_one("SELECT status FROM devices WHERE id = $1", &[&id])
        .await
        .expect("read")
        .get(0);
    assert_eq!(stored, "down", "the write stands");
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("subscribers hear of it")
        .expect("an event");
    assert!(
        matches!(event, ward_controller::services::LiveEvent::Resync),
        "told to resync, not left with a stale screen: {event:?}"
    );
    assert_eq!(api.metric("ward_post_commit_failures_total").await, 1);
}
