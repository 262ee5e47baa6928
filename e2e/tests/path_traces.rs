//! The path at the moment of failure, end to end: a lab whose hosts sit
//! behind a router namespace; the link beyond the router is cut. The
//! agent traces the path to the failed device (TTL-limited probes), and
//! the alert, the webhook (`traced`), the device's detail and gRPC's twin
//! name the router as the last hop, and the router's device name. A
//! 2,000-device outage behind the same router starts a handful of traces,
//! not 2,000 (`ward_agent_traces_total` in `/metrics`).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};
use ward_e2e::{Deployment, Rest, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-1";

/// `ward_agent_traces_total{agent="site-agent",outcome=…}` now.
fn traces(rest: &Rest, outcome: &str) -> f64 {
    rest.metric(&format!(
        "ward_agent_traces_total{{agent=\"site-agent\",outcome=\"{outcome}\"}}"
    ))
    .unwrap_or(0.0)
}

/// The `traced` webhook bodies about device `id`.
fn traced(deployment: &Deployment, id: i64) -> Vec<Value> {
    deployment
        .webhook
        .bodies()
        .into_iter()
        .filter(|body| body["kind"] == "traced" && body["device"]["id"] == id)
        .collect()
}

#[test]
fn a_cut_beyond_the_router_names_the_router_and_an_outage_behind_it_traces_a_handful() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec![],
        unreachable: vec![],
        behind_router: vec!["198.18.40.0/21".parse().expect("cidr")],
        ..SiteConfig::default()
    };
    let deployment = Deployment::start(site).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    let rest = &deployment.rest;
    let router = deployment.lab.router_address().to_string();
    let (code, body) = rest.post(
        "/api/v1/devices",
        &json!({"name": "core-router", "address": router, "site": SITE, "interval_ms": 500,
                "timeout_ms": 300, "up_after": 1}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, atm) = rest.post(
        "/api/v1/devices",
        &json!({"name": "atm-17", "address": "198.18.40.17", "site": SITE, "interval_ms": 500,
                "timeout_ms": 300, "up_after": 1}),
    );
    assert_eq!(code, 201, "{atm}");
    let atm = atm["id"].as_i64().expect("id");
    let _agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    wait_until("the router and the ATM up", Duration::from_secs(20), || {
        rest.get("/api/v1/summary").1["up"] == 2
    });

    deployment.lab.cut_behind_router().expect("cut");
    wait_until("the ATM's alert traced", Duration::from_secs(20), || {
        !traced(&deployment, atm).is_empty()
    });
    let body = &traced(&deployment, atm)[0];
    let trace = &body["trace"];
    assert_eq!(trace["last_hop"], router.as_str(), "{body}");
    assert_eq!(trace["last_hop_device"], "core-router", "{body}");
    assert_eq!(trace["reached"], false, "{body}");
    assert_eq!(trace["hops"][0]["ttl"], 1, "{body}");
    assert_eq!(trace["hops"][0]["address"], router.as_str(), "{body}");
    assert!(trace["hops"][0]["rtt_ms"].as_f64().is_some(), "{body}");
    assert_eq!(body["alertname"], "DeviceDown", "{body}");
    // The firing came first: the trace never delays the DOWN.
    let bodies = deployment.webhook.bodies();
    let position = |kind: &str| {
        bodies
            .iter()
            .position(|body| body["kind"] == kind && body["device"]["id"] == atm)
    };
    assert!(position("firing") < position("traced"), "{bodies:#?}");
    // The same on the open alert and the device's detail.
    let (_, alerts) = rest.get("/api/v1/alerts?state=open");
    let alert = alerts
        .as_array()
        .expect("alerts")
        .iter()
        .find(|alert| alert["device"]["id"] == atm)
        .cloned()
        .expect("the ATM's open alert");
    assert_eq!(alert["trace"]["last_hop"], router.as_str(), "{alert}");
    let (_, device) = rest.get(&format!("/api/v1/devices/{atm}"));
    assert_eq!(
        device["trace"]["last_hop_device"], "core-router",
        "{device}"
    );
    let started_before = traces(rest, "started");
    assert!(started_before >= 1.0, "the first trace is counted");

    // 2,000 devices behind the same router, then the link cut again.
    deployment.lab.mend_behind_router().expect("mend");
    wait_until("the ATM back up", Duration::from_secs(20), || {
        rest.get(&format!("/api/v1/devices/{atm}")).1["status"] == "up"
    });
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 40, 32), 2_000, 1_000, 500);
    wait_until("2,002 devices up", Duration::from_secs(60), || {
        rest.get("/api/v1/summary").1["up"] == 2_002
    });
    let before = ["started", "shared", "skipped"].map(|outcome| traces(rest, outcome));
    deployment.lab.cut_behind_router().expect("cut");
    wait_until("2,001 devices down", Duration::from_secs(30), || {
        rest.get("/api/v1/summary").1["down"] == 2_001
    });
    wait_until(
        "every failed device's trace requested",
        Duration::from_secs(30),
        || {
            let now = ["started", "shared", "skipped"].map(|outcome| traces(rest, outcome));
            now.iter()
                .zip(&before)
                .map(|(now, before)| now - before)
                .sum::<f64>()
                >= 2_001.0
        },
    );
    let started = traces(rest, "started") - before[0];
    let shared = traces(rest, "shared") - before[1];
    let skipped = traces(rest, "skipped") - before[2];
    eprintln!(
        "2,001 devices failed behind one router: {started} traces started, {shared} shared, {skipped} skipped"
    );
    // Eight /24s: at most one trace each (the ATM's /24 may still share
    // its trace from before), nothing skipped.
    assert!(
        (1.0..=8.0).contains(&started),
        "traces started for 2,001 failed devices: {started}"
    );
    assert_eq!(skipped, 0.0, "traces skipped");
    // Each device's alert is traced, naming the router.
    let last = *ids.last().expect("devices");
    wait_until(
        "the last device's alert traced",
        Duration::from_secs(30),
        || {
            traced(&deployment, last)
                .iter()
                .any(|body| body["trace"]["last_hop"] == router.as_str())
        },
    );
}
