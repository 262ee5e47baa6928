//! Liveness without ICMP, end to end: an agent in a lab site probes hosts
//! whose echo requests nftables drops. A host listening on TCP 443 is `up`
//! with `check = "tcp:443"` (and with `icmp+tcp:443`), and `down` once its
//! link is cut; a closed port is alive by its RST, unless `rst_alive` is
//! false; the same host checked by ICMP alone is `down` (the drop works).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use serde_json::json;
use ward_e2e::{Deployment, wait_until};
use ward_testkit::lab::{Cidr, SiteConfig};

const SITE: &str = "branch-25";

#[test]
fn hosts_that_drop_icmp_are_up_by_tcp_and_down_when_cut() {
    ward_testkit::require_root("the lab and raw sockets");
    let site = SiteConfig {
        answering: vec!["198.18.25.0/29".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let deployment = Deployment::start(site).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    // A: tcp:443 listening; B: icmp+tcp:443 listening; C: tcp:8443
    // closed (alive by RST); D: tcp:8443 closed, rst_alive false; E: ICMP.
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 25, 1), 5, 1000, 500);
    let checks = [
        json!({"check": "tcp:443"}),
        json!({"check": "icmp+tcp:443"}),
        json!({"check": "tcp:8443"}),
        json!({"check": "tcp:8443", "rst_alive": false}),
        json!({"check": "icmp"}),
    ];
    let rest = &deployment.rest;
    let mut listeners = Vec::new();
    for (&id, check) in ids.iter().zip(&checks) {
        let (_, mut device) = rest.get(&format!("/api/v1/devices/{id}"));
        let address: IpAddr = device["address"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("address");
        for (key, value) in check.as_object().expect("object") {
            device[key] = value.clone();
        }
        let body = json!({
            "name": device["name"], "address": device["address"], "site": SITE,
            "interval_ms": 1000, "timeout_ms": 500,
            "check": device["check"], "rst_alive": device["rst_alive"],
        });
        let (code, saved) = rest.send(
            reqwest::Method::PUT,
            &format!("/api/v1/devices/{id}"),
            &body,
        );
        assert_eq!(code, 200, "{saved}");
        assert_eq!(saved["check"], check["check"], "{saved}");
        deployment
            .lab
            .lose_requests(Cidr::host(address), 100)
            .expect("every echo request dropped");
        if check["check"].as_str().is_some_and(|c| c.ends_with(":443")) {
            let listener = deployment
                .lab
                .run_in_site(move || TcpListener::bind((address, 443)))
                .expect("in the site")
                .expect("a listener on 443");
            listeners.push(listener);
        }
    }
    let _agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let status = |id: i64| rest.get(&format!("/api/v1/devices/{id}")).1["status"].clone();
    wait_until(
        "A, B and C up, D and E down",
        Duration::from_secs(30),
        || {
            ids[..3].iter().all(|&id| status(id) == "up")
                && ids[3..].iter().all(|&id| status(id) == "down")
        },
    );

    // A's link cut entirely: down within the bound (1 s interval, 3
    // misses of 500 ms, a report).
    let a = deployment.address_of(ids[0]);
    deployment.lab.take_down(a).expect("cut");
    let took = wait_until("A down", Duration::from_secs(10), || {
        status(ids[0]) == "down"
    });
    eprintln!("A down {:.1} s after its link was cut", took.as_secs_f64());
    assert!(
        status(ids[1]) == "up" && status(ids[2]) == "up",
        "B and C stay up"
    );
    drop(listeners);
}
