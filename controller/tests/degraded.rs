//! A degraded device as every interface shows it: REST (the device with
//! its level and figures, `?status=degraded`, the summary), `/metrics`
//! (`ward_devices{status="degraded"}`), the webhook
//! (`DeviceDegraded` firing with `severity` warning, `loss_pct`, `rtt_ms`;
//! `updated` at critical), and the agent link (each target carries the
//! thresholds it is judged by, and the level it is at).

mod common;

use std::time::Duration;

use common::Api;
use tokio_stream::StreamExt as _;
use ward_controller::notify::{Channel, Webhook, deliver_due};
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Actor, Status, TransitionReport};
use ward_domain::model::{Degradation, DegradedLevel};
use ward_domain::quality::Thresholds;
use ward_proto::v1::{self as pb, controller_message};

async fn controller_judging(quality: Thresholds) -> (tempfile::TempDir, App, i64) {
    let settings = AppSettings {
        quality,
        ..AppSettings::default()
    };
    common::webhook_controller_with_device(settings).await
}

fn degraded(device_id: i64, seq: u64, level: DegradedLevel, at_ms: i64) -> TransitionReport {
    let mut report =
        common::transition_report("branch-7-agent", device_id, seq, Status::Degraded, at_ms);
    report.transitions[0].degraded = Some(Degradation {
        level,
        loss_permille: 305,
        rtt_us: Some(160_500),
    });
    report
}

#[tokio::test]
async fn a_degraded_device_shows_in_rest_metrics_and_its_webhooks() {
    let (_dir, controller, id) = controller_judging(Thresholds::default()).await;
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&degraded(id, 1, DegradedLevel::Warning, now), now)
        .await
        .expect("degraded");
    let api = Api::serve(controller.clone()).await;

    let (code, device) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(code, 200, "{device}");
    assert_eq!(device["status"], "degraded", "{device}");
    assert_eq!(device["degraded"]["level"], "warning", "{device}");
    assert_eq!(device["degraded"]["loss_pct"], 30.5, "{device}");
    assert_eq!(device["degraded"]["rtt_ms"], 160.5, "{device}");
    assert_eq!(device["degraded"]["since"], device["last_change"]);
    assert_eq!(device["down_since"], serde_json::Value::Null);
    let (_, listed) = api.get("/api/v1/devices?status=degraded").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let (_, up) = api.get("/api/v1/devices?status=up").await;
    assert_eq!(up.as_array().map(Vec::len), Some(0), "{up}");
    let (_, summary) = api.get("/api/v1/summary").await;
    assert_eq!(
        (summary["degraded"].as_u64(), summary["up"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        api.metric("ward_devices{site=\"branch-7\",status=\"degraded\"}")
            .await,
        1
    );

    // The webhook: firing at warning with the figures, updated at critical.
    let (receiver, url) = common::start_receiver().await;
    let webhook = Channel::Webhook(Webhook::new(&url));
    let deliver = |at_ms: i64| {
        let (controller, webhook) = (controller.clone(), &webhook);
        async move {
            deliver_due(
                &controller.notifications,
                &controller.maintenance,
                webhook,
                at_ms,
            )
            .await
            .expect("round")
        }
    };
    deliver(now + 1_000).await;
    controller
        .reports
        .apply_report(
            &degraded(id, 2, DegradedLevel::Critical, now + 2_000),
            now + 2_000,
        )
        .await
        .expect("critical");
    deliver(now + 3_000).await;
    let bodies = receiver.bodies();
    let seen: Vec<(String, String, String)> = bodies
        .iter()
        .map(|body| {
            (
                body["alertname"].as_str().unwrap_or_default().to_owned(),
                body["kind"].as_str().unwrap_or_default().to_owned(),
                body["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("DeviceDegraded".into(), "firing".into(), "warning".into()),
            ("DeviceDegraded".into(), "updated".into(), "critical".into()),
        ],
        "{bodies:?}"
    );
    assert_eq!(bodies[1]["loss_pct"], 30.5);
    assert_eq!(bodies[1]["rtt_ms"], 160.5);
    assert_eq!(bodies[1]["device"]["status"], "degraded");
}

#[tokio::test]
async fn the_agent_is_told_the_thresholds_and_the_level_its_device_is_at() {
    let quality = Thresholds {
        window_ms: 30_000,
        rtt_p90: true,
        ..Thresholds::default()
    };
    let (_dir, controller, id) = controller_judging(quality).await;
    controller
        .presence
        .register_agent("branch-7-agent", "branch-7", &Actor::console(), 1_000)
        .await
        .expect("agent");
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&degraded(id, 1, DegradedLevel::Critical, now), now)
        .await
        .expect("degraded");
    let url = common::serve_grpc(controller.clone()).await;
    let mut inbound =
        common::agent_link(&url, common::ipv4_hello("branch-7-agent", "branch-7")).await;
    let targets = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), inbound.next())
            .await
            .expect("a snapshot within 10 s")
            .expect("open")
            .expect("message");
        if let Some(controller_message::Kind::Snapshot(snapshot)) = message.kind {
            break snapshot.targets;
        }
    };
    assert_eq!(targets.len(), 1);
    let target = &targets[0];
    assert_eq!(target.known_state, pb::DeviceState::Degraded as i32);
    assert_eq!(target.known_level, pb::DegradedLevel::Critical as i32);
    assert_eq!(
        target.quality,
        Some(pb::QualityThresholds {
            window_ms: 30_000,
            clear_window_ms: 300_000,
            loss_warn_permille: 200,
            loss_crit_permille: 500,
            rtt_warn_us: 150_000,
            rtt_crit_us: 500_000,
            rtt_p90: true,
        })
    );
}
