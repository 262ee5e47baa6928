//! The trace thread on real raw sockets in a lab whose hosts sit behind a
//! router namespace, the link beyond the router cut: the path ends at the
//! router, over IPv4 and IPv6; a device checked by TCP is traced with
//! SYNs (its path is found even where echo requests never leave the
//! agent's host), one checked by ICMP with echo requests.

use std::net::IpAddr;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use ward_agent::engine::trace::{TraceConfig, TraceResult};
use ward_agent::tracer::TraceThread;
use ward_testkit::lab::{Lab, SiteConfig};

fn lab() -> Lab {
    let lab = Lab::start(&SiteConfig {
        answering: vec![],
        unreachable: vec![],
        behind_router: ["198.18.40.0/23", "2001:2:0:40::/64"]
            .map(|range| range.parse().expect("cidr"))
            .into(),
        ..SiteConfig::default()
    })
    .expect("lab");
    lab.cut_behind_router().expect("cut");
    lab
}

/// The trace thread started in the lab's client namespace, and where its
/// finished traces arrive.
fn tracer_in(lab: &Lab) -> (TraceThread, Receiver<TraceResult>) {
    let (done, finished) = channel();
    let tracer = lab
        .run_in_client(move || {
            TraceThread::start(TraceConfig::default(), move |result| {
                let _ = done.send(result);
            })
        })
        .expect("the client namespace")
        .expect("trace sockets");
    (tracer, finished)
}

/// The next two finished traces, by device.
fn two_traces(finished: &Receiver<TraceResult>) -> Vec<TraceResult> {
    let mut results: Vec<TraceResult> = (0..2)
        .map(|_| {
            finished
                .recv_timeout(Duration::from_secs(10))
                .expect("a trace within 10 s")
        })
        .collect();
    results.sort_by_key(|result| result.devices.clone());
    results
}

fn last_hop(result: &TraceResult) -> Option<IpAddr> {
    result.hops.iter().rev().find_map(|hop| hop.address)
}

#[test]
fn a_cut_beyond_the_router_ends_the_path_at_the_router_in_both_families() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let lab = lab();
    let (tracer, finished) = tracer_in(&lab);
    tracer.request(1, "198.18.40.7".parse().expect("address"), None);
    tracer.request(2, "2001:2:0:40::7".parse().expect("address"), None);
    let results = two_traces(&finished);
    assert_eq!(
        last_hop(&results[0]),
        Some(lab.router_address()),
        "{results:?}"
    );
    assert_eq!(
        last_hop(&results[1]),
        Some("2001:2::2".parse().expect("address")),
        "{results:?}"
    );
    for result in &results {
        assert_eq!(
            result.hops.len(),
            1,
            "nothing beyond the router: {result:?}"
        );
        assert!(!result.reached);
        assert!(result.hops[0].rtt_ns.is_some_and(|rtt| rtt > 0));
    }
    assert_eq!(
        tracer
            .stats()
            .started
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn a_device_checked_by_tcp_is_traced_with_syns_and_one_by_icmp_with_echo_requests() {
    ward_testkit::require_root("the lab and raw sockets");
    let lab = lab();
    // No echo request to the hosts ever leaves the agent's host.
    let mut nft = lab.client_command("nft");
    nft.args([
        "add table inet no_echo; add chain inet no_echo out { type filter hook output priority 0; }; \
         add rule inet no_echo out ip daddr 198.18.40.0/23 icmp type echo-request drop",
    ]);
    let status = nft.status().expect("nft");
    assert!(status.success(), "nft: {status}");
    let (tracer, finished) = tracer_in(&lab);
    // Two /24s, so the two do not share one trace.
    tracer.request(1, "198.18.40.7".parse().expect("address"), Some(443));
    tracer.request(2, "198.18.41.7".parse().expect("address"), None);
    let results = two_traces(&finished);
    assert_eq!(
        last_hop(&results[0]),
        Some(lab.router_address()),
        "the SYNs reach the router: {results:?}"
    );
    assert_eq!(
        last_hop(&results[1]),
        None,
        "the echo requests never left: {results:?}"
    );
}
