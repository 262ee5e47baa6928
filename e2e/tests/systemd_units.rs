//! The systemd units and example configs under `systemd/`: units pass
//! `systemd-analyze verify` without a warning and score "OK" on
//! `systemd-analyze security`; the agent really speaks the notify
//! protocol (`READY=1`, `WATCHDOG=1`, `STOPPING=1`); the example configs
//! are accepted by the daemons' own parsers.

use std::os::unix::fs::PermissionsExt as _;
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
        // The scores when the units gained their credentials: no worse.
        let limit = if unit.ends_with("ward-agent.service") {
            1.6
        } else {
            1.4
        };
        assert!(
            exposure <= limit,
            "{} exposure {exposure} (was {limit}): {text}",
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

/// Each unit's `Documentation=` names the documents its package installs
/// (`/usr/share/doc/<package>/`), not a placeholder site.
#[test]
fn units_point_at_their_installed_documentation() {
    for (unit, package) in [
        ("ward-agent.service", "ward-agent"),
        ("ward-controller.service", "ward-controller"),
    ] {
        let text = unit_text(unit);
        let documents: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("Documentation="))
            .flat_map(str::split_whitespace)
            .collect();
        assert!(!documents.is_empty(), "{unit}: no Documentation=");
        for document in documents {
            assert!(
                document.starts_with(&format!("file:/usr/share/doc/{package}/")),
                "{unit}: {document}"
            );
            let name = document.rsplit('/').next().expect("a file name");
            let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            assert!(
                in_tree.join(name).exists() || in_tree.join("docs").join(name).exists(),
                "{unit}: {name} is not a document of the tree"
            );
        }
    }
}

/// The unit `name` as shipped.
fn unit_text(name: &str) -> String {
    std::fs::read_to_string(Path::new(UNITS).join(name)).expect("unit")
}

/// The unit's `LoadCredential=NAME:SOURCE` pairs.
fn credentials(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|line| line.strip_prefix("LoadCredential="))
        .filter_map(|pair| pair.split_once(':'))
        .map(|(name, source)| (name.to_owned(), source.to_owned()))
        .collect()
}

/// A uid in systemd's `DynamicUser=` range (61184–65519), owned by no one.
const DYNAMIC_UID: u32 = 61_900;

/// What systemd does for `DynamicUser=yes` with `LoadCredential=`, as far
/// as a file system can show it: each credential copied from `etc` (where
/// `/etc/ward/X` is `etc/X`, root's, 0600) into `credentials`, readable by
/// the service's user only.
fn load_credentials(unit: &str, etc: &Path, credentials_dir: &Path) {
    std::fs::create_dir_all(credentials_dir).expect("credentials dir");
    for (name, source) in credentials(unit) {
        let file = source
            .strip_prefix("/etc/ward/")
            .expect("credentials come from /etc/ward");
        let to = credentials_dir.join(name);
        std::fs::copy(etc.join(file), &to).expect("credential source");
        nix::unistd::chown(&to, Some(DYNAMIC_UID.into()), Some(DYNAMIC_UID.into())).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    }
    nix::unistd::chown(
        credentials_dir,
        Some(DYNAMIC_UID.into()),
        Some(DYNAMIC_UID.into()),
    )
    .expect("chown");
    std::fs::set_permissions(credentials_dir, std::fs::Permissions::from_mode(0o500))
        .expect("chmod");
}

/// The unit's `ExecStart=` run as the dynamic user (with `capabilities`
/// ambient and bounding, none else), `binary` for the shipped path and
/// `config` for the shipped config, in `state` (its `StateDirectory=`).
fn exec_start(
    unit: &str,
    binary: &Path,
    config: &Path,
    credentials_dir: &Path,
    state: &Path,
    capabilities: &str,
) -> Command {
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = line.split_whitespace().map(|word| match word {
        "/etc/ward/controller.toml" | "/etc/ward/agent.toml" => {
            config.to_string_lossy().into_owned()
        }
        other => other.to_owned(),
    });
    let _shipped_binary = words.next();
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={DYNAMIC_UID}"))
        .arg(format!("--regid={DYNAMIC_UID}"))
        .args(["--clear-groups", "--no-new-privs"])
        .arg(format!("--inh-caps=-all{capabilities}"))
        .arg(format!("--ambient-caps=-all{capabilities}"))
        .arg(format!("--bounding-set=-all{capabilities}"))
        .arg(binary)
        .args(words)
        .env("CREDENTIALS_DIRECTORY", credentials_dir)
        .env("STATE_DIRECTORY", state)
        .env("RUST_LOG", "info")
        .current_dir(state);
    command
}

/// `from` copied to `dir` where any user may run it.
fn runnable_copy(from: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).expect("copy the binary");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    to
}

/// A directory the dynamic user owns.
fn owned_dir(path: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(path).expect("dir");
    nix::unistd::chown(path, Some(DYNAMIC_UID.into()), Some(DYNAMIC_UID.into())).expect("chown");
    path.to_path_buf()
}

#[test]
fn the_units_run_as_a_dynamic_user_reading_their_keys_as_credentials() {
    ward_testkit::require_root("switching users and raw ICMP sockets");
    let dir = ward_e2e::work_dir().expect("dir");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // /etc/ward as an operator leaves it: root's, keys 0600.
    let etc = d.join("etc");
    ward_controller::certs::init(&etc, &["127.0.0.1".to_owned()]).expect("certificates");
    ward_controller::certs::agent(&etc, "branch-0421").expect("agent certificate");
    std::fs::rename(etc.join("agent-branch-0421.pem"), etc.join("agent.pem")).expect("rename");
    std::fs::rename(etc.join("agent-branch-0421.key"), etc.join("agent.key")).expect("rename");
    std::fs::write(etc.join("database-password"), "").expect("password file");
    std::fs::set_permissions(
        etc.join("database-password"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let bin = d.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let controller_binary = runnable_copy(&controller_binary(), &bin, "ward-controller");
    let agent_binary = runnable_copy(&agent_binary(), &bin, "ward-agent");

    // The controller: the shipped unit's credentials and the example
    // config's key paths, on loopback with SQLite in its state directory.
    let unit = unit_text("ward-controller.service");
    let state = owned_dir(&d.join("state-controller"));
    let (http, grpc) = (
        ward_testkit::ports::free_loopback_port().expect("port"),
        ward_testkit::ports::free_loopback_port().expect("port"),
    );
    let database = format!("sqlite:{}/ward.db", state.display());
    let token = ward_e2e::admin_token(["--database", &database]).expect("admin");
    for file in std::fs::read_dir(&state).expect("state") {
        let path = file.expect("entry").path();
        nix::unistd::chown(&path, Some(DYNAMIC_UID.into()), Some(DYNAMIC_UID.into()))
            .expect("chown");
    }
    let shipped =
        std::fs::read_to_string(Path::new(UNITS).join("controller.toml")).expect("config");
    let key_lines: String = shipped
        .lines()
        .filter(|line| line.starts_with("tls_"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        key_lines.matches("${CREDENTIALS_DIRECTORY}").count(),
        3,
        "{key_lines}"
    );
    let config = d.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen_http = \"127.0.0.1:{http}\"\nlisten_grpc = \"127.0.0.1:{grpc}\"\n\
             database = \"{database}\"\ntsdb_spool_dir = \"{}/spool\"\n{key_lines}",
            state.display()
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // Without its credentials, as before: the dynamic user cannot read
    // root's keys, and the controller says so and exits.
    let direct = d.join("direct.toml");
    std::fs::write(
        &direct,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace("${CREDENTIALS_DIRECTORY}", &etc.to_string_lossy()),
    )
    .expect("config");
    let refused = exec_start(
        &unit,
        &controller_binary,
        &direct,
        &d.join("none"),
        &state,
        "",
    )
    .output()
    .expect("controller");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("Permission denied"),
        "root's 0600 keys are not the dynamic user's: {said}"
    );

    let credentials_dir = d.join("credentials/ward-controller.service");
    load_credentials(&unit, &etc, &credentials_dir);
    let controller = Process::spawn(
        "ward-controller (dynamic user)",
        exec_start(
            &unit,
            &controller_binary,
            &config,
            &credentials_dir,
            &state,
            "",
        ),
        &d.join("controller.log"),
    )
    .expect("controller");
    let rest = ward_e2e::Rest::with_ca(format!("https://127.0.0.1:{http}"), &etc.join("ca.pem"))
        .expect("client")
        .with_token(token);
    ward_e2e::wait_for_http(&rest, "/healthz")
        .unwrap_or_else(|error| panic!("{error}: {}", controller.log()));
    let (code, body) = rest.post(
        "/api/v1/agents",
        &serde_json::json!({"id": "branch-0421", "site": "branch-0421"}),
    );
    assert_eq!(code, 201, "{body}");

    // The agent: its unit's credentials, CAP_NET_RAW only.
    let unit = unit_text("ward-agent.service");
    assert!(
        unit.lines()
            .any(|line| line == "AmbientCapabilities=CAP_NET_RAW")
    );
    let state = owned_dir(&d.join("state-agent"));
    let shipped = std::fs::read_to_string(Path::new(UNITS).join("agent.toml")).expect("config");
    let key_lines: String = shipped
        .lines()
        .filter(|line| line.starts_with("tls_"))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controller = \"https://127.0.0.1:{grpc}\"\nagent_id = \"branch-0421\"\n\
             site = \"branch-0421\"\n{key_lines}"
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let credentials_dir = d.join("credentials/ward-agent.service");
    load_credentials(&unit, &etc, &credentials_dir);
    let agent = Process::spawn(
        "ward-agent (dynamic user)",
        exec_start(
            &unit,
            &agent_binary,
            &config,
            &credentials_dir,
            &state,
            ",+net_raw",
        ),
        &d.join("agent.log"),
    )
    .expect("agent");
    ward_e2e::wait_until(
        "the agent linked over mTLS",
        Duration::from_secs(20),
        || rest.get("/api/v1/agents").1[0]["connected"] == true,
    );
    let (_, agents) = rest.get("/api/v1/agents");
    assert_eq!(agents[0]["state"], "online", "{agents}: {}", agent.log());
    drop(agent);
    drop(controller);
}

/// The packages' configs (`/etc/ward/*.toml` as installed).
const PACKAGED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/debian");

/// The example config `name` in `dir`, its credentials where the unit's
/// systemd puts them.
fn example_config(dir: &str, name: &str, unit: &str) -> String {
    std::fs::read_to_string(Path::new(dir).join(name))
        .expect("example config")
        .replace(
            "${CREDENTIALS_DIRECTORY}",
            &format!("/run/credentials/{unit}"),
        )
}

#[test]
fn the_example_configs_are_accepted_by_the_daemons() {
    for dir in [UNITS, PACKAGED] {
        let agent = ward_agent::run::config::FileConfig::parse(
            &example_config(dir, "agent.toml", "ward-agent.service"),
            "agent.toml",
        )
        .unwrap_or_else(|error| panic!("{dir}/agent.toml: {error}"));
        let settings = ward_agent::run::RunSettings::resolve(
            ward_agent::run::config::FileConfig::default(),
            agent,
            "host",
            None,
        )
        .expect("agent settings");
        assert!(settings.tls.is_some(), "{dir}/agent.toml");
        let controller = ward_controller::config::FileConfig::parse(
            &example_config(dir, "controller.toml", "ward-controller.service"),
            "controller.toml",
        )
        .unwrap_or_else(|error| panic!("{dir}/controller.toml: {error}"));
        let settings = ward_controller::config::Settings::resolve(
            ward_controller::config::FileConfig::default(),
            controller,
        )
        .expect("controller settings");
        assert!(settings.tls.is_some(), "{dir}/controller.toml");
        assert_eq!(
            settings.alertmanagers.is_empty(),
            dir == PACKAGED,
            "the full example has Alertmanager, the package's embedded defaults not"
        );
    }
}
