//! Running a bounded child process and measuring its CPU time.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
/// `killed`, with whatever it printed until then). `wall` is spawn to
/// exit, as `time` would report it: this thread waits on the child
/// itself (a watchdog thread does the killing), so no polling interval
/// is added.
pub fn run(command: &mut Command, limit: Duration) -> anyhow::Result<Measured> {
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let reader = read_all(child.stdout.take().context("stdout")?);
    let error_reader = read_all(child.stderr.take().context("stderr")?);
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid")?);
    let (exited, exit_seen) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(
            exit_seen.recv_timeout(limit),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        // The child is not reaped before `exited` is sent: the pid is
        // still ours to signal.
        timed_out && kill(pid, Signal::SIGKILL).is_ok()
    });
    let status = child.wait()?;
    let wall = started.elapsed();
    let _ = exited.send(());
    let killed = watchdog.join().map_err(|_| anyhow::anyhow!("watchdog"))?;
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

fn read_all(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        pipe.read_to_end(&mut text).map(|_| text)
    })
}

/// CPU time the whole machine spent busy so far (every CPU's user, nice,
/// system, irq, softirq and steal time from `/proc/stat`): where the
/// answering kernel's softirq work shows up.
pub fn machine_busy_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .context("no `cpu` line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal …
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&field| ticks.get(field))
        .sum();
    // /proc/stat counts in USER_HZ, 100 per second on every Linux ABI.
    Ok(Duration::from_millis(busy * 10))
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
