//! PostgreSQL's own HA under ward: a controller given both hosts of a
//! primary and its streaming standby (`target_session_attrs=read-write`)
//! keeps answering when the primary dies and the standby is promoted:
//! writes fail (and are counted) until the promotion, then go to the new
//! primary, with everything committed before.

mod common;

use std::time::{Duration, Instant};

use common::Api;
use ward_controller::cache::Cache;
use ward_testkit::services::Postgres;

/// Devices the server on `port` holds, read from it directly.
async fn devices_on(port: u16) -> Option<i64> {
    let url = format!("postgres://ward@127.0.0.1:{port}/postgres?connect_timeout=2");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT count(*) FROM devices", &[])
        .await
        .ok()?;
    row.try_get(0).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_given_every_host_follows_the_primary_through_a_promotion() {
    let mut primary = Postgres::start().expect("start PostgreSQL");
    let standby = primary.start_standby().expect("start a standby");
    let url = format!(
        "postgres://ward@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&connect_timeout=2",
        primary.port(),
        standby.port()
    );
    let controller = common::controller(&url, Cache::in_process()).await;
    let api = Api::serve(controller).await;
    let create = async |name: &str, address: &str| {
        api.post(
            "/api/v1/devices",
            serde_json::json!({"name": name, "address": address, "site": "branch-1"}),
        )
        .await
    };
    let (code, body) = create("atm-1", "198.18.1.10").await;
    assert_eq!(code, 201, "{body}");
    // Replicated (asynchronously) before the primary dies.
    let deadline = Instant::now() + Duration::from_secs(10);
    while devices_on(standby.port()).await != Some(1) {
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    primary.crash();
    let crashed = Instant::now();
    let (code, body) = create("atm-2", "198.18.1.11").await;
    assert!(code >= 500, "no primary, no write: {code} {body}");
    standby.promote().expect("promote");
    let promoted = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (code, body) = create("atm-2", "198.18.1.11").await;
        if code == 201 {
            break;
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(30),
            "no write 30 s after the promotion: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "PostgreSQL failover: first write {:?} after the promotion ({:?} after the primary \
         died, {attempts} attempts)",
        promoted.elapsed(),
        crashed.elapsed()
    );
    let (_, devices) = api.get("/api/v1/devices").await;
    let names: Vec<&str> = devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["atm-1", "atm-2"],
        "nothing committed before is lost"
    );
    assert!(
        api.metric("ward_store_errors_total").await >= 1,
        "the failed write counted"
    );
}
