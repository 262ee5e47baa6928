//! Threshold profiles as an operator uses them: made, shown, replaced and
//! refused by field over REST; named by a device (in JSON and in a CSV
//! import) or as a site's default; a profile in use is not deleted; and
//! the agent probing a device is sent the thresholds that apply to it —
//! again whenever a profile or a site's default changes.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;
use ward_controller::store::Actor;
use ward_proto::v1::{self as pb, controller_message};

#[tokio::test]
async fn profiles_are_made_shown_replaced_and_refused_by_field() {
    let (_dir, _controller, api) = common::served_with(|_| {}).await;
    let (code, made) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "dsl", "window": "2m", "clear_window": "10m",
                   "loss_warn_pct": 30, "loss_crit_pct": 60, "rtt_warn_ms": 300}),
        )
        .await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["window"], "2m");
    assert_eq!(made["clear_window"], "10m");
    assert_eq!(made["loss_warn_pct"], 30.0);
    assert_eq!(made["rtt_warn_ms"], 300);
    // Omitted keys take ward's defaults.
    assert_eq!(made["rtt_crit_ms"], 500);
    assert_eq!(made["rtt_percentile"], 50);
    assert_eq!(made["devices"], 0);

    for (body, field) in [
        (json!({"name": "a", "loss_warn_pct": 150}), "loss_warn_pct"),
        (json!({"name": "a", "window": "1s"}), "window"),
        (json!({"name": "a", "window": 30}), "window"),
        (
            json!({"name": "a", "rtt_warn_ms": 400, "rtt_crit_ms": 300}),
            "rtt_crit_ms",
        ),
        (json!({"name": "a", "rtt_percentile": 75}), "rtt_percentile"),
        (json!({"name": "no spaces"}), "name"),
        (json!({"window": "5m"}), "name"),
    ] {
        let (code, refused) = api.post("/api/v1/profiles", body.clone()).await;
        assert_eq!(code, 400, "{body}: {refused}");
        assert_eq!(refused["field"], field, "{body}: {refused}");
    }
    let (code, refused) = api.post("/api/v1/profiles", json!({"name": "dsl"})).await;
    assert_eq!((code, refused["field"].as_str()), (409, Some("name")));

    let put = |path: &'static str, body: Value| api.send(Method::PUT, path, Some(body), None);
    let (code, replaced) = put("/api/v1/profiles/dsl", json!({"loss_warn_pct": 25})).await;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(
        (
            replaced["loss_warn_pct"].as_f64(),
            replaced["window"].as_str()
        ),
        (Some(25.0), Some("5m"))
    );
    let (code, refused) = put("/api/v1/profiles/dsl", json!({"name": "adsl"})).await;
    assert_eq!((code, refused["field"].as_str()), (400, Some("name")));
    let (code, missing) = put("/api/v1/profiles/nope", json!({})).await;
    assert_eq!((code, missing["field"].as_str()), (404, Some("name")));
    let (code, listed) = api.get("/api/v1/profiles").await;
    assert_eq!(code, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let (code, one) = api.get("/api/v1/profiles/dsl").await;
    assert_eq!((code, one["loss_warn_pct"].as_f64()), (200, Some(25.0)));
}

#[tokio::test]
async fn a_profile_in_use_by_a_device_or_a_site_is_not_deleted() {
    let (_dir, _controller, api) = common::served_with(|_| {}).await;
    let (code, _) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "4g", "loss_warn_pct": 35}),
        )
        .await;
    assert_eq!(code, 201);
    let device = |name: &str, address: &str, profile: Value| json!({"name": name, "address": address, "site": "branch-7", "profile": profile});
    let (code, refused) = api
        .post(
            "/api/v1/devices",
            device("atm-1", "198.18.1.1", json!("nope")),
        )
        .await;
    assert_eq!((code, refused["field"].as_str()), (400, Some("profile")));
    let (code, atm) = api
        .post(
            "/api/v1/devices",
            device("atm-1", "198.18.1.1", json!("4g")),
        )
        .await;
    assert_eq!(code, 201, "{atm}");
    assert_eq!(atm["profile"], "4g");
    // A CSV import names profiles in its own column.
    let response = api
        .authorized(
            api.http
                .post(format!("{}/api/v1/devices/import", api.base))
                .header("content-type", "text/csv")
                .body("name,address,site,profile\natm-2,198.18.1.2,branch-7,4g\natm-3,198.18.1.3,branch-7,\n"),
        )
        .send()
        .await
        .expect("import");
    assert_eq!(response.status().as_u16(), 201);
    let (_, devices) = api.get("/api/v1/devices?site=branch-7").await;
    let profiles: Vec<Value> = devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| device["profile"].clone())
        .collect();
    assert_eq!(profiles, [json!("4g"), json!("4g"), Value::Null]);

    let (code, refused) = api
        .send(Method::DELETE, "/api/v1/profiles/4g", None, None)
        .await;
    assert_eq!(code, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|error| error.contains("2 devices and 0 sites")),
        "{refused}"
    );

    // The site's default: set, listed, and then in the way too.
    let (code, site) = api
        .send(
            Method::PUT,
            "/api/v1/sites/branch-7",
            Some(json!({"profile": "4g"})),
            None,
        )
        .await;
    assert_eq!(code, 200, "{site}");
    assert_eq!(
        site,
        json!({"name": "branch-7", "profile": "4g", "devices": 3})
    );
    let (code, missing) = api
        .send(
            Method::PUT,
            "/api/v1/sites/branch-8",
            Some(json!({"profile": "4g"})),
            None,
        )
        .await;
    assert_eq!((code, missing["field"].as_str()), (404, Some("name")));
    let (_, profile) = api.get("/api/v1/profiles/4g").await;
    assert_eq!(
        (profile["devices"].as_u64(), &profile["sites"]),
        (Some(2), &json!(["branch-7"]))
    );

    for name in ["atm-1", "atm-2"] {
        let id = devices
            .as_array()
            .expect("devices")
            .iter()
            .find(|device| device["name"] == name)
            .and_then(|device| device["id"].as_i64())
            .expect("id");
        let (code, _) = api
            .send(
                Method::PUT,
                &format!("/api/v1/devices/{id}"),
                Some(device(
                    name,
                    &format!("198.18.1.{}", &name[4..]),
                    Value::Null,
                )),
                None,
            )
            .await;
        assert_eq!(code, 200);
    }
    let (code, refused) = api
        .send(Method::DELETE, "/api/v1/profiles/4g", None, None)
        .await;
    assert_eq!(code, 409);
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|error| error.contains("0 devices and 1 sites")),
        "{refused}"
    );
    let (code, _) = api
        .send(
            Method::PUT,
            "/api/v1/sites/branch-7",
            Some(json!({"profile": null})),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api
        .send(Method::DELETE, "/api/v1/profiles/4g", None, None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = api.get("/api/v1/profiles/4g").await;
    assert_eq!(code, 404);
}

/// The next assignment message on `inbound`: its targets' loss warning
/// threshold (permille) by device id.
async fn next_assignment(inbound: &mut tonic::Streaming<pb::ControllerMessage>) -> Vec<(u64, u32)> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), inbound.next())
            .await
            .expect("an assignment within 10 s")
            .expect("open")
            .expect("message");
        let targets = match message.kind {
            Some(controller_message::Kind::Snapshot(snapshot)) => snapshot.targets,
            Some(controller_message::Kind::Update(update)) => update.upserts,
            _ => continue,
        };
        let mut judged: Vec<(u64, u32)> = targets
            .iter()
            .map(|target| {
                let quality = target.quality.expect("thresholds");
                (target.device_id, quality.loss_warn_permille)
            })
            .collect();
        judged.sort_unstable();
        return judged;
    }
}

#[tokio::test]
async fn the_agent_is_sent_each_devices_thresholds_and_sent_them_again_when_they_change() {
    let (_dir, controller, api) = common::served_with(|_| {}).await;
    controller
        .presence
        .register_agent("branch-7-agent", "branch-7", &Actor::console(), 1_000)
        .await
        .expect("agent");
    for (name, loss) in [("strict", 5), ("dsl", 40)] {
        let (code, made) = api
            .post(
                "/api/v1/profiles",
                json!({"name": name, "loss_warn_pct": loss}),
            )
            .await;
        assert_eq!(code, 201, "{made}");
    }
    let mut ids = Vec::new();
    for (name, profile) in [("atm-1", json!("strict")), ("atm-2", Value::Null)] {
        let (code, device) = api
            .post(
                "/api/v1/devices",
                json!({"name": name, "address": format!("198.18.1.{}", &name[4..]),
                       "site": "branch-7", "profile": profile}),
            )
            .await;
        assert_eq!(code, 201, "{device}");
        ids.push(device["id"].as_u64().expect("id"));
    }
    let (strict_atm, plain_atm) = (ids[0], ids[1]);
    let url = common::serve_grpc(controller.clone()).await;
    let mut inbound =
        common::agent_link(&url, common::ipv4_hello("branch-7-agent", "branch-7")).await;
    // Its own profile; no profile and no site default: `[degraded]`.
    assert_eq!(
        next_assignment(&mut inbound).await,
        [(strict_atm, 50), (plain_atm, 200)]
    );
    // The site's default reaches the device without a profile of its own.
    let (code, _) = api
        .send(
            Method::PUT,
            "/api/v1/sites/branch-7",
            Some(json!({"profile": "dsl"})),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(next_assignment(&mut inbound).await, [(plain_atm, 400)]);
    // A profile replaced reaches the devices judged by it.
    let (code, _) = api
        .send(
            Method::PUT,
            "/api/v1/profiles/strict",
            Some(json!({"loss_warn_pct": 10})),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(next_assignment(&mut inbound).await, [(strict_atm, 100)]);
}
