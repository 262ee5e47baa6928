//! Probe statistics reach a real VictoriaMetrics with the right values,
//! labels and millisecond timestamps, and none is lost while it is down
//! (within the spool bound), not even across a controller restart.

mod common;

use std::time::Duration;

use serde_json::Value;
use ward_controller::services::App;
use ward_controller::store::{DeviceSpec, Store};
use ward_controller::tsdb::{DeviceStatistics, StatisticsReport, Tsdb, TsdbConfig};
use ward_testkit::services::VictoriaMetrics;

/// A controller on SQLite writing to `vm_url`, its spool in `spool_dir`;
/// the writer stops when the returned sender is dropped or sent to.
struct Setup {
    controller: App,
    stop: tokio::sync::oneshot::Sender<()>,
    writer: tokio::task::JoinHandle<()>,
}

async fn start(store_url: &str, vm_url: &str, spool_dir: &std::path::Path) -> Setup {
    let store = Store::open(store_url).await.expect("open store");
    store.migrate().await.expect("migrate");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tsdb, writer) = Tsdb::start(
        TsdbConfig {
            url: vm_url.to_owned(),
            spool_dir: spool_dir.to_path_buf(),
            spool_max_bytes: 64 << 20,
        },
        async move {
            let _ = stopped.await;
        },
    )
    .expect("start the writer");
    let controller = common::writing_to(store, tsdb).await;
    Setup {
        controller,
        stop,
        writer,
    }
}

async fn create_device(controller: &App, name: &str, address: &str) -> i64 {
    create_device_at(controller, name, address, "branch-3").await
}

/// Device `name` at `address` of `site`.
async fn create_device_at(controller: &App, name: &str, address: &str, site: &str) -> i64 {
    let spec = DeviceSpec {
        up_after: 1,
        ..DeviceSpec::new(name.into(), address.parse().expect("address"), site.into())
    };
    controller
        .inventory
        .create_device(
            &spec,
            &ward_controller::store::Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("create device")
        .id
}

fn statistics(device_id: i64, sent: u32, received: u32) -> DeviceStatistics {
    DeviceStatistics {
        device_id,
        sent,
        received,
        rtt_min_us: 812,
        rtt_avg_us: 1_250,
        rtt_max_us: 2_004,
        jitter_us: 97,
        rtt_quantiles_us: None,
    }
}

/// A period end in the recent past with non-zero milliseconds.
fn period_end(periods_ago: i64) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = ward_controller::time::now_ms();
        now - now % 1_000 - 120_000 + 123
    });
    base - periods_ago * 1_000
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn written(controller: &App) -> u64 {
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    metrics
        .rows_written
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn spooled(controller: &App) -> u64 {
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    metrics
        .spooled_rows
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Every exported series of `name`, keyed by its `device` and `stat`.
async fn export(vm: &VictoriaMetrics, selector: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let flushed = http
        .get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .expect("force flush");
    assert!(flushed.status().is_success());
    let text = http
        .get(format!("{}/api/v1/export", vm.url()))
        .query(&[("match[]", selector)])
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("export body");
    let mut series: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("export is JSON lines"))
        .collect();
    series.sort_by_key(|s| {
        (
            s["metric"]["device"].to_string(),
            s["metric"]["stat"].to_string(),
        )
    });
    series
}

#[tokio::test]
async fn statistics_are_exported_with_their_values_labels_and_millisecond_timestamps() {
    let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let (dir, store_url) = common::sqlite_url();
    let setup = start(&store_url, &vm.url(), &dir.path().join("spool")).await;
    let controller = &setup.controller;
    let answering = create_device(controller, "core-1", "198.18.1.1").await;
    let silent = create_device(controller, "atm-2", "198.18.2.2").await;
    let at = period_end(0);
    let queued = controller
        .reports
        .record_statistics(&StatisticsReport {
            agent_id: "agent-7".into(),
            period_end_ms: at,
            devices: vec![
                statistics(answering, 4, 3),
                statistics(silent, 4, 0),
                statistics(9_999, 1, 1),
            ],
        })
        .await
        .expect("record");
    assert_eq!(queued, 2, "the unknown device is skipped");
    assert_eq!(
        controller
            .core
            .metrics
            .statistics_ignored
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // 4 RTT + loss + sent + up for the answering device, 3 for the silent one.
    wait_for("10 rows written", || written(controller) == 10).await;

    let rtt = export(&vm, r#"ward_probe_rtt_seconds{device="core-1"}"#).await;
    let by_stat = |stat: &str| {
        rtt.iter()
            .find(|s| s["metric"]["stat"] == stat)
            .unwrap_or_else(|| panic!("no {stat} series in {rtt:?}"))
    };
    for (stat, seconds) in [
        ("min", 0.000812),
        ("avg", 0.00125),
        ("max", 0.002004),
        ("jitter", 0.000097),
    ] {
        let series = by_stat(stat);
        assert_eq!(series["values"], serde_json::json!([seconds]), "{stat}");
        assert_eq!(series["timestamps"], serde_json::json!([at]), "{stat}");
        let metric = &series["metric"];
        assert_eq!(
            (
                &metric["device"],
                &metric["address"],
                &metric["site"],
                &metric["agent"]
            ),
            (
                &Value::from("core-1"),
                &Value::from("198.18.1.1"),
                &Value::from("branch-3"),
                &Value::from("agent-7")
            )
        );
    }
    let loss = export(&vm, "ward_probe_loss_ratio").await;
    let values: Vec<(&str, f64)> = loss
        .iter()
        .map(|s| {
            let device = s["metric"]["device"].as_str().expect("device");
            (device, s["values"][0].as_f64().expect("value"))
        })
        .collect();
    assert_eq!(values, [("atm-2", 1.0), ("core-1", 0.25)]);
    let sent = export(&vm, "ward_probe_sent_total").await;
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|s| s["values"][0] == 4.0 && s["timestamps"][0] == at)
    );
    let up = export(&vm, "ward_device_up").await;
    // Neither device has been reported up yet: both are `unknown`.
    assert!(up.iter().all(|s| s["values"][0] == 0.0), "{up:?}");
    assert!(
        export(&vm, r#"ward_probe_rtt_seconds{device="atm-2"}"#)
            .await
            .is_empty(),
        "no RTT without replies"
    );
    let _ = setup.stop.send(());
    setup.writer.await.expect("writer");
}

#[tokio::test]
async fn victoria_metrics_down_and_restarted_loses_no_sample_within_the_spool() {
    let mut vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let (dir, store_url) = common::sqlite_url();
    let spool_dir = dir.path().join("spool");
    let setup = start(&store_url, &vm.url(), &spool_dir).await;
    let controller = setup.controller.clone();
    let api = common::Api::serve(controller.clone()).await;
    let device = create_device(&controller, "router-1", "198.18.1.1").await;
    let report = |periods_ago: i64, sent: u32| StatisticsReport {
        agent_id: "agent-7".into(),
        period_end_ms: period_end(periods_ago),
        devices: vec![statistics(device, sent, sent)],
    };
    controller
        .reports
        .record_statistics(&report(9, 1))
        .await
        .expect("record");
    wait_for("the first period written", || written(&controller) == 7).await;

    vm.stop();
    controller
        .reports
        .record_statistics(&report(8, 2))
        .await
        .expect("record");
    wait_for("rows spooled", || spooled(&controller) == 7).await;
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(
        (code, &ready["status"]),
        (200, &Value::from("degraded")),
        "{ready}"
    );
    assert_eq!(ready["components"]["tsdb"]["status"], "failing", "{ready}");
    assert!(api.metric("ward_tsdb_write_errors_total").await >= 1);
    controller
        .reports
        .record_statistics(&report(7, 3))
        .await
        .expect("record");
    wait_for("more rows spooled", || spooled(&controller) == 14).await;

    // The controller stops while VictoriaMetrics is down: the spool stays.
    let _ = setup.stop.send(());
    setup.writer.await.expect("writer");
    drop(api);
    drop(controller);

    vm.resume().expect("restart VictoriaMetrics");
    let restarted = start(&store_url, &vm.url(), &spool_dir).await;
    let controller = restarted.controller.clone();
    controller
        .reports
        .record_statistics(&report(6, 4))
        .await
        .expect("record");
    wait_for("spool replayed and the new period written", || {
        written(&controller) == 21 && spooled(&controller) == 0
    })
    .await;

    let sent = export(&vm, "ward_probe_sent_total").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let timestamps: Vec<i64> = sent[0]["timestamps"]
        .as_array()
        .expect("timestamps")
        .iter()
        .map(|t| t.as_i64().expect("ms"))
        .collect();
    assert_eq!(
        timestamps,
        [9, 8, 7, 6].map(period_end),
        "every period arrived"
    );
    // The counter restarts with the controller: 1, 1+2, 1+2+3, then 4.
    assert_eq!(sent[0]["values"], serde_json::json!([1, 3, 6, 4]));
    let _ = restarted.stop.send(());
    restarted.writer.await.expect("writer");
}

#[tokio::test]
async fn a_corrupt_spool_file_is_set_aside_and_counted_without_blocking_the_rest() {
    let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let (dir, store_url) = common::sqlite_url();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir_all(&spool_dir).expect("spool dir");
    std::fs::write(
        spool_dir.join("00000000000000000000-5.jsonl.gz"),
        b"not gzip at all",
    )
    .expect("corrupt file");
    let setup = start(&store_url, &vm.url(), &spool_dir).await;
    let controller = &setup.controller;
    let metrics = controller.reports.tsdb.as_ref().expect("tsdb").metrics();
    wait_for("the corrupt body counted as dropped", || {
        metrics
            .rows_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            == 5
    })
    .await;
    assert!(
        spool_dir
            .join("00000000000000000000-5.jsonl.gz.rejected")
            .exists(),
        "kept for the operator"
    );
    let device = create_device(controller, "router-1", "198.18.1.1").await;
    controller
        .reports
        .record_statistics(&StatisticsReport {
            agent_id: "agent-7".into(),
            period_end_ms: period_end(0),
            devices: vec![statistics(device, 1, 1)],
        })
        .await
        .expect("record");
    wait_for("later rows written", || written(controller) == 7).await;
    assert_eq!(spooled(controller), 0);
    let _ = setup.stop.send(());
    setup.writer.await.expect("writer");
}

#[tokio::test]
async fn a_devices_rtt_history_is_read_back_for_the_dashboard() {
    let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let (dir, store_url) = common::sqlite_url();
    let setup = start(&store_url, &vm.url(), &dir.path().join("spool")).await;
    let controller = setup.controller.clone();
    let api = common::Api::serve(controller.clone()).await;
    let device = create_device(&controller, "core-1", "198.18.1.1").await;
    let now = ward_controller::time::now_ms();
    for (ago, avg_us) in [(120_000, 1_000), (60_000, 3_000)] {
        controller
            .reports
            .record_statistics(&StatisticsReport {
                agent_id: "agent-7".into(),
                period_end_ms: now - ago,
                devices: vec![DeviceStatistics {
                    rtt_avg_us: avg_us,
                    rtt_quantiles_us: Some((1_100, 1_900)),
                    ..statistics(device, 4, 4)
                }],
            })
            .await
            .expect("record");
    }
    wait_for("both periods written", || written(&controller) == 18).await;
    let http = reqwest::Client::new();
    http.get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .expect("flush");
    let (code, history) = api
        .get(&format!("/api/v1/devices/{device}/rtt?minutes=10"))
        .await;
    assert_eq!(code, 200, "{history}");
    let points = history["points"].as_array().expect("points");
    let values: Vec<f64> = points.iter().filter_map(|p| p["rtt_ms"].as_f64()).collect();
    assert!(values.contains(&1.0) && values.contains(&3.0), "{history}");
    // The band around each mean: the period's lowest and highest, and loss.
    for point in points.iter().filter(|p| p["rtt_ms"].is_number()) {
        assert_eq!(
            (
                point["min_ms"].as_f64(),
                point["max_ms"].as_f64(),
                point["loss"].as_f64(),
                point["p50_ms"].as_f64()
            ),
            (Some(0.812), Some(2.004), Some(0.0), Some(1.1)),
            "{point}"
        );
    }
    let (code, bad) = api
        .get(&format!("/api/v1/devices/{device}/rtt?minutes=0"))
        .await;
    assert_eq!((code, bad["field"].as_str()), (400, Some("minutes")));
    let (code, _) = api.get("/api/v1/devices/999/rtt").await;
    assert_eq!(code, 404);
    let _ = setup.stop.send(());
    setup.writer.await.expect("writer");
}

/// `deploy/grafana/ward.json` with Grafana's variables given values: every
/// site and device, a 10-minute range.
fn grafana_expression(expression: &str) -> String {
    expression
        .replace("$site", ".*")
        .replace("$device", ".*")
        .replace("$__range", "10m")
        .replace("$__rate_interval", "2m")
}

/// Every panel query of the shipped Grafana dashboard, and its variables'
/// queries, return the expected series from a real VictoriaMetrics fed
/// through the controller.
#[tokio::test]
async fn every_grafana_panel_returns_its_series() {
    let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let (dir, store_url) = common::sqlite_url();
    let setup = start(&store_url, &vm.url(), &dir.path().join("spool")).await;
    let controller = setup.controller.clone();
    let lossy = create_device(&controller, "atm-1", "198.18.1.1").await;
    let clean = create_device_at(&controller, "router-1", "198.18.2.1", "branch-4").await;
    let now = ward_controller::time::now_ms();
    for ago in [180_000, 120_000, 60_000] {
        controller
            .reports
            .record_statistics(&StatisticsReport {
                agent_id: "agent-7".into(),
                period_end_ms: now - ago,
                devices: [statistics(lossy, 4, 2), statistics(clean, 4, 4)]
                    .map(|entry| DeviceStatistics {
                        rtt_quantiles_us: Some((1_100, 1_900)),
                        ..entry
                    })
                    .into(),
            })
            .await
            .expect("record");
    }
    wait_for("three periods written", || {
        written(&controller) == 3 * 2 * 9
    })
    .await;
    let http = reqwest::Client::new();
    http.get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .expect("flush");

    let dashboard: Value = serde_json::from_str(include_str!("../../deploy/grafana/ward.json"))
        .expect("the dashboard is JSON");
    // The variables: `label_values(SELECTOR, LABEL)`.
    for (variable, expected) in [
        ("site", vec!["branch-3", "branch-4"]),
        ("device", vec!["atm-1", "router-1"]),
    ] {
        let query = dashboard["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .find(|entry| entry["name"] == variable)
            .and_then(|entry| entry["query"]["query"].as_str())
            .expect("the variable's query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(&format!(", {variable})")))
            .unwrap_or_else(|| panic!("{variable}: {query}"));
        let answer: Value = http
            .get(format!("{}/api/v1/label/{variable}/values", vm.url()))
            .query(&[("match[]", grafana_expression(inner))])
            .send()
            .await
            .expect("label values")
            .json()
            .await
            .expect("json");
        assert_eq!(
            answer["data"],
            serde_json::json!(expected),
            "{variable}: {answer}"
        );
    }
    let mut answers = std::collections::BTreeMap::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expression = grafana_expression(target["expr"].as_str().expect("expr"));
            let now_s = format!("{:.3}", ward_controller::time::now_ms() as f64 / 1000.0);
            let answer: Value = http
                .get(format!("{}/api/v1/query", vm.url()))
                .query(&[("query", expression.as_str()), ("time", now_s.as_str())])
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            let series = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                answer["status"] == "success" && !series.is_empty(),
                "panel {}: `{expression}` returned {answer}",
                panel["title"]
            );
            answers.insert(
                format!("{} {}", panel["id"], target["refId"].as_str().unwrap_or("")),
                series,
            );
        }
    }
    let value = |series: &Value| -> f64 {
        series["value"][1]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("a value")
    };
    // Availability by site: both sites; worst loss: atm-1 (half lost) first.
    assert_eq!(answers["2 A"].len(), 2, "{:?}", answers["2 A"]);
    let worst = &answers["5 A"];
    let top = worst
        .iter()
        .max_by(|a, b| value(a).total_cmp(&value(b)))
        .expect("a device");
    assert_eq!(
        (top["metric"]["device"].as_str(), value(top)),
        (Some("atm-1"), 0.5)
    );
    // Degraded by ward's default thresholds: atm-1, at half its probes lost.
    assert_eq!(
        answers["8 A"].iter().map(value).collect::<Vec<_>>(),
        [1.0],
        "{:?}",
        answers["8 A"]
    );
    // The RTT band: min ≤ mean ≤ max for each device.
    for (min, avg, max) in answers["3 A"]
        .iter()
        .zip(&answers["3 B"])
        .zip(&answers["3 C"])
        .map(|((a, b), c)| (value(a), value(b), value(c)))
    {
        assert!(min <= avg && avg <= max, "{min} {avg} {max}");
    }
    let _ = setup.stop.send(());
    setup.writer.await.expect("writer");
}
