//! Redundant agents of one site, on two controllers sharing PostgreSQL:
//! each device has one owner among the site's agents (balanced), only its
//! owner's reports count, a lost owner's devices move to the other agent
//! without any status changing (and its `AgentDown` opens all the same),
//! an agent linked to the other controller is told what it owns now, and
//! a returning agent gets its share back only once it has stayed.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tokio_stream::StreamExt as _;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::Status;
use ward_proto::v1::{self as pb, controller_message};
use ward_testkit::services::Postgres;

/// The failover delay these tests run with.
const DELAY: Duration = Duration::from_secs(2);

async fn controller(url: &str) -> App {
    let settings = AppSettings {
        agent_failover_delay: DELAY,
        ..AppSettings::default()
    };
    common::controller_with(url, Cache::in_process(), settings).await
}

/// Links agent `id` of branch-3 to `url`; open while the stream lives.
async fn link(url: &str, id: &str) -> tonic::Streaming<pb::ControllerMessage> {
    common::agent_link(
        url,
        pb::Hello {
            agent_id: id.into(),
            site: "branch-3".into(),
            boot_id: format!("boot-{id}"),
            version: "test".into(),
            capabilities: Some(pb::Capabilities {
                ipv4: true,
                ipv6: true,
                ..pb::Capabilities::default()
            }),
            ..pb::Hello::default()
        },
    )
    .await
}

/// The device ids the next assignment message gives (snapshot: all of
/// them; update: the ones added) and removes.
async fn next_assignment(
    stream: &mut tonic::Streaming<pb::ControllerMessage>,
) -> (Vec<u64>, Vec<u64>) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an assignment within 10 s")
            .expect("open")
            .expect("message");
        match message.kind {
            Some(controller_message::Kind::Snapshot(snapshot)) => {
                return (
                    snapshot.targets.iter().map(|t| t.device_id).collect(),
                    Vec::new(),
                );
            }
            Some(controller_message::Kind::Update(update)) => {
                return (
                    update.upserts.iter().map(|t| t.device_id).collect(),
                    update.removed_device_ids,
                );
            }
            _ => {}
        }
    }
}

/// Each device's owner, by id.
async fn owners(api: &common::Api) -> Vec<(i64, String)> {
    let (_, devices) = api.get("/api/v1/devices").await;
    let mut owners: Vec<(i64, String)> = devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["id"].as_i64().expect("id"),
                d["agent"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect();
    owners.sort();
    owners
}

/// `/api/v1/agents`' device count of each agent.
async fn counts(api: &common::Api) -> Vec<(String, u64)> {
    let (_, agents) = api.get("/api/v1/agents").await;
    let mut counts: Vec<(String, u64)> = agents
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_owned(),
                a["devices"].as_u64().expect("devices"),
            )
        })
        .collect();
    counts.sort();
    counts
}

fn statuses(devices: &Value) -> Vec<String> {
    devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["status"].as_str().expect("status").to_owned())
        .collect()
}

fn agent_down_open(alerts: &Value, agent: &str) -> bool {
    alerts
        .as_array()
        .expect("alerts")
        .iter()
        .any(|a| a["alertname"] == "AgentDown" && a["agent"]["id"] == agent && a["state"] == "open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_with_two_agents_has_one_owner_per_device_and_survives_losing_either() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let a = controller(&postgres.url()).await;
    let b = controller(&postgres.url()).await;
    let api_a = common::Api::serve(a.clone()).await;
    let api_b = common::Api::serve(b.clone()).await;
    let grpc_b = common::serve_grpc(b.clone()).await;
    tokio::spawn(ward_controller::services::follow_other_controllers(
        std::sync::Arc::clone(&b.core),
        std::future::pending(),
    ));
    for id in ["g1", "g2"] {
        let (code, body) = api_a
            .post("/api/v1/agents", json!({"id": id, "site": "branch-3"}))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // g1 linked to A (its presence shared by hand), g2 to B over gRPC.
    let actor = ward_controller::store::Actor::console();
    let g1 = a
        .core
        .store
        .register_agent("g1", "branch-3", &actor, 0)
        .await
        .expect("g1");
    a.presence
        .link_opened(&g1, "test", "boot-g1", ward_controller::time::now_ms());
    a.presence.share_presence().await.expect("share");
    let mut g2_link = link(&grpc_b, "g2").await;
    let (g2_first, _) = next_assignment(&mut g2_link).await;
    assert!(g2_first.is_empty(), "no devices yet: {g2_first:?}");
    b.presence.share_presence().await.expect("share");

    // Ten devices through A: five each, and each device has one owner.
    let devices: Vec<Value> = (1..=10)
        .map(|i| json!({"name": format!("atm-{i}"), "address": format!("198.18.3.{i}"), "site": "branch-3"}))
        .collect();
    let (code, body) = api_a
        .post("/api/v1/devices/import", Value::Array(devices))
        .await;
    assert_eq!(code, 201, "{body}");
    let placed = owners(&api_b).await;
    assert_eq!(placed, owners(&api_a).await, "both controllers agree");
    let of = |agent: &str| -> Vec<i64> {
        placed
            .iter()
            .filter(|(_, owner)| owner == agent)
            .map(|(id, _)| *id)
            .collect()
    };
    let (g1_devices, g2_devices) = (of("g1"), of("g2"));
    assert_eq!((g1_devices.len(), g2_devices.len()), (5, 5), "{placed:?}");
    let expected = vec![("g1".to_owned(), 5), ("g2".to_owned(), 5)];
    assert_eq!(counts(&api_a).await, expected);
    assert_eq!(counts(&api_b).await, expected);
    // g2, linked to B, was told of its five devices created through A.
    let (given, _) = next_assignment(&mut g2_link).await;
    let mut given: Vec<i64> = given.into_iter().map(|id| id as i64).collect();
    given.sort_unstable();
    assert_eq!(given, g2_devices);

    // Every device up, each reported by its owner.
    let now = ward_controller::time::now_ms();
    for (seq, (id, owner)) in placed.iter().enumerate() {
        let report = common::transition_report(owner, *id, seq as u64 + 1, Status::Up, now);
        a.reports.apply_report(&report, now).await.expect("up");
    }
    // The other agent sees one of g1's devices down: it is not the owner,
    // so nothing changes (and it is counted).
    let watched = g1_devices[0];
    let foreign = common::transition_report("g2", watched, 100, Status::Down, now + 1_000);
    b.reports
        .apply_report(&foreign, now + 1_000)
        .await
        .expect("apply");
    let (_, device) = api_a.get(&format!("/api/v1/devices/{watched}")).await;
    assert_eq!(device["status"], "up", "the owner says up: {device}");
    assert_eq!(api_b.metric("ward_transitions_not_owner_total").await, 1);
    let (_, alerts) = api_a.get("/api/v1/alerts?state=open").await;
    assert_eq!(alerts.as_array().expect("alerts").len(), 0, "{alerts}");

    // g1 is lost (its link to A ends): after the failover delay its five
    // devices are g2's, nothing flashes, g2 (on B) is told, and g1's
    // AgentDown opens although its group covers for it.
    a.presence
        .link_closed("g1", ward_controller::time::now_ms());
    b.presence
        .settle_groups(ward_controller::time::now_ms())
        .await
        .expect("settle");
    assert_eq!(owners(&api_a).await, placed, "not before the delay");
    tokio::time::sleep(DELAY + Duration::from_millis(200)).await;
    b.presence.share_presence().await.expect("share");
    a.presence
        .settle_groups(ward_controller::time::now_ms())
        .await
        .expect("settle");
    assert!(
        owners(&api_b).await.iter().all(|(_, owner)| owner == "g2"),
        "{:?}",
        owners(&api_b).await
    );
    let (added, _) = next_assignment(&mut g2_link).await;
    let mut added: Vec<i64> = added.into_iter().map(|id| id as i64).collect();
    added.sort_unstable();
    assert_eq!(added, g1_devices, "g2 is told of g1's devices through B");
    let (_, all) = api_b.get("/api/v1/devices").await;
    assert!(statuses(&all).iter().all(|s| s == "up"), "{all}");
    let (_, alerts) = api_b.get("/api/v1/alerts?state=open").await;
    assert!(agent_down_open(&alerts, "g1"), "{alerts}");
    assert!(!agent_down_open(&alerts, "g2"), "{alerts}");
    // Now g2's word about that device counts.
    let report = common::transition_report("g2", watched, 101, Status::Down, now + 2_000);
    b.reports
        .apply_report(&report, now + 2_000)
        .await
        .expect("apply");
    let (_, device) = api_a.get(&format!("/api/v1/devices/{watched}")).await;
    assert_eq!(device["status"], "down", "{device}");

    // g1 returns: nothing moves until it has stayed for the delay, then
    // the group rebalances, again without any status changing.
    a.presence
        .link_opened(&g1, "test", "boot-g1b", ward_controller::time::now_ms());
    a.presence.share_presence().await.expect("share");
    a.presence
        .settle_groups(ward_controller::time::now_ms())
        .await
        .expect("settle");
    assert!(owners(&api_a).await.iter().all(|(_, owner)| owner == "g2"));
    let before = statuses(&api_a.get("/api/v1/devices").await.1);
    for _ in 0..3 {
        tokio::time::sleep(DELAY / 2 + Duration::from_millis(100)).await;
        a.presence.share_presence().await.expect("share");
        b.presence.share_presence().await.expect("share");
    }
    a.presence
        .settle_groups(ward_controller::time::now_ms())
        .await
        .expect("settle");
    assert_eq!(
        counts(&api_b).await,
        expected,
        "rebalanced: {:?}",
        owners(&api_b).await
    );
    let (_, removed) = next_assignment(&mut g2_link).await;
    assert_eq!(removed.len(), 5, "g2 gives five back");
    assert_eq!(statuses(&api_a.get("/api/v1/devices").await.1), before);
    // Settling again changes nothing: no ping-pong.
    a.presence
        .settle_groups(ward_controller::time::now_ms())
        .await
        .expect("settle");
    assert_eq!(api_a.metric("ward_device_owner_changes_total").await, 5 + 5);
}
