//! Dashboard logins over real HTTP: the session cookie's attributes, a
//! change with the cookie but without its CSRF token refused, logout,
//! a disabled user's session ended, brute force locked out (the right
//! password refused while locked), an address that fails too often
//! refused, every attempt counted and audited, and the security headers
//! on every response.

mod common;

use reqwest::Method;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use ward_controller::auth::Role;
use ward_controller::services::App;
use ward_controller::services::LoginSettings;
use ward_controller::store::Actor;

const PASSWORD: &str = "correct horse battery staple";

async fn served(settings: LoginSettings) -> (tempfile::TempDir, App, common::Api) {
    common::served_with(|app| app.login = settings).await
}

async fn add_user(controller: &App, name: &str, role: Role) {
    let hash = ward_controller::auth::hash_password(PASSWORD).expect("hash");
    controller
        .core
        .store
        .add_user(
            name,
            role,
            Some(&hash),
            &Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("add user");
}

/// A browser-like client: no token, only what it is given.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(api: &common::Api) -> Self {
        Self {
            base: api.base.clone(),
            http: reqwest::Client::new(),
            cookie: None,
            csrf: None,
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (u16, HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("ward_session={cookie}"));
        }
        if let (true, Some(csrf)) = (csrf, &self.csrf) {
            request = request.header("x-ward-csrf", csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    async fn login(&mut self, user: &str, password: &str) -> (u16, HeaderMap, Value) {
        let answer = self
            .request(
                Method::POST,
                "/api/v1/login",
                Some(json!({"user": user, "password": password})),
                false,
            )
            .await;
        if answer.0 == 200 {
            let set = answer.1[SET_COOKIE].to_str().expect("cookie").to_owned();
            let value = set
                .split(';')
                .next()
                .and_then(|pair| pair.strip_prefix("ward_session="))
                .expect("ward_session cookie");
            self.cookie = Some(value.to_owned());
            self.csrf = answer.2["csrf"].as_str().map(str::to_owned);
        }
        answer
    }
}

async fn audit_actions(api: &common::Api, object: &str) -> Vec<(String, String)> {
    let (code, entries) = api.get(&format!("/api/v1/audit?object={object}")).await;
    assert_eq!(code, 200, "{entries}");
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().expect("action").to_owned(),
                entry["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect()
}

fn labelled(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

#[tokio::test]
async fn a_session_reads_and_changes_only_with_its_csrf_token_until_logout() {
    let (_dir, controller, api) = served(LoginSettings::default()).await;
    add_user(&controller, "alice", Role::Admin).await;
    let mut browser = Browser::new(&api);

    let (code, _, body) = browser
        .request(Method::GET, "/api/v1/session", None, false)
        .await;
    assert_eq!((code, &body["user"]), (200, &Value::Null), "{body}");
    let (code, _, _) = browser
        .request(Method::GET, "/api/v1/devices", None, false)
        .await;
    assert_eq!(code, 401, "no session, no reads");

    let (code, headers, body) = browser.login("alice", PASSWORD).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["user"].as_str(), body["role"].as_str()),
        (Some("alice"), Some("admin"))
    );
    let cookie = headers[SET_COOKIE].to_str().expect("cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    assert!(
        !cookie.contains(body["csrf"].as_str().expect("csrf")),
        "the CSRF token is not the cookie"
    );

    let (code, _, who) = browser
        .request(Method::GET, "/api/v1/session", None, false)
        .await;
    assert_eq!((code, who["user"].as_str()), (200, Some("alice")), "{who}");
    let (code, _, _) = browser
        .request(Method::GET, "/api/v1/devices", None, false)
        .await;
    assert_eq!(code, 200, "a session reads");

    let device = json!({"name": "router-1", "address": "198.18.1.1", "site": "branch-1"});
    let (code, _, refused) = browser
        .request(Method::POST, "/api/v1/devices", Some(device.clone()), false)
        .await;
    assert_eq!(
        code, 403,
        "the cookie alone cannot change anything: {refused}"
    );
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .contains("X-Ward-CSRF"),
        "{refused}"
    );
    let (_, devices) = api.get("/api/v1/devices").await;
    assert_eq!(devices, json!([]), "nothing was created");
    let (code, _, created) = browser
        .request(Method::POST, "/api/v1/devices", Some(device), true)
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (_, entries) = api
        .get(&format!("/api/v1/audit?object=device%20{id}"))
        .await;
    assert_eq!(
        entries[0]["principal"], "user alice (dashboard session)",
        "the change is audited as the user: {entries}"
    );

    let (code, _, _) = browser
        .request(Method::POST, "/api/v1/logout", None, false)
        .await;
    assert_eq!(code, 403, "logout needs the CSRF token too");
    let (code, headers, _) = browser
        .request(Method::POST, "/api/v1/logout", None, true)
        .await;
    assert_eq!(code, 204);
    let cleared = headers[SET_COOKIE].to_str().expect("cookie");
    assert!(
        cleared.starts_with("ward_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (code, _, body) = browser
        .request(Method::GET, "/api/v1/devices", None, false)
        .await;
    assert_eq!(code, 401, "the ended session reads nothing: {body}");

    let actions: Vec<String> = audit_actions(&api, "user%20alice")
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(actions, ["logout", "login", "user.add"], "newest first");
}

#[tokio::test]
async fn a_disabled_user_loses_its_session_and_cannot_log_in() {
    let (_dir, controller, api) = served(LoginSettings::default()).await;
    add_user(&controller, "bob", Role::Viewer).await;
    let mut browser = Browser::new(&api);
    assert_eq!(browser.login("bob", PASSWORD).await.0, 200);
    let (code, _, _) = browser
        .request(Method::GET, "/api/v1/devices", None, true)
        .await;
    assert_eq!(code, 200);
    let (code, _, refused) = browser
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "x", "address": "198.18.1.2", "site": "s"})),
            true,
        )
        .await;
    assert_eq!(code, 403, "a viewer's session changes nothing: {refused}");
    controller
        .core
        .store
        .set_user_enabled(
            "bob",
            false,
            &Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("disable");
    let (code, _, _) = browser
        .request(Method::GET, "/api/v1/devices", None, true)
        .await;
    assert_eq!(code, 401, "a disabled user's session ends at once");
    let (code, _, body) = Browser::new(&api).login("bob", PASSWORD).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        body["error"], "wrong user name or password",
        "nothing more is told"
    );
    let audited = audit_actions(&api, "user%20bob").await;
    assert_eq!(audited[0].0, "login.failed", "{audited:?}");
    assert!(
        audited[0].1.contains("disabled"),
        "the audit log says why: {audited:?}"
    );
}

#[tokio::test]
async fn twenty_wrong_passwords_in_a_minute_lock_the_user_out_even_from_the_right_one() {
    let (_dir, controller, api) = served(LoginSettings::default()).await;
    add_user(&controller, "carol", Role::Operator).await;
    add_user(&controller, "dave", Role::Viewer).await;
    for attempt in 1..=20 {
        let (code, _, body) = Browser::new(&api).login("carol", "guess").await;
        assert_eq!(code, 401, "attempt {attempt}: {body}");
    }
    let (code, headers, body) = Browser::new(&api).login("carol", PASSWORD).await;
    assert_eq!(
        code, 429,
        "the right password is refused while locked out: {body}"
    );
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!(
        (800..=900).contains(&retry),
        "locked for 15 minutes: {retry}"
    );
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("locked out"),
        "{body}"
    );
    assert_eq!(
        Browser::new(&api).login("dave", PASSWORD).await.0,
        200,
        "another user is not locked"
    );

    let (_, metrics) = api.get("/metrics").await;
    let metrics = metrics.as_str().expect("metrics");
    assert_eq!(
        labelled(metrics, "ward_logins_total{outcome=\"failed\"}"),
        20
    );
    assert_eq!(
        labelled(metrics, "ward_logins_total{outcome=\"refused\"}"),
        1
    );
    assert_eq!(labelled(metrics, "ward_logins_total{outcome=\"ok\"}"), 1);
    assert_eq!(labelled(metrics, "ward_login_lockouts_total"), 1);
    let audited = audit_actions(&api, "user%20carol").await;
    let count = |action: &str| audited.iter().filter(|(a, _)| a == action).count();
    assert_eq!(
        (
            count("login.failed"),
            count("login.lockout"),
            count("login.refused")
        ),
        (20, 1, 1),
        "{audited:?}"
    );
}

#[tokio::test]
async fn an_address_that_fails_too_often_is_refused_whoever_it_tries() {
    let settings = LoginSettings {
        address_failures_per_minute: 3,
        ..LoginSettings::default()
    };
    let (_dir, controller, api) = served(settings).await;
    add_user(&controller, "erin", Role::Viewer).await;
    for user in ["x", "y", "z"] {
        assert_eq!(Browser::new(&api).login(user, "guess").await.0, 401);
    }
    let (code, headers, body) = Browser::new(&api).login("erin", PASSWORD).await;
    assert_eq!(code, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("this address"),
        "{body}"
    );
    let (_, metrics) = api.get("/metrics").await;
    assert_eq!(
        labelled(
            metrics.as_str().expect("metrics"),
            "ward_logins_total{outcome=\"rate_limited\"}"
        ),
        1
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (_dir, _controller, api) = served(LoginSettings::default()).await;
    let browser = Browser::new(&api);
    for path in [
        "/",
        "/dashboard.js",
        "/api/v1/devices",
        "/api/v1/session",
        "/healthz",
    ] {
        let (_, headers, _) = browser.request(Method::GET, path, None, false).await;
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    let (_, _, page) = browser.request(Method::GET, "/", None, false).await;
    let page = page.as_str().expect("html");
    assert!(
        !page.contains("<script>") && !page.contains("<style>") && !page.contains(" on"),
        "no inline script or style in the page: the CSP would block it"
    );
}

#[tokio::test]
async fn the_first_admin_is_explained_while_no_user_exists() {
    // `Api::serve` makes an admin for its token: this serves the router
    // of a fresh store by hand.
    let (_dir, controller) = common::sqlite_controller().await;
    let router = ward_controller::api::router(controller.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let session = format!(
        "http://{}/api/v1/session",
        listener.local_addr().expect("address")
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let who = || async {
        let answer: Value = reqwest::get(&session)
            .await
            .expect("session")
            .json()
            .await
            .expect("json");
        answer
    };
    let first = who().await;
    assert!(
        first["first_admin"]
            .as_str()
            .expect("hint")
            .contains("users add NAME --role admin"),
        "{first}"
    );
    add_user(&controller, "admin", Role::Admin).await;
    let later = who().await;
    assert_eq!(later["first_admin"], Value::Null, "{later}");
}
