//! PostgreSQL's planner statistics are refreshed as devices are created,
//! in one large import or many small ones: stale statistics after a fleet's
//! inventory was written site by site (200 devices at a time) made every
//! status commit plan for an empty table (a group of reports took 10.7 s,
//! PostgreSQL used 0.87 cores for 40,000 devices) until autovacuum came.

mod common;

use ward_controller::cache::Cache;
use ward_controller::store::{Actor, DeviceSpec};
use ward_testkit::services::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_created_in_small_batches_refresh_the_planners_statistics() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let controller = common::controller(&postgres.url(), Cache::in_process()).await;
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let analyzed = || async {
        client
            .query_one(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'devices'",
                &[],
            )
            .await
            .expect("statistics")
            .get::<_, i64>(0)
    };
    assert_eq!(analyzed().await, 0);
    for batch in 0..10u32 {
        let specs: Vec<DeviceSpec> = (0..100u32)
            .map(|i| {
                DeviceSpec::new(
                    format!("dev-{batch}-{i}"),
                    format!("198.18.{batch}.{}", i + 1)
                        .parse()
                        .expect("address"),
                    format!("branch-{batch}"),
                )
            })
            .collect();
        controller
            .inventory
            .import_devices(&specs, &Actor::console(), 1_000)
            .await
            .expect("import");
    }
    // The statistics collector reports within a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while analyzed().await == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        analyzed().await >= 1,
        "1,000 devices created 100 at a time and devices never analyzed"
    );
}
