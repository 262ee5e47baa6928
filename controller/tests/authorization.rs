//! Who may call what over REST, walked from the router's own declarations
//! (`api::routes`): every route × anonymous, each role, and tokens that no
//! longer work; and the declarations match the OpenAPI document.

mod common;

use reqwest::Method;
use ward_controller::access::Access;

/// The status `method path` answers with `token` (its headers only: the
/// event stream never ends).
async fn status(base: &str, method: &Method, path: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().request(method.clone(), format!("{base}{path}"));
    if matches!(*method, Method::POST | Method::PUT) {
        request = request.json(&serde_json::json!({}));
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_requires_its_declared_role() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let principals = common::principals(&controller).await;
    let routes = ward_controller::api::routes(Access::Open);
    let declared = routes.declared();
    assert_eq!(declared.len(), 48, "{declared:?}");
    for route in declared {
        let path = route.path.replace("{id}", "1").replace("{name}", "x");
        for (who, token, role) in &principals {
            let expected = common::expected_refusal(route.access, *role)
                .map(|unauthenticated| if unauthenticated { 401 } else { 403 });
            let code = status(&api.base, &route.method, &path, token.as_deref()).await;
            match expected {
                Some(refused) => assert_eq!(code, refused, "{who}: {} {path}", route.method),
                None => assert!(
                    code != 401 && code != 403,
                    "{who} may call {} {path}: {code}",
                    route.method
                ),
            }
        }
    }
    common::every_refusal_is_audited(&controller).await;

    // The declarations and the OpenAPI document name the same routes and
    // roles.
    let (_, document) = api.get("/api/v1/openapi.json").await;
    let mut documented = Vec::new();
    for (path, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            if method != "parameters" {
                let role = operation["x-required-role"].as_str().unwrap_or("none");
                documented.push((method.to_uppercase(), path.clone(), role.to_owned()));
            }
        }
    }
    let mut served: Vec<(String, String, String)> = declared
        .iter()
        .filter(|route| route.path.starts_with("/api/v1/") || route.path.ends_with("z"))
        .map(|route| {
            let role = match route.access {
                Access::Open => "open".to_owned(),
                Access::Read => "viewer".to_owned(),
                Access::Role(role) => role.to_string(),
            };
            (route.method.to_string(), route.path.to_owned(), role)
        })
        .collect();
    documented.retain(|(_, path, _)| path.starts_with("/api/v1/") || path.ends_with("z"));
    documented.sort();
    served.sort();
    assert_eq!(documented, served, "documented and declared routes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_viewer() {
    use ward_controller::auth::Role;
    let (_dir, controller, api) = common::served_with(|settings| {
        settings.metrics_access = Access::Role(Role::Viewer);
        settings.anonymous_read = true;
    })
    .await;
    let viewer = common::token_for(&controller, "prometheus", Role::Viewer, None).await;
    assert_eq!(
        status(&api.base, &Method::GET, "/metrics", None).await,
        401,
        "anonymous reads do not open the metrics"
    );
    assert_eq!(
        status(&api.base, &Method::GET, "/metrics", Some(&viewer)).await,
        200
    );
    assert_eq!(
        status(&api.base, &Method::GET, "/healthz", None).await,
        200,
        "health stays open"
    );
}

/// The rows of the Markdown table under `header` in `text`: each row's
/// first cell (backticks removed) and the first word of its second.
fn table(text: &str, header: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|line| line.trim() != header)
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let role = cells[2]
                .trim_matches('`')
                .split([' ', '`'])
                .next()
                .unwrap_or("");
            (cells[1].trim_matches('`').to_owned(), role.to_owned())
        })
        .collect()
}

fn role_word(access: Access) -> String {
    match access {
        Access::Open => "nothing".into(),
        Access::Read => "viewer".into(),
        Access::Role(role) => role.to_string(),
    }
}

/// The table under `header` in `text` lists exactly `declared` (what,
/// role); on a difference, says what it should read.
fn assert_listed(text: &str, header: &str, mut declared: Vec<(String, String)>, which: &str) {
    let mut documented = table(text, header);
    declared.sort();
    documented.sort();
    let rows: String = declared
        .iter()
        .map(|(what, role)| format!("| `{what}` | {role} |\n"))
        .collect();
    assert_eq!(
        documented, declared,
        "SECURITY.md's {which} table should read:\n{rows}"
    );
}

/// docs/SECURITY.md lists every REST route and gRPC method with what it
/// requires, exactly as the code declares them (the tables are the source).
#[test]
fn the_security_document_lists_every_route_and_method_as_declared() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SECURITY.md"))
        .expect("docs/SECURITY.md");
    let declared: Vec<(String, String)> = ward_controller::api::routes(Access::Open)
        .declared()
        .iter()
        .map(|route| {
            (
                format!("{} {}", route.method, route.path),
                role_word(route.access),
            )
        })
        .collect();
    assert_listed(&text, "| route | requires |", declared, "REST");
    let methods: Vec<(String, String)> = ward_controller::grpc::INVENTORY_ACCESS
        .iter()
        .map(|(method, access)| ((*method).to_owned(), role_word(*access)))
        .collect();
    assert_listed(&text, "| method | requires |", methods, "gRPC");
}
