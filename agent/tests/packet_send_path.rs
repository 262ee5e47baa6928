//! `--send-path packet` against a lab site: probes leave through the
//! packet socket where the kernel's routing allows, and the kernel's
//! routing stays the authority (stale neighbours, policy rules and route
//! changes send through the IP stack).

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{AGENT, Run, next_transition, run, start_in_client};
use ward_agent::engine::{Status, TargetSpec, Transition};
use ward_agent::prober::SendPath;
use ward_testkit::lab::{Lab, SiteConfig};

/// The lab client's gateway, the site's end of the link.
const GATEWAY: &str = "198.18.0.2";
const GATEWAY_MAC: &str = "02:00:c6:12:00:02";

fn lab() -> Lab {
    Lab::start(&SiteConfig::default()).expect("create the lab")
}

/// `ward-agent probe --json --send-path packet ARGS` in the client.
fn probe_packet(lab: &Lab, args: &[&str]) -> Run {
    run(lab
        .client_command(AGENT)
        .args(["probe", "--json", "--send-path", "packet"])
        .args(args))
}

/// `ip ARGS` in the lab's client namespace.
fn client_ip(lab: &Lab, args: &[&str]) {
    let status = lab
        .client_command("ip")
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

#[test]
fn probes_leave_through_the_packet_socket_and_every_reply_is_matched() {
    let lab = lab();
    let run = probe_packet(&lab, &["198.18.1.0/24"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.targets.len(), 254);
    assert!(run.targets.iter().all(|target| target["state"] == "up"));
    assert_eq!(run.summary("via packet socket"), 254, "{}", run.stderr);
    assert_eq!(run.summary("received"), 254);
    assert_eq!(run.summary("invalid") + run.summary("send errors"), 0);
    assert!(
        run.stderr.contains("1 next hops, 1 usable now"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stale_gateway_entry_sends_through_the_ip_stack() {
    let lab = lab();
    client_ip(
        &lab,
        &[
            "neigh",
            "replace",
            GATEWAY,
            "lladdr",
            GATEWAY_MAC,
            "dev",
            "wc0",
            "nud",
            "stale",
        ],
    );
    let run = probe_packet(&lab, &["198.18.1.0/28"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.summary("received"), 14);
    assert_eq!(
        run.summary("via packet socket"),
        0,
        "an unconfirmed MAC is never used: {}",
        run.stderr
    );
}

#[test]
fn policy_rules_keep_every_probe_on_the_ip_stack() {
    let lab = lab();
    client_ip(
        &lab,
        &[
            "rule",
            "add",
            "to",
            "198.18.1.0/24",
            "lookup",
            "main",
            "priority",
            "100",
        ],
    );
    let run = probe_packet(&lab, &["198.18.1.0/28"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("policy routing rules"),
        "{}",
        run.stderr
    );
    assert_eq!(run.summary("received"), 14);
    assert_eq!(run.summary("via packet socket"), 0);
}

/// Waits for the next transition of `address` and checks it is to `status`.
fn wait_for(events: &mpsc::Receiver<Transition>, address: IpAddr, status: Status) {
    let transition = next_transition(events, address, Duration::from_secs(6));
    assert_eq!(transition.status, status, "{transition:?}");
}

#[test]
fn a_blackhole_route_added_during_a_run_takes_effect() {
    let lab = lab();
    let address: IpAddr = "198.18.1.30".parse().expect("address");
    let spec = TargetSpec {
        interval_ms: 200,
        ..TargetSpec::with_defaults(address)
    };
    let (prober, events) = start_in_client(&lab, SendPath::Packet, vec![(spec, 1)]);
    wait_for(&events, address, Status::Up);
    let through_packet_socket = prober.counters().sent_packet_socket.load(Ordering::Relaxed);
    assert!(through_packet_socket > 0, "the packet socket was used");

    // The kernel would now drop these probes; so must the agent's path.
    client_ip(&lab, &["route", "add", "blackhole", "198.18.1.30/32"]);
    wait_for(&events, address, Status::Down);
    let after_change = prober.counters().sent_packet_socket.load(Ordering::Relaxed);
    client_ip(&lab, &["route", "del", "blackhole", "198.18.1.30/32"]);
    wait_for(&events, address, Status::Up);

    assert!(
        prober.counters().send_errors.load(Ordering::Relaxed) > 0,
        "the IP stack refused the probes while the blackhole was there"
    );
    // Rebuilds are at most one a second; until then the IP stack sends.
    let deadline = Instant::now() + Duration::from_secs(3);
    while prober.counters().sent_packet_socket.load(Ordering::Relaxed) <= after_change {
        assert!(
            Instant::now() < deadline,
            "back on the packet socket once the route is gone"
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
    assert_eq!(
        prober.counters().packet_path_errors.load(Ordering::Relaxed),
        0
    );
    drop(prober.stop());
}
