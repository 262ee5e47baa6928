//! An agent that cannot probe says so, and a dead agent is not silent:
//! the real binaries, a lab site, real services.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::{Deployment, Process, agent_binary, no_ipv6_binary, wait_until, work_dir};
use ward_testkit::lab::{Lab, SiteConfig};

/// The unprivileged user the agent runs as.
const NOBODY: u32 = 65_534;

/// `setpriv`'s arguments that run the rest as [`NOBODY`] with every
/// capability dropped.
const AS_NOBODY: [&str; 5] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
];

#[test]
fn an_agent_without_icmp_permission_exits_2_naming_what_to_grant() {
    ward_testkit::require_root("a network namespace and switching users");
    let lab = Lab::start(&SiteConfig::default()).expect("lab");
    // In the lab's client namespace no group may open ICMP datagram
    // sockets, and the agent runs as nobody with every capability dropped:
    // neither raw nor datagram ICMP sockets for either family.
    let sysctl = lab
        .client_command("sysctl")
        .args(["-w", "net.ipv4.ping_group_range=1 0"])
        .output()
        .expect("sysctl");
    assert!(sysctl.status.success(), "{sysctl:?}");
    let dir = work_dir().expect("dir");
    let binary = dir.path().join("ward-agent");
    std::fs::copy(agent_binary(), &binary).expect("copy the agent");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool");
    for path in [dir.path(), spool.as_path(), binary.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    nix::unistd::chown(&spool, Some(NOBODY.into()), Some(NOBODY.into())).expect("chown");

    // `timeout` ends it even if this test fails first.
    let mut command = lab.client_command("timeout");
    command
        .args(["20", "setpriv"])
        .args(AS_NOBODY)
        .arg(&binary)
        .args([
            "run",
            "--controller",
            "http://127.0.0.1:9",
            "--agent-id",
            "blind-agent",
            "--site",
            "branch-1",
        ])
        .arg("--spool-dir")
        .arg(&spool)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the agent");
    let mut status = None;
    wait_until(
        "the agent to exit (without any ICMP socket it must not run)",
        Duration::from_secs(15),
        || {
            status = child.try_wait().expect("wait");
            status.is_some()
        },
    );
    let output = child.wait_with_output().expect("output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(status.and_then(|status| status.code()), Some(2), "{said}");
    for hint in ["setcap cap_net_raw+ep", "net.ipv4.ping_group_range"] {
        assert!(said.contains(hint), "the message names `{hint}`:\n{said}");
    }
}

#[test]
fn an_unprivileged_agent_that_cannot_open_ipv6_is_blind_in_agents_readyz_and_metrics() {
    ward_testkit::require_root("the lab and switching users");
    const SITE: &str = "branch-1";
    const AGENT: &str = "site-agent";
    let deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent(AGENT, SITE);
    let rest = &deployment.rest;
    let mut ids = Vec::new();
    for (name, address) in [("v4-host", "198.18.1.10"), ("v6-host", "2001:2:0:1::10")] {
        let (code, body) = rest.post(
            "/api/v1/devices",
            &serde_json::json!({"name": name, "address": address, "site": SITE,
                "interval_ms": 500, "timeout_ms": 300}),
        );
        assert_eq!(code, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    // The agent runs as nobody without capabilities, allowed datagram ICMP
    // sockets by `ping_group_range`, in a sandbox that refuses IPv6 sockets
    // (what `RestrictAddressFamilies=~AF_INET6` does): it can probe IPv4
    // only.
    let sysctl = deployment
        .lab
        .client_command("sysctl")
        .args([
            "-w",
            &format!("net.ipv4.ping_group_range={NOBODY} {NOBODY}"),
        ])
        .output()
        .expect("sysctl");
    assert!(sysctl.status.success(), "{sysctl:?}");
    let d = deployment.dir.path();
    let spool = d.join(format!("spool-{AGENT}"));
    std::fs::create_dir(&spool).expect("spool");
    nix::unistd::chown(&spool, Some(NOBODY.into()), Some(NOBODY.into())).expect("chown");
    for (from, to) in [
        (agent_binary(), "ward-agent"),
        (no_ipv6_binary(), "no-ipv6"),
    ] {
        std::fs::copy(from, d.join(to)).expect("copy a binary where nobody can run it");
    }
    let readable = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(d, readable.clone()).expect("chmod");
    std::fs::set_permissions(d.join(format!("agent-{AGENT}.key")), readable).expect("chmod");
    let mut command = deployment.lab.client_command("setpriv");
    command
        .args(AS_NOBODY)
        .arg(d.join("no-ipv6"))
        .arg(d.join("ward-agent"))
        .args(deployment.agent_arguments(AGENT, SITE, AGENT))
        .env("RUST_LOG", "info");
    let mut agent = Process::spawn(
        "ward-agent (no IPv6)",
        command,
        &deployment.agent_log(AGENT),
    )
    .expect("agent");

    wait_until("the agent shown blind", Duration::from_secs(20), || {
        rest.get("/api/v1/agents").1[0]["state"] == "blind"
    });
    assert!(agent.running(), "it runs on IPv4: {}", agent.log());
    let (_, agents) = rest.get("/api/v1/agents");
    assert_eq!(
        agents[0]["probe_families"],
        serde_json::json!(["ipv4"]),
        "{agents}"
    );
    assert!(
        agents[0]["blind_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("ipv6")),
        "{agents}"
    );
    let (_, ready) = rest.get("/readyz");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["components"]["agents"]["blind"][0], AGENT, "{ready}");
    assert_eq!(rest.metric("ward_agents{state=\"blind\"}"), Some(1.0));
    wait_until("the IPv4 host up", Duration::from_secs(20), || {
        rest.get(&format!("/api/v1/devices/{}", ids[0])).1["status"] == "up"
    });
    let (_, v6) = rest.get(&format!("/api/v1/devices/{}", ids[1]));
    assert_eq!(v6["status"], "unknown", "nobody can probe it: {v6}");
    wait_until(
        "AgentDown firing at the webhook",
        Duration::from_secs(20),
        || agent_down(&deployment, AGENT, "firing") == 1,
    );
    assert!(
        agent.log().contains("this family cannot be probed"),
        "the agent says why: {}",
        agent.log()
    );
}

/// The `AgentDown` notifications the webhook got for `agent`, by kind.
fn agent_down(deployment: &Deployment, agent: &str, kind: &str) -> usize {
    deployment
        .webhook
        .bodies()
        .iter()
        .filter(|body| {
            body["alertname"] == "AgentDown" && body["kind"] == kind && body["agent"]["id"] == agent
        })
        .count()
}

#[test]
fn a_dead_agent_raises_agent_down_and_its_return_resolves_it() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    const SITE: &str = "branch-1";
    let deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 1, 1), 3, 500, 300);
    let rest = &deployment.rest;
    let mut agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    wait_until("all hosts up", Duration::from_secs(20), || {
        rest.get("/api/v1/summary").1["up"] == 3
    });
    wait_until(
        "the agent online and /readyz ok",
        Duration::from_secs(10),
        || rest.get("/readyz").1["status"] == "ok",
    );
    assert_eq!(agent_down(&deployment, "site-agent", "firing"), 0);

    agent.crash();
    // The grace period is 5 s for 500 ms intervals.
    wait_until(
        "AgentDown firing at the webhook",
        Duration::from_secs(20),
        || agent_down(&deployment, "site-agent", "firing") == 1,
    );
    for id in &ids {
        assert_eq!(
            rest.get(&format!("/api/v1/devices/{id}")).1["status"],
            "unknown"
        );
    }
    let (_, agents) = rest.get("/api/v1/agents");
    assert_eq!(agents[0]["state"], "offline", "{agents}");
    let (_, ready) = rest.get("/readyz");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(
        ready["components"]["agents"]["offline"][0], "site-agent",
        "{ready}"
    );
    let (_, open) = rest.get("/api/v1/alerts?state=open");
    let raised: Vec<&Value> = open
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|alert| alert["alertname"] == "AgentDown")
        .collect();
    assert_eq!(raised.len(), 1, "{open}");
    assert_eq!(raised[0]["agent"]["site"], SITE);
    assert_eq!(
        rest.metric("ward_agents{state=\"offline\"}"),
        Some(1.0),
        "counted in /metrics"
    );

    let mut agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent again");
    wait_until(
        "AgentDown resolved at the webhook",
        Duration::from_secs(20),
        || agent_down(&deployment, "site-agent", "resolved") == 1,
    );
    wait_until("all hosts up again", Duration::from_secs(20), || {
        rest.get("/api/v1/summary").1["up"] == 3
    });
    let bodies = deployment.webhook.bodies();
    let kinds: Vec<&str> = bodies
        .iter()
        .filter(|body| body["alertname"] == "AgentDown")
        .map(|body| body["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["firing", "resolved"], "in order, once each");
    assert_eq!(rest.get("/readyz").1["status"], "ok");

    // A clean stop is an ordinary event for the controller, not a warning
    // (the crash above was one).
    let logged_before = deployment.controller_log().lines().count();
    let stopped = agent.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(
        stopped.is_some_and(|status| status.success()),
        "{stopped:?}"
    );
    wait_until(
        "the controller sees the agent go",
        Duration::from_secs(10),
        || rest.get("/api/v1/agents").1[0]["state"] == "offline",
    );
    let log = deployment.controller_log();
    let stop_lines: Vec<&str> = log
        .lines()
        .skip(logged_before)
        .filter(|line| line.contains("site-agent") && line.contains("WARN"))
        .filter(|line| line.contains("stream") || line.contains("h2"))
        .collect();
    assert!(stop_lines.is_empty(), "{stop_lines:#?}");
}
