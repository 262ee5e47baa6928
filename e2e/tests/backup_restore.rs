//! Backup and restore, on both backends, as an operator runs them: a
//! backup taken while the controller runs, the world moving on (a device
//! that was up in the backup goes down), then the controller stopped and
//! the backup restored. The restored controller never shows the backup's
//! `up` for the device that is down now: it is `unknown` until its agent
//! reports, then `down`. Alerts and history come back as the backup had
//! them; a restore while a controller runs is refused and changes nothing.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and a real network: the test waits in wall-clock time"
)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ward_e2e::{Database, Deployment, controller_binary, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-7";
const HOSTS: u32 = 6;

fn console(deployment: &Deployment, args: &[&str]) -> Output {
    let config = deployment.dir.path().join("controller.toml");
    Command::new(controller_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("ward-controller runs")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn status(deployment: &Deployment, id: i64) -> String {
    let (code, device) = deployment.rest.get(&format!("/api/v1/devices/{id}"));
    assert_eq!(code, 200, "device {id}: {device}");
    device["status"].as_str().unwrap_or_default().to_owned()
}

fn wait_status(deployment: &Deployment, id: i64, wanted: &str) {
    wait_until(
        &format!("device {id} {wanted}"),
        Duration::from_secs(20),
        || status(deployment, id) == wanted,
    );
}

/// Ids of the alerts `GET /api/v1/alerts` lists.
fn alert_ids(deployment: &Deployment) -> Vec<i64> {
    let (code, body) = deployment.rest.get("/api/v1/alerts");
    assert_eq!(code, 200, "{body}");
    let mut ids: Vec<i64> = body
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

/// The changes `GET /api/v1/history?device=ID` lists, oldest first.
fn history(deployment: &Deployment, id: i64) -> Vec<(String, String)> {
    let (code, body) = deployment
        .rest
        .get(&format!("/api/v1/history?device={id}&limit=1000"));
    assert_eq!(code, 200, "{body}");
    let mut changes: Vec<(i64, String, String)> = body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| {
            (
                change["id"].as_i64().unwrap_or_default(),
                change["to"].as_str().unwrap_or_default().to_owned(),
                change["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    changes.sort_unstable();
    changes.into_iter().map(|(_, to, why)| (to, why)).collect()
}

fn restored_while_a_device_was_down(database: Database) {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.7.0/24".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let mut deployment = Deployment::start_on(site, database).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 7, 1), HOSTS, 500, 300);
    let (was_down, goes_down) = (ids[0], ids[1]);
    let agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    wait_until("every host up", Duration::from_secs(30), || {
        deployment.rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS)
    });
    deployment
        .lab
        .take_down(deployment.address_of(was_down))
        .expect("take down");
    wait_status(&deployment, was_down, "down");
    let alerts = alert_ids(&deployment);
    assert_eq!(alerts.len(), 1, "one DeviceDown alert open");
    let backed_up_history = history(&deployment, was_down);

    // The backup, while the controller runs.
    let archive = deployment.dir.path().join("backups/ward.tar.gz");
    std::fs::create_dir_all(archive.parent().expect("dir")).expect("mkdir");
    let backup = console(&deployment, &["backup", "--to", &archive.to_string_lossy()]);
    assert!(backup.status.success(), "backup: {}", said(&backup));
    let mode = std::fs::metadata(&archive)
        .expect("archive")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the archive holds the controller's key"
    );
    let listed = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .expect("tar");
    let entries = String::from_utf8_lossy(&listed.stdout).into_owned();
    for wanted in [
        "ward-backup.json",
        "controller.toml",
        "controller.key",
        "ca.pem",
    ] {
        assert!(
            entries.contains(wanted),
            "{wanted} in the archive: {entries}"
        );
    }

    // The world moves on: the down device comes back, another goes down.
    deployment
        .lab
        .bring_up(deployment.address_of(was_down))
        .expect("bring up");
    deployment
        .lab
        .take_down(deployment.address_of(goes_down))
        .expect("take down");
    wait_status(&deployment, was_down, "up");
    wait_status(&deployment, goes_down, "down");

    // A restore while the controller runs is refused and changes nothing.
    let refused = console(
        &deployment,
        &["restore", "--from", &archive.to_string_lossy()],
    );
    assert!(!refused.status.success(), "{}", said(&refused));
    assert!(
        said(&refused).contains("already runs on")
            || said(&refused).contains("stop every controller"),
        "names the running controller: {}",
        said(&refused)
    );
    assert_eq!(status(&deployment, goes_down), "down", "nothing changed");

    // The restore, controller and agent stopped.
    drop(agent);
    deployment.controller = None;
    let files = deployment.dir.path().join("restored-files");
    let restore = console(
        &deployment,
        &[
            "restore",
            "--from",
            &archive.to_string_lossy(),
            "--files-to",
            &files.to_string_lossy(),
        ],
    );
    let restore_said = said(&restore);
    assert!(restore.status.success(), "restore: {restore_said}");
    assert!(
        restore_said.contains(&format!("{HOSTS} device(s) are unknown")),
        "{restore_said}"
    );
    assert!(restore_said.contains("kept as"), "{restore_said}");
    assert_eq!(
        std::fs::read(files.join("controller.toml")).expect("config written"),
        std::fs::read(deployment.dir.path().join("controller.toml")).expect("config"),
    );

    // The controller on the restored database: every device unknown.
    deployment.start_controller().expect("controller");
    for &id in &ids {
        assert_eq!(
            status(&deployment, id),
            "unknown",
            "device {id} after the restore"
        );
    }
    let restored_history = history(&deployment, was_down);
    assert_eq!(
        restored_history[..backed_up_history.len()],
        backed_up_history[..],
        "history comes back whole"
    );
    let (to, reason) = restored_history.last().expect("the restore's change");
    assert_eq!(to, "unknown");
    assert!(
        reason.contains("restored from a backup taken at"),
        "{reason}"
    );
    assert_eq!(alert_ids(&deployment), alerts, "alerts come back whole");

    // The agent reports again: the device down now is never `up`.
    let agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let now = status(&deployment, goes_down);
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == "down" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen,
        ["unknown", "down"],
        "device {goes_down} after the restore"
    );
    wait_status(&deployment, was_down, "up");
    drop(agent);
}

#[test]
fn a_postgresql_backup_restored_while_a_device_was_down_shows_it_unknown_then_down_never_up() {
    restored_while_a_device_was_down(Database::Postgres);
}

#[test]
fn an_sqlite_backup_restored_while_a_device_was_down_shows_it_unknown_then_down_never_up() {
    restored_while_a_device_was_down(Database::Sqlite);
}
