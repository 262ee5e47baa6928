//! Agents in the inventory (REST), their presence, and the offline rule:
//! a site with no connected agent for its grace period shows `unknown`,
//! never `up`; its agent's reports bring it back, replays included.

mod common;

use reqwest::Method;
use serde_json::json;
use ward_controller::store::{Status, TransitionReport};
use ward_domain::sight::Blindness;

fn report(device_id: i64, seq: u64, status: Status, at_ms: i64) -> TransitionReport {
    common::transition_report("branch-5-agent", device_id, seq, status, at_ms)
}

#[tokio::test]
async fn agents_are_registered_listed_and_bad_input_is_named() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let (code, agent) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-5-agent", "site": "branch-5"}),
        )
        .await;
    assert_eq!(code, 201, "{agent}");
    assert_eq!(
        (agent["connected"].as_bool(), agent["site"].as_str()),
        (Some(false), Some("branch-5"))
    );
    let (code, again) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-5-agent", "site": "branch-5"}),
        )
        .await;
    assert_eq!(code, 201, "registering again changes nothing: {again}");
    let (code, conflict) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-5-agent", "site": "branch-6"}),
        )
        .await;
    assert_eq!(code, 409, "{conflict}");
    let (code, bad) = api
        .post(
            "/api/v1/agents",
            json!({"id": "no spaces", "site": "branch-5"}),
        )
        .await;
    assert_eq!((code, bad["field"].as_str()), (400, Some("id")), "{bad}");
    let (code, bad) = api
        .send(
            Method::POST,
            "/api/v1/agents",
            Some(json!({"id": "a"})),
            None,
        )
        .await;
    // The missing field is named, not the body.
    assert_eq!((code, bad["field"].as_str()), (400, Some("site")), "{bad}");

    controller.presence.link_opened(
        &controller
            .presence
            .agent("branch-5-agent")
            .await
            .expect("store")
            .expect("registered"),
        "0.1.0",
        "boot-1",
        ward_controller::time::now_ms(),
    );
    let (_, agents) = api.get("/api/v1/agents").await;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[0]["version"], "0.1.0");
}

#[tokio::test]
async fn a_site_without_its_agent_for_the_grace_period_is_unknown_until_it_reports() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let (_, router) = api
        .post(
            "/api/v1/devices",
            json!({"name": "router", "address": "198.18.1.1", "site": "branch-5"}),
        )
        .await;
    let (_, atm) = api
        .post(
            "/api/v1/devices",
            json!({"name": "atm", "address": "198.18.1.2", "site": "branch-5"}),
        )
        .await;
    let (_, elsewhere) = api
        .post(
            "/api/v1/devices",
            json!({"name": "atm", "address": "198.18.1.3", "site": "branch-9"}),
        )
        .await;
    let (router, atm, elsewhere) = (
        router["id"].as_i64().expect("id"),
        atm["id"].as_i64().expect("id"),
        elsewhere["id"].as_i64().expect("id"),
    );
    let agent = controller
        .presence
        .register_agent(
            "branch-5-agent",
            "branch-5",
            &ward_controller::store::Actor::console(),
            0,
        )
        .await
        .expect("register");
    controller
        .presence
        .register_agent(
            "branch-9-agent",
            "branch-9",
            &ward_controller::store::Actor::console(),
            0,
        )
        .await
        .expect("register");
    let t0 = ward_controller::time::now_ms();
    controller
        .presence
        .link_opened(&agent, "0.1.0", "boot-1", t0);
    controller.presence.link_opened(
        &controller
            .presence
            .agent("branch-9-agent")
            .await
            .expect("store")
            .expect("registered"),
        "0.1.0",
        "boot-1",
        t0,
    );
    controller
        .reports
        .apply_report(&report(router, 1, Status::Up, t0), t0)
        .await
        .expect("up");
    controller
        .reports
        .apply_report(&report(atm, 2, Status::Down, t0 + 100), t0 + 100)
        .await
        .expect("down");
    controller
        .reports
        .apply_report(
            &common::transition_report("branch-9-agent", elsewhere, 1, Status::Up, t0),
            t0,
        )
        .await
        .expect("up");

    controller
        .presence
        .link_closed("branch-5-agent", t0 + 1_000);
    assert!(
        controller
            .presence
            .forget_offline_sites(t0 + 5_999)
            .await
            .expect("sweep")
            .is_empty()
    );
    let (_, router_now) = api.get(&format!("/api/v1/devices/{router}")).await;
    assert_eq!(
        router_now["status"], "up",
        "within the grace period nothing changes"
    );

    let forgotten = controller
        .presence
        .forget_offline_sites(t0 + 6_000)
        .await
        .expect("sweep");
    assert_eq!(forgotten, ["branch-5"]);
    for id in [router, atm] {
        let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(device["status"], "unknown", "{device}");
        assert!(device["down_since"].is_null(), "{device}");
    }
    let (_, other) = api.get(&format!("/api/v1/devices/{elsewhere}")).await;
    assert_eq!(other["status"], "up", "another site's agent is connected");
    let (_, summary) = api.get("/api/v1/summary").await;
    assert_eq!(
        (summary["unknown"].as_u64(), summary["up"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, open) = api.get("/api/v1/alerts?state=open").await;
    let names: Vec<(&str, &str)> = open
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| {
            let subject = if alert["alertname"] == "AgentDown" {
                &alert["agent"]["id"]
            } else {
                &alert["device"]["name"]
            };
            (
                alert["alertname"].as_str().expect("alertname"),
                subject.as_str().expect("subject"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("AgentDown", "branch-5-agent"), ("DeviceDown", "atm")],
        "the atm's alert stays open, and the dead agent raises its own: {open}"
    );
    assert_eq!(api.metric("ward_sites_marked_unknown_total").await, 1);
    assert!(
        controller
            .presence
            .forget_offline_sites(t0 + 60_000)
            .await
            .expect("sweep")
            .is_empty(),
        "once"
    );

    // The agent returns and replays what it decided while away (the atm
    // came back at t0 + 3 s): both devices show their reported state again.
    controller
        .presence
        .link_opened(&agent, "0.1.0", "boot-1", t0 + 61_000);
    // What its link does first: it sees every device, so it is back.
    controller
        .presence
        .agent_sight(
            &agent,
            &["ipv4", "ipv6"],
            &Blindness::default(),
            ("sight-1", 1),
            t0 + 61_000,
        )
        .await
        .expect("sight");
    controller
        .reports
        .apply_report(
            &TransitionReport {
                agent_alerts: Vec::new(),
                transitions: vec![
                    report(router, 0, Status::Up, t0).transitions[0].clone(),
                    report(atm, 0, Status::Up, t0 + 3_000).transitions[0].clone(),
                ],
                ..report(router, 4, Status::Up, t0)
            },
            t0 + 61_000,
        )
        .await
        .expect("replay");
    for id in [router, atm] {
        let (_, device) = api.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(device["status"], "up", "{device}");
    }
    let (_, open) = api.get("/api/v1/alerts?state=open").await;
    assert_eq!(open, json!([]), "the atm's alert resolved");
}
