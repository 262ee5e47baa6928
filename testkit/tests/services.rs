//! Each real server the harness starts answers its own protocol, and is
//! gone (process and directory) once its handle is dropped.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ward_testkit::services::{Postgres, Redis, VictoriaMetrics};

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn postgres_answers_select_1_and_is_removed_on_drop() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let pid = postgres.pid().expect("running");
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    let driver = tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
    drop(client);
    driver
        .await
        .expect("driver task")
        .expect("connection closed cleanly");
    drop(postgres);
    assert!(
        !process_exists(pid),
        "postgres pid {pid} survived its handle"
    );
}

#[tokio::test]
async fn postgres_comes_back_after_a_crash_with_its_data() {
    let mut postgres = Postgres::start().expect("start PostgreSQL");
    let connect = |url: String| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    };
    let client = connect(postgres.url()).await;
    client
        .batch_execute("CREATE TABLE kept (value int); INSERT INTO kept VALUES (7);")
        .await
        .expect("write");
    postgres.crash();
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    postgres.resume().expect("restart after crash");
    let client = connect(postgres.url()).await;
    let row = client
        .query_one("SELECT value FROM kept", &[])
        .await
        .expect("read after restart");
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test]
async fn redis_set_then_get_returns_the_value() {
    let mut redis = Redis::start().expect("start Redis");
    let client = redis::Client::open(redis.url()).expect("redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let _: () = redis::cmd("SET")
        .arg("ward:test")
        .arg("down")
        .query_async(&mut connection)
        .await
        .expect("SET");
    let value: String = redis::cmd("GET")
        .arg("ward:test")
        .query_async(&mut connection)
        .await
        .expect("GET");
    assert_eq!(value, "down");

    redis.stop();
    let refused = redis::cmd("GET")
        .arg("ward:test")
        .query_async::<Option<String>>(&mut connection)
        .await;
    assert!(refused.is_err(), "a stopped Redis must not answer");
    redis.resume().expect("restart Redis");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("reconnect");
    let value: Option<String> = redis::cmd("GET")
        .arg("ward:test")
        .query_async(&mut connection)
        .await
        .expect("GET after restart");
    assert_eq!(value, None, "a restarted test Redis starts empty");
}

#[tokio::test]
async fn victoria_metrics_exports_an_imported_sample_unchanged() {
    let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
    let http = reqwest::Client::new();
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("fits i64");
    // A timestamp with non-zero milliseconds, to see they are kept.
    let timestamp_ms = now_ms - now_ms % 1000 - 60_000 + 123;
    let value = 0.042_125;
    let line = serde_json::json!({
        "metric": {"__name__": "ward_probe_rtt_seconds", "device": "atm-2", "stat": "avg"},
        "values": [value],
        "timestamps": [timestamp_ms],
    });
    let response = http
        .post(format!("{}/api/v1/import", vm.url()))
        .body(format!("{line}\n"))
        .send()
        .await
        .expect("import request");
    assert!(
        response.status().is_success(),
        "import: {}",
        response.status()
    );
    let flushed = http
        .get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .expect("force flush");
    assert!(flushed.status().is_success(), "flush: {}", flushed.status());

    let exported = http
        .get(format!("{}/api/v1/export", vm.url()))
        .query(&[("match[]", r#"ward_probe_rtt_seconds{device="atm-2"}"#)])
        .send()
        .await
        .expect("export request")
        .text()
        .await
        .expect("export body");
    let series: Vec<serde_json::Value> = exported
        .lines()
        .map(|line| serde_json::from_str(line).expect("export is JSON lines"))
        .collect();
    assert_eq!(series.len(), 1, "one series expected: {exported}");
    let series = &series[0];
    assert_eq!(series["metric"]["stat"], "avg");
    assert_eq!(series["values"], serde_json::json!([value]));
    assert_eq!(series["timestamps"], serde_json::json!([timestamp_ms]));
}
