//! Nothing is lost and nothing happens twice: the controller killed
//! (SIGKILL) during an outage burst, PostgreSQL restarted under load, and
//! an agent killed and restarted while the controller is down.
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
    // What the agent reported since the outage began; the controller's own
    // `unknown` (an agent away longer than its grace) is not a report.
    let events = deployment.sql(&format!(
        "SELECT device_id, status FROM status_events \
         WHERE agent_id <> 'ward-controller' AND at_ms >= {since_ms} ORDER BY id"
    ));
    let mut per_device: HashMap<i64, Vec<String>> = HashMap::new();
    for row in &events {
        let (id, status) = row.split_once('|').expect("two columns");
        let id: i64 = id.parse().expect("device id");
        per_device.entry(id).or_default().push(status.to_owned());
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
    let alerts = deployment
        .sql("SELECT device_id, count(*), count(resolved_at_ms) FROM alerts GROUP BY device_id");
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
    let unique: std::collections::HashSet<String> =
        bodies.iter().map(|b| b["id"].to_string()).collect();
    eprintln!(
        "webhook: {} deliveries, {} distinct notifications (at-least-once duplicates: {})",
        bodies.len(),
        unique.len(),
        bodies.len() - unique.len()
    );
    assert_eq!(
        unique.len(),
        2 * victims.len(),
        "one firing and one resolved per alert"
    );
}

/// An outage burst with `disruption` while it is being reported, then
/// the return: every change once.
fn burst_survives(disruption: impl FnOnce(&mut Deployment)) {
    let (mut deployment, _agent, victims) = all_up();
    let since = ward_controller::time::now_ms();
    set_victims(&deployment, &victims, true);
    wait_until("the first downs", Duration::from_secs(10), || {
        !deployment.devices_with_status("down").is_empty()
    });
    disruption(&mut deployment);
    wait_until("every victim down", Duration::from_secs(30), || {
        deployment.devices_with_status("down").len() == VICTIMS
    });
    set_victims(&deployment, &victims, false);
    wait_until("every host up", Duration::from_secs(30), || {
        deployment.rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS)
    });
    exactly_once(&deployment, &victims, since);
}

#[test]
fn controller_killed_during_an_outage_burst_loses_and_doubles_nothing() {
    burst_survives(|deployment| {
        deployment.controller.as_mut().expect("controller").crash();
        deployment
            .start_controller()
            .expect("restart the controller");
    });
}

#[test]
fn postgres_restarted_under_load_loses_and_doubles_nothing() {
    burst_survives(|deployment| {
        deployment.postgres.crash();
        std::thread::sleep(Duration::from_secs(1));
        deployment.postgres.resume().expect("restart PostgreSQL");
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
