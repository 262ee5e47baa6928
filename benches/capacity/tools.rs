//! Each tool run once as a whole process (spawn to exit, like `time`),
//! its output read back into a [`Trial`]. `command` is the program
//! prepared to run in a namespace (`Lab::client_command` or
//! `Lab::site_command`); the functions add the tool's arguments.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::measure;
use crate::table::Trial;

/// A run longer than this is killed and reported as a failure.
const LIMIT: Duration = Duration::from_secs(60);

/// 127.1.0.0/16 without network and broadcast: 65,534 loopback targets.
pub const RANGE: &str = "127.1.0.0/16";

/// What every run of a measurement needs: the binaries and the targets.
pub struct Setup {
    /// The release `ward-agent`.
    pub agent: String,
    /// This harness (the blaster is `HARNESS blast FILE`).
    pub harness: String,
    /// The addresses of [`RANGE`], one per line (as fping and ward read them).
    pub targets: tempfile::NamedTempFile,
}

impl Setup {
    pub fn new() -> anyhow::Result<Self> {
        let targets = tempfile::NamedTempFile::new()?;
        let list: String = crate::sustained::loopback_targets(65_534)
            .iter()
            .map(|address| format!("{address}\n"))
            .collect();
        std::fs::write(targets.path(), list)?;
        let text = |path: std::path::PathBuf| {
            path.into_os_string()
                .into_string()
                .map_err(|path| anyhow::anyhow!("binary path {path:?} is not UTF-8"))
        };
        Ok(Self {
            agent: text(sibling_binary("ward-agent")?)?,
            harness: text(std::env::current_exe()?)?,
            targets,
        })
    }

    /// The target file's path.
    pub fn file(&self) -> &str {
        self.targets.path().to_str().unwrap_or_default()
    }
}

/// The release binary `name` next to this one.
pub fn sibling_binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join(name);
    anyhow::ensure!(
        path.exists(),
        "{} missing: cargo build --release -p ward-agent -p ward-benches",
        path.display()
    );
    Ok(path)
}

fn finished(command: &mut Command, tool: &str) -> anyhow::Result<measure::Measured> {
    let measured = measure::run(command, LIMIT)?;
    anyhow::ensure!(!measured.killed, "{tool} did not finish within {LIMIT:?}");
    Ok(measured)
}

fn trial(measured: &measure::Measured, reported_rate: Option<f64>, matched: f64) -> Trial {
    Trial {
        wall: measured.wall,
        cpu: measured.cpu,
        reported_rate,
        matched_percent: matched,
        rx_drops: None,
    }
}

/// A number from ward's summary line (`… sent 65534, received …`).
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

/// `ward-agent probe --json -c 1 ARGS`; with `--send-path packet` among
/// the arguments, every probe must have left through the packet socket.
pub fn ward(mut command: Command, args: &[&str]) -> anyhow::Result<Trial> {
    command.args(["probe", "--json", "-c", "1"]).args(args);
    let measured = finished(&mut command, "ward-agent probe")?;
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let sent = summary_number(&stderr, "sent")?;
    let received = summary_number(&stderr, "received")?;
    if args.contains(&"packet") {
        anyhow::ensure!(
            summary_number(&stderr, "via packet socket")? == sent,
            "not every probe went through the packet socket: {stderr}"
        );
    }
    Ok(Trial {
        rx_drops: Some(summary_number(&stderr, "rx drops")? as u64),
        ..trial(
            &measured,
            Some(summary_number(&stderr, "send rate")?),
            100.0 * received / sent.max(1.0),
        )
    })
}

/// `fping -c 1 -q -i 0 ARGS` (it reports no rate of its own).
pub fn fping(mut command: Command, args: &[&str]) -> anyhow::Result<Trial> {
    command.args(["-c", "1", "-q", "-i", "0"]).args(args);
    let measured = finished(&mut command, "fping")?;
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let probed = stderr
        .lines()
        .filter(|line| line.contains("xmt/rcv/%loss"))
        .count() as f64;
    let answered = stderr
        .lines()
        .filter(|line| line.contains("xmt/rcv/%loss = 1/1/"))
        .count() as f64;
    anyhow::ensure!(probed > 0.0, "fping probed nothing: {stderr}");
    Ok(trial(&measured, None, 100.0 * answered / probed))
}

/// `nmap -sS -p PORT -n -Pn --max-retries 0 -T5 --min-rate 100000 -iL
/// FILE`: a raw SYN scan at its fastest, each target once; answered:
/// the targets it found the port open or closed on (it reports no rate).
pub fn nmap(mut command: Command, port: u16, targets: &str) -> anyhow::Result<Trial> {
    let output = tempfile::NamedTempFile::new()?;
    command
        .args([
            "-sS",
            "-p",
            &port.to_string(),
            "-n",
            "-Pn",
            "--max-retries",
            "0",
        ])
        .args(["-T5", "--min-rate", "100000", "-iL", targets, "-oG"])
        .arg(output.path());
    let measured = finished(&mut command, "nmap")?;
    let report = std::fs::read_to_string(output.path())?;
    let probed = report
        .lines()
        .filter(|line| line.starts_with("Host: ") && line.contains("Ports: "))
        .count() as f64;
    let answered = report
        .lines()
        .filter(|line| line.contains("/open/") || line.contains("/closed/"))
        .count() as f64;
    anyhow::ensure!(probed > 0.0, "nmap scanned nothing: {report}");
    Ok(trial(&measured, None, 100.0 * answered / probed))
}

/// `ward-capacity blast FILE`: the kernel's ceiling.
pub fn blast(mut command: Command, targets: &Path) -> anyhow::Result<Trial> {
    command.arg("blast").arg(targets);
    let measured = finished(&mut command, "the blaster")?;
    let stderr = String::from_utf8_lossy(&measured.output.stderr);
    let number = |name: &str| -> anyhow::Result<f64> {
        stderr
            .split(", ")
            .find_map(|part| part.trim().strip_prefix(&format!("{name} ")))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no `{name}` in the blaster's: {stderr}"))
    };
    Ok(trial(
        &measured,
        Some(number("send rate")?),
        100.0 * number("received")? / number("sent")?.max(1.0),
    ))
}

/// `zmap -M icmp_echoscan` over the lab's veth at `rate` (0: unlimited),
/// with its own reported rate.
pub fn zmap(mut command: Command, rate: u32, blocklist: &Path) -> anyhow::Result<Trial> {
    let output = tempfile::NamedTempFile::new()?;
    command
        .args([
            "-M",
            "icmp_echoscan",
            "-i",
            "wc0",
            "-G",
            "02:00:c6:12:00:02",
        ])
        .args(["-S", "198.18.0.1", "-c", "1", "-r", &rate.to_string()])
        .arg("-b")
        .arg(blocklist)
        .arg("-o")
        .arg(output.path())
        .arg(RANGE);
    let measured = finished(&mut command, "zmap")?;
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
    Ok(trial(
        &measured,
        Some(value * unit),
        100.0 * responders.len() as f64 / sent.max(1.0),
    ))
}
