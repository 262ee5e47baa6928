//! End-to-end harness: the real `ward-controller` and `ward-agent`
//! processes (built into this package), an agent inside a lab site's
//! client namespace talking mTLS to a controller on the host link, the
//! controller's REST API, and a webhook receiver.
//!
//! Everything a test starts is stopped by PID when its handle drops.
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a test harness shared by several tests: blocking waits on real processes, a mutex for received webhooks"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// A binary of this package, beside the running test or program (cargo
/// builds a package's binaries before its tests).
fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p ward-e2e` (same profile)",
        path.display()
    );
    path
}

/// The controller binary.
pub fn controller_binary() -> PathBuf {
    sibling_binary("e2e-ward-controller")
}

/// The agent binary.
pub fn agent_binary() -> PathBuf {
    sibling_binary("e2e-ward-agent")
}

/// `e2e-no-ipv6`: runs a program unable to open IPv6 sockets.
pub fn no_ipv6_binary() -> PathBuf {
    sibling_binary("e2e-no-ipv6")
}

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with its output in `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
            .map(Pid::from_raw)
    }

    /// Sends `signal` (e.g. `SIGHUP`) and returns at once.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, signal);
        }
    }

    /// Sends `signal` and waits up to 10 s for the exit (then SIGKILL).
    pub fn stop_with(&mut self, signal: Signal) -> Option<std::process::ExitStatus> {
        let pid = self.pid()?;
        let mut child = self.child.take()?;
        let _ = kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        eprintln!(
            "{}: still running 10 s after {signal}; SIGKILL. Its log ends:\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        let _ = child.kill();
        child.wait().ok()
    }

    /// Kills it without warning, as a crash would.
    pub fn crash(&mut self) {
        self.stop_with(Signal::SIGKILL);
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// How many lines of a process's log a failing test shows.
const LOG_TAIL_ON_FAILURE: usize = 40;

impl Drop for Process {
    fn drop(&mut self) {
        self.stop_with(Signal::SIGTERM);
        if std::thread::panicking() {
            // The test failed: what the process said is the first clue.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_ON_FAILURE)..];
            eprintln!(
                "--- {} ({}), last {} lines of its log ---\n{}",
                self.name,
                self.log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Waits until `condition` holds, checking every 20 ms, or fails after
/// `limit` naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking JSON client for the controller's REST API.
#[derive(Clone)]
pub struct Rest {
    base: String,
    http: reqwest::blocking::Client,
    /// Sent as `Authorization: Bearer …` on every call.
    token: Option<String>,
    /// The CA an `https://` controller's certificate chains to.
    ca: Option<reqwest::Certificate>,
}

/// A client trusting `ca` (besides the system's roots), giving up after
/// `timeout`.
fn client(
    ca: Option<&reqwest::Certificate>,
    timeout: Option<Duration>,
) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
    if let Some(ca) = ca {
        builder = builder.add_root_certificate(ca.clone());
    }
    builder.build().expect("HTTP client")
}

impl Rest {
    /// The API at `base` (e.g. `http://127.0.0.1:8080`), anonymous.
    pub fn new(base: String) -> Self {
        Self {
            base,
            token: None,
            ca: None,
            // Long enough for a bulk import of tens of thousands of devices.
            http: client(None, Some(Duration::from_secs(300))),
        }
    }

    /// The API at `base` (`https://…`), its certificate checked against
    /// the CA in `ca_pem`.
    pub fn with_ca(base: String, ca_pem: &Path) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem)?)?;
        Ok(Self {
            http: client(Some(&ca), Some(Duration::from_secs(300))),
            ca: Some(ca),
            ..Self::new(base)
        })
    }

    /// `GET path` as a response to read as it comes (no timeout): the
    /// live event stream. `None` when nothing answers.
    pub fn follow(&self, path: &str) -> Option<reqwest::blocking::Response> {
        let request = client(self.ca.as_ref(), None).get(format!("{}{path}", self.base));
        self.authorized(request).send().ok()
    }

    /// Its base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same API acting with `token`.
    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    /// The token it acts with.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn authorized(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path` → (status, JSON); (0, null) when nothing answers.
    pub fn get(&self, path: &str) -> (u16, Value) {
        match self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body)
    }

    /// `method path` with a JSON body → (status, JSON); (0, null) when
    /// nothing answers.
    pub fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        match self
            .authorized(self.http.request(method, format!("{}{path}", self.base)))
            .json(body)
            .send()
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// A counter or gauge from `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .authorized(self.http.get(format!("{}/metrics", self.base)))
            .send()
            .ok()?
            .text()
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
    }
}

/// A webhook receiver on loopback that records every JSON body (answers
/// 204, or 503 while `failing`).
pub struct Webhook {
    /// Its URL.
    pub url: String,
    /// Bodies received.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// Answer 503 while set.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    _thread: std::thread::JoinHandle<()>,
}

impl Webhook {
    /// Listens on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address: SocketAddr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (received, failing) = (Arc::clone(&received), Arc::clone(&failing));
            move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        continue;
                    }
                    let fail = failing.load(std::sync::atomic::Ordering::Relaxed);
                    if !fail && let Ok(json) = serde_json::from_slice(&body) {
                        received
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(json);
                    }
                    let status = if fail {
                        "503 Service Unavailable"
                    } else {
                        "204 No Content"
                    };
                    let _ = reader.get_mut().write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
            }
        });
        Ok(Self {
            url: format!("http://{address}/hook"),
            received,
            failing,
            _thread: thread,
        })
    }

    /// A `kind` (`firing`, `resolved`) notification about `device_id`
    /// has arrived.
    pub fn has(&self, kind: &str, device_id: i64) -> bool {
        self.bodies()
            .iter()
            .any(|body| body["kind"] == kind && body["device"]["id"] == device_id)
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Creates the admin `e2e-admin` (no password) through the controller's
/// console on the database `database` names (`--config FILE` or
/// `--database URL`); returns a token of it.
pub fn admin_token(database: [&str; 2]) -> anyhow::Result<String> {
    admin_token_of(&controller_binary(), database)
}

/// [`admin_token`] made by the controller `binary` (another release's).
pub fn admin_token_of(binary: &Path, database: [&str; 2]) -> anyhow::Result<String> {
    let console = |args: &[&str]| -> anyhow::Result<String> {
        let output = Command::new(binary).args(args).args(database).output()?;
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "ward-controller {args:?}: {said}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(said)
    };
    console(&[
        "users",
        "add",
        "e2e-admin",
        "--role",
        "admin",
        "--no-password",
    ])?;
    let said = console(&["tokens", "create", "e2e-admin", "--label", "e2e"])?;
    said.lines()
        .find(|line| line.starts_with("ward_"))
        .map(str::to_owned)
        .context("`tokens create` printed no token")
}

/// A controller of a cluster started by a test.
pub struct Member {
    /// The process.
    pub process: Process,
    /// Its REST API (HTTPS on loopback).
    pub rest: Rest,
    /// Where agents reach it (`https://ADDRESS:PORT`).
    pub grpc: String,
}

impl Member {
    /// Waits for its `/healthz`; on failure says whether it still runs and
    /// how its log ends.
    pub fn wait_until_up(&mut self) -> anyhow::Result<()> {
        wait_for_http(&self.rest, "/healthz").map_err(|error| {
            // The lines that say why (a panic's message, errors), not a
            // backtrace's frames.
            let log = self.process.log();
            let telling: Vec<&str> = log
                .lines()
                .filter(|line| {
                    line.contains("panicked")
                        || line.contains("ERROR")
                        || line.contains("WARN")
                        || line.starts_with("ward-controller")
                        || line.starts_with("Error")
                })
                .take(20)
                .collect();
            anyhow::anyhow!(
                "{error} (running: {}); what its log says:\n{}",
                self.process.running(),
                telling.join("\n")
            )
        })
    }
}

/// Controller `name` with its files in `d` (`ca.pem`, and what `shared`
/// names): REST over HTTPS on a free loopback port, mTLS gRPC on
/// `listen_grpc`, then `shared` (database, TLS files, receivers) as TOML.
pub fn start_member(
    name: &str,
    d: &Path,
    listen_grpc: SocketAddr,
    shared: &str,
) -> anyhow::Result<Member> {
    start_member_of(&controller_binary(), name, d, listen_grpc, shared)
}

/// [`start_member`] running the controller `binary` (another release's).
pub fn start_member_of(
    binary: &Path,
    name: &str,
    d: &Path,
    listen_grpc: SocketAddr,
    shared: &str,
) -> anyhow::Result<Member> {
    let http = ward_testkit::ports::free_loopback_port()?;
    let config = d.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen_http = \"127.0.0.1:{http}\"\nlisten_grpc = \"{listen_grpc}\"\n\
             tsdb_spool_dir = \"{d}/tsdb-{name}\"\n{shared}",
            d = d.display()
        ),
    )?;
    let mut command = Command::new(binary);
    command
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let process = Process::spawn(name, command, &d.join(format!("{name}.log")))?;
    let rest = Rest::with_ca(format!("https://127.0.0.1:{http}"), &d.join("ca.pem"))?;
    Ok(Member {
        process,
        rest,
        grpc: format!("https://{listen_grpc}"),
    })
}

/// The controller `rest` answers for holds agent `agent`'s link itself
/// (not only hears of it through another).
pub fn holds_link(rest: &Rest, agent: &str) -> bool {
    let (_, agents) = rest.get("/api/v1/agents");
    agents.as_array().is_some_and(|agents| {
        agents
            .iter()
            .any(|a| a["id"] == agent && a["controller"] == "this")
    })
}

/// Rows of `query` on the database at `url`, `|`-separated.
pub fn psql(url: &str, query: &str) -> Vec<String> {
    try_psql(url, query).unwrap_or_else(|error| panic!("psql: {error}"))
}

/// Like [`psql`], but a database that does not answer is an error.
pub fn try_psql(url: &str, query: &str) -> Result<Vec<String>, String> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-At", "-c", query])
        .output()
        .map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A working directory for one test's processes, certificates and spools.
pub fn work_dir() -> anyhow::Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("ward-test-e2e-")
        .tempdir()?)
}

/// Certificates for a deployment whose controller is reached at `host`,
/// and for `agents`.
pub fn certificates(dir: &Path, host: &str, agents: &[&str]) -> anyhow::Result<()> {
    ward_controller::certs::init(dir, &[host.to_owned(), "127.0.0.1".to_owned()])?;
    for agent in agents {
        ward_controller::certs::agent(dir, agent)?;
    }
    Ok(())
}

/// Fails unless `path` answers 200 within 30 s.
pub fn wait_for_http(rest: &Rest, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if rest.get(path).0 == 200 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{path} did not answer 200 within 30 s")
}

/// Where a [`Deployment`] keeps its status.
#[derive(Clone, Copy, Debug)]
pub enum Database {
    /// The deployment's PostgreSQL.
    Postgres,
    /// A file in its work directory.
    Sqlite,
}

/// A whole deployment: a lab site reached by one agent in its client
/// namespace, and on the host a controller (mTLS gRPC on the host link,
/// REST on loopback) with PostgreSQL, Redis, VictoriaMetrics and a webhook.
pub struct Deployment {
    /// The controller, once started. First, so it stops first (fields drop
    /// in order): before the services it uses go away.
    pub controller: Option<Process>,
    /// Processes' files: certificates, config, spools, logs.
    pub dir: TempDir,
    /// The network.
    pub lab: ward_testkit::lab::Lab,
    /// The status database.
    pub postgres: ward_testkit::services::Postgres,
    /// The cache.
    pub redis: ward_testkit::services::Redis,
    /// The time-series database.
    pub victoria_metrics: ward_testkit::services::VictoriaMetrics,
    /// Receives notifications.
    pub webhook: Webhook,
    /// Its REST API.
    pub rest: Rest,
    /// Where agents reach it.
    pub grpc_url: String,
}

impl Deployment {
    /// Starts everything but the agents.
    pub fn start(site: ward_testkit::lab::SiteConfig) -> anyhow::Result<Self> {
        Self::start_on(site, Database::Postgres)
    }

    /// Starts everything but the agents, the status database `database`.
    pub fn start_on(
        mut site: ward_testkit::lab::SiteConfig,
        database: Database,
    ) -> anyhow::Result<Self> {
        site.host_link = true;
        let lab = ward_testkit::lab::Lab::start(&site)?;
        let host = lab.host_address().context("host link")?.to_string();
        let dir = work_dir()?;
        certificates(dir.path(), &host, &["site-agent", "other-agent"])?;
        let http_port = ward_testkit::ports::free_loopback_port()?;
        let grpc_port = ward_testkit::ports::free_loopback_port()?;
        let mut deployment = Self {
            postgres: ward_testkit::services::Postgres::start()?,
            redis: ward_testkit::services::Redis::start()?,
            victoria_metrics: ward_testkit::services::VictoriaMetrics::start()?,
            webhook: Webhook::start()?,
            controller: None,
            rest: Rest::with_ca(
                format!("https://127.0.0.1:{http_port}"),
                &dir.path().join("ca.pem"),
            )?,
            grpc_url: format!("https://{host}:{grpc_port}"),
            lab,
            dir,
        };
        let d = deployment.dir.path();
        let config = format!(
            "listen_http = \"127.0.0.1:{http_port}\"\n\
             listen_grpc = \"{host}:{grpc_port}\"\n\
             database = \"{database}\"\n\
             redis = \"{redis}\"\n\
             victoria_metrics = \"{vm}\"\n\
             tsdb_spool_dir = \"{d}/tsdb-spool\"\n\
             webhook = \"{webhook}\"\n\
             tls_cert = \"{d}/controller.pem\"\n\
             tls_key = \"{d}/controller.key\"\n\
             tls_client_ca = \"{d}/ca.pem\"\n",
            database = match database {
                Database::Postgres => deployment.postgres.url(),
                Database::Sqlite => format!("sqlite:{}/ward.db", d.display()),
            },
            redis = deployment.redis.url(),
            vm = deployment.victoria_metrics.url(),
            webhook = deployment.webhook.url,
            d = d.display(),
        );
        std::fs::write(d.join("controller.toml"), config)?;
        let config = d.join("controller.toml");
        let token = admin_token(["--config", &config.to_string_lossy()])?;
        deployment.rest = deployment.rest.clone().with_token(token);
        deployment.start_controller()?;
        Ok(deployment)
    }

    /// Starts (or restarts) the controller and waits until it is ready.
    pub fn start_controller(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let mut command = Command::new(controller_binary());
        command
            .args(["run", "--config"])
            .arg(d.join("controller.toml"))
            .env("RUST_LOG", "info");
        let log = d.join(format!(
            "controller-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis())
        ));
        self.controller = Some(Process::spawn("ward-controller", command, &log)?);
        wait_for_http(&self.rest, "/healthz")
    }

    /// Stops the controller, adds `lines` (TOML keys, each ending in a
    /// newline) to its configuration, and starts it again.
    pub fn restart_controller_with(&mut self, lines: &str) -> anyhow::Result<()> {
        self.controller = None;
        let config = self.dir.path().join("controller.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(lines);
        std::fs::write(&config, text)?;
        self.start_controller()
    }

    /// Starts agent `id` of `site` in the lab's client namespace, with its
    /// certificate (or `certificate_of` another's).
    pub fn start_agent(
        &self,
        id: &str,
        site: &str,
        certificate_of: &str,
    ) -> anyhow::Result<Process> {
        let mut command = self.lab.client_command(&agent_binary().to_string_lossy());
        command
            .args(self.agent_arguments(id, site, certificate_of))
            .env("RUST_LOG", "info");
        Process::spawn(&format!("ward-agent {id}"), command, &self.agent_log(id))
    }

    /// The arguments of `ward-agent` for agent `id` of `site`: this
    /// deployment's controller, CA and `certificate_of`'s certificate, its
    /// spool in the work directory, 1 s reports.
    pub fn agent_arguments(&self, id: &str, site: &str, certificate_of: &str) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "run",
            "--controller",
            &self.grpc_url,
            "--agent-id",
            id,
            "--site",
            site,
            "--spool-dir",
            &format!("{d}/spool-{id}"),
            "--tls-ca",
            &format!("{d}/ca.pem"),
            "--tls-cert",
            &format!("{d}/agent-{certificate_of}.pem"),
            "--tls-key",
            &format!("{d}/agent-{certificate_of}.key"),
            "--report-period",
            "1s",
        ]
        .map(str::to_owned)
        .into()
    }

    /// Where agent `id`'s output goes.
    pub fn agent_log(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{id}.log"))
    }

    /// Registers an agent through REST.
    pub fn register_agent(&self, id: &str, site: &str) {
        let (code, body) = self.rest.post(
            "/api/v1/agents",
            &serde_json::json!({"id": id, "site": site}),
        );
        assert_eq!(code, 201, "register {id}: {body}");
    }

    /// Creates `count` devices of `site` at consecutive addresses from
    /// `first` (IPv4), probed with `interval_ms`/`timeout_ms`/3 misses;
    /// returns their ids in address order.
    pub fn import_devices(
        &self,
        site: &str,
        first: std::net::Ipv4Addr,
        count: u32,
        interval_ms: u32,
        timeout_ms: u32,
    ) -> Vec<i64> {
        let devices: Vec<Value> = (0..count)
            .map(|i| {
                let address = std::net::Ipv4Addr::from(u32::from(first) + i);
                serde_json::json!({
                    "name": format!("host-{address}"),
                    "address": address.to_string(),
                    "site": site,
                    "interval_ms": interval_ms,
                    "timeout_ms": timeout_ms,
                    "down_after": 3,
                    "up_after": 1,
                })
            })
            .collect();
        let (code, body) = self
            .rest
            .post("/api/v1/devices/import", &Value::Array(devices));
        assert_eq!(code, 201, "import: {body}");
        let mut ids = self.device_ids(&format!("site={site}"));
        // Imported in address order, so ids ascend with the addresses.
        ids.sort_unstable();
        ids
    }

    /// The controller's REST address (`127.0.0.1:PORT`).
    pub fn rest_address(&self) -> &str {
        self.rest.base.trim_start_matches("https://")
    }

    /// The controller's log.
    pub fn controller_log(&self) -> String {
        self.controller
            .as_ref()
            .map(Process::log)
            .unwrap_or_default()
    }
}

impl Deployment {
    /// Rows of `query` on the status database, `|`-separated.
    pub fn sql(&self, query: &str) -> Vec<String> {
        psql(&self.postgres.url(), query)
    }

    /// Ids of the devices whose status is `status`.
    pub fn devices_with_status(&self, status: &str) -> Vec<i64> {
        self.device_ids(&format!("status={status}"))
    }

    /// Ids of the devices `filter` (`site=…`, `status=…`) selects, read
    /// page by page (an unpaged list of more than 20,000 is refused).
    pub fn device_ids(&self, filter: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = format!("/api/v1/devices?{filter}&limit=5000{cursor}");
            let (code, page) = self.rest.get(&path);
            assert_eq!(code, 200, "{path}: {page}");
            let devices = page["devices"].as_array().expect("a page of devices");
            ids.extend(
                devices
                    .iter()
                    .map(|device| device["id"].as_i64().expect("id")),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return ids,
            }
        }
    }

    /// The address of device `id`.
    pub fn address_of(&self, id: i64) -> std::net::IpAddr {
        let (_, device) = self.rest.get(&format!("/api/v1/devices/{id}"));
        device["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("device {id} has no address: {device}"))
    }
}

/// Asserts that the status changes recorded after status event `baseline`
/// are exactly one `down` and one `up` for each of `hosts` devices (none
/// lost, none doubled, no other device changed); returns how many.
pub fn assert_down_then_up_once_each(database: &str, baseline: &str, hosts: usize) -> usize {
    let per_host = transitions_by_address(database, baseline);
    let wrong: Vec<_> = per_host
        .iter()
        .filter(|(_, statuses)| **statuses != ["down", "up"])
        .collect();
    assert!(wrong.is_empty(), "transitions lost or doubled: {wrong:?}");
    assert_eq!(per_host.len(), hosts, "only the hosts taken down changed");
    per_host.values().map(Vec::len).sum()
}

/// Each device's status changes recorded after status event `baseline`,
/// by the device's address, oldest first.
fn transitions_by_address(database: &str, baseline: &str) -> HashMap<String, Vec<String>> {
    let events = psql(
        database,
        &format!(
            "SELECT d.address || ' ' || e.status FROM status_events e JOIN devices d ON d.id = e.device_id \
             WHERE e.id > {baseline} ORDER BY e.id"
        ),
    );
    let mut per_address: HashMap<String, Vec<String>> = HashMap::new();
    for event in &events {
        let (address, status) = event.split_once(' ').expect("a row");
        per_address
            .entry(address.to_owned())
            .or_default()
            .push(status.to_owned());
    }
    per_address
}

/// The kinds of the `DeviceDown` notifications a webhook got, by alert, in
/// order, each body `id` taken once as receivers deduplicate (`traced`
/// left out: it may come between); and how many bodies were sent again.
pub fn notified_by_alert(bodies: &[Value]) -> (HashMap<i64, Vec<String>>, usize) {
    let mut first_seen = std::collections::HashSet::new();
    let mut per_alert: HashMap<i64, Vec<String>> = HashMap::new();
    let mut resent = 0;
    for body in bodies {
        if !first_seen.insert(body["id"].as_i64().expect("outbox id")) {
            resent += 1;
            continue;
        }
        if body["alertname"] == "DeviceDown" && body["kind"] != "traced" {
            per_alert
                .entry(body["alert_id"].as_i64().expect("alert id"))
                .or_default()
                .push(body["kind"].as_str().expect("kind").to_owned());
        }
    }
    (per_alert, resent)
}

/// The configuration every controller of a test's cluster shares: the
/// `database`, the `webhook`, the TLS files `certificates` wrote in `d`.
pub fn cluster_config(database: &str, webhook: &str, d: &Path) -> String {
    format!(
        "database = \"{database}\"\nwebhook = \"{webhook}\"\n\
         tls_cert = \"{d}/controller.pem\"\ntls_key = \"{d}/controller.key\"\n\
         tls_client_ca = \"{d}/ca.pem\"\n",
        d = d.display(),
    )
}
