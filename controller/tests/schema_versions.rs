//! A controller never runs on a database a newer release migrated (a
//! rolling upgrade goes forward only): it refuses at start, naming the
//! database's migration and its own, on both backends.

mod common;

use ward_controller::store::Store;

const FROM_THE_FUTURE: &str =
    "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (9999, 0)";

fn assert_refused(refused: &str) {
    assert!(
        refused.contains("schema is at migration 9999, newer than this controller knows ("),
        "{refused}"
    );
    assert!(refused.contains("run that release"), "{refused}");
}

#[tokio::test]
async fn sqlite_migrated_by_a_newer_release_is_refused() {
    let (_dir, url) = common::sqlite_url();
    let store = Store::open(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    let path = url.strip_prefix("sqlite:").expect("sqlite URL");
    rusqlite::Connection::open(path)
        .expect("open the file")
        .execute(FROM_THE_FUTURE, [])
        .expect("a newer release's migration");
    let refused = Store::open(&url)
        .await
        .expect("open")
        .migrate()
        .await
        .expect_err("a newer schema is refused");
    assert_refused(&refused.to_string());
}

#[tokio::test]
async fn postgres_migrated_by_a_newer_release_is_refused() {
    let server = ward_testkit::services::Postgres::start().expect("start PostgreSQL");
    let store = Store::open(&server.url()).await.expect("open");
    store.migrate().await.expect("migrate");
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .execute(FROM_THE_FUTURE, &[])
        .await
        .expect("a newer release's migration");
    let refused = store
        .migrate()
        .await
        .expect_err("a newer schema is refused");
    assert_refused(&refused.to_string());
}
