//! What the harness watches the controller with: event-stream clients that
//! time every status change they see, REST clients that time the
//! dashboard's and operators' calls, and the processes' CPU and memory
//! from `/proc`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A status change as one event-stream client saw it.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// The device.
    pub device_id: u64,
    /// Its new status is `down`.
    pub down: bool,
    /// When the client read it.
    pub at: Instant,
}

/// An authenticated REST client of the controller under test.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// A client of `base` trusting `ca_pem`, with bearer `token`.
    pub fn new(base: String, ca_pem: &std::path::Path, token: String) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem)?)?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            base,
            token,
        })
    }

    /// The value of the unlabelled gauge or counter `name` in `/metrics`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("/metrics has no {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("{name} is not a number"))
    }

    /// `GET path` as JSON, and how long it took.
    pub async fn get(&self, path: &str) -> anyhow::Result<(serde_json::Value, Duration)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok((body, started.elapsed()))
    }

    /// Follows `/api/v1/events` until `stop`, recording every status
    /// change; a `resync` (the client fell behind) fails the run.
    pub async fn follow_events(
        self,
        seen: Arc<Mutex<Vec<Seen>>>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut response = self
            .client
            .get(format!("{}/api/v1/events", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "events: {}",
            response.status()
        );
        let mut pending = String::new();
        let mut event = String::new();
        while !*stop.borrow() {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk?.context("the event stream ended")?,
                () = tokio::time::sleep(Duration::from_millis(200)) => continue,
            };
            let at = Instant::now();
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim_end();
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                    anyhow::ensure!(event != "resync", "an event client fell behind (resync)");
                } else if let Some(data) = line.strip_prefix("data:")
                    && event == "status"
                {
                    let device: serde_json::Value = serde_json::from_str(data.trim())?;
                    let device_id = device["id"].as_u64().context("event without id")?;
                    let down = device["status"] == "down";
                    seen.lock().expect("seen").push(Seen {
                        device_id,
                        down,
                        at,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Latencies of one kind of REST call.
#[derive(Debug, Default)]
pub struct Timings {
    /// Each call's duration.
    pub calls: Vec<Duration>,
}

impl Timings {
    /// The `q` quantile (0–1) in milliseconds, or 0 without calls.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.calls.clone();
        sorted.sort_unstable();
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// The REST calls timed, as an operator's and the dashboard's.
pub const CALLS: [&str; 4] = ["summary", "a site's devices", "a page of 500", "one device"];

/// Calls [`CALLS`] in turn until `stop`, each round on the next of
/// `apis`, each kind timed into `timings`; `sites` and `devices` pick
/// which site and device.
pub async fn time_calls(
    apis: Vec<Api>,
    sites: usize,
    devices: Vec<u64>,
    timings: Arc<Mutex<[Timings; 4]>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut cursor: Option<String> = None;
    for api in apis.iter().cycle() {
        if *stop.borrow() {
            break;
        }
        let site = fastrand::usize(..sites);
        let device = devices[fastrand::usize(..devices.len())];
        let page = match &cursor {
            Some(cursor) => format!("/api/v1/devices?limit=500&cursor={cursor}"),
            None => "/api/v1/devices?limit=500".to_owned(),
        };
        let paths = [
            "/api/v1/summary".to_owned(),
            format!("/api/v1/devices?site={}", super::site_name(site)),
            page,
            format!("/api/v1/devices/{device}"),
        ];
        for (kind, path) in paths.iter().enumerate() {
            let (body, took) = api.get(path).await?;
            if kind == 2 {
                cursor = body["next_cursor"].as_str().map(str::to_owned);
            }
            timings.lock().expect("timings")[kind].calls.push(took);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// CPU time (user + system) and memory of a process tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// CPU time, in clock ticks.
    pub ticks: u64,
    /// Proportional set size, bytes: resident memory with each shared
    /// page divided among the processes sharing it (PostgreSQL's shared
    /// buffers are counted once across its processes, not once each).
    pub memory: u64,
}

/// The sum of `pids`' usages (several controllers).
pub fn usage_of_all(pids: &[u32]) -> anyhow::Result<Usage> {
    let mut total = Usage::default();
    for &pid in pids {
        let usage = usage(pid, false)?;
        total.ticks += usage.ticks;
        total.memory += usage.memory;
    }
    Ok(total)
}

/// `pid` and (with `children`) its direct children, from `/proc`.
pub fn usage(pid: u32, children: bool) -> anyhow::Result<Usage> {
    let mut total = one(pid)?;
    if children {
        for entry in std::fs::read_dir("/proc")? {
            let Some(child) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            if stat_field(&stat, 4) == Some(u64::from(pid))
                && let Ok(usage) = one(child)
            {
                total.ticks += usage.ticks;
                total.memory += usage.memory;
            }
        }
    }
    Ok(total)
}

fn one(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = stat_field(&stat, 14).unwrap_or(0) + stat_field(&stat, 15).unwrap_or(0);
    Ok(Usage {
        ticks,
        memory: proportional_set_size(pid)?,
    })
}

fn proportional_set_size(pid: u32) -> anyhow::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let kib = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .context("no Pss in smaps_rollup")?;
    Ok(kib * 1024)
}

/// Field `number` of a `/proc/PID/stat` line as `proc(5)` numbers them
/// (1 the pid, 2 the name, 4 the parent, 14/15 user/system ticks), as a
/// number.
fn stat_field(stat: &str, number: usize) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(number - 3)?.parse().ok()
}
