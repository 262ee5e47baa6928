//! Detection-latency benchmark (issue: "the 2-second promise"): in a lab
//! site of 10,000 hosts whose agent also probes 50,000 loopback targets,
//! take random hosts down with an nftables drop and bring them back, and
//! measure the time from the drop (and from its removal) to the change
//! being visible through the controller's REST API (its event stream,
//! which publishes after the commit; each change is confirmed with a GET).
//! Also the pipeline's own share: from the agent's verdict (the deciding
//! probe's timeout for DOWN, its reply for UP) to visibility.
//!
//! `cargo build --release -p ward-e2e && sudo target/release/e2e-latency
//! [--cycles 100] [--parallel 10]`: runs the default profile (1 s, 500 ms,
//! 3 misses) and the fast one (200 ms, 100 ms, 3), prints percentiles.
#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark driving real processes in wall-clock time"
)]

use std::collections::HashMap;
use std::io::BufRead as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;
use ward_e2e::{Deployment, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-1";
const LAB_HOSTS: u32 = 10_000;
const LOOPBACK_TARGETS: u32 = 50_000;

struct Profile {
    name: &'static str,
    interval_ms: u32,
    timeout_ms: u32,
    misses: u32,
}

/// A status change seen on the event stream.
struct Seen {
    at: Instant,
    wall_ms: i64,
    id: i64,
    status: String,
    last_change_ms: i64,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| i64::try_from(t.as_millis()).unwrap_or(0))
}

fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime_parse(text)?;
    i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

fn humantime_parse(text: &str) -> Option<SystemTime> {
    // "2026-11-22T05:30:38.204Z": days from the civil date, then the time.
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    let millis: i64 = format!("{millis:0<3}")[..3].parse().ok()?;
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h * 3_600 + mi * 60 + s) * 1_000) + millis;
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
}

/// Follows `/api/v1/events`, sending every status change.
fn follow_events(rest: &ward_e2e::Rest, sender: mpsc::Sender<Seen>) {
    let Some(response) = rest.follow("/api/v1/events") else {
        return;
    };
    let mut event = String::new();
    for line in std::io::BufReader::new(response).lines() {
        let Ok(line) = line else { return };
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ")
            && event == "status"
            && let Ok(device) = serde_json::from_str::<Value>(data)
        {
            let seen = Seen {
                at: Instant::now(),
                wall_ms: wall_ms(),
                id: device["id"].as_i64().unwrap_or(0),
                status: device["status"].as_str().unwrap_or("").to_owned(),
                last_change_ms: device["last_change"]
                    .as_str()
                    .and_then(parse_rfc3339_ms)
                    .unwrap_or(0),
            };
            if sender.send(seen).is_err() {
                return;
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(label: &str, mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let p99 = percentile(&values, 99.0);
    println!(
        "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        values.len(),
        percentile(&values, 50.0),
        percentile(&values, 95.0),
        p99,
        values.last().copied().unwrap_or(f64::NAN)
    );
    p99
}

fn run_profile(profile: &Profile, cycles: usize, parallel: usize) -> anyhow::Result<()> {
    let site = SiteConfig {
        answering: vec!["198.18.64.0/18".parse()?],
        unreachable: vec![],
        loopback_via_site: true,
        ..SiteConfig::default()
    };
    let deployment = Deployment::start(site)?;
    deployment.register_agent("site-agent", SITE);
    let lab_ids = deployment.import_devices(
        SITE,
        Ipv4Addr::new(198, 18, 64, 1),
        LAB_HOSTS,
        profile.interval_ms,
        profile.timeout_ms,
    );
    deployment.import_devices(
        SITE,
        Ipv4Addr::new(127, 20, 0, 1),
        LOOPBACK_TARGETS,
        1_000,
        500,
    );
    let addresses: HashMap<i64, IpAddr> = lab_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            (
                id,
                IpAddr::V4(Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(198, 18, 64, 1)) + i as u32,
                )),
            )
        })
        .collect();
    let _agent = deployment.start_agent("site-agent", SITE, "site-agent")?;
    let total = u64::from(LAB_HOSTS + LOOPBACK_TARGETS);
    wait_until("every target up", Duration::from_secs(180), || {
        deployment.rest.get("/api/v1/summary").1["up"] == total
    });
    let (sender, events) = mpsc::channel();
    let rest = deployment.rest.clone();
    std::thread::spawn(move || follow_events(&rest, sender));
    std::thread::sleep(Duration::from_millis(500));

    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let (mut down_ms, mut up_ms, mut pipeline_down, mut pipeline_up) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    while done < cycles {
        let wave: Vec<i64> = (0..parallel.min(cycles - done))
            .map(|_| lab_ids[rng.usize(..lab_ids.len())])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (phase, status) in [(true, "down"), (false, "up")] {
            let mut started = HashMap::new();
            for &id in &wave {
                if phase {
                    deployment.lab.take_down(addresses[&id])?;
                } else {
                    deployment.lab.bring_up(addresses[&id])?;
                }
                started.insert(id, Instant::now());
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while !started.is_empty() {
                let Ok(seen) =
                    events.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                else {
                    dump_logs(&deployment);
                    bail!("no {status} event within 15 s for {:?}", started.keys());
                };
                if seen.status != status {
                    continue;
                }
                let Some(start) = started.remove(&seen.id) else {
                    continue;
                };
                let (code, device) = deployment.rest.get(&format!("/api/v1/devices/{}", seen.id));
                if code != 200 || device["status"] != status {
                    bail!("REST disagrees with the event for {}: {device}", seen.id);
                }
                let visible = seen.at.duration_since(start).as_secs_f64() * 1_000.0;
                // The verdict: the deciding probe's timeout (down) or its reply (up).
                let verdict_ms = seen.last_change_ms
                    + if phase {
                        i64::from(profile.timeout_ms)
                    } else {
                        0
                    };
                let pipeline = (seen.wall_ms - verdict_ms) as f64;
                if phase {
                    down_ms.push(visible);
                    pipeline_down.push(pipeline);
                } else {
                    up_ms.push(visible);
                    pipeline_up.push(pipeline);
                }
            }
        }
        done += wave.len();
    }
    let bound = profile.interval_ms + profile.misses * profile.timeout_ms;
    println!(
        "\n### {} profile: interval {} ms, timeout {} ms, {} misses (bound I + N·T = {bound} ms, goal p99 ≤ {} ms)\n",
        profile.name,
        profile.interval_ms,
        profile.timeout_ms,
        profile.misses,
        bound + 100
    );
    println!("| measured (ms) | cycles | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|");
    let p99_down = report("drop → DOWN visible in REST", down_ms);
    report("drop removed → UP visible in REST", up_ms);
    report("pipeline: DOWN verdict → visible", pipeline_down);
    report("pipeline: UP verdict → visible", pipeline_up);
    println!(
        "\np99 DOWN {p99_down:.0} ms vs goal {} ms: {}",
        bound + 100,
        if p99_down <= f64::from(bound + 100) {
            "met"
        } else {
            "MISSED"
        }
    );
    let (_, agents) = deployment.rest.get("/api/v1/agents");
    println!("agent counters at the end: {}", agents[0]["counters"]);
    dump_logs(&deployment);
    Ok(())
}

/// The controller's and the agent's warnings and errors, and their last
/// lines.
fn dump_logs(deployment: &Deployment) {
    let agent_log = std::fs::read_to_string(deployment.dir.path().join("agent-site-agent.log"))
        .unwrap_or_default();
    for (who, log) in [
        ("controller", deployment.controller_log()),
        ("agent", agent_log),
    ] {
        let lines: Vec<&str> = log.lines().collect();
        for line in lines
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
        {
            eprintln!("{who}: {line}");
        }
        for line in &lines[lines.len().saturating_sub(5)..] {
            eprintln!("{who} (last lines): {line}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    ward_testkit::lab::remove_labs_on_signal()?;
    let mut args = std::env::args().skip(1);
    let (mut cycles, mut parallel, mut only) = (100usize, 10usize, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || -> anyhow::Result<usize> {
            value
                .parse()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--cycles" => cycles = number()?,
            "--parallel" => parallel = number()?.max(1),
            "--profile" => only = Some(value.clone()),
            other => {
                bail!("unknown flag {other}; use --cycles N --parallel N --profile default|fast")
            }
        }
    }
    for profile in [
        Profile {
            name: "default",
            interval_ms: 1_000,
            timeout_ms: 500,
            misses: 3,
        },
        Profile {
            name: "fast",
            interval_ms: 200,
            timeout_ms: 100,
            misses: 3,
        },
    ] {
        if only.as_deref().is_none_or(|only| only == profile.name) {
            run_profile(&profile, cycles, parallel)?;
        }
    }
    Ok(())
}
