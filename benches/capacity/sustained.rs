//! Sustained: 100,000 targets at a 1 s interval for 60 s, the prober
//! running in this process (so its CPU and RSS are this process's), with
//! the share of replies matched every second; then fping at the same load.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ward_agent::engine::{EngineConfig, TargetSpec};
use ward_agent::prober::{Prober, ProberConfig, SendPath};
use ward_testkit::lab::Lab;

use crate::measure;

const TARGETS: u32 = 100_000;
const SECONDS: u64 = 60;
/// fping needs 10 s for 10 probes at 1 s if it keeps up; give it 6×.
const FPING_LIMIT: Duration = Duration::from_secs(60);

/// `count` addresses from 127.1.0.1 up.
pub fn loopback_targets(count: u32) -> Vec<IpAddr> {
    let first = u32::from(Ipv4Addr::new(127, 1, 0, 1));
    (0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
        .collect()
}

pub fn run(lab: &Lab) -> anyhow::Result<()> {
    let addresses = loopback_targets(TARGETS);
    let targets: Vec<(TargetSpec, u64)> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| (TargetSpec::with_defaults(*address), i as u64))
        .collect();
    let config = ProberConfig {
        wake_for_each_reply: true,
        engine: EngineConfig::default(),
        receive_buffer: 32 << 20,
        linger: Duration::ZERO,
        all_families: false,
        send_path: SendPath::Ip,
    };
    let prober = lab.run_in_client(move || Prober::start(config, &targets, |_, _| {}))??;
    let cpu_start = measure::own_cpu()?;
    let machine_start = measure::machine_busy_cpu()?;
    let started = Instant::now();
    let (mut last_sent, mut last_matched) = (0u64, 0u64);
    let mut per_second = Vec::new();
    let mut peak_rss = 0;
    for second in 1..=SECONDS {
        std::thread::sleep(
            (started + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let sent = prober.counters().sent.load(Ordering::Relaxed);
        let matched = prober.counters().matched.load(Ordering::Relaxed);
        let (sent_now, matched_now) = (sent - last_sent, matched - last_matched);
        (last_sent, last_matched) = (sent, matched);
        // The first second is the ramp: targets start at their phase.
        if second > 1 {
            per_second.push((
                sent_now,
                100.0 * matched_now as f64 / sent_now.max(1) as f64,
            ));
        }
        peak_rss = peak_rss.max(measure::own_rss()?);
    }
    let cpu = measure::own_cpu()? - cpu_start;
    let machine = measure::machine_busy_cpu()? - machine_start;
    let elapsed = started.elapsed();
    let kernel_drops = prober.counters().kernel_drops.load(Ordering::Relaxed);
    let engine = prober.stop();
    let counters = engine.counters();
    let worst = per_second
        .iter()
        .map(|(_, pct)| *pct)
        .fold(f64::INFINITY, f64::min);
    let rates: Vec<u64> = per_second.iter().map(|(sent, _)| *sent).collect();
    println!("| measure | ward |");
    println!("|---|---|");
    println!("| targets × interval | {TARGETS} × 1 s for {SECONDS} s |");
    println!(
        "| probes sent / matched | {} / {} ({:.3} %) |",
        counters.probes_sent,
        counters.replies_matched,
        100.0 * counters.replies_matched as f64 / counters.probes_sent.max(1) as f64
    );
    println!(
        "| probes per second (min–max, seconds 2–{SECONDS}) | {}–{} |",
        rates.iter().min().unwrap_or(&0),
        rates.iter().max().unwrap_or(&0)
    );
    println!("| replies matched per second, worst second | {worst:.3} % |");
    println!(
        "| timeouts / late / invalid / rx drops | {} / {} / {} / {kernel_drops} |",
        counters.timeouts, counters.replies_late, counters.replies_invalid
    );
    println!(
        "| agent CPU (user+sys) | {:.2} s over {:.1} s = {:.2} cores |",
        cpu.as_secs_f64(),
        elapsed.as_secs_f64(),
        cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "| whole machine busy CPU (/proc/stat, all cores; the answering kernel's softirq work included) | {:.2} s = {:.2} cores |",
        machine.as_secs_f64(),
        machine.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "| agent RSS, peak | {:.1} MiB |",
        peak_rss as f64 / (1 << 20) as f64
    );
    fping_at_same_load(lab, &addresses)
}

fn fping_at_same_load(lab: &Lab, addresses: &[IpAddr]) -> anyhow::Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    let list: String = addresses.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(file.path(), list)?;
    let mut command = lab.client_command("fping");
    command
        .args(["-c", "10", "-p", "1000", "-i", "0", "-q", "-f"])
        .arg(file.path());
    let machine_start = measure::machine_busy_cpu()?;
    let measured = measure::run(&mut command, FPING_LIMIT)?;
    let machine = measure::machine_busy_cpu()? - machine_start;
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let summaries: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("xmt/rcv/%loss"))
        .collect();
    let (mut sent, mut received) = (0u64, 0u64);
    for line in &summaries {
        // "127.1.0.1 : xmt/rcv/%loss = 10/10/0%, ..."
        let counts = line.split(" = ").nth(1).unwrap_or_default();
        let mut parts = counts.split('/');
        sent += parts
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        received += parts
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let first_error = stderr
        .lines()
        .find(|line| !line.contains("xmt/rcv"))
        .unwrap_or("none");
    println!();
    let ending = if measured.killed {
        format!("killed after {FPING_LIMIT:?} (10 s expected)")
    } else {
        format!(
            "exit {:?} after {:.1} s (10 s expected)",
            measured.output.status.code(),
            measured.wall.as_secs_f64()
        )
    };
    println!(
        "fping -c 10 -p 1000 -i 0 on the same {} targets: {ending}; per-target summaries for {} \
         targets, sent {sent}, received {received}, {:.2} CPU s (whole machine busy {:.2} s); \
         first other message: {first_error}",
        addresses.len(),
        summaries.len(),
        measured.cpu.as_secs_f64(),
        machine.as_secs_f64()
    );
    Ok(())
}
