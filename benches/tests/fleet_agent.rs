//! The fleet simulator's agent is accepted by the controller as a real
//! agent: its Hello is admitted and its snapshot is its devices; a report
//! it spooled in an earlier run and never saw acknowledged (it crashed
//! first) is replayed and applied; then the resync and the harness's
//! change; every report is acknowledged, the spool ends empty, and nothing
//! is rejected.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use ward_benches::fleet_agent::{Cadence, Order, SimAgent, Tally, spool_dir};
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Actor, DeviceSpec, Status, Store};
use ward_proto::v1::{self as pb, agent_message};

fn device(index: u8) -> DeviceSpec {
    ward_domain::model::DeviceSpec::new(
        format!("dev-{index}"),
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, index)),
        "branch-0000".into(),
    )
}

/// Spools, as an earlier run of agent `id` in `dir` would have, a report
/// of `device` down that no controller acknowledged.
fn spool_unacknowledged_down(dir: &std::path::Path, id: &str, device: u64) {
    let config = ward_agent::spool::SpoolConfig {
        statistics_max_bytes: 1 << 20,
    };
    let (mut spool, _) =
        ward_agent::spool::Spool::open(&spool_dir(dir, id), config, || "sim-before-crash".into())
            .expect("spool");
    let probed_at_unix_us = (ward_controller::time::now_ms() - 2_000) * 1000;
    spool
        .append(ward_agent::spool::Kind::Transitions, |seq| {
            pb::AgentMessage {
                kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
                    seq,
                    transitions: vec![pb::Transition {
                        device_id: device,
                        state: pb::DeviceState::Down.into(),
                        probed_at_unix_us,
                        reason: pb::TransitionReason::Timeouts.into(),
                        ..Default::default()
                    }],
                    traces: Vec::new(),
                })),
            }
            .encode_to_vec()
        })
        .expect("spooled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_agent_replays_its_spool_and_is_acknowledged_as_a_real_agent() {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-fleet-agent-")
        .tempdir()
        .expect("dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    let store = Store::open(&url).await.expect("store");
    store.migrate().await.expect("migrate");
    let app = App::new(store, Cache::in_process(), AppSettings::default())
        .await
        .expect("app");
    let now = ward_controller::time::now_ms();
    app.presence
        .register_agent("agent-0", "branch-0000", &Actor::console(), now)
        .await
        .expect("agent");
    let ids: Vec<u64> = app
        .inventory
        .import_devices(&[device(1), device(2), device(3)], &Actor::console(), now)
        .await
        .expect("devices")
        .iter()
        .map(|device| u64::try_from(device.id).expect("id"))
        .collect();
    let listener = ward_controller::grpc::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let grpc_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(ward_controller::grpc::serve(
        listener,
        app.clone(),
        None,
        std::future::pending(),
    ));
    spool_unacknowledged_down(dir.path(), "agent-0", ids[0]);

    let tally = Arc::new(Tally::default());
    let sim = SimAgent {
        settings: ward_agent::run::RunSettings {
            controllers: vec![grpc_url],
            agent_id: "agent-0".into(),
            site: String::new(),
            spool_dir: spool_dir(dir.path(), "agent-0"),
            spool_statistics_max_bytes: 1 << 20,
            report_period: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            rate: None,
            send_path: Default::default(),
            tls: None,
        },
        devices: ids.clone(),
        cadence: Cadence {
            report_period: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(1),
        },
        tally: Arc::clone(&tally),
    };
    let (orders, receiver) = tokio::sync::mpsc::unbounded_channel();
    orders
        .send(Order::Set(vec![(ids[1], true)]))
        .expect("order");
    orders.send(Order::Finish).expect("order");
    tokio::time::timeout(Duration::from_secs(30), sim.run(receiver))
        .await
        .expect("every report acknowledged within 30 s")
        .expect("the controller took the simulated agent");

    // The replayed report, the resync and the change: three reports.
    assert_eq!(tally.acked.load(Ordering::Relaxed), 3);
    assert_eq!(tally.rejected.load(Ordering::Relaxed), 0);
    assert_eq!(tally.connects.load(Ordering::Relaxed), 1);
    let statuses: Vec<Status> = app
        .core
        .store
        .get_devices(
            &ids.iter()
                .map(|&id| i64::try_from(id).expect("id"))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("devices")
        .iter()
        .map(|device| device.status)
        .collect();
    assert_eq!(statuses, [Status::Up, Status::Down, Status::Up]);
    let alerts = app.core.store.alerts(false).await.expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|alert| alert.device_id == Some(i64::try_from(ids[0]).expect("id"))),
        "the replayed DOWN was applied (and its alert resolved by the resync): {alerts:?}"
    );
    let (spool, _) = ward_agent::spool::Spool::open(
        &spool_dir(dir.path(), "agent-0"),
        ward_agent::spool::SpoolConfig {
            statistics_max_bytes: 1 << 20,
        },
        || "next".into(),
    )
    .expect("spool");
    assert!(
        spool.unacked().expect("read").is_empty(),
        "the spool ends empty"
    );
}
