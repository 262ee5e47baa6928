//! `deploy/compose.yaml` with Redis (`compose.redis.yaml`) as an operator
//! runs it, with podman-compose: the images built from Debian's archive and
//! this build (no registry), the certificates made by the documented
//! commands (the CA's key outside the deployment), secrets as files, `up`
//! until every container is healthy and the controller's cache is Redis,
//! the first admin made through `exec`. An agent (this build's binary) in a
//! lab namespace links over mTLS; a device dropped with nftables shows
//! `down` through the stack's REST and the stack's Alertmanager has the
//! alert; `down -v` removes every container and volume.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and a real network: the test waits in wall-clock time"
)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ward_e2e::{Process, Rest, agent_binary, controller_binary, wait_until};
use ward_testkit::lab::{Lab, SiteConfig};

const SITE: &str = "branch-9";
const SERVICES: [&str; 5] = [
    "postgres",
    "victoria-metrics",
    "alertmanager",
    "redis",
    "controller",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn must(what: &str, output: std::io::Result<Output>) -> String {
    let output = output.unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stack's network: in the lab's range, never podman's default.
const SUBNET: &str = "198.19.200.0/24";

/// The stack of one test: its directory, project and network (named as
/// the project); `down -v` and the network removed on drop.
struct Stack {
    dir: PathBuf,
    project: String,
    ports: Vec<(&'static str, u16)>,
}

impl Stack {
    /// `podman-compose ARGS` in the stack's directory, as the
    /// documentation runs it.
    fn compose(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new("podman-compose")
            .current_dir(&self.dir)
            .arg("--project-name")
            .arg(&self.project)
            .args(["--file", "compose.yaml", "--file", "compose.redis.yaml"])
            .args(args)
            .envs(
                self.ports
                    .iter()
                    .map(|(name, port)| (*name, port.to_string())),
            )
            .env("WARD_VERSION", "e2e")
            .env("WARD_NETWORK", &self.project)
            .output()
    }

    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, port)| *port)
            .expect("port")
    }

    fn containers(&self) -> String {
        must(
            "podman ps",
            Command::new("podman")
                .args(["ps", "--all", "--quiet", "--filter"])
                .arg(format!("label=io.podman.compose.project={}", self.project))
                .output(),
        )
    }

    fn volumes(&self) -> String {
        must(
            "podman volume ls",
            Command::new("podman")
                .args(["volume", "ls", "--quiet", "--filter"])
                .arg(format!("name={}_", self.project))
                .output(),
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--volumes"]);
        let _ = Command::new("podman")
            .args(["network", "rm", "--force", &self.project])
            .output();
    }
}

/// The deployment directory as the documentation lays it out: the
/// compose file, Alertmanager's config, certs/ (made by `certs init` and
/// `certs agent`, the CA's key in `pki`), secrets/.
fn lay_out(dir: &Path, pki: &Path, host: &str) {
    for file in ["compose.yaml", "compose.redis.yaml", "alertmanager.yml"] {
        std::fs::copy(repo().join("deploy").join(file), dir.join(file)).expect("copy");
    }
    let certs = dir.join("certs").to_string_lossy().into_owned();
    let ca_key = pki.join("ca.key").to_string_lossy().into_owned();
    let ward = |args: &[&str]| Command::new(controller_binary()).args(args).output();
    must(
        "certs init",
        ward(&[
            "certs",
            "init",
            "--dir",
            &certs,
            "--name",
            host,
            "--name",
            "127.0.0.1",
            "--ca-key",
            &ca_key,
        ]),
    );
    must(
        "certs agent",
        ward(&[
            "certs",
            "agent",
            "site-agent",
            "--dir",
            &certs,
            "--ca-key",
            &ca_key,
        ]),
    );
    std::fs::create_dir(dir.join("secrets")).expect("secrets");
    std::fs::write(
        dir.join("secrets/database-password"),
        format!("{}\n", ward_controller::auth::instance_id()),
    )
    .expect("password");
    for secret in ["secrets/database-password", "certs/controller.key"] {
        let path = dir.join(secret);
        std::os::unix::fs::chown(&path, Some(0), Some(10_001)).expect("chgrp");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
}

#[test]
fn the_compose_stack_comes_up_healthy_sees_a_dropped_device_and_tells_alertmanager() {
    ward_testkit::require_root("podman, the lab's namespaces and nftables");
    must(
        "deploy/images/base.sh",
        Command::new(repo().join("deploy/images/base.sh")).output(),
    );
    must(
        "scripts/image.sh controller",
        Command::new(repo().join("scripts/image.sh"))
            .arg("controller")
            .arg(controller_binary())
            .arg("e2e")
            .output(),
    );
    let lab = Lab::start(&SiteConfig {
        answering: vec!["198.18.9.0/24".parse().expect("cidr")],
        unreachable: vec![],
        host_link: true,
        ..SiteConfig::default()
    })
    .expect("lab");
    let host = lab.host_address().expect("host link").to_string();
    let dir = ward_e2e::work_dir().expect("dir");
    let pki = ward_e2e::work_dir().expect("pki");
    lay_out(dir.path(), pki.path(), &host);
    let port = || ward_testkit::ports::free_loopback_port().expect("port");
    let stack = Stack {
        dir: dir.path().to_owned(),
        project: format!("ward-test-compose-{}", std::process::id()),
        ports: vec![
            ("WARD_HTTP_PORT", port()),
            ("WARD_GRPC_PORT", port()),
            ("WARD_VICTORIA_METRICS_PORT", port()),
            ("WARD_ALERTMANAGER_PORT", port()),
        ],
    };

    must(
        "podman network create",
        Command::new("podman")
            .args(["network", "create", "--subnet", SUBNET, &stack.project])
            .output(),
    );
    must("podman-compose up", stack.compose(&["up", "--detach"]));
    for service in SERVICES {
        let container = format!("{}_{service}_1", stack.project);
        wait_until(
            &format!("{container} healthy"),
            Duration::from_secs(90),
            || {
                Command::new("podman")
                    .args(["healthcheck", "run", &container])
                    .output()
                    .is_ok_and(|output| output.status.success())
            },
        );
    }

    let (code, ready) = Rest::with_ca(
        format!("https://127.0.0.1:{}", stack.port("WARD_HTTP_PORT")),
        &dir.path().join("certs/ca.pem"),
    )
    .expect("REST")
    .get("/readyz");
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["components"]["cache"]["kind"], "redis", "{ready}");

    // The first admin, the documented way.
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "-T", "controller", "ward-controller"];
        all.extend_from_slice(args);
        stack.compose(&all)
    };
    must(
        "users add",
        exec(&[
            "users",
            "add",
            "noc-admin",
            "--role",
            "admin",
            "--no-password",
        ]),
    );
    let said = must("tokens create", exec(&["tokens", "create", "noc-admin"]));
    let token = said
        .lines()
        .find(|line| line.starts_with("ward_"))
        .expect("a token")
        .to_owned();
    let rest = Rest::with_ca(
        format!("https://127.0.0.1:{}", stack.port("WARD_HTTP_PORT")),
        &dir.path().join("certs/ca.pem"),
    )
    .expect("REST")
    .with_token(token);

    let (code, body) = rest.post(
        "/api/v1/agents",
        &serde_json::json!({"id": "site-agent", "site": SITE}),
    );
    assert_eq!(code, 201, "{body}");
    let devices: Vec<serde_json::Value> = (1..=4)
        .map(|i| {
            serde_json::json!({
                "name": format!("atm-{i}"),
                "address": Ipv4Addr::new(198, 18, 9, i).to_string(),
                "site": SITE,
                "interval_ms": 500,
                "timeout_ms": 300,
            })
        })
        .collect();
    let (code, body) = rest.post("/api/v1/devices/import", &serde_json::Value::Array(devices));
    assert_eq!(code, 201, "{body}");

    let d = dir.path().display();
    let mut agent = lab.client_command(&agent_binary().to_string_lossy());
    agent.args([
        "run",
        "--controller",
        &format!("https://{host}:{}", stack.port("WARD_GRPC_PORT")),
        "--agent-id",
        "site-agent",
        "--site",
        SITE,
        "--spool-dir",
        &format!("{d}/spool"),
        "--tls-ca",
        &format!("{d}/certs/ca.pem"),
        "--tls-cert",
        &format!("{d}/certs/agent-site-agent.pem"),
        "--tls-key",
        &format!("{d}/certs/agent-site-agent.key"),
        "--report-period",
        "1s",
    ]);
    let agent = Process::spawn("ward-agent", agent, &dir.path().join("agent.log")).expect("agent");
    wait_until("every device up", Duration::from_secs(30), || {
        rest.get("/api/v1/summary").1["up"] == 4
    });

    lab.take_down(Ipv4Addr::new(198, 18, 9, 3).into())
        .expect("drop with nftables");
    wait_until("atm-3 down", Duration::from_secs(10), || {
        rest.get("/api/v1/devices?q=atm-3").1[0]["status"] == "down"
    });
    let alertmanager = format!(
        "http://127.0.0.1:{}/api/v2/alerts",
        stack.port("WARD_ALERTMANAGER_PORT")
    );
    wait_until(
        "Alertmanager has the alert",
        Duration::from_secs(30),
        || {
            reqwest::blocking::get(&alertmanager)
                .and_then(reqwest::blocking::Response::json::<serde_json::Value>)
                .is_ok_and(|alerts| {
                    alerts.as_array().is_some_and(|alerts| {
                        alerts.iter().any(|alert| {
                            alert["labels"]["alertname"] == "DeviceDown"
                                && alert["labels"].to_string().contains("atm-3")
                        })
                    })
                })
        },
    );
    drop(agent);

    must("podman-compose down", stack.compose(&["down", "--volumes"]));
    assert_eq!(stack.containers().trim(), "", "no container left");
    assert_eq!(stack.volumes().trim(), "", "no volume left");
}

/// The agent's image needs `CAP_NET_RAW` and nothing else: with only that
/// capability it probes; without it, it exits naming what to grant.
#[test]
fn the_agent_image_probes_with_cap_net_raw_alone_and_names_it_without() {
    ward_testkit::require_root("podman");
    must(
        "scripts/image.sh agent",
        Command::new(repo().join("scripts/image.sh"))
            .arg("agent")
            .arg(agent_binary())
            .arg("e2e")
            .output(),
    );
    let probe = |capabilities: &[&str]| {
        Command::new("podman")
            .args(["run", "--rm", "--network", "host", "--cap-drop", "ALL"])
            .args(capabilities)
            // This sandbox's hard limits are below podman's defaults.
            .args([
                "--ulimit",
                "nofile=16384:16384",
                "--ulimit",
                "nproc=16384:16384",
            ])
            .args([
                "localhost/ward-agent:e2e",
                "probe",
                "--count",
                "1",
                "127.0.0.1",
            ])
            .output()
            .expect("podman runs")
    };
    let probed = probe(&["--cap-add", "NET_RAW"]);
    let said = String::from_utf8_lossy(&probed.stderr).into_owned();
    assert!(probed.status.success(), "{said}");
    assert!(said.contains("received 1"), "{said}");
    let refused = probe(&[]);
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("CAP_NET_RAW") && said.contains("ping_group_range"),
        "{said}"
    );
}
