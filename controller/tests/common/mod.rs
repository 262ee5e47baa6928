//! An HTTP client for a controller served in the test, and the
//! controller itself.

#![allow(dead_code)]

pub mod scripted_agent;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{ReportedTransition, Status, Store, TransitionReport};

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// Sent as `Authorization: Bearer …` by `get` and `post`: an admin's
    /// token made by `serve`.
    pub token: Option<String>,
}

impl Api {
    /// Serves `controller`'s REST API on loopback; `get` and `post` act as
    /// a new admin user.
    pub async fn serve(controller: App) -> Self {
        static ADMINS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = ADMINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = token_for(
            &controller,
            &format!("api-admin-{n}"),
            ward_controller::auth::Role::Admin,
            None,
        )
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let app = ward_controller::api::router(controller)
                .into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            token: Some(token),
        }
    }

    /// The same API, without a token.
    pub fn anonymous(&self) -> Self {
        Self {
            base: self.base.clone(),
            http: self.http.clone(),
            token: None,
        }
    }

    /// `request` with this API's token, if any.
    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .authorized(self.http.post(format!("{}{path}", self.base)))
            .json(&body)
            .send()
            .await
            .expect("POST");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON body"),
        )
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.get("/metrics").await;
        let text = text.as_str().expect("metrics text").to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    }
}

impl Api {
    /// A request with a JSON body, with `token` (none: this API's own, if
    /// any; [`Api::anonymous`] has none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request = match token {
            Some(token) => request.bearer_auth(token),
            None => self.authorized(request),
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A controller's services over a migrated store at `store_url` behind
/// `cache`, on the embedded defaults.
pub async fn controller(store_url: &str, cache: Cache) -> App {
    controller_with(store_url, cache, AppSettings::default()).await
}

/// A controller's services over a migrated store at `store_url` behind
/// `cache`, set up by `settings`.
pub async fn controller_with(store_url: &str, cache: Cache, settings: AppSettings) -> App {
    let store = Store::open(store_url).await.expect("open store");
    store.migrate().await.expect("migrate");
    App::new(store, cache, settings).await.expect("services")
}

/// A controller's services over `store`, statistics written by `tsdb`.
pub async fn writing_to(store: Store, tsdb: ward_controller::tsdb::Tsdb) -> App {
    let settings = AppSettings {
        tsdb: Some(tsdb),
        ..AppSettings::default()
    };
    App::new(store, Cache::in_process(), settings)
        .await
        .expect("services")
}

/// A fresh SQLite database URL in a `ward-test-*` temporary directory,
/// which lives as long as the returned guard.
pub fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-sqlite-")
        .tempdir()
        .expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    (dir, url)
}

/// A controller on a fresh SQLite file with an in-process cache, set up
/// by `configure` (anonymous reads, login limits, a directory…), served.
pub async fn served_with(
    configure: impl FnOnce(&mut AppSettings),
) -> (tempfile::TempDir, App, Api) {
    let (dir, url) = sqlite_url();
    let mut settings = AppSettings::default();
    configure(&mut settings);
    let controller = controller_with(&url, Cache::in_process(), settings).await;
    let api = Api::serve(controller.clone()).await;
    (dir, controller, api)
}

/// A controller with an in-process cache on a fresh, migrated SQLite file.
pub async fn sqlite_controller() -> (tempfile::TempDir, App) {
    let (dir, url) = sqlite_url();
    (dir, controller(&url, Cache::in_process()).await)
}

/// A controller over a fresh SQLite database, set up by `settings`, with
/// one `webhook` channel and one device (`atm-1`, 198.18.1.10, site
/// `branch-7`, severity critical); its id.
pub async fn webhook_controller_with_device(
    settings: AppSettings,
) -> (tempfile::TempDir, App, i64) {
    let (dir, url) = sqlite_url();
    let controller = controller_with(&url, Cache::in_process(), settings).await;
    controller
        .core
        .store
        .set_notification_channels(&["webhook"])
        .await
        .expect("channels");
    let spec = ward_controller::store::DeviceSpec {
        severity: ward_controller::store::Severity::Critical,
        ..ward_controller::store::DeviceSpec::new(
            "atm-1".into(),
            "198.18.1.10".parse().expect("address"),
            "branch-7".into(),
        )
    };
    let id = controller
        .inventory
        .create_device(&spec, &ward_controller::store::Actor::console(), 1_000)
        .await
        .expect("device")
        .id;
    (dir, controller, id)
}

/// Creates `spec` through the inventory (as the console); its id.
pub async fn add_device(app: &App, spec: &ward_controller::store::DeviceSpec) -> i64 {
    app.inventory
        .create_device(spec, &ward_controller::store::Actor::console(), 1_000)
        .await
        .expect("device")
        .id
}

/// Applies agent `agent`'s report that device `device_id` became
/// `status` at `at_ms` (its sequence `seq`).
pub async fn report_status(app: &App, device_id: i64, seq: u64, status: Status, at_ms: i64) {
    app.reports
        .apply_report(
            &transition_report("agent", device_id, seq, status, at_ms),
            at_ms,
        )
        .await
        .expect("report");
}

/// A report from `agent` (boot `boot-1`) with one transition: `device_id`
/// became `status`, decided by a probe at `probed_at_ms`.
pub fn transition_report(
    agent: &str,
    device_id: i64,
    seq: u64,
    status: Status,
    probed_at_ms: i64,
) -> TransitionReport {
    TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: agent.into(),
        boot_id: "boot-1".into(),
        seq,
        transitions: vec![ReportedTransition {
            degraded: None,
            device_id,
            status,
            probed_at_ms,
            last_rtt_us: (status == Status::Up).then_some(700),
            reason: "test".into(),
        }],
    }
}

/// A new user `name` with `role` and an API token of it (the secret).
pub async fn token_for(
    controller: &App,
    name: &str,
    role: ward_controller::auth::Role,
    expires_at_ms: Option<i64>,
) -> String {
    let actor = ward_controller::store::Actor {
        principal: "test".into(),
        source: "test".into(),
    };
    let now = ward_controller::time::now_ms();
    controller
        .core
        .store
        .add_user(name, role, None, &actor, now)
        .await
        .expect("user");
    let (secret, digest) = ward_controller::auth::new_token().expect("token");
    controller
        .core
        .store
        .create_token(name, "test", &digest, expires_at_ms, &actor, now)
        .await
        .expect("token");
    secret
}

/// Who the authorization tests call as: a name, the token it presents
/// (none: anonymous) and the role that token really has (none: it proves
/// nothing). Anonymous, one user per role, and expired, revoked and unknown
/// tokens.
pub async fn principals(
    controller: &App,
) -> Vec<(String, Option<String>, Option<ward_controller::auth::Role>)> {
    use ward_controller::auth::Role;
    let now = ward_controller::time::now_ms();
    let mut principals = vec![("anonymous".to_owned(), None, None)];
    for role in Role::ALL {
        let token = token_for(controller, role.as_str(), role, None).await;
        principals.push((role.to_string(), Some(token), Some(role)));
    }
    let expired = token_for(controller, "expired", Role::Admin, Some(now - 1)).await;
    principals.push(("expired token".into(), Some(expired), None));
    let revoked = token_for(controller, "revoked", Role::Admin, None).await;
    let revoked_id = controller
        .core
        .store
        .tokens()
        .await
        .expect("tokens")
        .iter()
        .find(|token| token.user == "revoked")
        .expect("revoked")
        .id;
    let actor = ward_controller::store::Actor {
        principal: "test".into(),
        source: "test".into(),
    };
    controller
        .core
        .store
        .revoke_token(revoked_id, &actor, now)
        .await
        .expect("revoke");
    principals.push(("revoked token".into(), Some(revoked), None));
    principals.push(("unknown token".into(), Some("ward_nope".into()), None));
    principals
}

/// What `access` lets a principal of `role` (none: proves nothing) get:
/// `None` if it may, else the refusal (`true`: unauthenticated, `false`:
/// forbidden).
pub fn expected_refusal(
    access: ward_controller::access::Access,
    role: Option<ward_controller::auth::Role>,
) -> Option<bool> {
    use ward_controller::access::Access;
    use ward_controller::auth::Role;
    let needed = match access {
        Access::Open => return None,
        Access::Read => Role::Viewer,
        Access::Role(role) => role,
    };
    match role {
        Some(role) if role >= needed => None,
        Some(_) => Some(false),
        None => Some(true),
    }
}

/// Every refusal counted in `/metrics` has its row in the audit log;
/// returns how many there are.
pub async fn every_refusal_is_audited(controller: &App) -> usize {
    let refusals = controller
        .core
        .store
        .audit(&ward_controller::store::AuditFilter::newest(10_000))
        .await
        .expect("audit")
        .iter()
        .filter(|entry| entry.outcome.starts_with("refused"))
        .count();
    assert_eq!(
        u64::try_from(refusals).expect("count"),
        controller
            .core
            .metrics
            .access_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        "every refusal is audited"
    );
    refusals
}

/// Serves `controller`'s gRPC on a free loopback port; its URL.
pub async fn serve_grpc(controller: App) -> String {
    let listener = ward_controller::grpc::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(ward_controller::grpc::serve(
        listener,
        controller,
        None,
        std::future::pending(),
    ));
    format!("http://{address}")
}

/// The hello of agent `agent_id` of `site`, probing IPv4 only.
pub fn ipv4_hello(agent_id: &str, site: &str) -> ward_proto::v1::Hello {
    use ward_proto::v1 as pb;
    pb::Hello {
        agent_id: agent_id.into(),
        site: site.into(),
        version: "test".into(),
        boot_id: "boot-1".into(),
        capabilities: Some(pb::Capabilities {
            ipv4: true,
            ..pb::Capabilities::default()
        }),
        ..pb::Hello::default()
    }
}

/// Opens agent `hello.agent_id`'s link to `url` with `hello`, then a
/// heartbeat every 500 ms; the link stays open as long as the returned
/// stream lives.
pub async fn agent_link(
    url: &str,
    hello: ward_proto::v1::Hello,
) -> tonic::Streaming<ward_proto::v1::ControllerMessage> {
    use tokio_stream::StreamExt as _;
    use ward_proto::v1::{self as pb, agent_message};
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let hello = pb::AgentMessage {
        kind: Some(agent_message::Kind::Hello(hello)),
    };
    let heartbeats = tokio_stream::iter(0..).then(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        pb::AgentMessage {
            kind: Some(agent_message::Kind::Heartbeat(pb::Heartbeat::default())),
        }
    });
    pb::agent_link_client::AgentLinkClient::new(channel)
        .connect(tokio_stream::iter([hello]).chain(heartbeats))
        .await
        .expect("link")
        .into_inner()
}

/// A webhook receiver that records what it accepted (answers 204, or 503
/// while `failing`).
#[derive(Default)]
#[allow(
    clippy::disallowed_types,
    reason = "the test's webhook receiver records bodies under a mutex"
)]
pub struct Receiver {
    pub failing: std::sync::atomic::AtomicBool,
    pub accepted: std::sync::Mutex<Vec<Value>>,
}

impl Receiver {
    /// The bodies accepted so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.accepted.lock().expect("lock").clone()
    }
}

async fn receive(
    axum::extract::State(receiver): axum::extract::State<Arc<Receiver>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::http::StatusCode {
    if receiver.failing.load(std::sync::atomic::Ordering::Relaxed) {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    receiver.accepted.lock().expect("lock").push(body);
    axum::http::StatusCode::NO_CONTENT
}

/// Two controllers on the PostgreSQL at `url`; the second streams the
/// first one's commits to its subscribers.
pub async fn two_controllers_the_second_following(url: &str) -> (App, App) {
    let a = controller(url, Cache::in_process()).await;
    let b = controller(url, Cache::in_process()).await;
    tokio::spawn(ward_controller::services::follow_other_controllers(
        Arc::clone(&b.core),
        std::future::pending(),
    ));
    (a, b)
}

/// Webhook receivers named `names` (`["webhook"]`: as `webhook = "…"`
/// makes it).
pub fn webhook_receivers(names: &[&str]) -> Vec<ward_controller::services::ListedReceiver> {
    names
        .iter()
        .map(|&name| ward_controller::services::ListedReceiver {
            name: name.into(),
            kind: "webhook",
            target: "http://127.0.0.1".into(),
        })
        .collect()
}

/// A webhook receiver on a free loopback port, and its URL.
pub async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (receiver, url)
}
