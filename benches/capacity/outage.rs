//! Outage: a site router and its 10,000 devices all reported DOWN in one
//! agent report, applied through the controller (cache primed first) to a
//! private PostgreSQL and to SQLite: the time to commit it (device rows,
//! events, the router's alert and outbox row; the 10,000 children become
//! unreachable without alerts) and to read it back through the cache.

use std::time::Instant;

use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{
    ApplyOutcome, DeviceSpec, ReportedTransition, Status, Store, TransitionReport,
};
use ward_testkit::services::Postgres;

const DEVICES: usize = 10_000;

pub async fn run() -> anyhow::Result<()> {
    println!(
        "| backend | router + devices | apply one report (all DOWN) | read back (summary via cache) |"
    );
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

pub fn device(name: String, index: u32, parent_id: Option<i64>) -> DeviceSpec {
    DeviceSpec {
        parent_id,
        ..ward_domain::model::DeviceSpec::new(
            name,
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000_u32 + index)),
            "branch-0421".into(),
        )
    }
}

async fn measure(backend: &str, url: &str) -> anyhow::Result<()> {
    let store = Store::open(url).await?;
    store.migrate().await?;
    let controller = App::new(store, Cache::in_process(), AppSettings::default()).await?;
    let created_at = ward_controller::time::now_ms();
    let router = controller
        .inventory
        .create_device(
            &device("router".into(), 0, None),
            &ward_controller::store::Actor::console(),
            created_at,
        )
        .await?;
    let children: Vec<DeviceSpec> = (1..=u32::try_from(DEVICES)?)
        .map(|i| device(format!("atm-{i}"), i, Some(router.id)))
        .collect();
    let ids: Vec<i64> = controller
        .inventory
        .import_devices(
            &children,
            &ward_controller::store::Actor::console(),
            created_at,
        )
        .await?
        .iter()
        .map(|device| device.id)
        .collect();
    // Prime the cache: the outage must invalidate it.
    anyhow::ensure!(controller.inventory.summary().await?.unknown == DEVICES as u64 + 1);
    let probed_at_ms = created_at + 1_000;
    let transition = |device_id| ReportedTransition {
        degraded: None,
        device_id,
        status: Status::Down,
        probed_at_ms,
        last_rtt_us: None,
        reason: "timeouts".into(),
    };
    let report = TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: "agent-0421".into(),
        boot_id: "boot".into(),
        seq: 1,
        transitions: std::iter::once(router.id)
            .chain(ids)
            .map(transition)
            .collect(),
    };
    let started = Instant::now();
    let outcome = controller
        .reports
        .apply_report(&report, probed_at_ms)
        .await?;
    let applied = started.elapsed();
    let changed = match outcome {
        ApplyOutcome::Applied { changes, .. } => changes.changed.len(),
        ApplyOutcome::AlreadyApplied => 0,
    };
    anyhow::ensure!(
        changed == DEVICES + 1,
        "{changed} of {} changed",
        DEVICES + 1
    );
    let started = Instant::now();
    let summary = controller.inventory.summary().await?;
    let read = started.elapsed();
    anyhow::ensure!(
        (summary.down, summary.unreachable) == (1, DEVICES as u64),
        "through the cache: {summary:?}"
    );
    let alerts = controller.core.store.alerts(true).await?;
    anyhow::ensure!(
        alerts.len() == 1 && alerts[0].device_id == Some(router.id),
        "only the router alerts"
    );
    println!(
        "| {backend} | 1 + {DEVICES} | {:.0} ms ({:.0} devices/s) | {:.0} ms |",
        applied.as_secs_f64() * 1e3,
        (DEVICES + 1) as f64 / applied.as_secs_f64(),
        read.as_secs_f64() * 1e3
    );
    Ok(())
}
