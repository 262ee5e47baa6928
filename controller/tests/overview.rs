//! `GET /api/v1/overview`, what the dashboard shows at a glance, agrees
//! with the REST answers it stands for: its counts are the summary, its
//! problems the not-plainly-up devices of the filtered list in the
//! documented order, its sites the list's tallies. And an unpaged list too
//! large for one answer is refused naming `limit`.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use ward_controller::store::{Actor, DeviceSpec, Severity, Status};

const SITES: [&str; 3] = ["branch-2", "branch-10", "branch-3"];

fn spec(index: usize) -> DeviceSpec {
    DeviceSpec {
        severity: [Severity::Critical, Severity::Major, Severity::Minor][index % 3],
        ..DeviceSpec::new(
            format!("atm-{index}"),
            format!("198.18.7.{}", index + 1).parse().expect("address"),
            SITES[index % SITES.len()].into(),
        )
    }
}

fn rank(status: &str) -> usize {
    ["down", "unreachable", "degraded", "unknown", "up"]
        .iter()
        .position(|s| *s == status)
        .expect("a status")
}

fn ids(devices: &Value) -> Vec<i64> {
    devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| device["id"].as_i64().expect("id"))
        .collect()
}

/// The not-plainly-up enabled devices of `list`, in the documented order.
fn problems_of(list: &Value) -> Vec<i64> {
    let mut problems: Vec<&Value> = list
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| {
            d["enabled"] == true
                && (d["status"] != "up" || d["flapping"] == true || d["in_maintenance"] == true)
        })
        .collect();
    let severity = |d: &Value| {
        ["critical", "major", "minor", "info"]
            .iter()
            .position(|s| d["severity"] == *s)
            .expect("severity")
    };
    let since = |d: &Value| {
        d["down_since"]
            .as_str()
            .or(d["last_change"].as_str())
            .expect("since")
            .to_owned()
    };
    problems.sort_by(|a, b| {
        rank(a["status"].as_str().expect("status"))
            .cmp(&rank(b["status"].as_str().expect("status")))
            .then(severity(a).cmp(&severity(b)))
            .then(since(b).cmp(&since(a)))
    });
    problems
        .iter()
        .map(|d| d["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_agrees_with_the_summary_and_the_filtered_lists() {
    let (_dir, controller, api) = common::served_with(|_| {}).await;
    let specs: Vec<DeviceSpec> = (0..30).map(spec).collect();
    let devices = controller
        .inventory
        .import_devices(&specs, &Actor::console(), ward_controller::time::now_ms())
        .await
        .expect("import");
    // 0..24 answer; of those 3, 7, 11 and 20 go down later, one at a time
    // (so their outages start at different times); 24..30 are never
    // reported (unknown); 29 is disabled.
    let mut seq = 0;
    let mut report = |id: i64, status: Status| {
        seq += 1;
        common::transition_report("agent-1", id, seq, status, ward_controller::time::now_ms())
    };
    for device in &devices[..24] {
        let up = report(device.id, Status::Up);
        controller
            .reports
            .apply_report(&up, ward_controller::time::now_ms())
            .await
            .expect("up");
    }
    for index in [3, 7, 11, 20] {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let down = report(devices[index].id, Status::Down);
        controller
            .reports
            .apply_report(&down, ward_controller::time::now_ms())
            .await
            .expect("down");
    }
    let (code, _) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/devices/{}", devices[29].id),
            Some(
                serde_json::json!({"name": "atm-29", "address": "198.18.7.30",
                                    "site": SITES[29 % SITES.len()], "enabled": false}),
            ),
            None,
        )
        .await;
    assert_eq!(code, 200);

    let (code, overview) = api.get("/api/v1/overview").await;
    assert_eq!(code, 200, "{overview}");
    let (_, summary) = api.get("/api/v1/summary").await;
    assert_eq!(overview["counts"], summary, "the counts are the summary");
    let (_, list) = api.get("/api/v1/devices").await;
    assert_eq!(overview["matching"], 30);
    let expected = problems_of(&list);
    assert_eq!(
        expected.len(),
        4 + 5,
        "4 down, 5 unknown (the 6th is disabled)"
    );
    assert_eq!(overview["problems"]["total"], expected.len());
    assert_eq!(ids(&overview["problems"]["devices"]), expected);
    assert_eq!(
        overview["problems"]["devices"][0]["id"], devices[3].id,
        "the critical device down first"
    );

    // Each site's tally is what the list says of it.
    let mut tallies: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for device in list.as_array().expect("list") {
        let site = tallies
            .entry(device["site"].as_str().expect("site").to_owned())
            .or_default();
        if device["enabled"] == true {
            *site
                .entry(device["status"].as_str().expect("status").to_owned())
                .or_default() += 1;
        }
    }
    let names: Vec<&str> = overview["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|site| site["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["branch-2", "branch-3", "branch-10"],
        "natural order"
    );
    for site in overview["sites"].as_array().expect("sites") {
        let listed = &tallies[site["name"].as_str().expect("name")];
        for status in ["up", "degraded", "down", "unreachable", "unknown"] {
            assert_eq!(
                site[status].as_u64(),
                Some(listed.get(status).copied().unwrap_or(0)),
                "{status} at {site}"
            );
        }
        let worst = ["down", "unreachable", "degraded", "unknown", "up"]
            .into_iter()
            .find(|status| listed.get(*status).is_some_and(|n| *n > 0))
            .unwrap_or("unknown");
        assert_eq!(site["worst"], worst, "{site}");
    }

    // Filters narrow the problems and the matching count, not the rest.
    let (_, narrowed) = api.get("/api/v1/overview?site=branch-10&problems=2").await;
    let (_, site_list) = api.get("/api/v1/devices?site=branch-10").await;
    assert_eq!(
        narrowed["matching"].as_u64(),
        Some(site_list.as_array().expect("list").len() as u64)
    );
    let site_problems = problems_of(&site_list);
    assert_eq!(narrowed["problems"]["total"], site_problems.len());
    assert_eq!(
        ids(&narrowed["problems"]["devices"]),
        site_problems[..2],
        "at most `problems`, the first ones"
    );
    assert_eq!(narrowed["counts"], summary);
    assert_eq!(narrowed["sites"], overview["sites"]);

    for (query, field) in [
        ("problems=1001", "problems"),
        ("status=sideways", "status"),
        ("severity=huge", "severity"),
        ("limit=5", "query"),
    ] {
        let (code, error) = api.get(&format!("/api/v1/overview?{query}")).await;
        assert_eq!(code, 400, "{query}: {error}");
        if field != "query" {
            assert_eq!(error["field"], field, "{query}: {error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaged_list_too_large_for_one_answer_is_refused_naming_limit() {
    let (_dir, controller, api) = common::served_with(|_| {}).await;
    let count = ward_controller::services::UNPAGED_MAX + 1;
    let specs: Vec<DeviceSpec> = (0..count)
        .map(|index| {
            DeviceSpec::new(
                format!("atm-{index}"),
                format!("198.18.{}.{}", 64 + index / 250, 1 + index % 250)
                    .parse()
                    .expect("address"),
                if index == 0 { "small" } else { "large" }.into(),
            )
        })
        .collect();
    controller
        .inventory
        .import_devices(&specs, &Actor::console(), ward_controller::time::now_ms())
        .await
        .expect("import");
    let (code, error) = api.get("/api/v1/devices").await;
    assert_eq!(code, 400, "{error}");
    assert_eq!(error["field"], "limit");
    assert!(
        error["error"].as_str().is_some_and(
            |text| text.contains("20001 devices match") && text.contains("next_cursor")
        ),
        "says how many and how to page: {error}"
    );
    let (code, small) = api.get("/api/v1/devices?site=small").await;
    assert_eq!((code, ids(&small).len()), (200, 1), "a filter narrows it");
    let (code, page) = api.get("/api/v1/devices?limit=5000").await;
    assert_eq!((code, ids(&page["devices"]).len()), (200, 5000));
    let (code, overview) = api.get("/api/v1/overview?problems=0").await;
    assert_eq!(code, 200);
    assert_eq!(overview["counts"]["unknown"], count);
    assert_eq!(overview["problems"]["total"], count);
    assert_eq!(overview["problems"]["devices"], serde_json::json!([]));
}
