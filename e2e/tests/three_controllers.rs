//! Three controllers on one PostgreSQL, four agents (mTLS, a lab
//! namespace) given all three: the controller holding every agent is
//! killed with SIGKILL in the middle of a burst of transitions (a hundred
//! hosts dying). Every agent links to another controller within 2 s,
//! every transition is applied exactly once (none lost, none twice), every
//! notification arrives, in order per alert (at least once: one in flight
//! when its controller died is sent again with the same `id`, which
//! receivers deduplicate by); then the holder
//! of the offline sweep's lease is killed and another controller holds it
//! within the failover delay + 1 s. Real binaries; packets only inside the
//! lab.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ward_e2e::{
    Member, Process, Rest, Webhook, admin_token, agent_binary, certificates, holds_link, psql,
    start_member, wait_until, work_dir,
};
use ward_testkit::lab::{Lab, SiteConfig};
use ward_testkit::ports::free_loopback_port;
use ward_testkit::services::Postgres;

const AGENTS: usize = 4;
const DEVICES_PER_SITE: u32 = 50;
/// Hosts taken down in the burst (the first half of every site).
const DYING_PER_SITE: u32 = 25;
/// The controllers' default `failover_delay`.
const FAILOVER_DELAY: Duration = Duration::from_secs(5);

fn address(site: usize, host: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        4 + u8::try_from(site).expect("few sites"),
        1 + u8::try_from(host).expect("few hosts"),
    )
}

/// Which live controller (index) holds agent `id`'s link itself.
fn holder(members: &[Member], alive: &[usize], id: &str) -> Option<usize> {
    alive
        .iter()
        .copied()
        .find(|&i| holds_link(&members[i].rest, id))
}

#[test]
fn killing_the_controller_holding_every_agent_mid_burst_loses_nothing_and_doubles_nothing() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let lab = Lab::start(&SiteConfig {
        answering: vec!["198.18.4.0/22".parse().expect("cidr")],
        unreachable: Vec::new(),
        host_link: true,
        ..SiteConfig::default()
    })
    .expect("lab");
    let host = lab.host_address().expect("host link");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let webhook = Webhook::start().expect("webhook");
    let dir = work_dir().expect("dir");
    let d = dir.path();
    let agents: Vec<String> = (1..=AGENTS).map(|i| format!("agent-{i}")).collect();
    let names: Vec<&str> = agents.iter().map(String::as_str).collect();
    certificates(d, &host.to_string(), &names).expect("certificates");
    let shared = ward_e2e::cluster_config(&postgres.url(), &webhook.url, d);
    let mut members: Vec<Member> = ["controller-a", "controller-b", "controller-c"]
        .iter()
        .map(|name| {
            let grpc = std::net::SocketAddr::new(host, free_loopback_port().expect("port"));
            start_member(name, d, grpc, &shared).expect(name)
        })
        .collect();
    let token =
        admin_token(["--config", &d.join("controller-a.toml").to_string_lossy()]).expect("admin");
    for member in &mut members {
        member.rest = member.rest.clone().with_token(token.clone());
        member.wait_until_up().expect("controller up");
    }
    let rest = members[0].rest.clone();
    for (site, agent) in agents.iter().enumerate() {
        let (code, body) = rest.post(
            "/api/v1/agents",
            &json!({"id": agent, "site": format!("branch-{site}")}),
        );
        assert_eq!(code, 201, "{body}");
        let devices: Vec<Value> = (0..DEVICES_PER_SITE)
            .map(|h| {
                json!({"name": format!("host-{site}-{h}"), "address": address(site, h).to_string(),
                    "site": format!("branch-{site}"), "interval_ms": 500, "timeout_ms": 300,
                    "down_after": 3, "up_after": 1})
            })
            .collect();
        let (code, body) = rest.post("/api/v1/devices/import", &Value::Array(devices));
        assert_eq!(code, 201, "{body}");
    }
    let controllers = members
        .iter()
        .map(|m| m.grpc.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let _agents: Vec<Process> = agents
        .iter()
        .enumerate()
        .map(|(site, agent)| {
            let mut command = lab.client_command(&agent_binary().to_string_lossy());
            command
                .args(["run", "--controller", &controllers, "--agent-id", agent])
                .args(["--site", &format!("branch-{site}"), "--report-period", "1s"])
                .arg("--spool-dir")
                .arg(d.join(format!("spool-{agent}")))
                .arg("--tls-ca")
                .arg(d.join("ca.pem"))
                .arg("--tls-cert")
                .arg(d.join(format!("agent-{agent}.pem")))
                .arg("--tls-key")
                .arg(d.join(format!("agent-{agent}.key")))
                .env("RUST_LOG", "info");
            Process::spawn(agent, command, &d.join(format!("{agent}.log"))).expect("agent")
        })
        .collect();
    let total = u64::from(DEVICES_PER_SITE) * AGENTS as u64;
    wait_until("every device up", Duration::from_secs(60), || {
        rest.get("/api/v1/summary").1["up"] == total
    });
    let all = [0, 1, 2];
    let first = holder(&members, &all, &agents[0]).expect("agent-1 linked");
    for agent in &agents {
        assert_eq!(
            holder(&members, &all, agent),
            Some(first),
            "every agent on the first controller"
        );
    }
    let baseline = psql(
        &postgres.url(),
        "SELECT COALESCE(MAX(id), 0) FROM status_events",
    )
    .pop()
    .expect("a row");

    // The burst: a hundred hosts die; the agents' holder dies with it.
    let dying: Vec<IpAddr> = (0..AGENTS)
        .flat_map(|site| (0..DYING_PER_SITE).map(move |h| IpAddr::V4(address(site, h))))
        .collect();
    for &host in &dying {
        lab.take_down(host).expect("take down");
    }
    #[allow(clippy::disallowed_methods, reason = "the kill must fall mid-burst")]
    std::thread::sleep(Duration::from_millis(1_200));
    let killed = Instant::now();
    members[first].process.crash();
    let alive: Vec<usize> = all.into_iter().filter(|&i| i != first).collect();
    let mut moved = Vec::new();
    let mut pending: Vec<&String> = agents.iter().collect();
    while !pending.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "agents still unlinked: {pending:?}"
        );
        pending.retain(|agent| {
            if holder(&members, &alive, agent).is_some() {
                moved.push(killed.elapsed());
                false
            } else {
                true
            }
        });
    }
    moved.sort();
    let (p50, max) = (moved[moved.len() / 2], moved[moved.len() - 1]);
    let survivor = &members[alive[0]].rest;
    let dead = dying.len() as u64;
    wait_until("every dying host down", Duration::from_secs(30), || {
        survivor.get("/api/v1/summary").1["down"] == dead
    });
    for &host in &dying {
        lab.bring_up(host).expect("bring up");
    }
    wait_until("every device up again", Duration::from_secs(30), || {
        survivor.get("/api/v1/summary").1["up"] == total
    });
    // Notifications the killed controller had taken wait out its claim.
    wait_until(
        "every notification delivered",
        Duration::from_secs(60),
        || {
            let bodies = webhook.bodies();
            bodies
                .iter()
                .filter(|body| body["kind"] != "traced")
                .count() as u64
                >= 2 * dead
        },
    );

    // Exactly once: one down and one up per dying host, nothing else.
    let applied = ward_e2e::assert_down_then_up_once_each(&postgres.url(), &baseline, dying.len());
    // Deliveries are at least once: a controller killed between the
    // receiver's 2xx and the outbox row's deletion leaves that row to be
    // sent again. Receivers deduplicate by the body's `id` (the
    // idempotency key); what they act on is each id's first delivery.
    let bodies = webhook.bodies();
    let (per_alert, resent) = ward_e2e::notified_by_alert(&bodies);
    let delivered = bodies.len() - resent;
    assert_eq!(per_alert.len(), dying.len(), "one alert per dying host");
    assert!(
        per_alert
            .values()
            .all(|kinds| *kinds == ["firing", "resolved"]),
        "out of order or doubled: {per_alert:?}"
    );
    // Each channel delivers one at a time and deletes each row on its 2xx.
    assert!(
        resent <= 1,
        "{resent} re-sent: more than the one a killed controller can have in flight"
    );

    // The holder of the offline sweep's lease dies: another takes it.
    let rests: Vec<Rest> = members.iter().map(|m| m.rest.clone()).collect();
    let sweeper = |i: usize| {
        let (_, listed) = rests[i].get("/api/v1/controllers");
        listed.as_array().and_then(|controllers| {
            controllers
                .iter()
                .find(|c| {
                    c["alive"] == true
                        && c["jobs"]
                            .as_array()
                            .is_some_and(|jobs| jobs.iter().any(|j| j == "offline sweep"))
                })
                .and_then(|c| c["instance"].as_str().map(str::to_owned))
        })
    };
    let this = |i: usize| {
        let (_, listed) = rests[i].get("/api/v1/controllers");
        listed
            .as_array()
            .and_then(|c| c.iter().find(|c| c["this"] == true).cloned())
            .and_then(|c| c["instance"].as_str().map(str::to_owned))
    };
    let live: Vec<(usize, String)> = alive
        .iter()
        .map(|&i| (i, this(i).expect("instance")))
        .collect();
    // The killed controller's lease may not have expired yet.
    let mut lease_holder = None;
    wait_until(
        "the sweep held by a live controller",
        Duration::from_secs(20),
        || {
            let holder = sweeper(alive[0]);
            lease_holder = live
                .iter()
                .find(|(_, instance)| holder.as_deref() == Some(instance.as_str()))
                .map(|(i, _)| *i);
            lease_holder.is_some()
        },
    );
    let lease_holder = lease_holder.expect("a live holder");
    let other = alive
        .iter()
        .copied()
        .find(|&i| i != lease_holder)
        .expect("another");
    let lease_killed = Instant::now();
    members[lease_holder].process.crash();
    let other_instance = this(other).expect("instance");
    wait_until(
        "the sweep's lease taken over",
        Duration::from_secs(20),
        || sweeper(other).as_deref() == Some(other_instance.as_str()),
    );
    let taken = lease_killed.elapsed();
    eprintln!(
        "three controllers: {AGENTS} agents relinked after SIGKILL of their controller p50 \
         {p50:?}, max {max:?}; {} transitions applied once each ({} hosts down and up), \
         {delivered} notifications each acted on once, in order ({resent} re-sent after the \
         kill, deduplicated by id); the offline sweep's lease taken {taken:?} after its holder \
         was killed (failover delay {FAILOVER_DELAY:?})",
        applied,
        dying.len()
    );
    assert!(max < Duration::from_secs(2), "relinked in {max:?}");
    assert!(
        taken <= FAILOVER_DELAY + Duration::from_secs(1),
        "lease taken after {taken:?}"
    );
}
