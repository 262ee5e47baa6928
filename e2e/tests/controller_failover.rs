//! Two controllers on one PostgreSQL, one agent given both: the second
//! controller streams what the agent reports through the first and never
//! takes the watched site for offline; when the controller holding the
//! link is killed, the agent links to the other at once, which knows
//! everything the first committed and takes the site's reports from then
//! on. Real binaries, real PostgreSQL, loopback only.

use std::process::Command;
use std::time::{Duration, Instant};

use ward_e2e::{
    Process, Rest, admin_token, agent_binary, controller_binary, wait_for_http, wait_until,
    work_dir,
};
use ward_testkit::ports::free_loopback_port;
use ward_testkit::services::Postgres;

/// A controller on `database`, REST and gRPC on loopback.
fn start_controller(name: &str, database: &str, dir: &std::path::Path) -> (Process, Rest, u16) {
    let (http, grpc) = (
        free_loopback_port().expect("port"),
        free_loopback_port().expect("port"),
    );
    let mut command = Command::new(controller_binary());
    command
        .args(["run", "--database", database])
        .args(["--listen-http", &format!("127.0.0.1:{http}")])
        .args(["--listen-grpc", &format!("127.0.0.1:{grpc}")])
        .arg("--tsdb-spool-dir")
        .arg(dir.join(format!("tsdb-{name}")))
        .env("RUST_LOG", "info");
    let process = Process::spawn(name, command, &dir.join(format!("{name}.log"))).expect(name);
    let rest = Rest::new(format!("http://127.0.0.1:{http}"));
    (process, rest, grpc)
}

#[test]
fn an_agent_moves_to_the_next_controller_at_once_when_its_controller_dies() {
    ward_testkit::require_root("raw ICMP sockets");
    let postgres = Postgres::start().expect("start PostgreSQL");
    let database = postgres.url();
    let dir = work_dir().expect("dir");
    let d = dir.path();
    let token = admin_token(["--database", &database]).expect("admin");
    let (mut a, rest_a, grpc_a) = start_controller("controller-a", &database, d);
    let (_b, rest_b, grpc_b) = start_controller("controller-b", &database, d);
    let (rest_a, rest_b) = (rest_a.with_token(token.clone()), rest_b.with_token(token));
    wait_for_http(&rest_a, "/healthz").expect("A up");
    wait_for_http(&rest_b, "/healthz").expect("B up");
    let (code, body) = rest_a.post(
        "/api/v1/agents",
        &serde_json::json!({"id": "loop-agent", "site": "loopback"}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, first) = rest_a.post(
        "/api/v1/devices",
        &serde_json::json!({"name": "lo-1", "address": "127.0.0.1", "site": "loopback",
            "interval_ms": 200, "timeout_ms": 100}),
    );
    assert_eq!(code, 201, "{first}");

    // B's live event stream, followed before anything changes.
    let (seen, events) = std::sync::mpsc::channel();
    let stream = rest_b.follow("/api/v1/events").expect("B's event stream");
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if seen.send(line).is_err() {
                return;
            }
        }
    });

    let mut command = Command::new(agent_binary());
    command
        .args(["run", "--agent-id", "loop-agent", "--site", "loopback"])
        .args([
            "--controller",
            &format!("http://127.0.0.1:{grpc_a},http://127.0.0.1:{grpc_b}"),
        ])
        .arg("--spool-dir")
        .arg(d.join("spool"))
        .args(["--report-period", "1s"])
        .env("RUST_LOG", "info");
    let agent = Process::spawn("ward-agent", command, &d.join("agent.log")).expect("agent");
    // Linked to that controller itself (not only heard of, through another).
    let connected = |rest: &Rest| ward_e2e::holds_link(rest, "loop-agent");
    wait_until("the agent linked to A", Duration::from_secs(20), || {
        connected(&rest_a)
    });
    let first_id = first["id"].as_i64().expect("id");
    let status =
        |rest: &Rest, id: i64| rest.get(&format!("/api/v1/devices/{id}")).1["status"].clone();
    wait_until(
        "the device up, read through B",
        Duration::from_secs(20),
        || status(&rest_b, first_id) == "up",
    );
    let streamed = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.starts_with("data: ") && line.contains("\"status\":\"up\""));
    assert!(
        streamed.is_some_and(|line| line.contains(&format!("\"id\":{first_id}"))),
        "B streams the change the agent reported through A"
    );
    // Past the site's grace period (5 s): B, which never held the agent's
    // link, does not take the site for offline, and shows it linked to A.
    #[allow(
        clippy::disallowed_methods,
        reason = "waiting out the grace period is the test"
    )]
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(status(&rest_b, first_id), "up", "B keeps the watched site");
    let (_, agents) = rest_b.get("/api/v1/agents");
    assert_eq!(agents[0]["connected"], true, "{agents}");
    assert_ne!(agents[0]["controller"], "this", "{agents}");

    let killed = Instant::now();
    a.crash();
    wait_until("the agent linked to B", Duration::from_secs(10), || {
        connected(&rest_b)
    });
    let moved = killed.elapsed();
    eprintln!("controller failover: the agent linked to B {moved:?} after A was killed");
    assert!(
        moved < Duration::from_secs(2),
        "the agent moved on in {moved:?}: {}",
        agent.log()
    );
    assert_eq!(status(&rest_b, first_id), "up", "nothing flapped");

    // B assigns and takes the reports from now on.
    let (code, second) = rest_b.post(
        "/api/v1/devices",
        &serde_json::json!({"name": "lo-2", "address": "127.0.0.2", "site": "loopback",
            "interval_ms": 200, "timeout_ms": 100}),
    );
    assert_eq!(code, 201, "{second}");
    let second_id = second["id"].as_i64().expect("id");
    wait_until(
        "a device added through B up",
        Duration::from_secs(20),
        || status(&rest_b, second_id) == "up",
    );
    assert_eq!(status(&rest_b, first_id), "up");
}
