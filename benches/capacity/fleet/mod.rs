//! `ward-capacity fleet`: one controller (its own process, on PostgreSQL
//! or SQLite) under a simulated fleet of agents in this process, each
//! speaking the real agent link with its own certificate and spool. It
//! measures a cold start (every agent connecting at once), then a steady
//! phase with churn, a whole site's outage and 1 % of all devices down at
//! once, watched by event-stream and REST clients; and it checks its own
//! outcome (every injected change seen by every event client, every
//! report acknowledged, every statistic read back from VictoriaMetrics)
//! before it prints a figure.
//!
//! ```text
//! ward-capacity fleet [--agents 1000] [--devices 200] [--churn 50]
//!     [--report-period 10] [--steady 60] [--sse 50] [--controllers 1] [--sqlite]
//! ```
//!
//! With several controllers (PostgreSQL only) the agents' links, the
//! event clients and the REST calls are spread over them in turn, and the
//! controllers' CPU and memory are their sum.
#![allow(
    clippy::disallowed_types,
    reason = "the harness's watchers share their logs under a mutex, far from any probe path"
)]

mod inject;
mod report;
mod setup;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;

use ward_benches::fleet_agent::{self as agent, Cadence, Order, SimAgent, Tally};
use watch::{Api, Seen, Timings};

/// How long after the steady phase the event clients may take to read
/// its last changes before the outcome check says what they missed.
const SEEN_WITHIN: Duration = Duration::from_secs(60);

/// The fleet and its load.
#[derive(Clone, Debug)]
pub struct Params {
    /// Simulated agents, one site each.
    pub agents: usize,
    /// Devices per agent.
    pub devices: usize,
    /// Transitions per second across the fleet in the steady phase.
    pub churn: f64,
    /// Each agent's statistics period.
    pub report_period: Duration,
    /// Length of the steady phase.
    pub steady: Duration,
    /// Event-stream clients.
    pub sse_clients: usize,
    /// Controller processes sharing the status database.
    pub controllers: usize,
    /// SQLite instead of PostgreSQL.
    pub sqlite: bool,
}

impl Params {
    /// From `--name value` arguments; the defaults are the issue's fleet.
    pub fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut params = Self {
            agents: 1000,
            devices: 200,
            churn: 50.0,
            report_period: Duration::from_secs(10),
            steady: Duration::from_secs(60),
            sse_clients: 50,
            controllers: 1,
            sqlite: false,
        };
        while let Some(name) = args.next() {
            if name == "--sqlite" {
                params.sqlite = true;
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            let number = || -> anyhow::Result<f64> {
                value
                    .parse()
                    .with_context(|| format!("{name} {value}: not a number"))
            };
            match name.as_str() {
                "--agents" => params.agents = number()? as usize,
                "--devices" => params.devices = number()? as usize,
                "--churn" => params.churn = number()?,
                "--report-period" => params.report_period = Duration::from_secs_f64(number()?),
                "--steady" => params.steady = Duration::from_secs_f64(number()?),
                "--sse" => params.sse_clients = number()? as usize,
                "--controllers" => params.controllers = number()? as usize,
                other => anyhow::bail!(
                    "unknown option `{other}`: --agents, --devices, --churn, --report-period, --steady, --sse, --controllers, --sqlite"
                ),
            }
        }
        anyhow::ensure!(
            params.agents > 0 && params.devices > 0 && params.churn > 0.0 && params.controllers > 0,
            "agents, devices, churn and controllers must be positive"
        );
        anyhow::ensure!(
            params.controllers == 1 || !params.sqlite,
            "several controllers share one PostgreSQL: --controllers needs PostgreSQL, not --sqlite"
        );
        Ok(params)
    }

    fn total(&self) -> u64 {
        (self.agents * self.devices) as u64
    }
}

/// Site of agent `index`.
pub fn site_name(index: usize) -> String {
    format!("branch-{index:04}")
}

/// The watchers running beside the fleet.
struct Watchers {
    seen: Vec<Arc<Mutex<Vec<Seen>>>>,
    timings: Arc<Mutex<[Timings; 4]>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Watchers {
    /// REST clients timing calls from now on.
    fn start(apis: &[Api], params: &Params, devices: Vec<u64>) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let timings = Arc::new(Mutex::new(Default::default()));
        tasks.spawn(watch::time_calls(
            apis.to_vec(),
            params.agents,
            devices,
            Arc::clone(&timings),
            stopped,
        ));
        Self {
            seen: Vec::new(),
            timings,
            stop,
            tasks,
        }
    }

    /// `clients` event-stream clients from now on, spread over `apis` in
    /// turn (after the cold start: its whole fleet coming up at once is
    /// more changes than a stream buffers, and a client is told to
    /// resync, as the dashboard is).
    fn follow_events(&mut self, apis: &[Api], clients: usize) {
        for api in apis.iter().cycle().take(clients) {
            let log = Arc::new(Mutex::new(Vec::new()));
            let stopped = self.stop.subscribe();
            self.tasks
                .spawn(api.clone().follow_events(Arc::clone(&log), stopped));
            self.seen.push(log);
        }
    }

    /// The REST timings so far, starting afresh.
    fn take_timings(&self) -> [Timings; 4] {
        std::mem::take(&mut *self.timings.lock().expect("timings"))
    }

    /// Waits until every event client has read every change, or
    /// [`SEEN_WITHIN`] (the outcome check then names what was not read;
    /// the lags say how late the rest came).
    async fn wait_until_seen(&self, changes: &[inject::Change]) {
        let until = Instant::now() + SEEN_WITHIN;
        while Instant::now() < until {
            let all_read = self.seen.iter().all(|log| {
                report::lags(changes, &log.lock().expect("seen"))
                    .iter()
                    .all(Option::is_some)
            });
            if all_read {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn stop(mut self) -> anyhow::Result<Vec<Vec<Seen>>> {
        let _ = self.stop.send(true);
        while let Some(done) = self.tasks.join_next().await {
            done??;
        }
        Ok(self
            .seen
            .iter()
            .map(|log| log.lock().expect("seen").clone())
            .collect())
    }
}

pub async fn run(params: Params) -> anyhow::Result<()> {
    let world = setup::build(&params).await?;
    let controller_pids: Vec<u32> = world.controllers.iter().map(|c| c.0.id()).collect();
    let postgres_pid = world.postgres.as_ref().and_then(|p| p.pid());
    let every_device: Vec<u64> = world.agents.iter().flat_map(|(_, d)| d.clone()).collect();
    let idle_memory = watch::usage_of_all(&controller_pids)?.memory;
    let mut watchers = Watchers::start(&world.apis, &params, every_device.clone());

    // Cold start: every agent at once.
    let tally = Arc::new(Tally::default());
    let cadence = Cadence {
        report_period: params.report_period,
        heartbeat: Duration::from_secs(1),
    };
    let mut orders = Vec::with_capacity(world.agents.len());
    let mut fleet = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (index, (id, devices)) in world.agents.iter().enumerate() {
        let (sender, receiver) = mpsc::unbounded_channel();
        orders.push(sender);
        let sim = SimAgent {
            settings: agent_settings(&world, index, id),
            devices: devices.clone(),
            cadence: cadence.clone(),
            tally: Arc::clone(&tally),
        };
        fleet.spawn(sim.run(receiver));
    }
    let curve = report::cold_start_curve(world.api(), params.total(), started).await?;
    let cold_timings = watchers.take_timings();
    let cold_memory = watch::usage_of_all(&controller_pids)?.memory;
    report::print_cold(&params, &curve, &cold_timings, (idle_memory, cold_memory));
    watchers.follow_events(&world.apis, params.sse_clients);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Steady: churn and outages, measured from end to end.
    let before = inject::Resources::sample(&controller_pids, postgres_pid)?;
    let steady_started = Instant::now();
    let injections = inject::run(&params, &world, &orders).await?;
    let after = inject::Resources::sample(&controller_pids, postgres_pid)?;
    let steady_timings = watchers.take_timings();
    // A build before group commit does not count its commits.
    let commits = match (
        world.metric_sum("ward_report_commits_total").await,
        world.metric_sum("ward_reports_committed_total").await,
    ) {
        (Ok(transactions), Ok(reports)) => Some((transactions, reports)),
        _ => None,
    };
    report::print_steady(
        &steady_timings,
        (before, after, steady_started.elapsed()),
        commits,
    );
    watchers.wait_until_seen(&injections.changes).await;
    let seen = watchers.stop().await?;
    report::ended_all_up(&world, &params).await?;

    // Outcome first, figures after.
    for sender in &orders {
        sender.send(Order::Finish).ok();
    }
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(done) = fleet.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
    .await;
    finished.context("agents still waiting for acks after 120 s")??;
    let outcome = report::check(&world, &params, &tally, &injections.changes, &seen).await?;
    report::print_outcome(&outcome, &injections.rest_lags);
    Ok(())
}

/// Agent `index`'s settings: it links to controller `index` modulo their
/// number first, the others after it in turn (as `controllers = [...]`).
fn agent_settings(world: &setup::World, index: usize, id: &str) -> ward_agent::run::RunSettings {
    let d = world.dir.path();
    let mut controllers = world.grpc_urls.clone();
    let first = index % controllers.len();
    controllers.rotate_left(first);
    ward_agent::run::RunSettings {
        controllers,
        agent_id: id.to_owned(),
        site: String::new(),
        spool_dir: agent::spool_dir(d, id),
        spool_statistics_max_bytes: 16 << 20,
        report_period: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        rate: None,
        send_path: Default::default(),
        tls: Some(ward_agent::run::config::TlsFiles {
            ca: d.join("ca.pem"),
            cert: d.join(format!("agent-{id}.pem")),
            key: d.join(format!("agent-{id}.key")),
        }),
    }
}
