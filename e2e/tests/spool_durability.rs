//! The agent's spool survives a crash of the machine, not only of the
//! process: a file created, removed or renamed in a directory is durable
//! only once the directory itself is synced. Watched with `strace` on the
//! real agent binary, linked to a real controller on loopback.

use std::process::Command;
use std::time::Duration;

use ward_e2e::{
    Process, Rest, admin_token, agent_binary, controller_binary, wait_for_http, wait_until,
    work_dir,
};

#[test]
fn the_spool_syncs_its_directories_after_creating_renaming_and_removing_files() {
    ward_testkit::require_root("raw ICMP sockets for the agent");
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|output| output.status.success()),
        "strace is needed: apt-get install strace (testkit/run-tests.sh installs it)"
    );
    let dir = work_dir().expect("dir");
    let d = dir.path();
    let http = ward_testkit::ports::free_loopback_port().expect("port");
    let grpc = ward_testkit::ports::free_loopback_port().expect("port");
    let database = format!("sqlite:{}", d.join("ward.db").display());
    let token = admin_token(["--database", &database]).expect("an admin");
    let mut controller = Command::new(controller_binary());
    controller
        .args(["run", "--listen-http", &format!("127.0.0.1:{http}")])
        .args(["--listen-grpc", &format!("127.0.0.1:{grpc}")])
        .env("WARD_DATABASE", &database);
    let _controller =
        Process::spawn("ward-controller", controller, &d.join("controller.log")).expect("start");
    let rest = Rest::new(format!("http://127.0.0.1:{http}")).with_token(token);
    wait_for_http(&rest, "/healthz").expect("controller up");
    let (code, body) = rest.post(
        "/api/v1/agents",
        &serde_json::json!({"id": "loop-agent", "site": "lab"}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = rest.post(
        "/api/v1/devices",
        &serde_json::json!({"name": "loopback", "address": "127.0.0.1", "site": "lab",
                            "interval_ms": 200, "timeout_ms": 100, "up_after": 1}),
    );
    assert_eq!(code, 201, "{body}");

    let spool = d.join("spool");
    let trace = d.join("agent.strace");
    let mut agent = Command::new("strace");
    agent
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat",
            "-o",
        ])
        .arg(&trace)
        .arg(agent_binary())
        .args(["run", "--controller", &format!("http://127.0.0.1:{grpc}")])
        .args([
            "--agent-id",
            "loop-agent",
            "--site",
            "lab",
            "--report-period",
            "1s",
        ])
        .arg("--spool-dir")
        .arg(&spool);
    let mut agent =
        Process::spawn("ward-agent (strace)", agent, &d.join("agent.log")).expect("start");
    wait_until("the loopback device up", Duration::from_secs(20), || {
        rest.get("/api/v1/summary").1["up"] == 1
    });
    // Statistics every second: segments are written, acknowledged and
    // removed; give it a few periods.
    let traced = || std::fs::read_to_string(&trace).unwrap_or_default();
    let spool_dir = spool.display().to_string();
    let dir_synced = |name: &str| {
        let wanted = format!(
            "<{}>)",
            std::path::Path::new(&spool_dir).join(name).display()
        );
        let wanted = wanted.replace("/)", ")").replace("/>", ">");
        move |text: &str| {
            text.lines()
                .any(|line| line.contains("fsync(") && line.contains(&wanted))
        }
    };
    let spool_root = dir_synced("");
    let transitions = dir_synced("transitions");
    let statistics = dir_synced("statistics");
    wait_until(
        "fsync of the spool, transitions and statistics directories",
        Duration::from_secs(20),
        || {
            let text = traced();
            spool_root(&text) && transitions(&text) && statistics(&text)
        },
    );
    let text = traced();
    assert!(
        text.lines()
            .any(|line| line.contains("rename") && line.contains("boot.partial")),
        "the boot id is written by rename:\n{text}"
    );
    agent.stop_with(nix::sys::signal::Signal::SIGTERM);
}
