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
#![allow(
    clippy::disallowed_types,
    reason = "the checker's threads record writes and reads under mutexes: a test, no probe path"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ward_e2e::{
    Member, Process, Rest, Webhook, admin_token_of, agent_binary, certificates, controller_binary,
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

/// The device the checker's writer retags.
const TAGGED: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 200);

/// The linearizability checker of the HA work, across the upgrade: one
/// writer retags a device (`w1`, `w2`, …) through whichever controller
/// answers, a reader per controller reads it back all along; a read that
/// started after write k was acknowledged must show k or later.
struct Checker {
    /// Each controller's REST client, replaced with it.
    rests: Mutex<Vec<Rest>>,
    /// Acknowledged writes: when, which.
    acks: Mutex<Vec<(Instant, usize)>>,
    /// Reads: when they started, what they showed, where.
    reads: Mutex<Vec<(Instant, usize, usize)>>,
    stop: AtomicBool,
}

impl Checker {
    fn rest(&self, i: usize) -> Rest {
        self.rests.lock().expect("lock")[i].clone()
    }

    fn write(&self, id: i64) {
        for k in 1.. {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let body = json!({"name": "tagged", "address": TAGGED.to_string(), "site": SITE,
                "interval_ms": 500, "timeout_ms": 300, "down_after": 3, "up_after": 1,
                "tags": [format!("w{k}")]});
            let (code, _) = self.rest(k % 3).send(
                reqwest::Method::PUT,
                &format!("/api/v1/devices/{id}"),
                &body,
            );
            if code == 200 {
                self.acks.lock().expect("lock").push((Instant::now(), k));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, i: usize, id: i64) {
        while !self.stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let (code, device) = self.rest(i).get(&format!("/api/v1/devices/{id}"));
            if code == 200 {
                let shown = device["tags"][0]
                    .as_str()
                    .and_then(|tag| tag.strip_prefix('w'))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(0);
                self.reads.lock().expect("lock").push((started, shown, i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads older than a write acknowledged before they started.
    fn stale(&self) -> Vec<String> {
        let acks = self.acks.lock().expect("lock");
        self.reads
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|&(started, shown, i)| {
                let before = acks
                    .iter()
                    .filter(|(acked, _)| *acked < started)
                    .map(|&(_, k)| k)
                    .max()?;
                (shown < before).then(|| format!("controller {i} showed w{shown} after w{before}"))
            })
            .collect()
    }
}

/// A lab site answering `range`, its client namespace linked to the host.
fn lab(range: &str) -> Lab {
    Lab::start(&SiteConfig {
        answering: vec![range.parse().expect("cidr")],
        unreachable: Vec::new(),
        host_link: true,
        ..SiteConfig::default()
    })
    .expect("lab")
}

#[test]
fn a_rolling_upgrade_of_three_controllers_and_an_agent_loses_nothing_and_doubles_nothing() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let previous = previous_release();
    let lab = lab("198.18.5.0/24");
    let host = lab.host_address().expect("host link");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let webhook = Webhook::start().expect("webhook");
    let dir = work_dir().expect("dir");
    let d = dir.path();
    certificates(d, &host.to_string(), &["agent-1"]).expect("certificates");
    let shared = ward_e2e::cluster_config(&postgres.url(), &webhook.url, d);
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
    let token = admin_token_of(
        &old_controller,
        ["--config", &d.join("controller-a.toml").to_string_lossy()],
    )
    .expect("admin");
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
    let (code, tagged) = rest.post(
        "/api/v1/devices",
        &json!({"name": "tagged", "address": TAGGED.to_string(), "site": SITE,
            "interval_ms": 500, "timeout_ms": 300, "down_after": 3, "up_after": 1}),
    );
    assert_eq!(code, 201, "{tagged}");
    let tagged = tagged["id"].as_i64().expect("id");
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
        rest.get("/api/v1/summary").1["up"] == u64::from(HOSTS) + 1
    });
    let checker = Arc::new(Checker {
        rests: Mutex::new(members.iter().map(|m| m.rest.clone()).collect()),
        acks: Mutex::default(),
        reads: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    let mut threads = vec![std::thread::spawn({
        let checker = Arc::clone(&checker);
        move || checker.write(tagged)
    })];
    for i in 0..members.len() {
        let checker = Arc::clone(&checker);
        threads.push(std::thread::spawn(move || checker.read(i, tagged)));
    }
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
        checker.rests.lock().expect("lock")[step] = upgraded.rest.clone();
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

    checker.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("checker thread");
    }
    let stale = checker.stale();
    let (writes, reads) = (
        checker.acks.lock().expect("lock").len(),
        checker.reads.lock().expect("lock").len(),
    );
    assert!(
        writes > 100 && reads > 300,
        "{writes} writes, {reads} reads"
    );
    assert!(stale.is_empty(), "stale reads: {stale:?}");

    // Exactly once: one down and one up per host taken down.
    let applied =
        ward_e2e::assert_down_then_up_once_each(&postgres.url(), &baseline, victims.len());

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
         applied once each ({} hosts), {} alerts firing then resolved; checker: {writes} \
         writes, {reads} reads on the three controllers, none stale",
        previous.display(),
        applied,
        victims.len(),
        per_alert.len()
    );
}

/// This release's agent against a controller of the previous one (which
/// ignores the protocol it announces): it links, its devices come up, and
/// a host taken down shows `down`.
#[test]
fn an_agent_of_this_release_works_with_a_controller_of_the_previous_one() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let previous = previous_release();
    let lab = lab("198.18.11.0/24");
    let host = lab.host_address().expect("host link");
    let dir = work_dir().expect("dir");
    let d = dir.path();
    certificates(d, &host.to_string(), &["agent-1"]).expect("certificates");
    let shared = format!(
        "database = \"sqlite:{d}/ward.db\"\ntls_cert = \"{d}/controller.pem\"\n\
         tls_key = \"{d}/controller.key\"\ntls_client_ca = \"{d}/ca.pem\"\n",
        d = d.display(),
    );
    let old_controller = previous.join("ward-controller");
    let grpc = SocketAddr::new(host, free_loopback_port().expect("port"));
    let mut member =
        start_member_of(&old_controller, "controller-old", d, grpc, &shared).expect("controller");
    let token = admin_token_of(
        &old_controller,
        ["--config", &d.join("controller-old.toml").to_string_lossy()],
    )
    .expect("admin");
    member.rest = member.rest.clone().with_token(token);
    member.wait_until_up().expect("controller up");
    let (code, body) = member
        .rest
        .post("/api/v1/agents", &json!({"id": "agent-1", "site": SITE}));
    assert_eq!(code, 201, "{body}");
    let devices: Vec<Value> = (0..4)
        .map(|h| {
            json!({"name": format!("host-{h}"), "address": Ipv4Addr::new(198, 18, 11, 1 + h).to_string(), "site": SITE,
                "interval_ms": 500, "timeout_ms": 300, "down_after": 3, "up_after": 1})
        })
        .collect();
    let (code, body) = member
        .rest
        .post("/api/v1/devices/import", &Value::Array(devices));
    assert_eq!(code, 201, "{body}");
    let _agent = start_agent(&lab, &agent_binary(), &member.grpc, d, "agent-new");
    wait_until("every host up", Duration::from_secs(30), || {
        member.rest.get("/api/v1/summary").1["up"] == 4
    });
    lab.take_down(IpAddr::V4(Ipv4Addr::new(198, 18, 11, 3)))
        .expect("take down");
    wait_until("the host down", Duration::from_secs(30), || {
        down(&member) == Some(1)
    });
}
