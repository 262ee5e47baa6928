//! An agent that can probe only some of its devices says so, everywhere:
//! over a real gRPC link, an agent whose Hello says it has no IPv6 socket
//! is `blind` in `/api/v1/agents` (with its probe families), `/readyz` is
//! `degraded` naming it, `/metrics` counts it, its IPv6 devices are
//! `unknown` with the reason, and an `AgentDown` alert is open; when it
//! comes back able to probe both families, the alert is resolved.
//!
//! (The agent binary itself cannot be made to lose one family only on this
//! kernel: `ping_group_range` and `CAP_NET_RAW` govern both. The binary's
//! all-or-nothing case is in `e2e/tests/agent_presence.rs`.)

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use ward_proto::v1 as pb;

/// Opens a link saying Hello with these families; the link stays open as
/// long as the returned stream lives.
async fn link(url: &str, ipv4: bool, ipv6: bool) -> tonic::Streaming<pb::ControllerMessage> {
    common::agent_link(
        url,
        pb::Hello {
            agent_id: "branch-9-agent".into(),
            site: "branch-9".into(),
            boot_id: format!("boot-{ipv4}-{ipv6}"),
            version: "test".into(),
            capabilities: Some(pb::Capabilities {
                ipv4,
                ipv6,
                ..pb::Capabilities::default()
            }),
            ..pb::Hello::default()
        },
    )
    .await
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 5 s");
}

async fn agent(api: &common::Api) -> Value {
    api.get("/api/v1/agents").await.1[0].clone()
}

fn agent_alerts(alerts: &Value) -> Vec<Value> {
    alerts
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|alert| alert["alertname"] == "AgentDown")
        .cloned()
        .collect()
}

/// A controller serving REST and gRPC with agent `branch-9-agent` of
/// `branch-9` registered and `devices` (JSON bodies, site added) created
/// there, each `up` as its agent last reported; their ids.
async fn branch_with_devices_up(
    devices: &[Value],
) -> (
    tempfile::TempDir,
    ward_controller::services::App,
    common::Api,
    String,
    Vec<i64>,
) {
    let (dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let grpc = common::serve_grpc(controller.clone()).await;
    let (code, _) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-9-agent", "site": "branch-9"}),
        )
        .await;
    assert_eq!(code, 201);
    let mut ids = Vec::new();
    for (seq, body) in devices.iter().enumerate() {
        let mut body = body.clone();
        body["site"] = json!("branch-9");
        let (code, device) = api.post("/api/v1/devices", body).await;
        assert_eq!(code, 201, "{device}");
        let id = device["id"].as_i64().expect("id");
        let now = ward_controller::time::now_ms();
        controller
            .reports
            .apply_report(
                &common::transition_report(
                    "branch-9-agent",
                    id,
                    seq as u64 + 1,
                    ward_controller::store::Status::Up,
                    now,
                ),
                now,
            )
            .await
            .expect("up");
        ids.push(id);
    }
    (dir, controller, api, grpc, ids)
}

#[tokio::test]
async fn an_agent_that_cannot_probe_ipv6_is_blind_everywhere_until_it_can() {
    let (_dir, _controller, api, grpc, ids) = branch_with_devices_up(&[
        json!({"name": "router-v4", "address": "198.18.9.1"}),
        json!({"name": "router-v6", "address": "2001:2:0:9::1"}),
    ])
    .await;

    let blind_link = link(&grpc, true, false).await;
    wait_for("the agent shown blind", async || {
        agent(&api).await["state"] == "blind"
    })
    .await;
    let shown = agent(&api).await;
    assert_eq!(shown["probe_families"], json!(["ipv4"]), "{shown}");
    assert!(
        shown["blind_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("cannot probe ipv6")),
        "{shown}"
    );
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    assert_eq!(
        ready["components"]["agents"]["blind"],
        json!(["branch-9-agent"]),
        "{ready}"
    );
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|text| text.contains("ward_agents{state=\"blind\"} 1")),
        "{metrics}"
    );
    let (_, v6) = api.get(&format!("/api/v1/devices/{}", ids[1])).await;
    assert_eq!(v6["status"], "unknown", "nobody probes it: {v6}");
    let (_, v4) = api.get(&format!("/api/v1/devices/{}", ids[0])).await;
    assert_eq!(v4["status"], "up", "{v4}");
    let (_, open) = api.get("/api/v1/alerts?state=open").await;
    let raised = agent_alerts(&open);
    assert_eq!(raised.len(), 1, "{open}");
    assert_eq!(
        raised[0]["agent"],
        json!({"id": "branch-9-agent", "site": "branch-9"})
    );

    // It comes back able to probe both families: no longer blind, the
    // alert resolved.
    drop(blind_link);
    let _seeing_link = link(&grpc, true, true).await;
    wait_for("the agent shown online", async || {
        agent(&api).await["state"] == "online"
    })
    .await;
    let (_, open) = api.get("/api/v1/alerts?state=open").await;
    assert!(agent_alerts(&open).is_empty(), "{open}");
    let (_, resolved) = api.get("/api/v1/alerts?state=resolved").await;
    assert_eq!(agent_alerts(&resolved).len(), 1, "{resolved}");
    let (_, ready) = api.get("/readyz").await;
    assert_eq!(ready["components"]["agents"]["status"], "ok", "{ready}");
}

/// An agent without a raw TCP socket (or older than TCP checks) cannot
/// probe a device checked by TCP: that device is `unknown` with the
/// reason, not left showing what it was.
#[tokio::test]
async fn an_agent_without_tcp_is_blind_to_its_tcp_checked_devices() {
    let (_dir, _controller, api, grpc, ids) = branch_with_devices_up(&[
        json!({"name": "router", "address": "198.18.9.1", "check": "icmp"}),
        json!({"name": "firewall", "address": "198.18.9.1", "check": "tcp:443"}),
    ])
    .await;
    // An IPv4 agent that says nothing of TCP.
    let _link = link(&grpc, true, false).await;
    wait_for("the agent shown blind", async || {
        agent(&api).await["state"] == "blind"
    })
    .await;
    let shown = agent(&api).await;
    assert!(
        shown["blind_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("cannot probe tcp/ipv4")
                && reason.contains("no raw TCP socket")),
        "{shown}"
    );
    let status =
        async |id: i64| api.get(&format!("/api/v1/devices/{id}")).await.1["status"].clone();
    assert_eq!(status(ids[0]).await, "up");
    assert_eq!(status(ids[1]).await, "unknown");
}
