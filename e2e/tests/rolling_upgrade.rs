//! A rolling upgrade, as a bank runs one: three controllers on one
//! PostgreSQL and an agent, all of the previous release (built from git
//! history by testkit/previous-release.sh), upgraded one process at a time
//! to this build (each stopped with SIGTERM and started again on its
//! gRPC address), while hosts go down and come back around every step.
//! Nothing is lost or doubled (one `down` and one `up` per host taken
//! down), every alert is told `firing` then `resolved` once, no controller
//! reads older than what another has shown, and the previous release's
//! agent links to the upgraded controllers (protocol 1) before it is
//! upgraded itself (protocol 2).
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and a real network: the test waits in wall-clock time"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use ward_e2e::{
    Member, Process, Webhook, admin_token, agent_binary, certificates, controller_binary,
    holds_link, psql, start_member_of, wait_until, work_dir,
};
use ward_testkit::lab::{Lab, SiteConfig};
use ward_testkit::ports::free_loopback_port;
use ward_testkit::services::Postgres;

const SITE: &str = "branch-5";
const HOSTS: u32 = 40;
/// Hosts taken down around each step.
const PER_STEP: u32 = 4;

fn address(host: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 5, 1 + u8::try_from(host).expect("few hosts"))
}

/// The previous release's binaries (built once, cached).
fn previous_release() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/previous-release.sh");
    let output = Command::new(script)
        .output()
        .expect("previous-release.sh runs");
    assert!(
        output.status.success(),
        "the previous release could not be built: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Agent `agent-1` running `binary`, given every controller.
fn start_agent(lab: &Lab, binary: &Path, controllers: &str, d: &Path, name: &str) -> Process {
    let mut command = lab.client_command(&binary.to_string_lossy());
    command
        .args(["run", "--controller", controllers, "--agent-id", "agent-1"])
        .args(["--site", SITE, "--report-period", "1s"])
        .arg("--spool-dir")
        .arg(d.join("spool-agent-1"))
        .arg("--tls-ca")
        .arg(d.join("ca.pem"))
        .arg("--tls-cert")
        .arg(d.join("agent-agent-1.pem"))
        .arg("--tls-key")
        .arg(d.join("agent-agent-1.key"))
        .env("RUST_LOG", "info");
    Process::spawn(name, command, &d.join(format!("{name}.log"))).expect("agent")
}

/// The hosts down as `member` shows them.
fn down(member: &Member) -> Option<u64> {
    member.rest.get("/api/v1/summary").1["down"].as_u64()
}

/// Waits until the first controller shows `hosts` down, then reads every
/// other: none may show fewer (a read after another controller showed a
/// commit sees it); brings them up and waits until every controller
/// shows none down.
fn seen_down_then_up(lab: &Lab, members: &[Member], hosts: &[IpAddr]) {
    let wanted = hosts.len() as u64;
    wait_until("the hosts down", Duration::from_secs(30), || {
        down(&members[0]) == Some(wanted)
    });
    for member in members {
        let seen = down(member).unwrap_or_default();
        assert!(
            seen >= wanted,
            "a stale read: {seen} down after {wanted} were shown"
        );
    }
    for &host in hosts {
        lab.bring_up(host).expect("bring up");
    }
    wait_until("every host up again", Duration::from_secs(30), || {
        members.iter().all(|member| down(member) == Some(0))
    });
}

/// Takes `hosts` down.
fn take_down(lab: &Lab, hosts: &[IpAddr]) {
    for &host in hosts {
        lab.take_down(host).expect("take down");
    }
}

#[test]
fn a_rolling_upgrade_of_three_controllers_and_an_agent_loses_nothing_and_doubles_nothing() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let previous = previous_release();
    let lab = Lab::start(&SiteConfig {
        answering: vec!["198.18.5.0/24".parse().expect("cidr")],
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
    certificates(d, &host.to_string(), &["agent-1"]).expect("certificates");
    let shared = format!(
        "database = \"{database}\"\nwebhook = \"{webhook}\"\n\
         tls_cert = \"{d}/controller.pem\"\ntls_key = \"{d}/controller.key\"\n\
         tls_client_ca = \"{d}/ca.pem\"\n",
        database = postgres.url(),
        webhook = webhook.url,
        d = d.display(),
    );
    let names = ["controller-a", "controller-b", "controller-c"];
    let addresses: Vec<SocketAddr> = names
        .iter()
        .map(|_| SocketAddr::new(host, free_loopback_port().expect("port")))
        .collect();
    let old_controller = previous.join("ward-controller");
    let mut members: Vec<Member> = names
        .iter()
        .zip(&addresses)
        .map(|(name, grpc)| start_member_of(&old_controller, name, d, *grpc, &shared).expect(name))
        .collect();
    let token =
        admin_token(["--config", &d.join("controller-a.toml").to_string_lossy()]).expect("admin");
    for member in &mut members {
        member.rest = member.rest.clone().with_token(token.clone());
        member.wait_until_up().expect("controller up");
    }
    let rest = members[0].rest.clone();
    let (code, body) = rest.post("/api/v1/agents", &json!({"id": "agent-1", "site": SITE}));
    assert_eq!(code, 201, "{body}");
    let devices: Vec<Value> = (0..HOSTS)
        .map(|h| {
            json!({"name": format!("host-{h}"), "address": address(h).to_string(), "site": SITE,
                "interval_ms": 500, "timeout_ms": 300, "down_after": 3, "up_after": 1})
        })
        .collect();
    let (code, body) = rest.post("/api/v1/devices/import", &Value::Array(devices));
    assert_eq!(code, 201, "{body}");
    let controllers = members
        .iter()
        .map(|m| m.grpc.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut agent = start_agent(
        &lab,
        &previous.join("ward-agent"),
        &controllers,
        d,
        "agent-old",
    );
    wait_until("every host up", Duration::from_secs(60), || {
        rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS)
    });
    let baseline = psql(
        &postgres.url(),
        "SELECT COALESCE(MAX(id), 0) FROM status_events",
    )
    .pop()
    .expect("a row");

    // Each controller in turn: hosts go down while it is replaced, and
    // more between the steps.
    let mut victims: Vec<IpAddr> = Vec::new();
    let batch = |first: u32| -> Vec<IpAddr> {
        (first..first + PER_STEP)
            .map(|h| IpAddr::V4(address(h)))
            .collect()
    };
    for (step, name) in names.iter().enumerate() {
        let hosts = batch(step as u32 * PER_STEP);
        take_down(&lab, &hosts);
        members[step]
            .process
            .stop_with(nix::sys::signal::Signal::SIGTERM);
        let mut upgraded = start_member_of(
            &controller_binary(),
            &format!("{name}-upgraded"),
            d,
            addresses[step],
            &shared,
        )
        .expect("upgraded controller");
        upgraded.rest = upgraded.rest.clone().with_token(token.clone());
        upgraded.wait_until_up().expect("upgraded controller up");
        members[step] = upgraded;
        seen_down_then_up(&lab, &members, &hosts);
        victims.extend(&hosts);
        let between = batch(20 + step as u32 * PER_STEP);
        take_down(&lab, &between);
        seen_down_then_up(&lab, &members, &between);
        victims.extend(&between);
    }
    // The previous release's agent, linked to the upgraded controllers.
    wait_until("the old agent linked", Duration::from_secs(20), || {
        members.iter().any(|m| holds_link(&m.rest, "agent-1"))
    });
    let accepted = members.iter().any(|member| {
        member.process.log().lines().any(|line| {
            line.contains("agent connected agent=agent-1") && line.contains(" protocol=1 ")
        })
    });
    assert!(
        accepted,
        "an upgraded controller admitted the protocol-1 agent"
    );

    // Then the agent.
    let hosts = batch(36);
    take_down(&lab, &hosts);
    agent.stop_with(nix::sys::signal::Signal::SIGTERM);
    let _agent = start_agent(&lab, &agent_binary(), &controllers, d, "agent-upgraded");
    seen_down_then_up(&lab, &members, &hosts);
    victims.extend(&hosts);
    assert!(
        members
            .iter()
            .any(|member| member.process.log().contains(" protocol=2 ")),
        "the upgraded agent speaks protocol 2"
    );

    // Exactly once: one down and one up per host taken down.
    let per_host = ward_e2e::transitions_by_address(&postgres.url(), &baseline);
    let applied: usize = per_host.values().map(Vec::len).sum();
    let wrong: Vec<_> = per_host
        .iter()
        .filter(|(_, statuses)| **statuses != ["down", "up"])
        .collect();
    assert!(wrong.is_empty(), "transitions lost or doubled: {wrong:?}");
    assert_eq!(
        per_host.len(),
        victims.len(),
        "only the hosts taken down changed"
    );

    // Every alert told firing then resolved, once each (receivers dedupe
    // by the body's id).
    wait_until(
        "every notification delivered",
        Duration::from_secs(60),
        || {
            let mut ids = std::collections::HashSet::new();
            webhook
                .bodies()
                .iter()
                .filter(|body| body["alertname"] == "DeviceDown" && body["kind"] != "traced")
                .filter(|body| ids.insert(body["id"].as_i64()))
                .count()
                >= 2 * victims.len()
        },
    );
    let (per_alert, _) = ward_e2e::notified_by_alert(&webhook.bodies());
    assert_eq!(
        per_alert.len(),
        victims.len(),
        "one alert per host taken down"
    );
    assert!(
        per_alert
            .values()
            .all(|kinds| *kinds == ["firing", "resolved"]),
        "out of order or doubled: {per_alert:?}"
    );
    eprintln!(
        "rolling upgrade: 3 controllers and 1 agent from {} to this build; {} transitions \
         applied once each ({} hosts), {} alerts firing then resolved",
        previous.display(),
        applied,
        victims.len(),
        per_alert.len()
    );
}
