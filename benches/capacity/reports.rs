//! Availability report: 10,000 devices in 100 sites over a month of
//! recorded changes (10 outages each: 200,000 changes), with a daily
//! maintenance window over ten of the sites, on a private PostgreSQL:
//! the time to read and compute the month's report per device and per
//! site (median of five, min–max).

use std::time::Instant;

use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{
    Actor, DeviceSpec, MaintenanceSpec, ReportedTransition, Status, Store, TransitionReport,
};
use ward_domain::availability::{By, ReportFilter};
use ward_domain::maintenance::Every;
use ward_testkit::services::Postgres;

use crate::table::Spread;

const DEVICES: u32 = 10_000;
const SITES: u32 = 100;
const OUTAGES: i64 = 10;
const DAY_MS: i64 = 86_400_000;
const RUNS: usize = 5;

fn device(index: u32) -> DeviceSpec {
    DeviceSpec {
        tags: vec![format!("model-{}", index % 7)],
        ..ward_domain::model::DeviceSpec::new(
            format!("atm-{index}"),
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000_u32 + index)),
            format!("branch-{}", index % SITES),
        )
    }
}

pub async fn run() -> anyhow::Result<()> {
    let postgres = Postgres::start()?;
    let store = Store::open(&postgres.url()).await?;
    store.migrate().await?;
    let controller = App::new(store, Cache::in_process(), AppSettings::default()).await?;
    let to = ward_controller::time::now_ms();
    let from = to - 30 * DAY_MS;
    let specs: Vec<DeviceSpec> = (0..DEVICES).map(device).collect();
    let devices = controller
        .inventory
        .import_devices(&specs, &Actor::console(), from - DAY_MS)
        .await?;
    // Each device goes down and comes back OUTAGES times in the month, at
    // its own minutes: one report per change round for all devices.
    for round in 0..OUTAGES * 2 {
        let status = if round % 2 == 0 {
            Status::Down
        } else {
            Status::Up
        };
        let transitions = devices
            .iter()
            .map(|device| ReportedTransition {
                degraded: None,
                device_id: device.id,
                status,
                probed_at_ms: from
                    + round * (30 * DAY_MS / (OUTAGES * 2))
                    + (device.id % 600) * 60_000,
                last_rtt_us: None,
                reason: "bench".into(),
            })
            .collect();
        controller
            .reports
            .apply_report(
                &TransitionReport {
                    agent_alerts: Vec::new(),
                    agent_id: "bench".into(),
                    boot_id: "bench".into(),
                    seq: u64::try_from(round + 1).unwrap_or(0),
                    transitions,
                },
                to,
            )
            .await?;
    }
    controller
        .maintenance
        .change_maintenance(
            None,
            Some(MaintenanceSpec {
                name: "closed at night".into(),
                starts_at_ms: from - DAY_MS,
                ends_at_ms: from - DAY_MS + 8 * 3_600_000,
                time_zone: "Asia/Tbilisi".into(),
                every: Some(Every::Daily),
                until_ms: None,
                devices: vec![],
                sites: (0..10).map(|site| format!("branch-{site}")).collect(),
                tags: vec![],
                comment: String::new(),
            }),
            &Actor::console(),
        )
        .await?;
    println!(
        "| report (a month, {DEVICES} devices, {} changes) | rows | seconds, median (min–max) of {RUNS} |",
        DEVICES as i64 * OUTAGES * 2
    );
    println!("|---|---|---|");
    for (by, name) in [(By::Device, "by device"), (By::Site, "by site")] {
        let mut seconds = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            rows = controller
                .maintenance
                .availability((from, to), by, &ReportFilter::default())
                .await?
                .len();
            seconds.push(started.elapsed().as_secs_f64());
        }
        let spread = Spread::of(seconds).unwrap_or(Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        });
        println!("| {name} | {rows} | {} |", spread.show(3));
    }
    Ok(())
}
