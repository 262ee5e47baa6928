//! The dashboard in a real headless Chromium: a device turns red within
//! 2 s of its DOWN transition being applied. The screenshot is kept in
//! `target/tmp/dashboard-device-down.png` as the test's artifact.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ward_controller::store::{Status, TransitionReport};
use ward_testkit::browser::Chromium;

/// The dashboard's colour for `down` (`--down: #c62828`).
const RED: &str = "rgb(198, 40, 40)";

fn report(device_id: i64, seq: u64, status: Status) -> TransitionReport {
    common::transition_report(
        "agent-1",
        device_id,
        seq,
        status,
        ward_controller::time::now_ms(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_turns_red_within_two_seconds_of_its_down_transition() {
    // The dashboard has no login yet: it reads anonymously.
    let (_dir, url) = common::sqlite_url();
    let store = ward_controller::store::Store::open(&url)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let controller = Arc::new(
        ward_controller::state::Controller::new(store, ward_controller::cache::Cache::in_process())
            .with_anonymous_read(true),
    );
    let api = common::Api::serve(Arc::clone(&controller)).await;
    let (code, router) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "router-1", "address": "198.18.1.1", "site": "branch-12"}),
        )
        .await;
    assert_eq!(code, 201, "{router}");
    let (_, atm) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-1", "address": "198.18.1.20", "site": "branch-12"}),
        )
        .await;
    let id = router["id"].as_i64().expect("id");
    let atm_id = atm["id"].as_i64().expect("id");
    controller
        .apply_report(&report(id, 1, Status::Up), ward_controller::time::now_ms())
        .await
        .expect("up");
    controller
        .apply_report(
            &report(atm_id, 2, Status::Up),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("up");

    let tile = format!("document.getElementById('device-{id}')");
    let mut browser = tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect(
            "start headless Chromium (Debian package `chromium`; testkit/run-tests.sh installs it)",
        );
        browser
            .navigate(&format!("{}/", api.base))
            .expect("open the dashboard");
        // Loaded, live (event stream open) and showing the device up.
        browser
            .wait_until(
                &format!(
                    "document.getElementById('link').textContent === 'live' && {tile} !== null \
                 && {tile}.dataset.status === 'up'"
                ),
                Duration::from_secs(20),
            )
            .expect("the dashboard shows the device up, live");
        browser
    });

    let applied = Instant::now();
    controller
        .apply_report(
            &report(id, 3, Status::Down),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("down");
    let commit = applied.elapsed();
    let red = tokio::task::block_in_place(|| {
        browser
            .wait_until(
                &format!("getComputedStyle({tile}).backgroundColor === '{RED}'"),
                Duration::from_secs(2),
            )
            .expect("the device turns red within 2 s of the DOWN commit")
    });
    eprintln!("dashboard: device red {red:?} after the DOWN commit (commit took {commit:?})");
    tokio::task::block_in_place(|| {
        let shown = browser
            .evaluate(&format!(
                "[{tile}.textContent, document.getElementById('down').textContent, \
                 getComputedStyle(document.getElementById('device-{atm_id}')).backgroundColor]"
            ))
            .expect("evaluate");
        assert!(
            shown[0].as_str().expect("text").contains("down"),
            "the tile says since when it is down: {shown}"
        );
        assert_ne!(shown[2], RED, "the other device stays as it was: {shown}");
        // The counts follow within the same 2 s.
        browser
            .wait_until(
                "document.getElementById('down').textContent === '1'",
                Duration::from_secs(2),
            )
            .expect("the down count follows within 2 s");
        let artifact =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-device-down.png");
        browser.screenshot(&artifact).expect("screenshot");
        // Clicking a device asks for its RTT history; without time series
        // the panel says why there is none.
        browser
            .evaluate(&format!("{tile}.click(); true"))
            .expect("click");
        browser
            .wait_until(
                "document.getElementById('history').textContent.includes('time series are off')",
                Duration::from_secs(2),
            )
            .expect("the history panel explains itself");
        eprintln!("dashboard: screenshot saved to {}", artifact.display());
    });
}
