//! An agent given one DNS name for a cluster: `controllers.test` resolves
//! (in the agent's namespace) to two addresses, one controller on each
//! (IPv4 and IPv6 of the host link, mTLS with the name in the
//! certificate). The controller the agent linked to is killed with
//! SIGKILL: the agent links to the other address within 2 s, and its
//! device stays `up`. Real binaries; packets only inside the lab.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use ward_e2e::{Member, admin_token, agent_binary, holds_link, start_member, wait_until, work_dir};
use ward_testkit::lab::{Lab, SiteConfig};
use ward_testkit::ports::free_loopback_port;
use ward_testkit::services::Postgres;

const NAME: &str = "controllers.test";

/// Which member holds agent `id`'s link itself.
fn holder(members: &[Member], id: &str) -> Option<usize> {
    (0..members.len()).find(|&i| holds_link(&members[i].rest, id))
}

#[test]
fn an_agent_given_one_name_with_two_addresses_links_to_the_other_when_one_dies() {
    ward_testkit::require_root("network namespaces and raw ICMP sockets");
    let mut lab = Lab::start(&SiteConfig {
        host_link: true,
        ..SiteConfig::default()
    })
    .expect("lab");
    let v4 = lab.host_address().expect("IPv4 host link");
    let v6 = lab.host_address_v6().expect("IPv6 host link");
    lab.name_in_client(NAME, &[v4, v6]).expect("name");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let dir = work_dir().expect("dir");
    let d = dir.path();
    ward_controller::certs::init(d, &[NAME.to_owned(), "127.0.0.1".to_owned()]).expect("CA");
    ward_controller::certs::agent(d, "named-agent").expect("agent certificate");
    let shared = format!(
        "database = \"{database}\"\ntls_cert = \"{d}/controller.pem\"\n\
         tls_key = \"{d}/controller.key\"\ntls_client_ca = \"{d}/ca.pem\"\n",
        database = postgres.url(),
        d = d.display(),
    );
    let port = free_loopback_port().expect("port");
    let mut members: Vec<Member> = [("controller-v4", v4), ("controller-v6", v6)]
        .into_iter()
        .map(|(name, address)| {
            start_member(name, d, SocketAddr::new(address, port), &shared).expect(name)
        })
        .collect();
    let token =
        admin_token(["--config", &d.join("controller-v4.toml").to_string_lossy()]).expect("admin");
    for member in &mut members {
        member.rest = member.rest.clone().with_token(token.clone());
        member.wait_until_up().expect("controller up");
    }
    let rest = members[0].rest.clone();
    let (code, body) = rest.post(
        "/api/v1/agents",
        &json!({"id": "named-agent", "site": "branch-1"}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, device) = rest.post(
        "/api/v1/devices",
        &json!({"name": "router", "address": "198.18.1.1", "site": "branch-1",
            "interval_ms": 200, "timeout_ms": 100}),
    );
    assert_eq!(code, 201, "{device}");
    let id = device["id"].as_i64().expect("id");

    let mut command: Command = lab.client_command(&agent_binary().to_string_lossy());
    command
        .args(["run", "--agent-id", "named-agent", "--site", "branch-1"])
        .args(["--controller", &format!("https://{NAME}:{port}")])
        .arg("--spool-dir")
        .arg(d.join("spool"))
        .arg("--tls-ca")
        .arg(d.join("ca.pem"))
        .arg("--tls-cert")
        .arg(d.join("agent-named-agent.pem"))
        .arg("--tls-key")
        .arg(d.join("agent-named-agent.key"))
        .env("RUST_LOG", "info");
    let agent =
        ward_e2e::Process::spawn("ward-agent", command, &d.join("agent.log")).expect("agent");
    wait_until("the agent linked by name", Duration::from_secs(20), || {
        holder(&members, "named-agent").is_some()
    });
    let first = holder(&members, "named-agent").expect("linked");
    let rests: Vec<ward_e2e::Rest> = members.iter().map(|m| m.rest.clone()).collect();
    let status = |i: usize| rests[i].get(&format!("/api/v1/devices/{id}")).1["status"].clone();
    wait_until("the device up", Duration::from_secs(20), || {
        status(first) == "up"
    });

    let killed = Instant::now();
    members[first].process.crash();
    let other = 1 - first;
    wait_until(
        "the agent linked to the other address",
        Duration::from_secs(20),
        || holds_link(&rests[other], "named-agent"),
    );
    let moved = killed.elapsed();
    eprintln!(
        "controller by name: the agent linked to the other address of {NAME} {moved:?} after \
         the one it used ({}) was killed",
        if first == 0 { "IPv4" } else { "IPv6" }
    );
    assert!(
        moved < Duration::from_secs(2),
        "moved in {moved:?}: {}",
        agent.log()
    );
    assert_eq!(status(other), "up", "nothing flapped");
}
