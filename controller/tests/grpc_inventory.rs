//! The gRPC Inventory service follows the REST semantics: validation by
//! field, read-your-writes after a transition, a live status stream.

mod common;

use std::time::Duration;

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use ward_controller::auth::Role;
use ward_controller::services::App;
use ward_controller::store::{ReportedTransition, Status, TransitionReport};
use ward_proto::v1::inventory_client::InventoryClient;
use ward_proto::v1::{
    AlertState, DeleteDeviceRequest, DeviceSpec, DeviceState, GetDeviceRequest, GetSummaryRequest,
    ListAlertsRequest, ListDevicesRequest, UpsertDeviceRequest, WatchStatusRequest,
};

/// Adds `authorization: Bearer TOKEN` to every call (none: no header).
#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}").parse().expect("ASCII");
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

type Client = InventoryClient<InterceptedService<Channel, Bearer>>;

/// A controller serving gRPC on loopback and a client of it with an admin
/// token.
async fn start() -> (tempfile::TempDir, App, Client) {
    let (dir, controller, channel) = serve().await;
    let admin = common::token_for(&controller, "grpc-admin", Role::Admin, None).await;
    let client = InventoryClient::with_interceptor(channel, Bearer(Some(admin)));
    (dir, controller, client)
}

async fn serve() -> (tempfile::TempDir, App, Channel) {
    let (dir, controller) = common::sqlite_controller().await;
    let url = common::serve_grpc(controller.clone()).await;
    let channel = Channel::from_shared(url)
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (dir, controller, channel)
}

/// A once-only window over site `branch-3`, Unix ms.
fn window(starts_at_unix_ms: i64, ends_at_unix_ms: i64) -> ward_proto::v1::MaintenanceSpec {
    ward_proto::v1::MaintenanceSpec {
        name: "branch 3 closed".into(),
        starts_at_unix_ms,
        ends_at_unix_ms,
        time_zone: "Asia/Tbilisi".into(),
        sites: vec!["branch-3".into()],
        ..Default::default()
    }
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

/// The default thresholds with a loss warning at `loss_warn_permille`.
fn thresholds(loss_warn_permille: u32) -> ward_proto::v1::QualityThresholds {
    ward_proto::v1::QualityThresholds {
        window_ms: 300_000,
        clear_window_ms: 300_000,
        loss_warn_permille,
        loss_crit_permille: 500,
        rtt_warn_us: 150_000,
        rtt_crit_us: 500_000,
        rtt_p90: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_devices_pages_with_tokens_as_rest_with_cursors() {
    let (_dir, _controller, mut client) = start().await;
    let mut created = Vec::new();
    for index in 0..5 {
        let device = client
            .upsert_device(UpsertDeviceRequest {
                id: None,
                spec: Some(DeviceSpec {
                    name: format!("atm-{index}"),
                    ..spec(&format!("198.18.1.{}", index + 1))
                }),
            })
            .await
            .expect("create")
            .into_inner();
        created.push(device.id);
    }
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_devices(ListDevicesRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..ListDevicesRequest::default()
            })
            .await
            .expect("page")
            .into_inner();
        sizes.push(page.devices.len());
        paged.extend(page.devices.iter().map(|device| device.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!((paged, sizes), (created, vec![2, 2, 1]));
    for (page_size, page_token, field) in
        [(0, "nonsense", "page_token:"), (5_001, "", "page_size:")]
    {
        let refused = client
            .list_devices(ListDevicesRequest {
                page_size,
                page_token: page_token.into(),
                ..ListDevicesRequest::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with(field),
            "{}",
            refused.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_over_grpc_as_over_rest() {
    use ward_proto::v1::{
        DeleteProfileRequest, ListProfilesRequest, ListSitesRequest, SetSiteProfileRequest,
        UpsertProfileRequest,
    };
    let (_dir, _controller, mut client) = start().await;
    let refused = client
        .upsert_profile(UpsertProfileRequest {
            name: "dsl".into(),
            thresholds: Some(thresholds(2_000)),
        })
        .await
        .expect_err("over 100 %");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("loss_warn_permille:"),
        "{}",
        refused.message()
    );
    for loss in [300, 250] {
        let profile = client
            .upsert_profile(UpsertProfileRequest {
                name: "dsl".into(),
                thresholds: Some(thresholds(loss)),
            })
            .await
            .expect("created, then replaced")
            .into_inner();
        assert_eq!(profile.thresholds, Some(thresholds(loss)));
    }
    let device = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(DeviceSpec {
                profile: "dsl".into(),
                check: "icmp+tcp:22".into(),
                rst_alive: Some(false),
                ..spec("198.18.1.10")
            }),
        })
        .await
        .expect("a device with a profile and a TCP check")
        .into_inner();
    let spec_of = device.spec.expect("spec");
    assert_eq!(
        (
            spec_of.profile.as_str(),
            spec_of.check.as_str(),
            spec_of.rst_alive
        ),
        ("dsl", "icmp+tcp:22", Some(false))
    );
    let refused = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(DeviceSpec {
                check: "tcp:0".into(),
                ..spec("198.18.1.11")
            }),
        })
        .await
        .expect_err("no port 0");
    assert!(
        refused.message().starts_with("check:"),
        "{}",
        refused.message()
    );
    let site = client
        .set_site_profile(SetSiteProfileRequest {
            site: "branch-3".into(),
            profile: "dsl".into(),
        })
        .await
        .expect("site default")
        .into_inner();
    assert_eq!((site.profile.as_str(), site.devices), ("dsl", 1));
    let sites = client
        .list_sites(ListSitesRequest {})
        .await
        .expect("sites")
        .into_inner()
        .sites;
    assert_eq!(sites, [site]);
    let in_use = client
        .delete_profile(DeleteProfileRequest { name: "dsl".into() })
        .await
        .expect_err("in use");
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert!(
        in_use.message().contains("1 devices and 1 sites"),
        "{}",
        in_use.message()
    );
    let listed = client
        .list_profiles(ListProfilesRequest {})
        .await
        .expect("profiles")
        .into_inner()
        .profiles;
    assert_eq!(
        listed
            .iter()
            .map(|profile| (profile.name.as_str(), profile.devices))
            .collect::<Vec<_>>(),
        [("dsl", 1)]
    );
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
    let refused = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("::ffff:127.20.0.10")),
        })
        .await
        .expect_err("an IPv4-mapped address");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("address: is an IPv4-mapped IPv6 address"),
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
            degraded: None,
            device_id: id,
            status: Status::Down,
            probed_at_ms,
            last_rtt_us: None,
            reason: "timeouts".into(),
        }],
    };
    controller
        .reports
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
            ..ListAlertsRequest::default()
        })
        .await
        .expect("alerts")
        .into_inner();
    assert_eq!(alerts.alerts.len(), 1);
    assert_eq!(alerts.alerts[0].device_name, "atm-1");
    assert_eq!(alerts.alerts[0].trace, None, "not traced yet");
    // The agent's trace, as REST shows it, on the alert.
    let trace = ward_domain::trace::Trace::new(
        probed_at_ms + 2_000,
        "198.18.1.10".into(),
        false,
        vec![ward_domain::trace::TraceHop {
            ttl: 1,
            address: Some("198.18.0.2".into()),
            rtt_us: Some(350),
        }],
    );
    controller
        .reports
        .attach_traces(&[(vec![id], trace)], probed_at_ms + 2_100)
        .await
        .expect("trace");
    let alerts = client
        .list_alerts(ListAlertsRequest::default())
        .await
        .expect("alerts")
        .into_inner();
    let traced = alerts.alerts[0].trace.clone().expect("the trace");
    assert_eq!(
        (
            traced.last_hop.as_str(),
            traced.hops[0].ttl,
            traced.hops[0].rtt_us
        ),
        ("198.18.0.2", 1, Some(350))
    );

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

/// Every method of `ward.v1.Inventory`, read from the compiled protocol.
fn inventory_methods() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(ward_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    set.file
        .iter()
        .filter(|file| file.package() == "ward.v1")
        .flat_map(|file| &file.service)
        .filter(|service| service.name() == "Inventory")
        .flat_map(|service| &service.method)
        .map(|method| method.name().to_owned())
        .collect()
}

/// Calls `method` with an empty request; the status code it ends with
/// (`Ok` for success or a refusal after authorization: not found, bad
/// argument).
async fn call(client: &mut Client, method: &str) -> Code {
    let outcome = match method {
        "ListDevices" => client
            .list_devices(ListDevicesRequest::default())
            .await
            .map(drop),
        "GetDevice" => client
            .get_device(GetDeviceRequest { id: 1 })
            .await
            .map(drop),
        "UpsertDevice" => client
            .upsert_device(UpsertDeviceRequest {
                id: None,
                spec: Some(spec("198.18.1.77")),
            })
            .await
            .map(drop),
        "DeleteDevice" => client
            .delete_device(DeleteDeviceRequest { id: 999 })
            .await
            .map(drop),
        "ListAlerts" => client
            .list_alerts(ListAlertsRequest::default())
            .await
            .map(drop),
        "ListAgents" => client
            .list_agents(ward_proto::v1::ListAgentsRequest::default())
            .await
            .map(drop),
        "GetSummary" => client.get_summary(GetSummaryRequest {}).await.map(drop),
        "WatchStatus" => client.watch_status(WatchStatusRequest {}).await.map(drop),
        "ListAudit" => client
            .list_audit(ward_proto::v1::ListAuditRequest::default())
            .await
            .map(drop),
        "ListHistory" => client
            .list_history(ward_proto::v1::ListHistoryRequest::default())
            .await
            .map(drop),
        "AcknowledgeAlert" => client
            .acknowledge_alert(ward_proto::v1::AcknowledgeAlertRequest {
                id: 1,
                comment: "on it".into(),
            })
            .await
            .map(drop),
        "UnacknowledgeAlert" => client
            .unacknowledge_alert(ward_proto::v1::UnacknowledgeAlertRequest { id: 1 })
            .await
            .map(drop),
        "ListMaintenance" => client
            .list_maintenance(ward_proto::v1::ListMaintenanceRequest::default())
            .await
            .map(drop),
        "UpsertMaintenance" => client
            .upsert_maintenance(ward_proto::v1::UpsertMaintenanceRequest {
                id: Some(999),
                spec: Some(window(1_000, 2_000)),
            })
            .await
            .map(drop),
        "DeleteMaintenance" => client
            .delete_maintenance(ward_proto::v1::DeleteMaintenanceRequest { id: 999 })
            .await
            .map(drop),
        "GetAvailability" => client
            .get_availability(ward_proto::v1::GetAvailabilityRequest::default())
            .await
            .map(drop),
        "SyncDevices" => client
            .sync_devices(ward_proto::v1::SyncDevicesRequest {
                devices: vec![spec("198.18.1.78")],
                delete_missing: false,
                dry_run: true,
            })
            .await
            .map(drop),
        "ListProfiles" => client
            .list_profiles(ward_proto::v1::ListProfilesRequest {})
            .await
            .map(drop),
        "UpsertProfile" => client
            .upsert_profile(ward_proto::v1::UpsertProfileRequest {
                name: "dsl".into(),
                thresholds: Some(thresholds(200)),
            })
            .await
            .map(drop),
        "DeleteProfile" => client
            .delete_profile(ward_proto::v1::DeleteProfileRequest {
                name: "none-such".into(),
            })
            .await
            .map(drop),
        "ListSites" => client
            .list_sites(ward_proto::v1::ListSitesRequest {})
            .await
            .map(drop),
        "SetSiteProfile" => client
            .set_site_profile(ward_proto::v1::SetSiteProfileRequest {
                site: "none-such".into(),
                profile: String::new(),
            })
            .await
            .map(drop),
        other => panic!("Inventory/{other} is not called by this test: add it"),
    };
    outcome.map_or_else(|status| status.code(), |()| Code::Ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inventory_method_requires_its_declared_role() {
    let (_dir, controller, channel) = serve().await;
    let principals = common::principals(&controller).await;
    let methods = inventory_methods();
    assert_eq!(methods.len(), 22, "{methods:?}");
    let mut checked = 0;
    for method in &methods {
        let access = ward_controller::grpc::INVENTORY_ACCESS
            .iter()
            .find(|(name, _)| name == method)
            .map(|(_, access)| *access)
            .unwrap_or_else(|| panic!("Inventory/{method} has no declared access"));
        for (who, token, role) in &principals {
            let mut client =
                InventoryClient::with_interceptor(channel.clone(), Bearer(token.clone()));
            let expected_refusal = common::expected_refusal(access, *role).map(|unauthenticated| {
                if unauthenticated {
                    Code::Unauthenticated
                } else {
                    Code::PermissionDenied
                }
            });
            let code = call(&mut client, method).await;
            match expected_refusal {
                Some(refusal) => assert_eq!(code, refusal, "{who} calling {method}"),
                None => assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{who} may call {method}: {code:?}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 22 * 7);
    let refusals = common::every_refusal_is_audited(&controller).await;
    assert!(
        refusals >= 16 * 4,
        "anonymous and three bad tokens everywhere: {refusals}"
    );
}

#[tokio::test]
async fn the_history_pages_through_every_change_newest_first() {
    let (_dir, controller, mut client) = start().await;
    let id = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("198.18.1.40")),
        })
        .await
        .expect("create")
        .into_inner()
        .id;
    let device = i64::try_from(id).expect("id");
    // After the device's creation: older reports are stale.
    let start = ward_controller::time::now_ms() + 1_000;
    for (seq, status, at) in [
        (1, Status::Up, start),
        (2, Status::Down, start + 3_000),
        (3, Status::Up, start + 6_000),
    ] {
        controller
            .reports
            .apply_report(
                &common::transition_report("agent-1", device, seq, status, at),
                at,
            )
            .await
            .expect("report");
    }
    let page = |cursor: String| ward_proto::v1::ListHistoryRequest {
        device_id: id,
        limit: 2,
        cursor,
        ..Default::default()
    };
    let first = client
        .list_history(page(String::new()))
        .await
        .expect("history")
        .into_inner();
    let states: Vec<(i32, i32, i64)> = first
        .changes
        .iter()
        .map(|change| (change.from, change.to, change.at_unix_ms))
        .collect();
    assert_eq!(
        states,
        [
            (
                DeviceState::Down as i32,
                DeviceState::Up as i32,
                start + 6_000
            ),
            (
                DeviceState::Up as i32,
                DeviceState::Down as i32,
                start + 3_000
            )
        ]
    );
    assert_eq!(first.changes[0].agent, "agent-1");
    assert!(!first.next_cursor.is_empty(), "a second page follows");
    let last = client
        .list_history(page(first.next_cursor))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(last.changes.len(), 1);
    assert_eq!(last.changes[0].to, DeviceState::Up as i32);
    assert!(last.next_cursor.is_empty(), "the last page says so");
    let refused = client
        .list_history(page("yesterday".into()))
        .await
        .expect_err("a bad cursor");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("cursor"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_sync_over_grpc_names_the_bad_entry_and_reports_its_diff() {
    let (_dir, _controller, mut client) = start().await;
    for address in ["198.18.1.50", "198.18.1.51"] {
        let mut device = spec(address);
        device.name = format!("atm-{address}");
        client
            .upsert_device(UpsertDeviceRequest {
                id: None,
                spec: Some(device),
            })
            .await
            .expect("create");
    }
    let mut kept = spec("198.18.1.50");
    kept.name = "atm-198.18.1.50".into();
    let mut added = spec("198.18.1.52");
    added.name = "atm-new".into();
    let request = |devices: Vec<DeviceSpec>, dry_run| ward_proto::v1::SyncDevicesRequest {
        devices,
        delete_missing: true,
        dry_run,
    };
    let diff = client
        .sync_devices(request(vec![kept.clone(), added.clone()], false))
        .await
        .expect("sync")
        .into_inner();
    let names = |devices: &[ward_proto::v1::SyncedDevice]| -> Vec<String> {
        devices.iter().map(|device| device.name.clone()).collect()
    };
    assert_eq!(names(&diff.created), ["atm-new"]);
    assert_eq!(names(&diff.deleted), ["atm-198.18.1.51"]);
    assert_eq!(names(&diff.unchanged), ["atm-198.18.1.50"]);
    let mut broken = added;
    broken.address = "198.18.1.300".into();
    let refused = client
        .sync_devices(request(vec![kept, broken], true))
        .await
        .expect_err("a bad entry");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("devices[1].address"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn maintenance_over_grpc_covers_devices_and_names_bad_fields() {
    let (_dir, _controller, mut client) = start().await;
    let device = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("198.18.1.60")),
        })
        .await
        .expect("create")
        .into_inner();
    let now = ward_controller::time::now_ms();
    let mut weekly = window(now - 60_000, now + 3_600_000);
    weekly.recurrence = Some(ward_proto::v1::Recurrence {
        every: "weekly".into(),
        days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(String::from)
            .into(),
        ..Default::default()
    });
    let created = client
        .upsert_maintenance(ward_proto::v1::UpsertMaintenanceRequest {
            id: None,
            spec: Some(weekly),
        })
        .await
        .expect("window")
        .into_inner();
    assert!(created.active);
    let shown = client
        .get_device(GetDeviceRequest { id: device.id })
        .await
        .expect("get")
        .into_inner();
    assert!(shown.in_maintenance);
    assert_eq!(shown.maintenance, [created.id]);
    let listed = client
        .list_maintenance(ward_proto::v1::ListMaintenanceRequest { active_only: true })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.windows.len(), 1);
    let mut bad = window(now, now + 1_000);
    bad.recurrence = Some(ward_proto::v1::Recurrence {
        every: "weekly".into(),
        days: vec!["someday".into()],
        ..Default::default()
    });
    let refused = client
        .upsert_maintenance(ward_proto::v1::UpsertMaintenanceRequest {
            id: None,
            spec: Some(bad),
        })
        .await
        .expect_err("a bad day");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("recurrence.days"),
        "{}",
        refused.message()
    );
    client
        .delete_maintenance(ward_proto::v1::DeleteMaintenanceRequest { id: created.id })
        .await
        .expect("delete");
    let shown = client
        .get_device(GetDeviceRequest { id: device.id })
        .await
        .expect("get")
        .into_inner();
    assert!(!shown.in_maintenance);
}

#[tokio::test]
async fn availability_over_grpc_is_the_rest_report() {
    let (_dir, controller, mut client) = start().await;
    let id = client
        .upsert_device(UpsertDeviceRequest {
            id: None,
            spec: Some(spec("198.18.1.70")),
        })
        .await
        .expect("create")
        .into_inner()
        .id;
    let device = i64::try_from(id).expect("id");
    let start = ward_controller::time::now_ms() + 1_000;
    for (seq, status, at) in [(1, Status::Up, start), (2, Status::Down, start + 30_000)] {
        controller
            .reports
            .apply_report(
                &common::transition_report("agent-1", device, seq, status, at),
                at,
            )
            .await
            .expect("report");
    }
    let report = client
        .get_availability(ward_proto::v1::GetAvailabilityRequest {
            from_unix_ms: start,
            to_unix_ms: start + 40_000,
            by: "site".into(),
            ..Default::default()
        })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(
        (
            row.site.as_str(),
            row.up_s,
            row.down_s,
            row.outages,
            row.availability
        ),
        ("branch-3", 30.0, 10.0, 1, Some(0.75))
    );
    let refused = client
        .get_availability(ward_proto::v1::GetAvailabilityRequest {
            by: "rack".into(),
            ..Default::default()
        })
        .await
        .expect_err("a bad grouping");
    assert_eq!(refused.code(), Code::InvalidArgument);
}
