//! A maintenance window end to end: an agent in a lab site, the controller
//! with a webhook and a real Alertmanager. A host dropped while its window
//! is open is DOWN (never shown up) with `in_maintenance: true`, and
//! nothing reaches the webhook or Alertmanager; the window ends with the
//! host still down and its `firing` goes out on both, within about a
//! second of the end. A host outside the window alerts as usual all along.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ward_e2e::{Deployment, Webhook, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-1";
/// How long the window stays open after the host is found down.
const WINDOW_LEFT: Duration = Duration::from_secs(4);

/// Alertmanager's alerts (forwarded to `hook`) about device `name`.
fn alertmanager_alerts(hook: &Webhook, name: &str) -> Vec<Value> {
    hook.bodies()
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|alert| alert["labels"]["device"] == name)
        .collect()
}

#[test]
fn a_host_down_in_maintenance_is_down_silently_and_alerts_when_the_window_ends() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.4.0/30".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let mut deployment = Deployment::start(site).expect("deployment");
    let forwarded = Webhook::start().expect("Alertmanager's receiver");
    let alertmanager =
        ward_testkit::services::Alertmanager::start(&forwarded.url).expect("Alertmanager");
    deployment
        .restart_controller_with(&format!(
            "alertmanager = \"{}\"\nalertmanager_resend_interval = \"1s\"\n",
            alertmanager.url()
        ))
        .expect("controller with Alertmanager");

    deployment.register_agent("site-agent", SITE);
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 4, 1), 2, 500, 300);
    let _agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    wait_until("both hosts up", Duration::from_secs(30), || {
        rest.get("/api/v1/summary").1["up"] == 2
    });
    let (quiet, loud) = (ids[0], ids[1]);
    let name = |id: i64| rest.get(&format!("/api/v1/devices/{id}")).1["name"].clone();
    let quiet_name = name(quiet).as_str().expect("name").to_owned();

    let now = ward_controller::time::now_ms();
    let at = ward_controller::time::rfc3339;
    let (code, window) = rest.post(
        "/api/v1/maintenance",
        &json!({
            "name": "ATM service", "starts_at": at(now - 1_000), "ends_at": at(now + 60_000),
            "time_zone": "Asia/Tbilisi", "devices": [quiet],
        }),
    );
    assert_eq!(code, 201, "{window}");
    let window_id = window["id"].as_i64().expect("id");

    for id in [quiet, loud] {
        deployment
            .lab
            .take_down(deployment.address_of(id))
            .expect("take down");
    }
    wait_until("both hosts down", Duration::from_secs(10), || {
        rest.get("/api/v1/summary").1["down"] == 2
    });
    let (_, shown) = rest.get(&format!("/api/v1/devices/{quiet}"));
    assert_eq!(
        (
            &shown["status"],
            &shown["in_maintenance"],
            &shown["maintenance"]
        ),
        (&json!("down"), &json!(true), &json!([window_id])),
        "down, in maintenance: {shown}"
    );
    // The host outside the window alerts as usual: once its notifications
    // have arrived, the quiet one's would have too.
    wait_until(
        "the other host's firing, both channels",
        Duration::from_secs(10),
        || {
            deployment.webhook.has("firing", loud)
                && !alertmanager_alerts(&forwarded, name(loud).as_str().unwrap_or_default())
                    .is_empty()
        },
    );
    #[allow(
        clippy::disallowed_methods,
        reason = "a notification that should not come: give it time to arrive"
    )]
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !deployment.webhook.has("firing", quiet),
        "no webhook notification in maintenance"
    );
    assert!(
        alertmanager_alerts(&forwarded, &quiet_name).is_empty(),
        "no Alertmanager alert in maintenance"
    );
    assert_eq!(
        rest.metric("ward_notifications_held_total"),
        Some(2.0),
        "one per channel"
    );

    // The window ends while the host is still down.
    let end = ward_controller::time::now_ms() + i64::try_from(WINDOW_LEFT.as_millis()).unwrap_or(0);
    let (_, mut changed) = rest.get(&format!("/api/v1/maintenance/{window_id}"));
    changed["ends_at"] = at(end).into();
    let body: Value = ["name", "starts_at", "ends_at", "time_zone", "devices"]
        .iter()
        .map(|key| ((*key).to_owned(), changed[*key].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let (code, answer) = rest.send(
        reqwest::Method::PUT,
        &format!("/api/v1/maintenance/{window_id}"),
        &body,
    );
    assert_eq!(code, 200, "{answer}");
    let ended = Instant::now() + WINDOW_LEFT;
    wait_until(
        "the held firing on the webhook",
        WINDOW_LEFT + Duration::from_secs(5),
        || deployment.webhook.has("firing", quiet),
    );
    let late = Instant::now().saturating_duration_since(ended);
    eprintln!("the held firing reached the webhook {late:?} after the window's end");
    assert!(
        late <= Duration::from_millis(1_500),
        "firing {late:?} after the end (the window is re-read every 0.5 s)"
    );
    wait_until(
        "the held alert at Alertmanager",
        Duration::from_secs(5),
        || !alertmanager_alerts(&forwarded, &quiet_name).is_empty(),
    );
    let (_, shown) = rest.get(&format!("/api/v1/devices/{quiet}"));
    assert_eq!(
        (&shown["status"], &shown["in_maintenance"]),
        (&json!("down"), &json!(false))
    );
    assert_eq!(rest.metric("ward_held_alerts_released_total"), Some(1.0));
}
