//! The device REST surface: update, delete, all-or-nothing import (JSON
//! and CSV), and the bearer token on calls that change data.

mod common;

use common::{Api, controller};
use reqwest::Method;
use serde_json::json;
use ward_controller::cache::Cache;

async fn api(token: Option<&str>) -> (tempfile::TempDir, Api) {
    let (dir, url) = common::sqlite_url();
    let settings = ward_controller::services::AppSettings {
        api_token: token.map(String::from),
        ..Default::default()
    };
    let controller = common::controller_with(&url, Cache::in_process(), settings).await;
    (dir, Api::serve(controller).await)
}

/// A controller on SQLite and its REST API (acting as a new admin).
async fn served() -> (tempfile::TempDir, ward_controller::services::App, Api) {
    let (dir, url) = common::sqlite_url();
    let controller = controller(&url, Cache::in_process()).await;
    let api = Api::serve(controller.clone()).await;
    (dir, controller, api)
}

fn device(name: &str, address: &str) -> serde_json::Value {
    json!({"name": name, "address": address, "site": "branch-9"})
}

#[tokio::test]
async fn put_replaces_the_configuration_and_delete_removes_the_device() {
    let (_dir, api) = api(None).await;
    let (_, created) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    let id = created["id"].as_i64().expect("id");
    let changed =
        json!({"name": "atm-1", "address": "198.18.1.2", "site": "branch-9", "interval_ms": 250});
    let (status, updated) = api
        .send(
            Method::PUT,
            &format!("/api/v1/devices/{id}"),
            Some(changed),
            None,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["address"].as_str(), updated["interval_ms"].as_u64()),
        (Some("198.18.1.2"), Some(250))
    );
    let (_, got) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(got["address"], "198.18.1.2");
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(
        listed[0]["address"], "198.18.1.2",
        "the cached list follows the update"
    );

    let bad = json!({"name": "atm-1", "address": "nope", "site": "branch-9"});
    let (status, error) = api
        .send(
            Method::PUT,
            &format!("/api/v1/devices/{id}"),
            Some(bad),
            None,
        )
        .await;
    assert_eq!((status, error["field"].as_str()), (400, Some("address")));
    let (status, _) = api
        .send(
            Method::PUT,
            "/api/v1/devices/999",
            Some(device("x", "198.18.1.9")),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (status, _) = api
        .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None, None)
        .await;
    assert_eq!(status, 404);
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn an_import_is_all_or_nothing_in_json_and_csv() {
    let (_dir, api) = api(None).await;
    let good = json!([
        device("a", "198.18.1.1"),
        device("b", "198.18.1.2"),
        device("c", "2001:2:0:1::3")
    ]);
    let (status, answer) = api.post("/api/v1/devices/import", good).await;
    assert_eq!(
        (status, answer["imported"].as_u64()),
        (201, Some(3)),
        "{answer}"
    );

    let bad = json!([device("d", "198.18.1.4"), device("e", "198.18.1.500")]);
    let (status, error) = api.post("/api/v1/devices/import", bad).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("devices[1].address")),
        "{error}"
    );
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(3),
        "nothing of the refused import"
    );

    let csv = "name,address,site,tags,interval_ms\nrouter,198.18.2.1,branch-2,core;wan,200\ncamera,198.18.2.2,branch-2,,\n";
    let response = api
        .authorized(api.http.post(format!("{}/api/v1/devices/import", api.base)))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    let (_, router) = api.get("/api/v1/devices?q=router").await;
    assert_eq!(router[0]["tags"], json!(["core", "wan"]));
    assert_eq!(router[0]["interval_ms"], 200);

    let broken = "name,address,site\nok,198.18.3.1,branch-3\nbroken,198.18.3.2\n";
    let response = api
        .authorized(api.http.post(format!("{}/api/v1/devices/import", api.base)))
        .header("content-type", "text/csv")
        .body(broken)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(error["field"], "devices[1]", "{error}");
    assert_eq!(error["line"], 3, "the CSV line, header = line 1: {error}");
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(5));

    // A value the rules refuse is named by field and line too.
    let invalid = "name,address,site\nok,198.18.4.1,branch-4\nbad,198.18.4.300,branch-4\n";
    let response = api
        .authorized(api.http.post(format!("{}/api/v1/devices/import", api.base)))
        .header("content-type", "text/csv")
        .body(invalid)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        (error["field"].as_str(), error["line"].as_u64()),
        (Some("devices[1].address"), Some(3)),
        "{error}"
    );
}

#[tokio::test]
async fn every_error_is_json_naming_the_parameter() {
    let (_dir, api) = api(None).await;
    let (status, error) = api.get("/api/v1/devices/not-a-number").await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("id")),
        "{error}"
    );
    let (status, error) = api.get("/api/v1/devices/1/rtt?minutes=soon").await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("minutes")),
        "{error}"
    );
    let (status, error) = api.get("/api/v1/no-such-thing").await;
    assert_eq!(status, 404);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("/api/v1/no-such-thing")),
        "{error}"
    );
    let (status, error) = api.send(Method::PATCH, "/api/v1/devices", None, None).await;
    assert_eq!(status, 405);
    assert!(error["error"].is_string(), "{error}");

    let huge = json!({"name": "x".repeat(3 << 20), "address": "198.18.1.1", "site": "s"});
    let (status, error) = api.post("/api/v1/devices", huge).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (413, Some("body")),
        "{error}"
    );

    let slow = json!({"name": "a", "address": "198.18.1.1", "site": "s",
                      "interval_ms": 500, "timeout_ms": 500});
    let (status, error) = api.post("/api/v1/devices", slow).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("timeout_ms")),
        "a probe must end before the next one: {error}"
    );
    let fast = json!({"name": "b", "address": "198.18.1.2", "site": "s", "interval_ms": 200});
    let (status, created) = api.post("/api/v1/devices", fast).await;
    assert_eq!(
        (status, created["timeout_ms"].as_u64()),
        (201, Some(100)),
        "the default timeout fits the interval: {created}"
    );
}

#[tokio::test]
async fn the_legacy_api_token_acts_as_an_admin_and_nobody_changes_anything_anonymously() {
    let (_dir, api) = api(Some("s3cret")).await;
    let anonymous = api.anonymous();
    let body = device("atm-1", "198.18.1.1");
    let (status, error) = anonymous
        .send(Method::POST, "/api/v1/devices", Some(body.clone()), None)
        .await;
    assert_eq!(status, 401, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|m| m.contains("Bearer")),
        "{error}"
    );
    let (status, _) = anonymous
        .send(
            Method::POST,
            "/api/v1/devices",
            Some(body.clone()),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, created) = anonymous
        .send(Method::POST, "/api/v1/devices", Some(body), Some("s3cret"))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, _) = anonymous
        .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = anonymous.get("/api/v1/devices").await;
    assert_eq!(
        status, 401,
        "reads need a viewer unless anonymous_read is on"
    );
}

#[tokio::test]
async fn without_any_user_a_change_is_refused_saying_how_to_create_the_first_admin() {
    let (_dir, controller) = common::sqlite_controller().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(listener, ward_controller::api::router(controller))
            .await
            .expect("serve");
    });
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/devices"))
        .json(&device("atm-1", "198.18.1.1"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 401);
    let error: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|m| m.contains("ward-controller users add NAME --role admin")),
        "{error}"
    );
}

#[tokio::test]
async fn the_dashboard_is_served_and_follows_the_live_events() {
    let (_dir, api) = api(None).await;
    let response = api
        .http
        .get(format!("{}/", api.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("page");
    assert!(page.contains("src=\"/dashboard.js\""), "{page}");
    // Every script of the page, served as JavaScript: what it reads, and
    // never a name inserted as HTML.
    let mut scripts = String::new();
    for path in [
        "/dashboard.js",
        "/live.js",
        "/device.js",
        "/vendor/uplot.min.js",
    ] {
        let script = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("GET a script");
        assert_eq!(
            script.headers()["content-type"],
            "text/javascript; charset=utf-8",
            "{path}"
        );
        let text = script.text().await.expect("script");
        if !path.starts_with("/vendor/") {
            assert!(
                !text.contains("innerHTML"),
                "{path}: names must never be inserted as HTML"
            );
            scripts.push_str(&text);
        }
    }
    for needed in [
        "EventSource(\"/api/v1/events?heartbeat=1\")",
        "/api/v1/devices",
        "/api/v1/alerts?state=open",
        "/api/v1/history?device=",
        "/api/v1/reports/availability",
    ] {
        assert!(
            scripts.contains(needed),
            "the dashboard does not use {needed}"
        );
    }
}

#[tokio::test]
async fn metrics_time_each_route_and_show_the_outbox_depth() {
    let (_dir, api) = api(None).await;
    let (_, created) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    let id = created["id"].as_i64().expect("id");
    for _ in 0..3 {
        api.get(&format!("/api/v1/devices/{id}")).await;
    }
    let route = r#"method="GET",route="/api/v1/devices/{id}""#;
    assert_eq!(
        api.metric(&format!(
            "ward_api_request_duration_seconds_count{{{route}}}"
        ))
        .await,
        3
    );
    assert_eq!(
        api.metric(&format!(
            "ward_api_request_duration_seconds_bucket{{{route},le=\"+Inf\"}}"
        ))
        .await,
        3
    );
    assert_eq!(
        api.metric(
            r#"ward_api_request_duration_seconds_count{method="POST",route="/api/v1/devices"}"#
        )
        .await,
        1
    );
    assert_eq!(api.metric("ward_outbox_depth").await, 0);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_served() {
    let (_dir, api) = api(None).await;
    let (code, document) = api.get("/api/v1/openapi.json").await;
    assert_eq!(code, 200);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in paths {
        let concrete = path.replace("{id}", "1").replace("{name}", "x");
        for method in methods.as_object().expect("methods").keys() {
            if method == "parameters" {
                continue;
            }
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            if method != reqwest::Method::GET || path == "/api/v1/events" {
                continue;
            }
            let (code, _) = api.send(method, &concrete, None, None).await;
            assert_ne!(code, 405, "{path} is documented but not served");
            assert!(
                code == 200 || (path.contains('{') && code == 404),
                "{path}: {code}"
            );
        }
    }
    for served in [
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/devices/import",
        "/api/v1/devices/{id}/rtt",
        "/api/v1/summary",
        "/api/v1/alerts",
        "/api/v1/agents",
        "/api/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(served),
            "{served} is served but not documented"
        );
    }
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_with_who_and_from_where() {
    let (_dir, api) = api(None).await;
    let (_, created) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    let id = created["id"].as_i64().expect("id");
    let (status, refused) = api
        .anonymous()
        .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None, None)
        .await;
    assert_eq!(status, 401, "{refused}");

    let (status, entries) = api
        .get(&format!("/api/v1/audit?object=device%20{id}"))
        .await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().expect("entries");
    assert_eq!(
        entries.len(),
        1,
        "only the change: the refusal names the route"
    );
    let entry = &entries[0];
    assert_eq!(entry["action"], "device.create");
    assert!(
        entry["principal"]
            .as_str()
            .is_some_and(|who| who.starts_with("user api-admin-")),
        "{entry}"
    );
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|from| from.starts_with("127.0.0.1:")),
        "{entry}"
    );
    assert_eq!(entry["after"]["address"], "198.18.1.1");
    assert!(entry["before"].is_null());

    let (_, refusals) = api.get("/api/v1/audit?principal=anonymous").await;
    assert_eq!(
        refusals[0]["action"],
        format!("DELETE /api/v1/devices/{{id}}"),
        "{refusals}"
    );
    assert!(
        refusals[0]["outcome"]
            .as_str()
            .is_some_and(|outcome| outcome.starts_with("refused: ")),
        "{refusals}"
    );
    let (_, later) = api.get("/api/v1/audit?since=2999-01-01T00:00:00Z").await;
    assert_eq!(later, serde_json::json!([]));
    let (status, bad) = api.get("/api/v1/audit?since=yesterday").await;
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("since")),
        "{bad}"
    );
}

#[tokio::test]
async fn the_history_is_filtered_paged_and_names_bad_parameters() {
    let (_dir, controller, api) = served().await;
    let (_, created) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    let id = created["id"].as_i64().expect("id");
    // After the device's creation (older reports are stale); down 10 s later.
    let start = ward_controller::time::now_ms() + 1_000;
    let at = ward_controller::time::rfc3339;
    for (seq, status, at) in [
        (1, ward_controller::store::Status::Up, start),
        (2, ward_controller::store::Status::Down, start + 10_000),
    ] {
        controller
            .reports
            .apply_report(
                &common::transition_report("agent-1", id, seq, status, at),
                at,
            )
            .await
            .expect("report");
    }
    let (status, page) = api
        .get(&format!("/api/v1/history?device={id}&limit=1"))
        .await;
    assert_eq!(status, 200, "{page}");
    let change = &page["changes"][0];
    assert_eq!(
        (
            &change["from"],
            &change["to"],
            &change["name"],
            &change["site"]
        ),
        (
            &json!("up"),
            &json!("down"),
            &json!("atm-1"),
            &json!("branch-9")
        )
    );
    assert_eq!(change["at"], at(start + 10_000));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = api
        .get(&format!(
            "/api/v1/history?device={id}&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["changes"][0]["to"], "up");
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    let (_, window) = api
        .get(&format!(
            "/api/v1/history?from={}&to={}",
            at(start + 5_000),
            at(start + 3_600_000)
        ))
        .await;
    assert_eq!(
        window["changes"].as_array().map(Vec::len),
        Some(1),
        "{window}"
    );
    for (query, field) in [
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let (status, error) = api.get(&format!("/api/v1/history?{query}")).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
    }
}

#[tokio::test]
async fn devices_and_alerts_filter_by_severity_and_tag() {
    let (_dir, controller, api) = served().await;
    let mut ids = Vec::new();
    for (name, address, severity, tags) in [
        ("router", "198.18.1.1", Some("critical"), json!(["core"])),
        ("atm-1", "198.18.1.2", None, json!(["atm"])),
        (
            "atm-2",
            "198.18.1.3",
            Some("minor"),
            json!(["atm", "lobby"]),
        ),
    ] {
        let mut body = json!({"name": name, "address": address, "site": "branch-9", "tags": tags});
        if let Some(severity) = severity {
            body["severity"] = json!(severity);
        }
        let (status, created) = api.post("/api/v1/devices", body).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_i64().expect("id"));
    }
    let names = |listed: &serde_json::Value| -> Vec<String> {
        listed
            .as_array()
            .expect("array")
            .iter()
            .map(|device| device["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, atm) = api.get("/api/v1/devices?tag=atm").await;
    assert_eq!(names(&atm), ["atm-1", "atm-2"]);
    assert_eq!(atm[0]["severity"], "major", "the default");
    let (_, minor_atm) = api.get("/api/v1/devices?tag=atm&severity=minor").await;
    assert_eq!(names(&minor_atm), ["atm-2"]);
    let (status, error) = api.get("/api/v1/devices?severity=urgent").await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("severity")),
        "{error}"
    );
    let (status, error) = api
        .post(
            "/api/v1/devices",
            json!({"name": "x", "address": "198.18.1.9", "site": "branch-9", "severity": "urgent"}),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("severity")),
        "{error}"
    );

    let start = ward_controller::time::now_ms() + 1_000;
    for (seq, id) in ids.iter().enumerate() {
        let report = common::transition_report(
            "agent-1",
            *id,
            seq as u64 + 1,
            ward_controller::store::Status::Down,
            start,
        );
        controller
            .reports
            .apply_report(&report, start)
            .await
            .expect("down");
    }
    let (_, critical) = api.get("/api/v1/alerts?severity=critical").await;
    assert_eq!(critical.as_array().map(Vec::len), Some(1), "{critical}");
    assert_eq!(critical[0]["device"]["name"], "router");
    assert_eq!(critical[0]["severity"], "critical");
    let (_, lobby) = api.get("/api/v1/alerts?state=open&tag=lobby").await;
    assert_eq!(lobby.as_array().map(Vec::len), Some(1), "{lobby}");
    assert_eq!(lobby[0]["device"]["name"], "atm-2");
}

/// `POST /api/v1/devices/import?QUERY` with a CSV body: status and JSON.
async fn post_csv(api: &Api, query: &str, csv: &str) -> (u16, serde_json::Value) {
    let response = api
        .authorized(
            api.http
                .post(format!("{}/api/v1/devices/import?{query}", api.base)),
        )
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_sync_reports_its_diff_exactly_writes_nothing_on_a_dry_run_and_all_or_nothing() {
    let (_dir, api) = api(None).await;
    let existing = json!([
        device("atm-1", "198.18.1.1"),
        device("atm-2", "198.18.1.2"),
        device("atm-3", "198.18.1.3")
    ]);
    let (status, answer) = api.post("/api/v1/devices/import", existing).await;
    assert_eq!(status, 201, "{answer}");
    let listed = || async {
        let (_, listed) = api.get("/api/v1/devices").await;
        listed
            .as_array()
            .expect("array")
            .iter()
            .map(|device| {
                format!(
                    "{} {}",
                    device["name"].as_str().expect("name"),
                    device["address"].as_str().expect("address")
                )
            })
            .collect::<Vec<_>>()
    };
    let before = listed().await;
    // atm-1 as it is, atm-2 moved, atm-4 new, atm-3 missing.
    let cmdb = "name,address,site\natm-1,198.18.1.1,branch-9\natm-2,198.18.1.22,branch-9\natm-4,198.18.1.4,branch-9\n";
    let names = |entries: &serde_json::Value| -> Vec<String> {
        entries
            .as_array()
            .expect("array")
            .iter()
            .map(|entry| entry["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (status, dry) = post_csv(&api, "mode=sync&delete_missing=true&dry_run=true", cmdb).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(names(&dry["created"]), ["atm-4"]);
    assert_eq!(names(&dry["updated"]), ["atm-2"]);
    assert_eq!(dry["updated"][0]["changed"], json!(["address"]));
    assert_eq!(names(&dry["deleted"]), ["atm-3"]);
    assert_eq!(names(&dry["unchanged"]), ["atm-1"]);
    assert_eq!(listed().await, before, "a dry run writes nothing");

    let (status, done) = post_csv(&api, "mode=sync&delete_missing=true", cmdb).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["dry_run"], false);
    for part in ["created", "updated", "deleted", "unchanged"] {
        assert_eq!(names(&done[part]), names(&dry[part]), "{part}");
    }
    assert!(done["created"][0]["id"].is_i64(), "{done}");
    assert_eq!(
        listed().await,
        ["atm-1 198.18.1.1", "atm-2 198.18.1.22", "atm-4 198.18.1.4"]
    );

    // A bad row refuses the whole sync, naming its line.
    let bad = "name,address,site\natm-5,198.18.1.5,branch-9\natm-6,198.18.1.600,branch-9\n";
    let (status, error) = post_csv(&api, "mode=sync&delete_missing=true", bad).await;
    assert_eq!(
        (status, error["field"].as_str(), error["line"].as_u64()),
        (400, Some("devices[1].address"), Some(3)),
        "{error}"
    );
    // A row the writes refuse (a parent that does not exist) undoes the
    // rows before it: one transaction.
    let orphan = "name,address,site,parent_id\natm-5,198.18.1.5,branch-9,\natm-6,198.18.1.6,branch-9,999999\n";
    let (status, error) = post_csv(&api, "mode=sync", orphan).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["line"], 3, "{error}");
    assert_eq!(listed().await.len(), 3, "nothing of the refused syncs");
    let (status, error) = post_csv(&api, "dry_run=true", cmdb).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("dry_run")));
}

#[tokio::test]
async fn a_maintenance_window_covers_its_devices_while_open_and_every_change_is_audited() {
    use ward_controller::auth::Role;
    let (_dir, controller, api) = served().await;
    let operator = common::token_for(&controller, "olga", Role::Operator, None).await;
    let viewer = common::token_for(&controller, "victor", Role::Viewer, None).await;
    let (_, atm) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    let (_, elsewhere) = api
        .post(
            "/api/v1/devices",
            json!({"name": "atm-2", "address": "198.18.2.1", "site": "branch-2"}),
        )
        .await;
    let at = ward_controller::time::rfc3339;
    let now = ward_controller::time::now_ms();
    let window = |starts: i64, ends: i64| {
        json!({
            "name": "branch 9 closed",
            "starts_at": at(starts),
            "ends_at": at(ends),
            "time_zone": "Asia/Tbilisi",
            "sites": ["branch-9"],
            "comment": "night",
        })
    };
    let body = window(now - 60_000, now + 3_600_000);
    let (status, _) = api
        .send(
            Method::POST,
            "/api/v1/maintenance",
            Some(body.clone()),
            Some(&viewer),
        )
        .await;
    assert_eq!(status, 403, "a viewer may not plan maintenance");
    let (status, created) = api
        .send(
            Method::POST,
            "/api/v1/maintenance",
            Some(body),
            Some(&operator),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["active"].as_bool(), created["time_zone"].as_str()),
        (Some(true), Some("Asia/Tbilisi"))
    );
    let id = created["id"].as_i64().expect("id");

    let (_, shown) = api.get(&format!("/api/v1/devices/{}", atm["id"])).await;
    assert_eq!(
        (&shown["in_maintenance"], &shown["maintenance"]),
        (&json!(true), &json!([id]))
    );
    let (_, other) = api
        .get(&format!("/api/v1/devices/{}", elsewhere["id"]))
        .await;
    assert_eq!(other["in_maintenance"], false);
    let (_, summary) = api.get("/api/v1/summary").await;
    assert_eq!(summary["in_maintenance"], 1);
    let (_, active) = api.get("/api/v1/maintenance?active=true").await;
    assert_eq!(active.as_array().map(Vec::len), Some(1));

    // Moved to tomorrow: closed now.
    let (status, moved) = api
        .send(
            Method::PUT,
            &format!("/api/v1/maintenance/{id}"),
            Some(window(now + 86_400_000, now + 90_000_000)),
            Some(&operator),
        )
        .await;
    assert_eq!((status, &moved["active"]), (200, &json!(false)), "{moved}");
    let (_, shown) = api.get(&format!("/api/v1/devices/{}", atm["id"])).await;
    assert_eq!(shown["in_maintenance"], false);
    let (_, inactive) = api.get("/api/v1/maintenance?active=false").await;
    assert_eq!(inactive[0]["id"], id);

    for (body, field) in [
        (json!({"time_zone": "Mars/Olympus"}), "time_zone"),
        (json!({"ends_at": at(now - 120_000)}), "ends_at"),
        (
            json!({"recurrence": {"every": "hourly"}}),
            "recurrence.every",
        ),
        (json!({"recurrence": {"every": "weekly"}}), "recurrence"),
        (json!({"sites": []}), "devices"),
        (json!({"starts_at": "tomorrow"}), "starts_at"),
    ] {
        let mut bad = window(now - 60_000, now + 3_600_000);
        for (key, value) in body.as_object().expect("object") {
            bad[key] = value.clone();
        }
        let (status, error) = api
            .send(
                Method::POST,
                "/api/v1/maintenance",
                Some(bad),
                Some(&operator),
            )
            .await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
    }
    let weekly = json!({
        "name": "ATM service", "starts_at": "2026-12-07T09:00:00+04:00",
        "ends_at": "2026-12-07T11:00:00+04:00", "time_zone": "Asia/Tbilisi",
        "recurrence": {"every": "weekly", "days": ["mon", "thu"], "until": "2027-06-01T00:00:00Z"},
        "tags": ["atm"],
    });
    let (status, created) = api
        .send(
            Method::POST,
            "/api/v1/maintenance",
            Some(weekly),
            Some(&operator),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["recurrence"],
        json!({"every": "weekly", "days": ["mon", "thu"], "until": "2027-06-01T00:00:00.000Z"})
    );

    let (status, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/maintenance/{id}"),
            None,
            Some(&operator),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/v1/maintenance/{id}")).await;
    assert_eq!(status, 404);
    let audit = controller
        .core
        .store
        .audit(&ward_controller::store::AuditFilter::newest(50))
        .await
        .expect("audit");
    for action in [
        "maintenance.create",
        "maintenance.update",
        "maintenance.delete",
    ] {
        assert!(
            audit
                .iter()
                .any(|entry| entry.action == action && entry.object == format!("maintenance {id}")),
            "{action} audited"
        );
    }
}

#[tokio::test]
async fn availability_reports_answer_per_device_site_and_tag_in_json_and_csv() {
    let (_dir, controller, api) = served().await;
    let mut ids = Vec::new();
    for (name, address, tags) in [
        ("atm-1", "198.18.1.1", json!(["atm"])),
        ("atm-2", "198.18.1.2", json!(["atm", "lobby"])),
    ] {
        let (_, created) = api
            .post(
                "/api/v1/devices",
                json!({"name": name, "address": address, "site": "branch-9", "tags": tags}),
            )
            .await;
        ids.push(created["id"].as_i64().expect("id"));
    }
    // atm-1: up 10 s, down 20 s, up 10 s; atm-2: up 40 s.
    let start = ward_controller::time::now_ms() + 1_000;
    let mut seq = 0;
    for (id, status, at) in [
        (ids[0], ward_controller::store::Status::Up, start),
        (ids[1], ward_controller::store::Status::Up, start),
        (ids[0], ward_controller::store::Status::Down, start + 10_000),
        (ids[0], ward_controller::store::Status::Up, start + 30_000),
    ] {
        seq += 1;
        controller
            .reports
            .apply_report(
                &common::transition_report("agent-1", id, seq, status, at),
                at,
            )
            .await
            .expect("report");
    }
    let at = ward_controller::time::rfc3339;
    let range = format!("from={}&to={}", at(start), at(start + 40_000));
    let (status, by_device) = api
        .get(&format!("/api/v1/reports/availability?{range}"))
        .await;
    assert_eq!(status, 200, "{by_device}");
    let first = &by_device["rows"][0];
    assert_eq!(
        (
            &first["name"],
            &first["up_s"],
            &first["down_s"],
            &first["outages"],
            &first["mttr_s"],
            &first["availability"]
        ),
        (
            &json!("atm-1"),
            &json!(20.0),
            &json!(20.0),
            &json!(1),
            &json!(20.0),
            &json!(0.5)
        ),
        "{by_device}"
    );
    let (_, by_tag) = api
        .get(&format!("/api/v1/reports/availability?{range}&by=tag"))
        .await;
    let tags: Vec<(String, f64)> = by_tag["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["tag"].as_str().expect("tag").to_owned(),
                row["availability"].as_f64().expect("availability"),
            )
        })
        .collect();
    assert_eq!(tags, [("atm".to_owned(), 0.75), ("lobby".to_owned(), 1.0)]);
    let response = api
        .authorized(api.http.get(format!(
            "{}/api/v1/reports/availability?{range}&by=site&format=csv",
            api.base
        )))
        .send()
        .await
        .expect("GET");
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/csv"))
    );
    let text = response.text().await.expect("CSV");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "site,up_s,down_s,unreachable_s,unknown_s,maintenance_s,outages,mttr_s,longest_outage_s,availability,degraded_s",
            "branch-9,60.0,20.0,0.0,0.0,0.0,1,20.0,20.0,0.75,0.0"
        ]
    );
    for (query, field) in [
        ("by=rack", "by"),
        ("format=xml", "format"),
        ("from=yesterday", "from"),
    ] {
        let (status, error) = api
            .get(&format!("/api/v1/reports/availability?{query}"))
            .await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
    }
    let (status, error) = api
        .get(&format!(
            "/api/v1/reports/availability?from={}&to={}",
            at(start),
            at(start - 1_000)
        ))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("to")),
        "{error}"
    );
}

#[tokio::test]
async fn metrics_count_devices_by_site_and_status_and_say_whether_ready() {
    let (_dir, controller, api) = served().await;
    let mut ids = Vec::new();
    for (name, address, site) in [
        ("atm-1", "198.18.1.1", "branch-1"),
        ("atm-2", "198.18.1.2", "branch-1"),
        ("atm-3", "198.18.2.1", "branch \"2\""),
    ] {
        let (code, created) = api
            .post(
                "/api/v1/devices",
                json!({"name": name, "address": address, "site": site}),
            )
            .await;
        assert_eq!(code, 201, "{created}");
        ids.push(created["id"].as_i64().expect("id"));
    }
    let now = ward_controller::time::now_ms();
    for (seq, (id, status)) in [
        (ids[0], ward_controller::store::Status::Down),
        (ids[1], ward_controller::store::Status::Up),
    ]
    .into_iter()
    .enumerate()
    {
        let report = common::transition_report("agent-1", id, seq as u64 + 1, status, now);
        controller
            .reports
            .apply_report(&report, now)
            .await
            .expect("report");
    }
    let (_, text) = api.get("/metrics").await;
    let text = text.as_str().expect("metrics text");
    for line in [
        "ward_devices{site=\"branch-1\",status=\"down\"} 1",
        "ward_devices{site=\"branch-1\",status=\"up\"} 1",
        "ward_devices{site=\"branch-1\",status=\"unknown\"} 0",
        "ward_devices{site=\"branch \\\"2\\\"\",status=\"unknown\"} 1",
        "ward_ready 1",
        "ward_component_ok{component=\"store\"} 1",
    ] {
        assert!(
            text.lines().any(|shown| shown == line),
            "{line} missing from /metrics:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_search_matches_a_name_an_address_or_a_tag() {
    let (_dir, _controller, api) = served().await;
    for (name, address, tags) in [
        ("atm-1", "198.18.1.1", json!(["lobby"])),
        ("router-1", "198.18.1.254", json!(["core"])),
    ] {
        let (code, created) = api
            .post(
                "/api/v1/devices",
                json!({"name": name, "address": address, "site": "branch-9", "tags": tags}),
            )
            .await;
        assert_eq!(code, 201, "{created}");
    }
    for (query, expected) in [
        ("LOBBY", vec!["atm-1"]),
        ("Router", vec!["router-1"]),
        ("1.254", vec!["router-1"]),
        ("198.18", vec!["atm-1", "router-1"]),
    ] {
        let (_, found) = api.get(&format!("/api/v1/devices?q={query}")).await;
        let names: Vec<&str> = found
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|device| device["name"].as_str())
            .collect();
        assert_eq!(names, expected, "q={query}");
    }
}

#[tokio::test]
async fn addresses_no_probe_may_go_to_are_refused_everywhere_naming_the_address() {
    let (_dir, api) = api(None).await;
    for (address, words) in [
        (
            "::ffff:127.20.0.10",
            "write the IPv4 address 127.20.0.10 instead",
        ),
        ("0.0.0.0", "unspecified"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let (status, error) = api.post("/api/v1/devices", device("x", address)).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some("address")),
            "{address}"
        );
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{address}: {message}");

        let list = json!([device("y", "198.18.1.1"), device("x", address)]);
        let (status, error) = api.post("/api/v1/devices/import", list).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some("devices[1].address")),
            "{address}: {error}"
        );
        let (status, error) = api
            .post(
                "/api/v1/devices/import?mode=sync",
                json!([device("x", address)]),
            )
            .await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some("devices[0].address")),
            "{address}: {error}"
        );
    }
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(0),
        "nothing was accepted"
    );
}

#[tokio::test]
async fn a_device_that_is_not_up_has_no_current_rtt() {
    let (_dir, controller, api) = served().await;
    let actor = ward_controller::store::Actor::console();
    controller
        .core
        .store
        .register_agent("a1", "branch-9", &actor, 0)
        .await
        .expect("agent");
    let (status, created) = api
        .post("/api/v1/devices", device("lo-5", "127.0.0.5"))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let now = ward_controller::time::now_ms();
    let up = common::transition_report("a1", id, 1, ward_domain::model::Status::Up, now);
    controller.reports.apply_report(&up, now).await.expect("up");
    let (_, shown) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(shown["last_rtt_ms"], 0.7, "{shown}");

    // The agent sends the last RTT it measured with the DOWN, as it does.
    let mut down =
        common::transition_report("a1", id, 2, ward_domain::model::Status::Down, now + 1);
    down.transitions[0].last_rtt_us = Some(14);
    controller
        .reports
        .apply_report(&down, now + 1)
        .await
        .expect("down");
    let (_, shown) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(shown["status"], "down", "{shown}");
    assert!(shown["last_rtt_ms"].is_null(), "{shown}");
    let (_, listed) = api.get("/api/v1/devices").await;
    assert!(listed[0]["last_rtt_ms"].is_null(), "{listed}");
}

#[tokio::test]
async fn devices_are_listed_in_natural_order() {
    let (_dir, api) = api(None).await;
    for name in ["lo-100", "lo-10", "lo-2", "lo-1"] {
        let (status, body) = api.post("/api/v1/devices", device(name, "127.0.0.9")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, listed) = api.get("/api/v1/devices").await;
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|device| device["name"].as_str())
        .collect();
    assert_eq!(names, ["lo-1", "lo-2", "lo-10", "lo-100"]);
}

#[tokio::test]
async fn a_body_that_does_not_fit_names_its_field_in_words() {
    let (_dir, api) = api(None).await;
    let cases = [
        (
            json!({"name": "a", "address": "198.18.1.1", "site": "s", "interval_ms": "fast"}),
            "interval_ms",
            "must be a whole number from 0 to 4294967295, not the text \"fast\"",
        ),
        (
            json!({"name": "a", "address": "198.18.1.1"}),
            "site",
            "is required",
        ),
        (
            json!({"name": "a", "address": "198.18.1.1", "site": "s", "enabled": "yes"}),
            "enabled",
            "must be true or false, not the text \"yes\"",
        ),
        (
            json!({"name": "a", "address": "198.18.1.1", "site": "s", "colour": "red"}),
            "colour",
            "is not a field here",
        ),
    ];
    for (body, field, words) in cases {
        let (status, error) = api.post("/api/v1/devices", body).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(words), "{field}: {message}");
    }
    let list = json!([device("a", "198.18.1.1"), {"name": "b", "address": "198.18.1.2", "site": "s", "down_after": -1}]);
    let (status, error) = api.post("/api/v1/devices/import", list).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("devices[1].down_after")),
        "{error}"
    );

    // A 404 names the id; a 409 the field that conflicts.
    let (status, error) = api.get("/api/v1/devices/99999").await;
    assert_eq!(
        (status, error["field"].as_str()),
        (404, Some("id")),
        "{error}"
    );
    let (status, _) = api
        .post("/api/v1/devices", device("twin", "198.18.1.3"))
        .await;
    assert_eq!(status, 201);
    let (status, error) = api
        .post("/api/v1/devices", device("twin", "198.18.1.4"))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (409, Some("name")),
        "{error}"
    );
}

#[tokio::test]
async fn an_import_names_every_bad_row_and_takes_semicolon_separated_csv() {
    let (_dir, api) = api(None).await;
    let csv = "name,address,site,interval_ms\n\
               ok-1,198.18.5.1,branch-5,\n\
               bad-1,198.18.5.300,branch-5,\n\
               ok-2,198.18.5.2,branch-5,\n\
               bad-2,198.18.5.3,branch-5,fast\n\
               bad-3,::ffff:198.18.5.4,branch-5,\n";
    let (status, error) = post_csv(&api, "", csv).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["errors_total"], 3, "{error}");
    let named: Vec<(String, u64)> = error["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|entry| {
            (
                entry["field"].as_str().unwrap_or_default().to_owned(),
                entry["line"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("devices[1].address".to_owned(), 3),
            ("devices[3]".to_owned(), 5),
            ("devices[4].address".to_owned(), 6),
        ],
        "{error}"
    );
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "all or nothing");

    // European spreadsheets write semicolons; tags are then separated by commas.
    let csv = "name;address;site;tags\natm-1;198.18.5.10;branch-5;atm, lobby\natm-2;198.18.5.11;branch-5;\n";
    let (status, answer) = post_csv(&api, "", csv).await;
    assert_eq!(
        (status, answer["imported"].as_u64()),
        (201, Some(2)),
        "{answer}"
    );
    let (_, listed) = api.get("/api/v1/devices").await;
    assert_eq!(listed[0]["tags"], json!(["atm", "lobby"]), "{listed}");
}

#[tokio::test]
async fn what_was_accepted_but_may_not_work_is_said_and_what_cannot_is_refused() {
    let (_dir, controller, api) = served().await;
    // No agent for the site: accepted, and said.
    let (status, first) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    assert_eq!(status, 201, "{first}");
    let warnings = first["warnings"].to_string();
    assert!(warnings.contains("site `branch-9` has no agent"), "{first}");
    let actor = ward_controller::store::Actor::console();
    controller
        .core
        .store
        .register_agent("a9", "branch-9", &actor, 0)
        .await
        .expect("agent");
    // The same address twice in a site: accepted, and said.
    let (status, second) = api
        .post("/api/v1/devices", device("atm-1b", "198.18.1.1"))
        .await;
    assert_eq!(status, 201, "{second}");
    let warnings = second["warnings"].to_string();
    assert!(
        warnings.contains("device `atm-1`") && warnings.contains("same address"),
        "{second}"
    );
    assert!(!warnings.contains("no agent"), "{second}");
    let (status, third) = api
        .post("/api/v1/devices", device("atm-2", "198.18.1.2"))
        .await;
    assert_eq!(status, 201);
    assert!(third.get("warnings").is_none(), "nothing to say: {third}");

    // A tag past 200 characters is refused by name.
    let long = json!({"name": "x", "address": "198.18.1.9", "site": "branch-9", "tags": ["t".repeat(5000)]});
    let (status, error) = api.post("/api/v1/devices", long).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("tags")),
        "{error}"
    );

    // A maintenance window for a device or a site that does not exist.
    let at = ward_controller::time::rfc3339;
    let now = ward_controller::time::now_ms();
    for (subject, field) in [
        (json!({"devices": [99_999]}), "devices"),
        (json!({"sites": ["branch-404"]}), "sites"),
    ] {
        let mut window = json!({
            "name": "closed", "starts_at": at(now), "ends_at": at(now + 3_600_000),
            "time_zone": "UTC",
        });
        for (key, value) in subject.as_object().expect("subject") {
            window[key] = value.clone();
        }
        let (status, error) = api.post("/api/v1/maintenance", window).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
    }
    let (_, windows) = api.get("/api/v1/maintenance").await;
    assert_eq!(windows.as_array().map(Vec::len), Some(0), "{windows}");
}

#[tokio::test]
async fn a_devices_check_is_kept_and_a_bad_one_named() {
    let (_dir, _controller, api) = served().await;
    let (code, plain) = api
        .post("/api/v1/devices", device("atm-1", "198.18.1.1"))
        .await;
    assert_eq!(code, 201, "{plain}");
    assert_eq!(
        (&plain["check"], &plain["rst_alive"]),
        (&json!("icmp"), &json!(true))
    );
    let mut body = device("fw-1", "198.18.1.2");
    body["check"] = json!("tcp:443");
    body["rst_alive"] = json!(false);
    let (code, firewall) = api.post("/api/v1/devices", body).await;
    assert_eq!(code, 201, "{firewall}");
    assert_eq!(
        (&firewall["check"], &firewall["rst_alive"]),
        (&json!("tcp:443"), &json!(false))
    );
    let (_, read) = api
        .get(&format!("/api/v1/devices/{}", firewall["id"]))
        .await;
    assert_eq!(read["check"], "tcp:443");
    for wrong in ["tcp", "tcp:0", "udp:53", "tcp:70000"] {
        let mut body = device("cam-1", "198.18.1.3");
        body["check"] = json!(wrong);
        let (code, refused) = api.post("/api/v1/devices", body).await;
        assert_eq!(
            (code, refused["field"].as_str()),
            (400, Some("check")),
            "{wrong}: {refused}"
        );
    }
    // A CSV import names the check in its own column.
    let response = api
        .authorized(
            api.http
                .post(format!("{}/api/v1/devices/import", api.base))
                .header("content-type", "text/csv")
                .body("name,address,site,check,rst_alive\ncam-2,198.18.1.4,branch-9,icmp+tcp:554,true\n"),
        )
        .send()
        .await
        .expect("import");
    assert_eq!(response.status().as_u16(), 201);
    let (_, listed) = api.get("/api/v1/devices?q=cam-2").await;
    assert_eq!(listed[0]["check"], "icmp+tcp:554", "{listed}");
}
