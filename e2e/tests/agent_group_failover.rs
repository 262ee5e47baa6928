//! Two real agents of one 1,000-device site (a lab namespace): they share
//! its devices; one is killed with SIGKILL and the other owns them all
//! within the failover delay + 1 s, no device that answers ever shows
//! `unknown` or `down`, a host that dies during the failover is still
//! found down, the lost agent's `AgentDown` opens, and its return
//! rebalances the group without any status changing. Real binaries, mTLS,
//! PostgreSQL; packets only inside the lab.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ward_e2e::{Deployment, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-1";
const DEVICES: u32 = 1_000;
/// The controller's default `agent_failover_delay`.
const FAILOVER_DELAY: Duration = Duration::from_secs(3);
/// Probed every 500 ms, 300 ms timeout, down after 3 misses.
const DETECTION_BOUND: Duration = Duration::from_millis(3 * 500 + 300 + 500);

/// Devices each agent owns, from `/api/v1/agents`.
fn owned(deployment: &Deployment, agent: &str) -> u64 {
    let (_, agents) = deployment.rest.get("/api/v1/agents");
    agents
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["id"] == agent))
        .and_then(|a| a["devices"].as_u64())
        .unwrap_or(0)
}

/// Status changes recorded after event `after` other than of `except`,
/// to anything but `up`.
fn flashes(deployment: &Deployment, after: &str, except: i64) -> Vec<String> {
    deployment.sql(&format!(
        "SELECT device_id || ' ' || status || ' ' || reason FROM status_events \
         WHERE id > {after} AND device_id <> {except} AND status <> 'up'"
    ))
}

#[test]
fn killing_one_agent_of_a_group_of_two_hands_its_devices_to_the_other_without_a_flash() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.4.0/22".parse().expect("cidr")],
        unreachable: Vec::new(),
        ..SiteConfig::default()
    };
    let deployment = Deployment::start(site).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    deployment.register_agent("other-agent", SITE);
    deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 4, 1), DEVICES, 500, 300);
    let mut first = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let _other = deployment
        .start_agent("other-agent", SITE, "other-agent")
        .expect("agent");
    let all_up = || {
        let (_, summary) = deployment.rest.get("/api/v1/summary");
        summary["up"] == DEVICES
    };
    wait_until("every device up", Duration::from_secs(60), all_up);
    assert_eq!(
        (
            owned(&deployment, "site-agent"),
            owned(&deployment, "other-agent")
        ),
        (500, 500),
        "balanced"
    );
    let baseline = deployment
        .sql("SELECT COALESCE(MAX(id), 0) FROM status_events")
        .pop()
        .expect("a row");

    // One of the first agent's hosts dies as the agent is killed.
    let (_, devices) = deployment.rest.get(&format!("/api/v1/devices?site={SITE}"));
    let victim = devices
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["agent"] == "site-agent")
        .expect("a device of site-agent")
        .clone();
    let victim_id = victim["id"].as_i64().expect("id");
    let killed = Instant::now();
    first.crash();
    deployment
        .lab
        .take_down(
            victim["address"]
                .as_str()
                .expect("address")
                .parse()
                .expect("ip"),
        )
        .expect("take the host down");
    let took_over = wait_until(
        "every device owned by the other agent",
        Duration::from_secs(30),
        || owned(&deployment, "other-agent") == u64::from(DEVICES),
    );
    let status =
        |id: i64| deployment.rest.get(&format!("/api/v1/devices/{id}")).1["status"].clone();
    wait_until("the dead host down", Duration::from_secs(30), || {
        status(victim_id) == "down"
    });
    let found = killed.elapsed();
    eprintln!(
        "agent group failover ({DEVICES} devices): all owned by the other agent {took_over:?} \
         after SIGKILL (bound {:?}); a host dead meanwhile found down after {found:?} (bound {:?})",
        FAILOVER_DELAY + Duration::from_secs(1),
        FAILOVER_DELAY + DETECTION_BOUND + Duration::from_secs(1),
    );
    assert!(
        took_over <= FAILOVER_DELAY + Duration::from_secs(1),
        "taken over in {took_over:?}"
    );
    assert!(
        found <= FAILOVER_DELAY + DETECTION_BOUND + Duration::from_secs(1),
        "the dead host was found down after {found:?}"
    );
    let flashed = flashes(&deployment, &baseline, victim_id);
    assert!(
        flashed.is_empty(),
        "devices that answer flashed: {flashed:?}"
    );
    let (_, alerts) = deployment.rest.get("/api/v1/alerts?state=open");
    assert!(
        alerts
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| { a["alertname"] == "AgentDown" && a["agent"]["id"] == "site-agent" }),
        "the lost agent's AgentDown is open: {alerts}"
    );

    // Back: once it has stayed for the delay, it gets half the devices,
    // and no status changes on the way.
    let _back = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let rebalanced = wait_until("the group rebalanced", Duration::from_secs(30), || {
        owned(&deployment, "site-agent") == u64::from(DEVICES / 2)
    });
    eprintln!("agent group: the returning agent had its share after {rebalanced:?}");
    #[allow(
        clippy::disallowed_methods,
        reason = "the returning agent must have probed its new devices"
    )]
    std::thread::sleep(Duration::from_secs(3));
    let flashed = flashes(&deployment, &baseline, victim_id);
    assert!(
        flashed.is_empty(),
        "devices that answer flashed: {flashed:?}"
    );
    let (_, summary) = deployment.rest.get("/api/v1/summary");
    assert_eq!(
        (summary["up"].as_u64(), summary["down"].as_u64()),
        (Some(u64::from(DEVICES) - 1), Some(1)),
        "{summary}"
    );
}
