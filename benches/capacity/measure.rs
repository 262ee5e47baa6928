//! Running a bounded child process and measuring its CPU time.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};

/// What one tool run cost.
pub struct Measured {
    pub output: Output,
    pub wall: Duration,
    /// User + system CPU of the child.
    pub cpu: Duration,
    /// The child ran past its limit and was killed.
    pub killed: bool,
}

fn children_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    Ok(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

/// CPU time of this process so far.
pub fn own_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    Ok(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

fn to_duration(time: nix::sys::time::TimeVal) -> Duration {
    Duration::from_secs(u64::try_from(time.tv_sec()).unwrap_or(0))
        + Duration::from_micros(u64::try_from(time.tv_usec()).unwrap_or(0))
}

/// Runs `command` to completion, killing it after `limit` (reported in
/// `killed`, with whatever it printed until then).
pub fn run(command: &mut Command, limit: Duration) -> anyhow::Result<Measured> {
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let reader = std::thread::spawn({
        let mut stdout = child.stdout.take().context("stdout")?;
        move || {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut text).map(|_| text)
        }
    });
    let mut stderr = child.stderr.take().context("stderr")?;
    let error_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut text).map(|_| text)
    });
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit && !killed {
            child.kill()?;
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader"))??;
    let stderr = error_reader
        .join()
        .map_err(|_| anyhow::anyhow!("stderr reader"))??;
    Ok(Measured {
        output: Output {
            status,
            stdout,
            stderr,
        },
        wall,
        cpu: children_cpu()? - cpu_before,
        killed,
    })
}

/// Resident set size of this process now, bytes.
pub fn own_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// CPU seconds per million probes.
pub fn cpu_per_million(cpu: Duration, probes: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / probes.max(1) as f64
}
