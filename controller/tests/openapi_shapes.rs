//! The OpenAPI document against what the REST API really answers: every
//! JSON response of every documented GET route, with data behind it (a
//! device down with its alert, an agent, a maintenance window, history,
//! audit entries), is checked against the response schema the document
//! gives for it, recursively: no field the document does not name, every
//! field it requires, arrays item by item. A field added to a response and
//! not to the document (or the other way round) fails here.

mod common;

use serde_json::{Value, json};
use ward_controller::store::Status;

/// The schema `schema` stands for, `$ref`s followed.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Where `value` (at `at`) disagrees with `schema`.
fn disagreements(document: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(document, schema);
    if let Some(alternatives) = schema["oneOf"].as_array() {
        // The value fits one of them (an array does not fit an object's
        // schema, nor an object an array's).
        let fits = |alternative: &Value| {
            let alternative = resolve(document, alternative);
            let shaped = match value {
                Value::Array(_) => alternative["type"] == "array",
                Value::Object(_) => alternative["type"] == "object",
                _ => true,
            };
            shaped && disagreements(document, alternative, value, at).is_empty()
        };
        return if alternatives.iter().any(fits) {
            Vec::new()
        } else {
            vec![format!("{at} fits none of its oneOf schemas")]
        };
    }
    let mut found = Vec::new();
    match value {
        Value::Object(fields) => {
            let Some(properties) = schema["properties"].as_object() else {
                // A free-form object (`additionalProperties`): its keys are data.
                return found;
            };
            for (name, field) in fields {
                match properties.get(name) {
                    None => found.push(format!("{at}.{name} is answered but not documented")),
                    Some(property) => found.extend(disagreements(
                        document,
                        property,
                        field,
                        &format!("{at}.{name}"),
                    )),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    found.push(format!("{at}.{name} is required but not answered"));
                }
            }
        }
        Value::Array(items) if !schema["items"].is_null() => {
            for (index, item) in items.iter().enumerate() {
                found.extend(disagreements(
                    document,
                    &schema["items"],
                    item,
                    &format!("{at}[{index}]"),
                ));
            }
        }
        _ => {}
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_answer_matches_its_documented_schema() {
    let (_dir, controller, api) = common::served_with(|_| {}).await;
    let (code, agent) = api
        .post("/api/v1/agents", json!({"id": "a1", "site": "branch"}))
        .await;
    assert_eq!(code, 201, "{agent}");
    let (code, device) = api
        .post(
            "/api/v1/devices",
            json!({"name": "atm-1", "address": "198.18.7.1", "site": "branch", "tags": ["atm"]}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    let id = device["id"].as_i64().expect("id");
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(
            &common::transition_report("a1", id, 1, Status::Down, now),
            now,
        )
        .await
        .expect("down");
    let (code, window) = api
        .post(
            "/api/v1/maintenance",
            json!({"name": "night", "starts_at": "2026-01-01T22:00:00Z",
                   "ends_at": "2026-01-02T06:00:00Z", "time_zone": "UTC",
                   "recurrence": {"every": "daily"}, "sites": ["branch"]}),
        )
        .await;
    assert_eq!(code, 201, "{window}");
    let window_id = window["id"].as_i64().expect("window id");
    let (code, profile) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "dsl", "window": "2m", "loss_warn_pct": 30}),
        )
        .await;
    assert_eq!(code, 201, "{profile}");
    let (code, site) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/sites/branch",
            Some(json!({"profile": "dsl"})),
            None,
        )
        .await;
    assert_eq!(code, 200, "{site}");
    // This controller's membership row.
    controller
        .presence
        .share_presence()
        .await
        .expect("membership");

    let (_, document) = api.get("/api/v1/openapi.json").await;
    let mut checked = 0;
    let mut found = Vec::new();
    for (path, concrete) in [
        ("/api/v1/devices", "/api/v1/devices".to_owned()),
        ("/api/v1/devices", "/api/v1/devices?limit=1".to_owned()),
        ("/api/v1/devices/{id}", format!("/api/v1/devices/{id}")),
        ("/api/v1/summary", "/api/v1/summary".to_owned()),
        ("/api/v1/agents", "/api/v1/agents".to_owned()),
        ("/api/v1/controllers", "/api/v1/controllers".to_owned()),
        ("/api/v1/alerts", "/api/v1/alerts".to_owned()),
        ("/api/v1/history", "/api/v1/history".to_owned()),
        (
            "/api/v1/reports/availability",
            "/api/v1/reports/availability".to_owned(),
        ),
        ("/api/v1/maintenance", "/api/v1/maintenance".to_owned()),
        (
            "/api/v1/maintenance/{id}",
            format!("/api/v1/maintenance/{window_id}"),
        ),
        ("/api/v1/profiles", "/api/v1/profiles".to_owned()),
        ("/api/v1/profiles/{name}", "/api/v1/profiles/dsl".to_owned()),
        ("/api/v1/sites", "/api/v1/sites".to_owned()),
        ("/api/v1/audit", "/api/v1/audit".to_owned()),
        ("/api/v1/session", "/api/v1/session".to_owned()),
        ("/readyz", "/readyz".to_owned()),
    ] {
        let schema = &document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert!(!schema.is_null(), "{path}: no JSON schema for 200");
        let (code, answer) = api.get(&concrete).await;
        assert_eq!(code, 200, "{concrete}: {answer}");
        assert!(
            !answer.is_null() && answer != json!([]),
            "{concrete} answered nothing to check"
        );
        found.extend(disagreements(&document, schema, &answer, path));
        checked += 1;
    }
    eprintln!("{checked} routes checked against the document");
    assert!(
        found.is_empty(),
        "the document and the answers disagree:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_field_missing_from_the_document_is_found() {
    let document = json!({"components": {"schemas": {"Thing": {
        "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}});
    let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Thing"}});
    assert!(disagreements(&document, &schema, &json!([{"id": 1}]), "/x").is_empty());
    assert_eq!(
        disagreements(&document, &schema, &json!([{"id": 1, "new": 2}, {}]), "/x"),
        [
            "/x[0].new is answered but not documented",
            "/x[1].id is required but not answered"
        ]
    );
}
