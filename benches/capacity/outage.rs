//! Outage: 10,000 devices of one site going DOWN in one agent report,
//! applied to a private PostgreSQL and to SQLite: the time to commit it
//! (device rows, events, alerts, outbox), and to read it back.

use std::time::Instant;

use ward_controller::store::{
    ApplyOutcome, DeviceSpec, ReportedTransition, Status, Store, TransitionReport,
};
use ward_testkit::services::Postgres;

const DEVICES: usize = 10_000;

pub async fn run() -> anyhow::Result<()> {
    println!("| backend | devices | apply one 10k-DOWN report | read back all devices |");
    println!("|---|---|---|---|");
    let postgres = Postgres::start()?;
    measure("PostgreSQL", &postgres.url()).await?;
    let dir = tempfile::Builder::new()
        .prefix("ward-test-outage-")
        .tempdir()?;
    measure(
        "SQLite",
        &format!("sqlite:{}", dir.path().join("ward.db").display()),
    )
    .await
}

async fn measure(backend: &str, url: &str) -> anyhow::Result<()> {
    let store = Store::open(url).await?;
    store.migrate().await?;
    let created_at = ward_controller::time::now_ms();
    let mut ids = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let spec = DeviceSpec {
            name: format!("atm-{i}"),
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                0xc612_0000_u32 + u32::try_from(i)?,
            )),
            site: "branch-0421".into(),
            parent_id: None,
            interval_ms: 1000,
            timeout_ms: 500,
            down_after: 3,
            up_after: 2,
            tags: vec![],
            enabled: true,
        };
        ids.push(store.create_device(&spec, created_at).await?.id);
    }
    let probed_at_ms = created_at + 1_000;
    let report = TransitionReport {
        agent_id: "agent-0421".into(),
        boot_id: "boot".into(),
        seq: 1,
        transitions: ids
            .iter()
            .map(|&device_id| ReportedTransition {
                device_id,
                status: Status::Down,
                probed_at_ms,
                last_rtt_us: None,
                reason: "timeouts".into(),
            })
            .collect(),
    };
    let started = Instant::now();
    let outcome = store.apply(&report, probed_at_ms).await?;
    let applied = started.elapsed();
    let changed = match outcome {
        ApplyOutcome::Applied { changed, .. } => changed.len(),
        ApplyOutcome::AlreadyApplied => 0,
    };
    anyhow::ensure!(changed == DEVICES, "{changed} of {DEVICES} changed");
    anyhow::ensure!(store.alerts(true).await?.len() == DEVICES, "alerts missing");
    let started = Instant::now();
    let devices = store.list_devices().await?;
    let read = started.elapsed();
    anyhow::ensure!(
        devices.iter().all(|device| device.status == Status::Down),
        "not all down"
    );
    println!(
        "| {backend} | {DEVICES} | {:.0} ms ({:.0} devices/s) | {:.0} ms |",
        applied.as_secs_f64() * 1e3,
        DEVICES as f64 / applied.as_secs_f64(),
        read.as_secs_f64() * 1e3
    );
    Ok(())
}
