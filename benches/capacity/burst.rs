//! Burst: the 65,534 addresses of 127.1.0.0/16 probed once, at rising rates
//! and unlimited, by ward (both send paths), zmap and fping in turn
//! (interleaved, three trials, medians reported).

use std::time::Duration;

use anyhow::Context;
use ward_testkit::lab::Lab;

use crate::measure::{self, cpu_per_million};

const RANGE: &str = "127.1.0.0/16";
const TRIALS: usize = 3;
const RATES: [Option<u32>; 4] = [Some(50_000), Some(100_000), Some(200_000), None];
const LIMIT: Duration = Duration::from_secs(60);

/// One tool run.
struct Row {
    tool: &'static str,
    rate: Option<u32>,
    probes_per_second: f64,
    matched_percent: f64,
    rx_drops: Option<u64>,
    cpu_per_million: f64,
}

pub fn run(lab: &Lab) -> anyhow::Result<()> {
    let agent = agent_binary()?;
    let blocklist = tempfile::NamedTempFile::new()?;
    let mut rows = Vec::new();
    for trial in 1..=TRIALS {
        for rate in RATES {
            rows.push(ward(lab, &agent, "ip", rate)?);
            rows.push(ward(lab, &agent, "packet", rate)?);
            rows.push(zmap(lab, rate, blocklist.path())?);
            if rate.is_none() {
                rows.push(fping(lab)?);
            }
        }
        eprintln!("burst: trial {trial}/{TRIALS} done");
    }
    print_medians(&rows);
    print_ratios(&rows);
    Ok(())
}

/// The release `ward-agent` next to this binary.
pub fn agent_binary() -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("ward-agent");
    anyhow::ensure!(
        path.exists(),
        "{} missing: cargo build --release -p ward-agent",
        path.display()
    );
    Ok(path)
}

fn summary_number(stderr: &str, name: &str) -> anyhow::Result<f64> {
    let line = stderr
        .lines()
        .find(|line| line.contains(" targets, sent "))
        .with_context(|| format!("no ward summary in: {stderr}"))?;
    line.split(", ")
        .find_map(|part| part.trim().strip_prefix(&format!("{name} ")))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no `{name}` in: {line}"))
}

/// `ward-agent probe --send-path SEND_PATH`: `ip` or `packet`.
fn ward(
    lab: &Lab,
    agent: &std::path::Path,
    send_path: &str,
    rate: Option<u32>,
) -> anyhow::Result<Row> {
    let mut command = lab.client_command(agent.to_str().context("path")?);
    command.args(["probe", "--send-path", send_path, RANGE]);
    if let Some(rate) = rate {
        command.args(["-r", &rate.to_string()]);
    }
    let measured = measure::run(&mut command, LIMIT)?;
    anyhow::ensure!(
        !measured.killed,
        "ward did not finish a burst within {LIMIT:?}"
    );
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let sent = summary_number(&stderr, "sent")?;
    let received = summary_number(&stderr, "received")?;
    if send_path == "packet" {
        // Every probe must have taken the path being measured.
        anyhow::ensure!(
            summary_number(&stderr, "via packet socket")? == sent,
            "not every probe went through the packet socket: {stderr}"
        );
    }
    Ok(Row {
        tool: if send_path == "packet" {
            "ward packet"
        } else {
            "ward ip"
        },
        rate,
        probes_per_second: summary_number(&stderr, "send rate")?,
        matched_percent: 100.0 * received / sent.max(1.0),
        rx_drops: Some(summary_number(&stderr, "rx drops")? as u64),
        cpu_per_million: cpu_per_million(measured.cpu, sent as u64),
    })
}

fn zmap(lab: &Lab, rate: Option<u32>, blocklist: &std::path::Path) -> anyhow::Result<Row> {
    let output = tempfile::NamedTempFile::new()?;
    let mut command = lab.client_command("zmap");
    command
        .args([
            "-M",
            "icmp_echoscan",
            "-i",
            "wc0",
            "-G",
            "02:00:c6:12:00:02",
        ])
        .args([
            "-S",
            "198.18.0.1",
            "-c",
            "1",
            "-r",
            &rate.unwrap_or(0).to_string(),
        ])
        .arg("-b")
        .arg(blocklist)
        .arg("-o")
        .arg(output.path())
        .arg(RANGE);
    let measured = measure::run(&mut command, LIMIT)?;
    anyhow::ensure!(
        !measured.killed,
        "zmap did not finish a burst within {LIMIT:?}"
    );
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    // " 0:01 91%; send: 65536 done (578 Kp/s avg); recv: ...; drops: ..."
    let done = stderr
        .lines()
        .rev()
        .find(|line| line.contains("send: ") && line.contains(" done ("))
        .with_context(|| format!("no zmap send summary in: {stderr}"))?;
    let sent: f64 = done
        .split("send: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("zmap sent count")?;
    let rate_text = done.split(" done (").nth(1).context("zmap rate")?;
    let mut words = rate_text.split_whitespace();
    let value: f64 = words
        .next()
        .and_then(|v| v.parse().ok())
        .context("zmap rate value")?;
    let unit = match words.next() {
        Some("Kp/s") => 1e3,
        Some("Mp/s") => 1e6,
        _ => 1.0,
    };
    let mut responders: Vec<String> = std::fs::read_to_string(output.path())?
        .lines()
        .map(str::to_owned)
        .collect();
    responders.sort();
    responders.dedup();
    Ok(Row {
        tool: "zmap",
        rate,
        probes_per_second: value * unit,
        matched_percent: 100.0 * responders.len() as f64 / sent.max(1.0),
        rx_drops: None,
        cpu_per_million: cpu_per_million(measured.cpu, sent as u64),
    })
}

fn fping(lab: &Lab) -> anyhow::Result<Row> {
    let mut command = lab.client_command("fping");
    command.args(["-c", "1", "-i", "0", "-q", "-t", "500", "-g", RANGE]);
    let measured = measure::run(&mut command, LIMIT)?;
    anyhow::ensure!(
        !measured.killed,
        "fping did not finish a burst within {LIMIT:?}"
    );
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let probed = stderr
        .lines()
        .filter(|line| line.contains("xmt/rcv/%loss"))
        .count() as f64;
    let answered = stderr
        .lines()
        .filter(|line| line.contains("xmt/rcv/%loss = 1/1/"))
        .count() as f64;
    Ok(Row {
        tool: "fping",
        rate: None,
        probes_per_second: probed / measured.wall.as_secs_f64(),
        matched_percent: 100.0 * answered / probed.max(1.0),
        rx_drops: None,
        cpu_per_million: cpu_per_million(measured.cpu, probed as u64),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median of `f` over the runs of `tool` at `rate`.
fn median_of(rows: &[Row], tool: &str, rate: Option<u32>, f: fn(&Row) -> f64) -> f64 {
    median(
        rows.iter()
            .filter(|row| row.tool == tool && row.rate == rate)
            .map(f)
            .collect(),
    )
}

fn print_ratios(rows: &[Row]) {
    let ratio = |tool, peer, figure: fn(&Row) -> f64| {
        median_of(rows, tool, None, figure) / median_of(rows, peer, None, figure)
    };
    let rate: fn(&Row) -> f64 = |row| row.probes_per_second;
    let cpu: fn(&Row) -> f64 = |row| row.cpu_per_million;
    println!();
    println!("| unlimited burst | ward ip | ward packet |");
    println!("|---|---|---|");
    for (measure, peer, figure) in [
        ("probes/s / zmap", "zmap", rate),
        ("probes/s / fping", "fping", rate),
        ("CPU per million probes / zmap", "zmap", cpu),
    ] {
        println!(
            "| {measure} | {:.2}× | {:.2}× |",
            ratio("ward ip", peer, figure),
            ratio("ward packet", peer, figure)
        );
    }
}

fn print_medians(rows: &[Row]) {
    println!(
        "| tool | rate cap (probes/s) | achieved probes/s | replies matched | rx drops | CPU s per M probes |"
    );
    println!("|---|---|---|---|---|---|");
    let mut keys: Vec<(&str, Option<u32>)> = rows.iter().map(|row| (row.tool, row.rate)).collect();
    keys.sort_by_key(|(tool, rate)| (rate.unwrap_or(u32::MAX), *tool));
    keys.dedup();
    for (tool, rate) in keys {
        let group: Vec<&Row> = rows
            .iter()
            .filter(|row| row.tool == tool && row.rate == rate)
            .collect();
        let pick = |f: fn(&Row) -> f64| median_of(rows, tool, rate, f);
        let drops = group
            .iter()
            .filter_map(|row| row.rx_drops)
            .max()
            .map_or_else(|| "n/a".into(), |drops| drops.to_string());
        println!(
            "| {tool} | {} | {:.0} | {:.3} % | {drops} | {:.2} |",
            rate.map_or_else(|| "unlimited".into(), |rate| rate.to_string()),
            pick(|row| row.probes_per_second),
            pick(|row| row.matched_percent),
            pick(|row| row.cpu_per_million),
        );
    }
}
