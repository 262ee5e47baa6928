//! An agent's clock decides nothing: its reports are dated in the
//! controller's time (the offset measured from its Hello and heartbeats,
//! never later than the report arrived, never earlier than the link's
//! previous report). An agent restarted with its clock an hour behind, and
//! one whose clock steps back a minute mid-run, both report a death that
//! is applied at once, and so does one an hour behind that takes over a
//! dead group member's device (before, each was ignored as older than the
//! device's last report: the dead device stayed `up`, silently). The
//! offset shows in `/api/v1/agents`, `/metrics` and `/readyz`.

mod common;

use std::time::Duration;

use common::scripted_agent::ScriptedAgent;
use serde_json::{Value, json};
use ward_proto::v1 as pb;

const HOUR_MS: i64 = 3_600_000;

/// A controller with agent `branch-7-agent` and its one device (REST, its
/// id, the gRPC URL).
async fn with_one_device() -> (tempfile::TempDir, common::Api, i64, String) {
    let (dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let grpc = common::serve_grpc(controller).await;
    let (code, body) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-7-agent", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = add_atm(&api).await;
    (dir, api, id, grpc)
}

/// Device `atm-7` of site `branch-7`; its id.
async fn add_atm(api: &common::Api) -> i64 {
    let (code, device) = api
        .post(
            "/api/v1/devices",
            json!({"name": "atm-7", "address": "198.18.7.7", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    device["id"].as_i64().expect("id")
}

async fn status(api: &common::Api, id: i64) -> Value {
    api.get(&format!("/api/v1/devices/{id}")).await.1["status"].clone()
}

#[tokio::test]
async fn an_agent_back_with_its_clock_an_hour_behind_reports_a_death_that_applies() {
    let (_dir, api, id, grpc) = with_one_device().await;
    let mut agent = ScriptedAgent::link(&grpc, "boot-1", 0).await;
    agent.report(id, pb::DeviceState::Up).await;
    assert_eq!(status(&api, id).await, "up");
    drop(agent);

    // The box restarts without NTP: its clock an hour behind.
    let mut agent = ScriptedAgent::link(&grpc, "boot-2", -HOUR_MS).await;
    agent.heartbeat().await;
    agent.report(id, pb::DeviceState::Down).await;
    assert_eq!(status(&api, id).await, "down", "the death applies");
    let (_, history) = api.get(&format!("/api/v1/history?device={id}")).await;
    let at = history["changes"]
        .as_array()
        .and_then(|changes| changes.iter().find(|change| change["to"] == "down"))
        .and_then(|change| change["at"].as_str())
        .unwrap_or_else(|| panic!("the down in the history: {history}"))
        .to_owned();
    let at_ms = at
        .parse::<jiff::Timestamp>()
        .expect("a time")
        .as_millisecond();
    let age_ms = ward_controller::time::now_ms() - at_ms;
    assert!(
        (0..60_000).contains(&age_ms),
        "dated in the controller's time, not an hour ago: {at}"
    );

    let (_, agents) = api.get("/api/v1/agents").await;
    let offset = agents[0]["clock_offset_ms"].as_i64().expect("an offset");
    assert!(
        (HOUR_MS..HOUR_MS + 5_000).contains(&offset),
        "offset {offset} ms"
    );
    let (_, ready) = api.get("/readyz").await;
    let agents = &ready["components"]["agents"];
    assert_eq!(agents["status"], "failing", "{ready}");
    assert!(
        agents["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("clock off") && detail.contains("branch-7-agent")),
        "{ready}"
    );
    let (_, metrics) = api.get("/metrics").await;
    let seconds: f64 = metrics
        .as_str()
        .expect("text")
        .lines()
        .find_map(|line| {
            line.strip_prefix("ward_agent_clock_offset_seconds{agent=\"branch-7-agent\"} ")
        })
        .and_then(|value| value.parse().ok())
        .expect("the offset in /metrics");
    assert!((3_600.0..3_605.0).contains(&seconds), "{seconds}");
    drop(agent);
}

#[tokio::test]
async fn a_clock_stepped_back_mid_run_never_hides_a_death() {
    let (_dir, api, id, grpc) = with_one_device().await;
    let mut agent = ScriptedAgent::link(&grpc, "boot-1", 0).await;
    agent.heartbeat().await;
    agent.report(id, pb::DeviceState::Up).await;
    assert_eq!(status(&api, id).await, "up");
    // A minute back, no heartbeat since: its next report is dated by its
    // clock a minute before the last one.
    agent.skew_ms = -60_000;
    agent.report(id, pb::DeviceState::Down).await;
    assert_eq!(status(&api, id).await, "down", "the death applies");
}

/// Two agents of a site; the one probing dies and the other, its clock an
/// hour behind, takes its device over and reports it dead: applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_an_hour_behind_taking_over_a_groups_device_reports_its_death() {
    let (_dir, url) = common::sqlite_url();
    let settings = ward_controller::services::AppSettings {
        agent_failover_delay: Duration::from_millis(300),
        ..ward_controller::services::AppSettings::default()
    };
    let controller =
        common::controller_with(&url, ward_controller::cache::Cache::in_process(), settings).await;
    let api = common::Api::serve(controller.clone()).await;
    let grpc = common::serve_grpc(controller.clone()).await;
    for agent in ["north-1", "north-2"] {
        let (code, body) = api
            .post("/api/v1/agents", json!({"id": agent, "site": "branch-7"}))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let mut first = ScriptedAgent::link_as(&grpc, "north-1", "boot-1", 0).await;
    controller.presence.share_presence().await.expect("share");
    let id = add_atm(&api).await;
    first.assigned(id).await;
    first.heartbeat().await;
    first.report(id, pb::DeviceState::Up).await;
    assert_eq!(status(&api, id).await, "up");

    let mut second = ScriptedAgent::link_as(&grpc, "north-2", "boot-1", -HOUR_MS).await;
    second.heartbeat().await;
    drop(first);
    // North-1 gone for longer than the failover delay: north-2 owns it.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        controller.presence.share_presence().await.expect("share");
        controller
            .presence
            .settle_groups(ward_controller::time::now_ms())
            .await
            .expect("settle");
        let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
        if device["agent"] == "north-2" {
            break;
        }
    }
    second.assigned(id).await;
    second.report(id, pb::DeviceState::Down).await;
    assert_eq!(status(&api, id).await, "down", "the death applies");
}
