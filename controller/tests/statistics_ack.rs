//! Statistics are acknowledged only once the controller holds them, a
//! VictoriaMetrics that is behind (or stuck) never holds an agent's
//! reports back (what it cannot take waits in the controller's spool), and VictoriaMetrics never gets a POST of more than 10,000 rows,
//! however large one agent report is. The import endpoint here is a real HTTP
//! server on loopback that counts the rows of every POST and can hold its
//! answers back (a stuck VictoriaMetrics).
#![allow(
    clippy::disallowed_types,
    reason = "the test's import receiver records row counts under a mutex"
)]

mod common;

use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use ward_controller::services::App;
use ward_controller::store::Store;
use ward_controller::tsdb::{DeviceLabels, DeviceStatistics, StatisticsReport, Tsdb, TsdbConfig};

struct Import {
    /// Rows of every POST, in order.
    posts: Mutex<Vec<usize>>,
    /// Answers wait for this while it is closed.
    open: tokio::sync::Semaphore,
}

async fn receive(State(import): State<Arc<Import>>, body: Bytes) -> StatusCode {
    let mut text = String::new();
    if flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .is_err()
    {
        return StatusCode::BAD_REQUEST;
    }
    let _open = import.open.acquire().await;
    import
        .posts
        .lock()
        .expect("lock")
        .push(text.lines().count());
    StatusCode::NO_CONTENT
}

async fn start_import(open: bool) -> (Arc<Import>, String) {
    let import = Arc::new(Import {
        posts: Mutex::default(),
        open: tokio::sync::Semaphore::new(if open {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            0
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route("/api/v1/import", axum::routing::post(receive))
        .with_state(Arc::clone(&import));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (import, url)
}

/// A controller on a fresh SQLite file (kept while the returned guard
/// lives) writing to `vm_url`.
async fn controller(vm_url: &str, spool: &std::path::Path) -> (tempfile::TempDir, App) {
    let (dir, store_url) = common::sqlite_url();
    let store = Store::open(&store_url).await.expect("open store");
    store.migrate().await.expect("migrate");
    let (tsdb, _writer) = Tsdb::start(
        TsdbConfig {
            url: vm_url.to_owned(),
            spool_dir: spool.to_path_buf(),
            spool_max_bytes: 64 << 20,
        },
        std::future::pending(),
    )
    .expect("writer");
    (dir, common::writing_to(store, tsdb).await)
}

/// The import endpoint (answering when `open`) and a controller writing
/// to it, with its database and spool directories (kept while they live).
async fn writing_to_import(open: bool) -> (Arc<Import>, [tempfile::TempDir; 2], App) {
    let (import, url) = start_import(open).await;
    let spool = tempfile::Builder::new()
        .prefix("ward-test-spool-")
        .tempdir()
        .expect("spool");
    let (store, controller) = controller(&url, spool.path()).await;
    (import, [store, spool], controller)
}

fn report(devices: i64, period_end_ms: i64) -> StatisticsReport {
    StatisticsReport {
        agent_id: "agent-1".into(),
        period_end_ms,
        devices: (1..=devices)
            .map(|device_id| DeviceStatistics {
                device_id,
                sent: 10,
                received: 9,
                rtt_min_us: 800,
                rtt_avg_us: 1_000,
                rtt_max_us: 1_500,
                jitter_us: 90,
                rtt_quantiles_us: Some((1_000, 1_400)),
            })
            .collect(),
    }
}

fn labels(id: i64) -> Option<DeviceLabels> {
    Some(DeviceLabels {
        name: format!("host-{id}").into(),
        address: "198.18.0.1".into(),
        site: "branch-1".into(),
        up: true,
    })
}

#[tokio::test]
async fn one_large_report_is_posted_in_batches_of_at_most_10000_rows() {
    let (import, _dirs, controller) = writing_to_import(true).await;
    // 5,000 devices, 9 rows each (six RTT statistics, loss, sent, up).
    let queued = controller
        .reports
        .record_statistics_with(&report(5_000, ward_controller::time::now_ms()), labels)
        .await
        .expect("taken");
    assert_eq!(queued, 5_000);
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    for _ in 0..500 {
        if metrics.rows_written.load(Ordering::Relaxed) == 45_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.rows_written.load(Ordering::Relaxed), 45_000);
    let posts = import.posts.lock().expect("lock").clone();
    assert!(posts.len() >= 4, "{posts:?}");
    assert!(
        posts.iter().all(|&rows| rows <= 10_000),
        "every POST at most 10,000 rows: {posts:?}"
    );
    assert_eq!(posts.iter().sum::<usize>(), 45_000);
}

/// Hands the stuck writer 20,000 one-device reports: each must be taken
/// at once (within 2 s); returns how many rows they are.
async fn load_the_writer(controller: &App) -> u64 {
    let now = ward_controller::time::now_ms();
    for period in 0..20_000 {
        let one = report(1, now - period);
        let recorded = controller.reports.record_statistics_with(&one, labels);
        match tokio::time::timeout(Duration::from_secs(2), recorded).await {
            Ok(taken) => assert_eq!(taken.expect("taken"), 1),
            Err(_) => panic!(
                "report {period} waited for VictoriaMetrics: a writer that is behind must spool, not hold reports back"
            ),
        }
    }
    20_000 * 9
}

/// Waits up to 60 s for `rows` rows written.
async fn written(metrics: &ward_controller::tsdb::TsdbMetrics, rows: u64) -> u64 {
    for _ in 0..3_000 {
        if metrics.rows_written.load(Ordering::Relaxed) >= rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    metrics.rows_written.load(Ordering::Relaxed)
}

/// VictoriaMetrics takes the connection and never answers (stuck, not
/// down): the writer keeps taking reports (before, it waited on its
/// POSTs and then held every agent's stream), what it cannot post waits
/// in its spool, and once VictoriaMetrics answers every row is written
/// and the spool empties; nothing is dropped.
#[tokio::test]
async fn a_victoria_metrics_that_does_not_answer_holds_no_report_back_its_rows_wait_in_the_spool() {
    let (import, _dirs, controller) = writing_to_import(false).await;
    let expected = load_the_writer(&controller).await;
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    for _ in 0..500 {
        if metrics.spooled_rows.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.spooled_rows.load(Ordering::Relaxed) > 0,
        "what the stuck POSTs left waits in the spool"
    );
    assert_eq!(metrics.rows_written.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.rows_dropped.load(Ordering::Relaxed), 0);

    import
        .open
        .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    assert_eq!(written(metrics, expected).await, expected);
    assert_eq!(metrics.rows_dropped.load(Ordering::Relaxed), 0);
    for _ in 0..500 {
        if metrics.spooled_rows.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.spooled_rows.load(Ordering::Relaxed), 0);
    let posted: usize = import.posts.lock().expect("lock").iter().sum();
    assert!(
        posted as u64 >= expected,
        "VictoriaMetrics got {posted} rows of {expected}"
    );
}

/// With VictoriaMetrics stuck behind 20,000 reports, an agent's
/// statistics and the DOWN it sends after them are both taken at once:
/// the DOWN is applied, and one acknowledgement covers both (the
/// statistics are in the controller's spool). Before, the statistics
/// waited for room in the writer's queue and the stream behind them with
/// them: at 200,000 devices a change waited more than a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_behind_statistics_is_applied_and_acknowledged_while_victoria_metrics_is_stuck() {
    use common::scripted_agent::ScriptedAgent;
    use ward_proto::v1 as pb;
    let (import, _dirs, controller) = writing_to_import(false).await;
    let api = common::Api::serve(controller.clone()).await;
    let grpc = common::serve_grpc(controller.clone()).await;
    let (code, body) = api
        .post(
            "/api/v1/agents",
            serde_json::json!({"id": "branch-7-agent", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, device) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-7", "address": "198.18.7.7", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    let id = device["id"].as_i64().expect("id");
    let mut agent = ScriptedAgent::link(&grpc, "boot-1", 0).await;
    agent.assigned(id).await;
    agent.report(id, pb::DeviceState::Up).await;
    let loaded = load_the_writer(&controller).await;

    let _first = agent.send_statistics(id).await;
    let _second = agent.send_statistics(id).await;
    let down = agent.send_transition(id, pb::DeviceState::Down).await;
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = api.get(&format!("/api/v1/devices/{id}")).await.1["status"].clone();
        if status == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "down", "the DOWN is applied at once");
    let acked = tokio::time::timeout(Duration::from_secs(5), agent.acked(down)).await;
    let ack = acked.expect("one acknowledgement covers both statistics and the DOWN within 5 s");
    assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);

    import
        .open
        .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    // Two more devices' statistics without quantiles: 7 rows each.
    let expected = loaded + 2 * 7;
    assert_eq!(written(metrics, expected).await, expected);
    assert_eq!(metrics.rows_dropped.load(Ordering::Relaxed), 0);
}
