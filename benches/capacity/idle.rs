//! Idle agent: one real `ward-agent run` with 20 loopback devices at the
//! default interval (1 s), linked over plaintext loopback gRPC to a
//! controller in this process (SQLite); once every device is up and a
//! settling time has passed, its CPU share and its wake-ups (context
//! switches of all its threads, from `/proc`) per second over a minute.
//! `WARD_AGENT=PATH` measures another build side by side.

use std::time::Duration;

use anyhow::Context as _;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Actor, DeviceSpec, Store};

const DEVICES: u8 = 20;
const SITE: &str = "branch-idle";
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(60);

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-idle-")
        .tempdir()?;
    let store = Store::open(&format!("sqlite:{}", dir.path().join("ward.db").display())).await?;
    store.migrate().await?;
    let app = App::new(store, Cache::in_process(), AppSettings::default()).await?;
    let console = Actor::console();
    let now = ward_controller::time::now_ms();
    app.presence
        .register_agent("idle-agent", SITE, &console, now)
        .await?;
    for n in 1..=DEVICES {
        app.inventory
            .create_device(&device(n), &console, now)
            .await?;
    }
    let listener = ward_controller::grpc::bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(ward_controller::grpc::serve(
        listener,
        app.clone(),
        None,
        std::future::pending(),
    ));
    let binary = match std::env::var("WARD_AGENT") {
        Ok(path) => path.into(),
        Err(_) => crate::tools::sibling_binary("ward-agent")?,
    };
    let mut agent = tokio::process::Command::new(&binary)
        .args([
            "run",
            "--controller",
            &url,
            "--agent-id",
            "idle-agent",
            "--site",
            SITE,
        ])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = agent.id().context("the agent's pid")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.inventory.summary().await?.up < u64::from(DEVICES) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the {DEVICES} devices were not all up within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let before = sample(pid)?;
    tokio::time::sleep(WINDOW).await;
    let after = sample(pid)?;
    anyhow::ensure!(
        app.inventory.summary().await?.up == u64::from(DEVICES),
        "a device left `up` during the measurement"
    );
    agent.kill().await?;
    for (thread, (switches, ticks)) in &after.by_thread {
        let (earlier, earlier_ticks) = before.by_thread.get(thread).copied().unwrap_or((0, 0));
        eprintln!(
            "{thread}: {:.1} wake-ups per second, {} ticks of CPU",
            (switches - earlier) as f64 / WINDOW.as_secs_f64(),
            ticks - earlier_ticks
        );
    }
    let seconds = WINDOW.as_secs_f64();
    println!("| agent | devices | CPU, % of a core | wake-ups per second (all threads) |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {DEVICES} at 1 s | {:.3} | {:.1} |",
        binary.display(),
        (after.cpu_ticks - before.cpu_ticks) as f64 / ticks_per_second()? / seconds * 100.0,
        (after.switches - before.switches) as f64 / seconds,
    );
    Ok(())
}

fn device(n: u8) -> DeviceSpec {
    DeviceSpec {
        address: std::net::IpAddr::from([127, 0, 0, n]),
        site: SITE.into(),
        ..crate::outage::device(format!("idle-{n}"), 0, None)
    }
}

/// A process's CPU time (clock ticks) and its threads' context switches,
/// in all and by thread name.
struct Sample {
    cpu_ticks: u64,
    switches: u64,
    by_thread: std::collections::BTreeMap<String, (u64, u64)>,
}

fn sample(pid: u32) -> anyhow::Result<Sample> {
    let cpu_ticks = cpu_ticks_of(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
    let mut by_thread = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let status = std::fs::read_to_string(task.join("status"))?;
        let mut thread = String::new();
        let mut switches = 0;
        for line in status.lines() {
            match line.split_once(':') {
                Some(("Name", name)) => thread = name.trim().to_owned(),
                Some((name, value)) if name.ends_with("voluntary_ctxt_switches") => {
                    switches += value.trim().parse::<u64>()?;
                }
                _ => {}
            }
        }
        let ticks = cpu_ticks_of(&std::fs::read_to_string(task.join("stat"))?)?;
        let entry = by_thread.entry(thread).or_insert((0, 0));
        entry.0 += switches;
        entry.1 += ticks;
    }
    Ok(Sample {
        cpu_ticks,
        switches: by_thread.values().map(|(switches, _)| switches).sum(),
        by_thread,
    })
}

/// User and system CPU time (clock ticks) from a `/proc/…/stat` line:
/// after the command name in parentheses, utime and stime are fields 14
/// and 15, the 12th and 13th after it.
fn cpu_ticks_of(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat.rsplit_once(") ").context("/proc/…/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn ticks_per_second() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}
