//! The gRPC Inventory service follows the REST semantics: validation by
//! field, read-your-writes after a transition, a live status stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use ward_controller::state::Controller;
use ward_controller::store::{ReportedTransition, Status, TransitionReport};
use ward_proto::v1::inventory_client::InventoryClient;
use ward_proto::v1::{
    AlertState, DeleteDeviceRequest, DeviceSpec, DeviceState, GetDeviceRequest, GetSummaryRequest,
    ListAlertsRequest, ListDevicesRequest, UpsertDeviceRequest, WatchStatusRequest,
};

async fn start() -> (tempfile::TempDir, Arc<Controller>, InventoryClient<Channel>) {
    let (dir, controller) = common::sqlite_controller().await;
    let listener = ward_controller::grpc::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(ward_controller::grpc::serve(
        listener,
        Arc::clone(&controller),
        None,
        std::future::pending(),
    ));
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (dir, controller, InventoryClient::new(channel))
}

fn spec(address: &str) -> DeviceSpec {
    DeviceSpec {
        name: "atm-1".into(),
        address: address.into(),
        site: "branch-3".into(),
        enabled: true,
        ..DeviceSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_over_grpc_follows_commits_and_names_bad_fields() {
    let (_dir, controller, mut client) = start().await;
    let created = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("198.18.1.10")),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.status, DeviceState::Unknown as i32);
    assert_eq!(
        created.spec.as_ref().map(|s| s.interval_ms),
        Some(1000),
        "defaults for zero fields"
    );

    let refused = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("nope")),
        })
        .await
        .expect_err("bad address");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("address:"),
        "{}",
        refused.message()
    );

    let mut watch = client
        .watch_status(WatchStatusRequest {})
        .await
        .expect("watch")
        .into_inner();
    let id = i64::try_from(created.id).expect("id");
    let probed_at_ms = ward_controller::time::now_ms() + 1_000;
    let report = TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: "agent".into(),
        boot_id: "boot".into(),
        seq: 1,
        transitions: vec![ReportedTransition {
            device_id: id,
            status: Status::Down,
            probed_at_ms,
            last_rtt_us: None,
            reason: "timeouts".into(),
        }],
    };
    controller
        .apply_report(&report, probed_at_ms)
        .await
        .expect("down");
    let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a change within 5 s")
        .expect("stream open")
        .expect("change");
    let device = change.device.expect("device");
    assert_eq!(
        (device.id, device.status),
        (created.id, DeviceState::Down as i32)
    );
    assert_eq!(device.down_since_unix_ms, Some(probed_at_ms));

    let down = client
        .list_devices(ListDevicesRequest {
            status: DeviceState::Down.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(down.devices.len(), 1);
    let summary = client
        .get_summary(GetSummaryRequest {})
        .await
        .expect("summary")
        .into_inner();
    assert_eq!((summary.down, summary.total), (1, 1));
    let alerts = client
        .list_alerts(ListAlertsRequest {
            state: AlertState::Open.into(),
        })
        .await
        .expect("alerts")
        .into_inner();
    assert_eq!(alerts.alerts.len(), 1);
    assert_eq!(alerts.alerts[0].device_name, "atm-1");

    let updated = client
        .upsert_device(UpsertDeviceRequest {
            id: Some(created.id),
            spec: Some(spec("198.18.1.11")),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        updated.spec.map(|s| s.address).as_deref(),
        Some("198.18.1.11")
    );
    assert_eq!(
        updated.status,
        DeviceState::Unknown as i32,
        "a new address is unknown until its agent reports on it"
    );

    client
        .delete_device(DeleteDeviceRequest { id: created.id })
        .await
        .expect("delete");
    let missing = client
        .get_device(GetDeviceRequest { id: created.id })
        .await
        .expect_err("gone");
    assert_eq!(missing.code(), Code::NotFound);
    let again = client
        .delete_device(DeleteDeviceRequest { id: created.id })
        .await
        .expect_err("gone");
    assert_eq!(again.code(), Code::NotFound);
}
