//! The systemd units and example configs under `systemd/`: units pass
//! `systemd-analyze verify` without a warning and score "OK" on
//! `systemd-analyze security`; the agent really speaks the notify
//! protocol (`READY=1`, `WATCHDOG=1`, `STOPPING=1`); the example configs
//! are accepted by the daemons' own parsers.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ward_e2e::{Process, agent_binary, controller_binary};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");

/// The units, with ExecStart pointing at the built binaries (verify checks
/// that the program exists), in `dir`.
fn installed_units(dir: &Path) -> Vec<std::path::PathBuf> {
    [
        ("ward-agent.service", "/usr/bin/ward-agent", agent_binary()),
        (
            "ward-controller.service",
            "/usr/bin/ward-controller",
            controller_binary(),
        ),
    ]
    .iter()
    .map(|(unit, installed, built)| {
        let text = std::fs::read_to_string(Path::new(UNITS).join(unit)).expect("unit");
        assert!(text.contains(installed), "{unit} runs {installed}");
        let path = dir.join(unit);
        std::fs::write(&path, text.replace(installed, &built.to_string_lossy()))
            .expect("write unit");
        path
    })
    .collect()
}

#[test]
fn units_verify_cleanly_and_are_hardened() {
    let dir = ward_e2e::work_dir().expect("dir");
    let units = installed_units(dir.path());
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "verify: {stderr}"
    );
    for unit in &units {
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let exposure: f64 = text
            .lines()
            .find_map(|line| {
                line.split_once("Overall exposure level for ")?
                    .1
                    .split(": ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no exposure level in: {text}"));
        eprintln!("{}: exposure {exposure}", unit.display());
        assert!(
            exposure <= 2.0,
            "{} exposure {exposure}: {text}",
            unit.display()
        );
    }
    let agent = std::fs::read_to_string(Path::new(UNITS).join("ward-agent.service")).expect("unit");
    for line in [
        "Type=notify",
        "AmbientCapabilities=CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_RAW",
        "DynamicUser=yes",
        "StateDirectory=ward-agent",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            agent.lines().any(|l| l == line),
            "the agent unit has {line}"
        );
    }
    assert!(agent.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(
        agent
            .lines()
            .any(|l| l.starts_with("RestrictAddressFamilies="))
    );
}

#[test]
fn the_agent_says_ready_pings_the_watchdog_and_says_stopping() {
    ward_testkit::require_root("raw ICMP sockets");
    let dir = ward_e2e::work_dir().expect("dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut command = Command::new(agent_binary());
    command
        .args([
            "run",
            "--controller",
            "http://127.0.0.1:9",
            "--agent-id",
            "notify-test",
        ])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000");
    let mut agent =
        Process::spawn("ward-agent", command, &dir.path().join("agent.log")).expect("agent");
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buffer = [0u8; 512];
    while start.elapsed() < Duration::from_secs(5)
        && !seen.iter().any(|m: &String| m.starts_with("WATCHDOG=1"))
    {
        let n = socket.recv(&mut buffer).expect("a notification");
        seen.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    assert!(
        seen.first().is_some_and(|m| m.starts_with("READY=1")),
        "READY=1 first: {seen:?}"
    );
    assert!(seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");
    let status = agent
        .stop_with(nix::sys::signal::Signal::SIGTERM)
        .expect("exit status");
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}; {}",
        agent.log()
    );
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buffer) {
        stopping |= String::from_utf8_lossy(&buffer[..n]) == "STOPPING=1";
        if stopping {
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on the way out");
}

#[test]
fn the_example_configs_are_accepted_by_the_daemons() {
    let agent = ward_agent::run::config::FileConfig::load(&Path::new(UNITS).join("agent.toml"))
        .expect("agent.toml");
    let settings = ward_agent::run::RunSettings::resolve(
        ward_agent::run::config::FileConfig::default(),
        agent,
        "host",
        None,
    )
    .expect("agent settings");
    assert!(settings.tls.is_some());
    let controller =
        ward_controller::config::FileConfig::load(&Path::new(UNITS).join("controller.toml"))
            .expect("controller.toml");
    let settings = ward_controller::config::Settings::resolve(
        ward_controller::config::FileConfig::default(),
        controller,
    )
    .expect("controller settings");
    assert!(settings.tls.is_some() && settings.alertmanager.is_some());
}
