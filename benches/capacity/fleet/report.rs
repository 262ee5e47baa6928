//! The run's outcome, checked before anything is printed, and its figures
//! as rows for docs/BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Params;
use super::inject::{Change, Resources};
use super::setup::World;
use super::watch::{Api, CALLS, Seen, Timings};
use ward_benches::fleet_agent::Tally;

/// The time-series backlog must be written within this long after the
/// run.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
/// A cold start gives up after this long.
const COLD_START_LIMIT: Duration = Duration::from_secs(300);

/// Devices `up` in the summary every half second from `started` until all
/// `total` are: (seconds since the agents started, devices up).
pub async fn cold_start_curve(
    api: &Api,
    total: u64,
    started: Instant,
) -> anyhow::Result<Vec<(f64, u64)>> {
    let mut curve = Vec::new();
    loop {
        let (summary, _) = api.get("/api/v1/summary").await?;
        let up = summary["up"].as_u64().context("summary without up")?;
        curve.push((started.elapsed().as_secs_f64(), up));
        if up == total {
            return Ok(curve);
        }
        anyhow::ensure!(
            started.elapsed() < COLD_START_LIMIT,
            "cold start: {up} of {total} devices up after {COLD_START_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the checks found, for the figures.
pub struct Outcome {
    /// Change → seen on the event stream, every client, every change:
    /// single devices' changes, then the bursts' (a site, 1 %).
    pub sse_lags: [Vec<Duration>; 2],
    /// Statistics acknowledged to the agents, and read back.
    pub statistics: (u64, u64),
    /// Rows in the controller's time-series spool when the run ended
    /// (VictoriaMetrics behind), and how long they took to be written.
    pub backlog: (f64, Duration),
    /// Reconnects beyond the first connection of each agent.
    pub reconnects: u64,
}

/// For each of `changes`, how long after it an event client first read it
/// (`log`: what the client read, in order); `None` if it never did.
pub fn lags(changes: &[Change], log: &[Seen]) -> Vec<Option<Duration>> {
    let mut read: HashMap<(u64, bool), Vec<Instant>> = HashMap::new();
    for seen in log {
        read.entry((seen.device_id, seen.down))
            .or_default()
            .push(seen.at);
    }
    changes
        .iter()
        .map(|change| {
            let times = read.get(&(change.device_id, change.down))?;
            let first = times.partition_point(|at| *at < change.at);
            times.get(first).map(|at| *at - change.at)
        })
        .collect()
}

/// Checks that every change reached every event client, that nothing was
/// rejected, and that every acknowledged statistic is in VictoriaMetrics
/// (that the fleet ended all up is [`ended_all_up`]).
pub async fn check(
    world: &World,
    params: &Params,
    tally: &Tally,
    changes: &[Change],
    seen: &[Vec<Seen>],
) -> anyhow::Result<Outcome> {
    let rejected = tally.rejected.load(Ordering::Relaxed);
    let reconnects = tally.connects.load(Ordering::Relaxed) - params.agents as u64;
    let mut sse_lags = [Vec::new(), Vec::new()];
    for (client, log) in seen.iter().enumerate() {
        for (change, lag) in changes.iter().zip(lags(changes, log)) {
            let Some(lag) = lag else {
                // What the controller recorded of the device says why.
                let (history, _) = world
                    .api()
                    .get(&format!(
                        "/api/v1/history?device={}&limit=10",
                        change.device_id
                    ))
                    .await?;
                anyhow::bail!(
                    "event client {client} never saw device {} {} ({} entries rejected, \
                     {reconnects} reconnects; its history, newest first: {history})",
                    change.device_id,
                    if change.down { "down" } else { "up" },
                    rejected,
                );
            };
            sse_lags[usize::from(change.burst)].push(lag);
        }
    }
    anyhow::ensure!(rejected == 0, "the controller rejected {rejected} entries");
    let mut backlog = (0.0, Duration::ZERO);
    for api in &world.apis {
        let (rows, took) = spool_drained(api).await?;
        backlog = (backlog.0 + rows, backlog.1.max(took));
    }
    let acked = tally.statistics_acked.load(Ordering::Relaxed);
    let stored = statistics_stored(world, acked).await?;
    anyhow::ensure!(
        stored == acked,
        "VictoriaMetrics holds {stored} device statistics; {acked} were acknowledged"
    );
    Ok(Outcome {
        sse_lags,
        statistics: (acked, stored),
        backlog,
        reconnects,
    })
}

/// Waits until the controller's time-series spool is empty (what
/// VictoriaMetrics could not take during the run, sent since), at most
/// [`DRAIN_LIMIT`]: the rows it held at the end and how long it took.
async fn spool_drained(api: &Api) -> anyhow::Result<(f64, Duration)> {
    const SPOOLED: &str = "ward_tsdb_spooled_rows";
    let started = Instant::now();
    let at_end = api.metric(SPOOLED).await?;
    loop {
        let spooled = api.metric(SPOOLED).await?;
        if spooled == 0.0 {
            return Ok((at_end, started.elapsed()));
        }
        anyhow::ensure!(
            started.elapsed() < DRAIN_LIMIT,
            "the controller's time-series spool still holds {spooled} rows {DRAIN_LIMIT:?} after the run ({at_end} at its end)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the summary says every device is up, as the fleet ended
/// its outages, for at most 30 s; checked while every agent is still
/// connected (an agent that finished leaves its site to the offline rule).
pub async fn ended_all_up(world: &World, params: &Params) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (summary, _) = world.api().get("/api/v1/summary").await?;
        if summary["up"].as_u64() == Some(params.total()) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fleet did not end all up: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Samples of `ward_probe_sent_total` in VictoriaMetrics (one per device
/// statistic), once it holds `expected` or 60 s have passed.
async fn statistics_stored(world: &World, expected: u64) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/query", world.victoria_metrics.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: serde_json::Value = client
            .get(&url)
            .query(&[("query", "sum(count_over_time(ward_probe_sent_total[1d]))")])
            .send()
            .await?
            .json()
            .await?;
        let stored = body["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse::<f64>()? as u64;
        if stored >= expected || Instant::now() > deadline {
            return Ok(stored);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn quantiles(lags: &[Duration]) -> String {
    let timings = Timings {
        calls: lags.to_vec(),
    };
    format!(
        "{:.0} / {:.0} / {:.0}",
        timings.quantile_ms(0.5),
        timings.quantile_ms(0.99),
        timings.quantile_ms(1.0)
    )
}

fn p99s(timings: &[Timings; 4]) -> String {
    timings
        .iter()
        .map(|t| format!("{:.0}", t.quantile_ms(0.99)))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The cold start's figures as Markdown, printed as soon as measured
/// (the header says they hold only if the outcome line at the end does).
pub fn print_cold(
    params: &Params,
    curve: &[(f64, u64)],
    timings: &[Timings; 4],
    (idle_memory, cold_memory): (u64, u64),
) {
    let total = params.total();
    let all_up = curve.last().map_or(0.0, |(t, _)| *t);
    println!(
        "fleet: {} agents × {} devices = {total}, {} controller(s) on {}, churn {}/s, statistics every {:?}, {} event clients",
        params.agents,
        params.devices,
        params.controllers,
        if params.sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        params.churn,
        params.report_period,
        params.sse_clients
    );
    println!(
        "(figures printed as measured; they hold only if the outcome line at the end says the outcome checks passed)"
    );
    println!("calls timed ({}): {}", CALLS.len(), CALLS.join(" / "));
    println!("| phase | figure |\n|---|---|");
    println!(
        "| cold start | every device up after {all_up:.1} s; REST p99 during it (ms): {} |",
        p99s(timings)
    );
    println!(
        "| cold start | controllers' memory (PSS, summed) {:.0} MiB idle → {:.0} MiB with every agent connected ({:.1} KiB per device) |",
        mib(idle_memory),
        mib(cold_memory),
        (cold_memory.saturating_sub(idle_memory)) as f64 / 1024.0 / total as f64
    );
    let curve: Vec<String> = curve
        .iter()
        .step_by(2)
        .map(|(t, up)| format!("{t:.0}s:{up}"))
        .collect();
    println!(
        "| cold start | curve (s: devices up): {} |",
        curve.join(" ")
    );
}

/// The steady phase's resources and REST timings, as measured, and the
/// controller's status commits (transactions, reports) when it counts them.
pub fn print_steady(
    timings: &[Timings; 4],
    (before, after, span): (Resources, Resources, Duration),
    commits: Option<(f64, f64)>,
) {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cores = |a: u64, b: u64| (b - a) as f64 / ticks / span.as_secs_f64();
    println!(
        "| steady | controllers (summed) {:.2} cores, {:.0} MiB; PostgreSQL {:.2} cores, {:.0} MiB (PSS) |",
        cores(before.controller.ticks, after.controller.ticks),
        mib(after.controller.memory),
        cores(before.postgres.ticks, after.postgres.ticks),
        mib(after.postgres.memory)
    );
    println!(
        "| steady | REST p99 (ms): {} ({} calls) |",
        p99s(timings),
        timings.iter().map(|t| t.calls.len()).sum::<usize>()
    );
    if let Some((transactions, reports)) = commits {
        println!(
            "| whole run | status commits: {transactions:.0} transactions for {reports:.0} agents' reports ({:.1} a commit) |",
            reports / transactions.max(1.0)
        );
    }
}

/// The figures known once the outcome is checked.
pub fn print_outcome(outcome: &Outcome, rest_lags: &[Option<Duration>]) {
    let [single, burst] = &outcome.sse_lags;
    let all: Vec<Duration> = single.iter().chain(burst).copied().collect();
    println!(
        "| steady | change → event stream p50 / p99 / max (ms): {} over {} sightings; single devices {} ({}), a site or 1 % at once {} ({}) |",
        quantiles(&all),
        all.len(),
        quantiles(single),
        single.len(),
        quantiles(burst),
        burst.len()
    );
    let shown: Vec<Duration> = rest_lags.iter().flatten().copied().collect();
    println!(
        "| steady | change → REST p50 / p99 / max (ms): {} over {} changes ({} back up before REST showed them down) |",
        quantiles(&shown),
        shown.len(),
        rest_lags.len() - shown.len()
    );
    println!(
        "| outcome | checks passed; statistics acknowledged {} = read back {} ({:.0} rows spooled at the end, written {:.0} s later); reconnects {} |",
        outcome.statistics.0,
        outcome.statistics.1,
        outcome.backlog.0,
        outcome.backlog.1.as_secs_f64(),
        outcome.reconnects
    );
}
