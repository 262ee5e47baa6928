//! The `ward-controller` binary: starts on a fresh SQLite file, serves the
//! API, stops cleanly on SIGTERM; bad flags and URLs are named.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_ward-controller");

/// A started controller, killed if the test ends (an assertion failed)
/// before [`Running::stop`] stopped it.
struct Running(Option<std::process::Child>);

impl Running {
    /// `ward-controller run` on the database at `url`, on free loopback
    /// ports; returns it and its HTTP port.
    fn serve(url: &str) -> (Self, u16) {
        Self::serve_with(url, &[])
    }

    /// Like [`Running::serve`], with environment variables `env`.
    fn serve_with(url: &str, env: &[(&str, &str)]) -> (Self, u16) {
        let (http, grpc) = (free_port(), free_port());
        let child = Command::new(CONTROLLER)
            .args(["run", "--listen-http", &format!("127.0.0.1:{http}")])
            .args(["--listen-grpc", &format!("127.0.0.1:{grpc}")])
            .env("WARD_DATABASE", url)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ward-controller");
        (Self(Some(child)), http)
    }

    /// Like [`Running::serve_with`], once its HTTP port accepts
    /// connections. Free ports are picked before the controller binds them,
    /// so a test running beside it can take one first: a controller that
    /// exits because it cannot listen is started again on other ports (up
    /// to three times); any other exit fails the test with its log.
    async fn listening(url: &str, env: &[(&str, &str)]) -> (Self, u16) {
        for _ in 0..3 {
            let (mut running, http) = Self::serve_with(url, env);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
                    return (running, http);
                }
                let child = running.0.as_mut().expect("running");
                if child.try_wait().expect("wait").is_some() {
                    let output = running.0.take().expect("exited").wait_with_output();
                    let stderr =
                        String::from_utf8_lossy(&output.expect("output").stderr).into_owned();
                    assert!(stderr.contains("cannot listen"), "it exited: {stderr}");
                    eprintln!("a port was taken before the controller bound it: {stderr}");
                    break;
                }
                assert!(Instant::now() < deadline, "controller did not listen");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("three tries found no free ports")
    }

    /// Its exit status and output once it exits on its own, within 20 s
    /// (else it is killed and the test fails).
    async fn exits_on_its_own(mut self) -> std::process::Output {
        let deadline = Instant::now() + Duration::from_secs(20);
        let child = self.0.as_mut().expect("running");
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "it did not exit within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let child = self.0.take().expect("running");
        child.wait_with_output().expect("wait")
    }

    /// Sends it `signal`.
    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.0.as_ref().expect("running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// SIGTERM, then its exit status and output.
    fn stop(mut self) -> std::process::Output {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let child = self.0.take().expect("running");
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn runs_on_sqlite_serves_the_api_and_stops_on_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    let token = admin_token(&url);
    let (controller, http) = Running::listening(&url, &[]).await;
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "router", "address": "198.18.1.1", "site": "branch-1"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status().as_u16(), 201);
    let summary: serde_json::Value = client
        .get(format!("{base}/api/v1/summary"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (summary["total"].as_u64(), summary["unknown"].as_u64()),
        (Some(1), Some(1))
    );

    let status = controller.stop().status;
    assert!(status.success(), "exit status {status}");
}

#[test]
fn bad_flags_and_database_urls_are_named() {
    let output = Command::new(CONTROLLER)
        .args(["run", "--listen-htp", "127.0.0.1:1"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen-htp"));

    let output = Command::new(CONTROLLER)
        .args(["migrate", "--database", "mysql://db/ward"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mysql://db/ward") && stderr.contains("sqlite:PATH"),
        "{stderr}"
    );
}

/// A directory of this test's own, its `ward.toml` and `ward.db` paths
/// (neither written yet).
fn config_and_database() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let (config, database) = (dir.path().join("ward.toml"), dir.path().join("ward.db"));
    (dir, config, database)
}

/// What `run` with `config` says on stderr as it refuses to start.
fn refused_at_start(config: &std::path::Path) -> String {
    let output = Command::new(CONTROLLER)
        .args(["run", "--config"])
        .arg(config)
        .output()
        .expect("run");
    assert!(!output.status.success(), "it started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_config_key_is_named_with_its_line_before_anything_starts() {
    let (_dir, config, database) = config_and_database();
    std::fs::write(
        &config,
        format!(
            "database = \"sqlite:{}\"\nvictoria_metric = \"http://127.0.0.1:1\"\n",
            database.display()
        ),
    )
    .expect("config");
    let stderr = refused_at_start(&config);
    assert!(stderr.contains("victoria_metric"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!database.exists(), "nothing started: {stderr}");
}

/// `routes test` answers from the configuration file alone; `run` refuses
/// a route naming a receiver that does not exist, naming the route,
/// before anything starts.
#[test]
fn routes_are_tested_from_the_console_and_a_bad_route_is_refused_at_start() {
    let (_dir, config, database) = config_and_database();
    let receivers = "webhook = \"http://127.0.0.1:9/tickets\"\n\
        [[receivers]]\nname = \"vendor\"\nkind = \"slack\"\nurl = \"https://hooks.example/secret\"\n\
        [[receivers]]\nname = \"night\"\nkind = \"ntfy\"\nurl = \"https://ntfy.example\"\ntopic = \"ward\"\n\
        [[routes]]\nmatch = { tag = \"atm\" }\nreceivers = [\"vendor\"]\ncontinue = true\n\
        [[routes]]\nmatch = { severity = \"critical\" }\nreceivers = [\"night\"]\n";
    std::fs::write(
        &config,
        format!("database = \"sqlite:{}\"\n{receivers}", database.display()),
    )
    .expect("config");
    let test = |args: &[&str]| {
        let output = Command::new(CONTROLLER)
            .args(["routes", "test", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .expect("routes test");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = test(&[
        "--site",
        "north-1",
        "--tag",
        "atm",
        "--severity",
        "critical",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "vendor\nnight\n", "{err}");
    assert!(err.contains("matched route(s) 1, 2"), "{err}");
    let (ok, out, err) = test(&["--site", "north-1", "--severity", "minor"]);
    assert!(ok, "{err}");
    assert_eq!(
        out, "webhook\nvendor\nnight\n",
        "no route matched: everyone"
    );
    let (ok, _, err) = test(&["--site", "x", "--severity", "urgent"]);
    assert!(!ok && err.contains("--severity"), "{err}");

    std::fs::write(
        &config,
        format!(
            "database = \"sqlite:{}\"\n{receivers}[[routes]]\nreceivers = [\"pager\"]\n",
            database.display()
        ),
    )
    .expect("config");
    let stderr = refused_at_start(&config);
    assert!(
        stderr.contains("routes: route 3: receivers: `pager` is not a receiver"),
        "{stderr}"
    );
    assert!(!database.exists(), "nothing started: {stderr}");
}

#[tokio::test]
async fn database_passwords_are_never_logged() {
    let refused = Command::new(CONTROLLER)
        .args(["migrate", "--database", "mysql://ward:s3cret-pw@db/ward"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("mysql://ward:***@db/ward"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");

    // PostgreSQL here trusts loopback: the password is accepted and ignored.
    let postgres = ward_testkit::services::Postgres::start().expect("start PostgreSQL");
    let url = postgres
        .url()
        .replacen("postgres://ward@", "postgres://ward:s3cret-pw@", 1);
    assert!(url.contains("s3cret-pw"), "{url}");
    let (controller, _) = Running::listening(&url, &[]).await;
    let output = controller.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("status database ready"), "{stderr}");
    assert!(stderr.contains("ward:***@127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

/// Runs `ward-controller ARGS` on the database at `url` with `stdin`.
fn console(url: &str, args: &[&str], stdin: &str) -> (bool, String) {
    console_with(url, &[], args, stdin)
}

/// Like [`console`], with environment variables `env`.
fn console_with(url: &str, env: &[(&str, &str)], args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(CONTROLLER)
        .args(args)
        .env("WARD_DATABASE", url)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ward-controller");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("run");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// An admin without a password and a token of it, made from the console.
fn admin_token(url: &str) -> String {
    let (ok, said) = console(
        url,
        &["users", "add", "admin", "--role", "admin", "--no-password"],
        "",
    );
    assert!(ok, "{said}");
    let (ok, said) = console(url, &["tokens", "create", "admin"], "");
    assert!(ok, "{said}");
    said.lines()
        .find(|line| line.starts_with("ward_"))
        .expect("the token")
        .to_owned()
}

#[test]
fn users_and_tokens_are_managed_from_the_console_and_secrets_shown_once() {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    // No terminal and no --password-stdin: a password is generated and
    // printed once.
    let (ok, said) = console(&url, &["users", "add", "root-admin", "--role", "admin"], "");
    assert!(ok, "{said}");
    let generated = said
        .lines()
        .find_map(|line| line.strip_prefix("password (shown once): "))
        .expect("the generated password")
        .to_owned();
    assert!(generated.len() >= 20, "{generated}");
    let (ok, said) = console(
        &url,
        &[
            "users",
            "add",
            "alice",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        "s3cret\n",
    );
    assert!(ok && !said.contains("s3cret"), "{said}");
    let (ok, said) = console(&url, &["users", "add", "bob", "--role", "root"], "");
    assert!(!ok && said.contains("viewer, operator or admin"), "{said}");

    let (ok, said) = console(
        &url,
        &[
            "tokens",
            "create",
            "root-admin",
            "--label",
            "ci",
            "--expires-in",
            "90d",
        ],
        "",
    );
    assert!(ok, "{said}");
    let secret = said
        .lines()
        .find(|line| line.starts_with("ward_"))
        .expect("the token")
        .to_owned();
    let (ok, listed) = console(&url, &["tokens", "list"], "");
    assert!(
        ok && listed.contains("root-admin\tci\texpires "),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "a token is shown once only");
    let (ok, said) = console(&url, &["tokens", "revoke", "1"], "");
    assert!(ok && said.contains("revoked"), "{said}");

    let (ok, said) = console(&url, &["users", "disable", "carol"], "");
    assert!(!ok && said.contains("no user named `carol`"), "{said}");
    let (ok, said) = console(&url, &["users", "disable", "alice"], "");
    assert!(ok, "{said}");
    let (_, listed) = console(&url, &["users", "list"], "");
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["alice\tviewer\tdisabled", "root-admin\tadmin\tenabled"],
        "{listed}"
    );
}

#[tokio::test]
async fn the_database_password_comes_from_a_file_and_no_secret_reaches_the_log() {
    const DATABASE_PASSWORD: &str = "pg-from-a-credential-7Hq";
    const USER_PASSWORD: &str = "alice-password-4Zt";
    const WRONG_PASSWORD: &str = "alice-guess-9Kd";
    let postgres = ward_testkit::services::Postgres::start_requiring_password(DATABASE_PASSWORD)
        .expect("start PostgreSQL");
    let url = postgres.url();
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let (right, wrong) = (dir.path().join("password"), dir.path().join("wrong"));
    std::fs::write(&right, format!("{DATABASE_PASSWORD}\n")).expect("password file");
    std::fs::write(&wrong, "not-the-password-3Xv").expect("password file");
    let with = |file: &std::path::Path| {
        vec![(
            "WARD_DATABASE_PASSWORD_FILE",
            file.to_str().expect("path").to_owned(),
        )]
    };

    let (ok, said) = console(&url, &["migrate"], "");
    assert!(
        !ok && said.contains("password"),
        "no password, no database: {said}"
    );
    let env = with(&wrong);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, said) = console_with(&url, &env, &["migrate"], "");
    assert!(!ok && !said.contains("not-the-password"), "{said}");
    let env = with(&right);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, said) = console_with(&url, &env, &["migrate"], "");
    assert!(ok, "the password file opens the database: {said}");
    let (ok, said) = console_with(
        &url,
        &env,
        &[
            "users",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{USER_PASSWORD}\n"),
    );
    assert!(ok, "{said}");
    let (ok, said) = console_with(&url, &env, &["tokens", "create", "alice"], "");
    assert!(ok, "{said}");
    let token = said
        .lines()
        .find(|line| line.starts_with("ward_"))
        .expect("token")
        .to_owned();

    // Every secret used once against the running controller, logging
    // everything it logs.
    let mut env = env.clone();
    env.push(("RUST_LOG", "info,ward_controller=trace"));
    let (controller, http) = Running::listening(&url, &env).await;
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let wrong_token = "ward_AAAAthisTokenWasNeverIssuedAAAAAAAAAAAAA";
    for (bearer, expected) in [(token.as_str(), 200), (wrong_token, 401)] {
        let code = client
            .get(format!("{base}/api/v1/devices"))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16();
        assert_eq!(code, expected);
    }
    let login = |password: &'static str| {
        client
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({"user": "alice", "password": password}))
            .send()
    };
    assert_eq!(
        login(WRONG_PASSWORD)
            .await
            .expect("login")
            .status()
            .as_u16(),
        401
    );
    let session = login(USER_PASSWORD).await.expect("login");
    assert_eq!(session.status().as_u16(), 200);
    let cookie = session.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let csrf = session.json::<serde_json::Value>().await.expect("session")["csrf"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let logout = client
        .post(format!("{base}/api/v1/logout"))
        .header("cookie", &cookie)
        .header("x-ward-csrf", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 204);
    let output = controller.stop();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("logged in") && log.contains("login failed"),
        "{log}"
    );
    let cookie_value = cookie.trim_start_matches("ward_session=");
    for secret in [
        DATABASE_PASSWORD,
        USER_PASSWORD,
        WRONG_PASSWORD,
        token.as_str(),
        wrong_token,
        cookie_value,
        csrf.as_str(),
    ] {
        assert!(
            !log.contains(secret),
            "a secret reached the log: {secret}\n{log}"
        );
    }
}

#[tokio::test]
async fn a_second_controller_on_one_sqlite_file_is_refused_naming_postgresql() {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    let (first, http) = Running::listening(&url, &[]).await;
    let (second, _) = Running::serve(&url);
    let output = second.exits_on_its_own().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("already runs on") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok(),
        "the first one serves on"
    );
    let output = first.stop();
    assert!(output.status.success());
}

/// SIGHUP puts the file's new receivers and routes in force; a file with
/// a bad route is refused (logged naming it, counted) and the receivers
/// and routes in force stay.
#[tokio::test]
async fn sighup_puts_new_receivers_and_routes_in_force_and_refuses_a_bad_route() {
    let (_dir, config, database) = config_and_database();
    let url = format!("sqlite:{}", database.display());
    let write = |more: &str| {
        std::fs::write(
            &config,
            format!("anonymous_read = true\nwebhook = \"http://127.0.0.1:9/tickets\"\n{more}"),
        )
        .expect("config");
    };
    write("");
    let config_path = config.display().to_string();
    let (running, http) = Running::listening(&url, &[("WARD_CONFIG", &config_path)]).await;
    let get = |path: &'static str| async move {
        reqwest::get(format!("http://127.0.0.1:{http}{path}"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    };
    let in_force = || async {
        let listing: serde_json::Value =
            serde_json::from_str(&get("/api/v1/receivers").await).expect("JSON");
        let names: Vec<String> = listing["receivers"]
            .as_array()
            .expect("receivers")
            .iter()
            .map(|r| r["name"].as_str().expect("name").to_owned())
            .collect();
        (names, listing["routes"].as_array().expect("routes").len())
    };
    assert_eq!(in_force().await, (vec!["webhook".to_owned()], 0));

    write(
        "[[receivers]]\nname = \"night\"\nkind = \"ntfy\"\nurl = \"http://127.0.0.1:9\"\ntopic = \"ward\"\n\
         [[routes]]\nmatch = { severity = \"critical\" }\nreceivers = [\"night\"]\n",
    );
    running.signal(nix::sys::signal::Signal::SIGHUP);
    let wanted = (vec!["webhook".to_owned(), "night".to_owned()], 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_force().await != wanted {
        assert!(
            Instant::now() < deadline,
            "not in force: {:?}",
            in_force().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    write("[[routes]]\nreceivers = [\"pager\"]\n");
    running.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = "ward_config_reloads_refused_total 1";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get("/metrics").await.lines().any(|line| line == refused) {
        assert!(Instant::now() < deadline, "the reload was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_force().await, wanted, "what was in force stays");

    // A receiver whose CA file is no certificate: refused as a whole.
    let not_a_ca = config.with_file_name("not-a-ca.pem");
    std::fs::write(&not_a_ca, "not a certificate").expect("file");
    write(&format!(
        "[[receivers]]\nname = \"mail\"\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:9\"\n\
         from = \"w@bank.example\"\nto = [\"n@bank.example\"]\nca_file = \"{}\"\n",
        not_a_ca.display()
    ));
    running.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = "ward_config_reloads_refused_total 2";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get("/metrics").await.lines().any(|line| line == refused) {
        assert!(Instant::now() < deadline, "the CA was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_force().await, wanted, "what was in force stays");
    let output = running.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SIGHUP: the configuration is refused")
            && stderr.contains("`pager` is not a receiver")
            && stderr.contains("receivers: `mail`: ca_file"),
        "{stderr}"
    );
}
