//! Flapping end to end: an agent in a lab site, the controller with a
//! webhook and `flap_changes = 2`, `flap_window = "6s"`. A host taken down
//! and brought back every 1.5 s for a minute sends at most 3 notifications
//! (`firing`, `resolved`, then `flapping`), shows `flapping: true`, and
//! every change is in `/api/v1/history`; once it has been up for the flap
//! window, one `settled` notification says so and it flaps no more.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_e2e::{Deployment, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-9";
/// How often the host changes: down, then up, then down…
const TOGGLE_EVERY: Duration = Duration::from_millis(1_500);
/// Toggles in the minute (an even number: the host ends up).
const TOGGLES: u32 = 40;
/// The controller's `flap_window`.
const FLAP_WINDOW: Duration = Duration::from_secs(6);

/// The webhook bodies about device `id`, in arrival order.
fn notifications(deployment: &Deployment, id: i64) -> Vec<Value> {
    deployment
        .webhook
        .bodies()
        .into_iter()
        .filter(|body| body["device"]["id"] == id)
        .collect()
}

fn kinds(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|body| body["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_host_toggling_for_a_minute_sends_at_most_three_notifications_then_one_settled() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.6.0/30".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let mut deployment = Deployment::start(site).expect("deployment");
    deployment
        .restart_controller_with(&format!(
            "flap_changes = 2\nflap_window = \"{}s\"\n",
            FLAP_WINDOW.as_secs()
        ))
        .expect("controller with flap detection");

    deployment.register_agent("site-agent", SITE);
    let id = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 6, 1), 1, 200, 150)[0];
    let _agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    wait_until("the host up", Duration::from_secs(30), || {
        rest.get(&format!("/api/v1/devices/{id}")).1["status"] == "up"
    });
    let address = deployment.address_of(id);

    let started = Instant::now();
    for toggle in 0..TOGGLES {
        if toggle % 2 == 0 {
            deployment.lab.take_down(address).expect("take down");
        } else {
            deployment.lab.bring_up(address).expect("bring up");
        }
        let next = TOGGLE_EVERY * (toggle + 1);
        #[allow(
            clippy::disallowed_methods,
            reason = "the host's schedule: down and up every 1.5 s"
        )]
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    wait_until("the host up again", Duration::from_secs(10), || {
        rest.get(&format!("/api/v1/devices/{id}")).1["status"] == "up"
    });
    let (_, shown) = rest.get(&format!("/api/v1/devices/{id}"));
    assert_eq!(shown["flapping"], true, "{shown}");
    let sent = notifications(&deployment, id);
    eprintln!("notifications during the minute: {:?}", kinds(&sent));
    assert!(sent.len() <= 3, "at most 3: {:?}", kinds(&sent));
    assert_eq!(kinds(&sent).last().map(String::as_str), Some("flapping"));

    let (code, history) = rest.get(&format!("/api/v1/history?device={id}&limit=1000"));
    assert_eq!(code, 200, "{history}");
    let changes = history["changes"].as_array().cloned().unwrap_or_default();
    let downs = changes.iter().filter(|entry| entry["to"] == "down").count();
    let ups = changes.iter().filter(|entry| entry["to"] == "up").count();
    eprintln!(
        "history: {} changes ({downs} down, {ups} up) for {TOGGLES} toggles",
        changes.len()
    );
    assert!(
        downs >= 15,
        "most of the {} outages are recorded: {downs}",
        TOGGLES / 2
    );
    let (_, alerts) = rest.get("/api/v1/alerts");
    let outages = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["device"]["id"] == id)
        .count();
    assert_eq!(outages, downs, "every outage recorded has its alert");

    // Up and stable: one `settled` after the flap window.
    wait_until(
        "the settled notification",
        FLAP_WINDOW + Duration::from_secs(10),
        || kinds(&notifications(&deployment, id)).contains(&"settled".to_owned()),
    );
    let sent = notifications(&deployment, id);
    let settled = sent.last().expect("settled");
    assert_eq!(settled["kind"], "settled", "{:?}", kinds(&sent));
    assert_eq!(settled["device"]["status"], "up", "{settled}");
    assert_eq!(settled["device"]["flapping"], false, "{settled}");
    assert_eq!(sent.len(), 4, "{:?}", kinds(&sent));
    let (_, shown) = rest.get(&format!("/api/v1/devices/{id}"));
    assert_eq!(shown["flapping"], false, "{shown}");
    assert_eq!(rest.metric("ward_flapping_settled_total"), Some(1.0));
    assert!(
        rest.metric("ward_notifications_withheld_total")
            .unwrap_or(0.0)
            > 0.0
    );
}
