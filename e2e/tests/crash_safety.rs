//! Nothing is lost and nothing happens twice: the controller killed
//! (SIGKILL) during an outage burst, PostgreSQL restarted under load, the
//! agent partitioned from its controller (nftables) under load, and an
//! agent killed and restarted while the controller is down. While the
//! burst is reported, a reader compares the REST API with the database:
//! a read that starts after the database shows N devices down must show
//! at least N (no stale read).
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and a real network: the test waits in wall-clock time"
)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ward_e2e::{Deployment, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-1";
const HOSTS: u32 = 300;
const VICTIMS: usize = 100;

fn site() -> SiteConfig {
    SiteConfig {
        answering: vec!["198.18.4.0/22".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    }
}

/// A running deployment with every host up, and the victims' ids.
fn all_up() -> (Deployment, ward_e2e::Process, Vec<i64>) {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let deployment = Deployment::start(site()).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 4, 1), HOSTS, 500, 300);
    let agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    wait_until("every host up", Duration::from_secs(30), || {
        deployment.rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS)
    });
    let victims = ids
        .iter()
        .step_by(ids.len() / VICTIMS)
        .take(VICTIMS)
        .copied()
        .collect();
    (deployment, agent, victims)
}

fn set_victims(deployment: &Deployment, victims: &[i64], down: bool) {
    for &id in victims {
        let address = deployment.address_of(id);
        if down {
            deployment.lab.take_down(address).expect("take down");
        } else {
            deployment.lab.bring_up(address).expect("bring up");
        }
    }
}

/// Every victim went down and came back exactly once, in the store, the
/// alerts and (at least once, never for anything else) the webhook.
fn exactly_once(deployment: &Deployment, victims: &[i64], since_ms: i64) {
    // What the agent reported since the outage began. The controller's own
    // `unknown` (an agent away longer than its grace) is not a report; the
    // agent states its devices again after it (a `down` repeated across an
    // `unknown`), which is no second application.
    let events = deployment.sql(&format!(
        "SELECT device_id, status, agent_id = 'ward-controller' FROM status_events \
         WHERE at_ms >= {since_ms} ORDER BY id"
    ));
    let mut per_device: HashMap<i64, Vec<String>> = HashMap::new();
    let mut forgotten: std::collections::HashSet<i64> = std::collections::HashSet::new();
    for row in &events {
        let mut columns = row.split('|');
        let (id, status, controller) = (
            columns
                .next()
                .and_then(|id| id.parse::<i64>().ok())
                .expect("device id"),
            columns.next().expect("status").to_owned(),
            columns.next() == Some("t"),
        );
        if controller {
            forgotten.insert(id);
            continue;
        }
        let reported = per_device.entry(id).or_default();
        if forgotten.remove(&id) && reported.last() == Some(&status) {
            continue;
        }
        reported.push(status);
    }
    for id in victims {
        assert_eq!(
            per_device.get(id).map(Vec::as_slice),
            Some(&["down".to_owned(), "up".to_owned()][..]),
            "device {id}'s reported changes"
        );
    }
    assert_eq!(
        per_device.len(),
        victims.len(),
        "no other device changed: {per_device:?}"
    );
    let alerts = deployment.sql(
        "SELECT device_id, count(*), count(resolved_at_ms) FROM alerts \
         WHERE device_id IS NOT NULL GROUP BY device_id",
    );
    assert_eq!(alerts.len(), victims.len(), "{alerts:?}");
    assert!(
        alerts.iter().all(|row| row.ends_with("|1|1")),
        "one alert each, resolved: {alerts:?}"
    );
    wait_until(
        "the webhook got every notification",
        Duration::from_secs(60),
        || deployment.sql("SELECT count(*) FROM notification_outbox") == ["0"],
    );
    let bodies = deployment.webhook.bodies();
    let alert_ids: Vec<String> = deployment.sql("SELECT id FROM alerts");
    for alert in &alert_ids {
        for kind in ["firing", "resolved"] {
            let copies = bodies
                .iter()
                .filter(|b| {
                    b["alert_id"].as_i64().map(|id| id.to_string()).as_ref() == Some(alert)
                        && b["kind"] == kind
                })
                .count();
            assert!(copies >= 1, "alert {alert} {kind} delivered");
        }
    }
    // An agent away past its grace (a partition) adds its `AgentDown`.
    let devices: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| {
            b["alertname"] == "DeviceDown" && (b["kind"] == "firing" || b["kind"] == "resolved")
        })
        .collect();
    let unique: std::collections::HashSet<String> =
        devices.iter().map(|b| b["id"].to_string()).collect();
    eprintln!(
        "webhook: {} DeviceDown deliveries, {} distinct notifications (at-least-once \
         duplicates: {}); {} other",
        devices.len(),
        unique.len(),
        devices.len() - unique.len(),
        bodies.len() - devices.len()
    );
    assert_eq!(
        unique.len(),
        2 * victims.len(),
        "one firing and one resolved per alert"
    );
}

/// Reads of REST still compared with the database after a burst (however
/// long a loaded machine takes for them; at most [`SETTLED_READS_LIMIT`]).
const SETTLED_READS: u64 = 10;
const SETTLED_READS_LIMIT: Duration = Duration::from_secs(60);

/// Compares REST with the database until `stop`, counting the reads
/// checked in `checked`: (reads checked, stale reads). The database's data version and down count are read before
/// and after each REST read; when the version did not move (no commit
/// between the two), REST must show exactly that count. A read across a
/// commit cannot be judged (the count may fall and rise again within it:
/// an agent away past its grace makes devices `unknown`, its replay makes
/// them `down` again) and is not counted; nor is one that fails (the
/// database down).
fn stale_reads(
    rest: ward_e2e::Rest,
    database: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    checked: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let mut stale = Vec::new();
        let truth = || {
            let rows = ward_e2e::try_psql(
                &database,
                "SELECT version, (SELECT count(*) FROM devices WHERE status = 'down') \
                 FROM data_version",
            )
            .ok()?;
            let (version, down) = rows.first()?.split_once('|')?;
            Some((version.parse::<i64>().ok()?, down.parse::<usize>().ok()?))
        };
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            let Some(before) = truth() else { continue };
            let (code, listed) = rest.get("/api/v1/devices?status=down");
            let Some(after) = truth() else { continue };
            if code != 200 || before.0 != after.0 {
                continue;
            }
            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let shown = listed.as_array().map_or(0, Vec::len);
            if shown != after.1 {
                stale.push(format!(
                    "at data version {}, the database had {} down, REST showed {shown}",
                    after.0, after.1
                ));
            }
        }
        (checked.load(std::sync::atomic::Ordering::Relaxed), stale)
    })
}

/// An outage burst with `disruption` while it is being reported, then
/// the return: every change once, no stale read.
fn burst_survives(what: &str, disruption: impl FnOnce(&mut Deployment)) {
    let (mut deployment, _agent, victims) = all_up();
    let since = ward_controller::time::now_ms();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = stale_reads(
        deployment.rest.clone(),
        deployment.postgres.url(),
        std::sync::Arc::clone(&stop),
        std::sync::Arc::clone(&checked),
    );
    set_victims(&deployment, &victims, true);
    wait_until("the first downs", Duration::from_secs(10), || {
        !deployment.devices_with_status("down").is_empty()
    });
    disruption(&mut deployment);
    let recovered = wait_until("every victim down", Duration::from_secs(60), || {
        deployment.devices_with_status("down").len() == VICTIMS
    });
    // Reads go on for a while once the burst is over: the moment right
    // after it is when a stale answer would show.
    let settled_from = checked.load(std::sync::atomic::Ordering::Relaxed);
    wait_until(
        "reads compared after the burst",
        SETTLED_READS_LIMIT,
        || checked.load(std::sync::atomic::Ordering::Relaxed) >= settled_from + SETTLED_READS,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checked, stale) = reader.join().expect("reader");
    eprintln!(
        "{what}: every victim down {recovered:?} after the disruption ended; \
         {checked} reads compared with the database, {} stale",
        stale.len()
    );
    assert!(stale.is_empty(), "stale reads: {stale:?}");
    set_victims(&deployment, &victims, false);
    wait_until("every host up", Duration::from_secs(30), || {
        deployment.rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS)
    });
    exactly_once(&deployment, &victims, since);
}

#[test]
fn controller_killed_during_an_outage_burst_loses_and_doubles_nothing() {
    burst_survives("controller killed", |deployment| {
        deployment.controller.as_mut().expect("controller").crash();
        deployment
            .start_controller()
            .expect("restart the controller");
    });
}

#[test]
fn postgres_restarted_under_load_loses_and_doubles_nothing() {
    burst_survives("PostgreSQL killed and restarted", |deployment| {
        deployment.postgres.crash();
        std::thread::sleep(Duration::from_secs(1));
        deployment.postgres.resume().expect("restart PostgreSQL");
    });
}

#[test]
fn an_agent_partitioned_from_its_controller_under_load_loses_and_doubles_nothing() {
    burst_survives("agent partitioned for 20 s", |deployment| {
        let port: u16 = deployment
            .grpc_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the gRPC port");
        deployment.lab.partition_from_port(port).expect("partition");
        // Past the link's silence limit (15 s): the controller drops the
        // link and the site's grace runs out; the agent spools.
        std::thread::sleep(Duration::from_secs(20));
        deployment.lab.heal().expect("heal");
    });
}

#[test]
fn an_agent_restarted_while_the_controller_is_down_delivers_its_spool() {
    let (mut deployment, mut agent, victims) = all_up();
    let victim = victims[0];
    let address = deployment.address_of(victim);
    deployment
        .controller
        .as_mut()
        .expect("controller")
        .stop_with(nix::sys::signal::Signal::SIGTERM);
    // While the controller is away the host goes down and comes back;
    // only the agent's spool knows.
    deployment.lab.take_down(address).expect("take down");
    std::thread::sleep(Duration::from_secs(3));
    deployment.lab.bring_up(address).expect("bring up");
    std::thread::sleep(Duration::from_secs(2));
    agent.crash();
    let _agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("restart the agent");
    std::thread::sleep(Duration::from_secs(2));
    deployment
        .start_controller()
        .expect("restart the controller");
    wait_until(
        "the outage the controller missed, replayed",
        Duration::from_secs(30),
        || {
            deployment
            .sql(&format!(
                "SELECT count(*) FROM alerts WHERE device_id = {victim} AND resolved_at_ms IS NOT NULL"
            ))
            == ["1"]
        },
    );
    let (_, device) = deployment.rest.get(&format!("/api/v1/devices/{victim}"));
    assert_eq!(device["status"], "up", "{device}");
    let log = std::fs::read_to_string(deployment.dir.path().join("agent-site-agent.log"))
        .unwrap_or_default();
    assert!(
        log.contains("replaying the spool"),
        "the restarted agent replayed: {log}"
    );
}
