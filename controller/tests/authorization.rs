//! Who may call what over REST, walked from the router's own declarations
//! (`api::routes`): every route × anonymous, each role, and tokens that no
//! longer work; and the declarations match the OpenAPI document.

mod common;

use std::sync::Arc;

use reqwest::Method;
use ward_controller::access::Access;
use ward_controller::auth::Role;
use ward_controller::store::Actor;

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
    let api = common::Api::serve(Arc::clone(&controller)).await;
    let now = ward_controller::time::now_ms();
    let mut principals: Vec<(String, Option<String>, Option<Role>)> =
        vec![("anonymous".into(), None, None)];
    for role in Role::ALL {
        let token = common::token_for(&controller, role.as_str(), role, None).await;
        principals.push((role.to_string(), Some(token), Some(role)));
    }
    let expired = common::token_for(&controller, "expired", Role::Admin, Some(now - 1)).await;
    principals.push(("expired token".into(), Some(expired), None));
    let revoked = common::token_for(&controller, "revoked", Role::Admin, None).await;
    let revoked_id = controller
        .store
        .tokens()
        .await
        .expect("tokens")
        .iter()
        .find(|token| token.user == "revoked")
        .expect("revoked")
        .id;
    let actor = Actor {
        principal: "test".into(),
        source: "test".into(),
    };
    controller
        .store
        .revoke_token(revoked_id, &actor, now)
        .await
        .expect("revoke");
    principals.push(("revoked token".into(), Some(revoked), None));
    principals.push(("unknown token".into(), Some("ward_nope".into()), None));

    let routes = ward_controller::api::routes();
    let declared = routes.declared();
    assert_eq!(declared.len(), 17, "{declared:?}");
    for route in declared {
        let path = route.path.replace("{id}", "1");
        for (who, token, role) in &principals {
            let needed = match route.access {
                Access::Open => None,
                Access::Read => Some(Role::Viewer),
                Access::Role(role) => Some(role),
            };
            let expected = match (needed, role) {
                (None, _) => None,
                (Some(needed), Some(role)) if *role >= needed => None,
                (Some(_), Some(_)) => Some(403),
                (Some(_), None) => Some(401),
            };
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
    let refusals = controller
        .store
        .audit(10_000)
        .await
        .expect("audit")
        .iter()
        .filter(|entry| entry.outcome.starts_with("refused"))
        .count();
    assert_eq!(
        u64::try_from(refusals).expect("count"),
        controller
            .metrics
            .access_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        "every refusal is audited"
    );

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
