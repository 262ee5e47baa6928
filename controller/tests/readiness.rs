//! `/readyz` says when alerts reach nobody: with no receiver configured
//! the notifier fails (`degraded`, naming what to set), with one it is ok.

mod common;

use common::{Api, sqlite_url};
use ward_controller::cache::Cache;
use ward_controller::services::AppSettings;

async fn readiness(channels: &[&str]) -> serde_json::Value {
    let (_dir, url) = sqlite_url();
    let settings = AppSettings {
        receivers: common::webhook_receivers(channels),
        ..AppSettings::default()
    };
    let controller = common::controller_with(&url, Cache::in_process(), settings).await;
    let api = Api::serve(controller).await;
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    ready
}

#[tokio::test]
async fn with_no_receiver_readyz_is_degraded_and_says_alerts_go_nowhere() {
    let ready = readiness(&[]).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    let notifier = &ready["components"]["notifier"];
    assert_eq!(notifier["status"], "failing", "{ready}");
    let detail = notifier["detail"].as_str().expect("a detail");
    assert!(detail.starts_with("alerts go nowhere"), "{detail}");
    assert!(
        detail.contains("webhook") && detail.contains("alertmanager"),
        "{detail}"
    );

    let ready = readiness(&["webhook"]).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["components"]["notifier"]["status"], "ok", "{ready}");
}
