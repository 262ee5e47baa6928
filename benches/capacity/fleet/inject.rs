//! The steady phase's load: single devices down and back up at the churn
//! rate, a whole site down halfway through, 1 % of every device down at
//! once at three quarters; every change recorded with the moment it was
//! handed to its agent, some followed through REST until they show.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Params;
use super::setup::World;
use super::watch::{self, Api};
use ward_benches::fleet_agent::Order;

/// How long an injected outage lasts before the device comes back.
const OUTAGE: Duration = Duration::from_secs(5);
/// One single-device change in this many is followed through REST.
const FOLLOW_EVERY: usize = 10;

/// A change handed to an agent.
#[derive(Clone, Copy, Debug)]
pub struct Change {
    /// The device.
    pub device_id: u64,
    /// Its new state is down.
    pub down: bool,
    /// When the agent was told.
    pub at: Instant,
    /// Part of a many-device change (a whole site, 1 % of every device,
    /// or their return), not a single device's.
    pub burst: bool,
}

/// What the steady phase did.
pub struct Injected {
    /// Every change, in order.
    pub changes: Vec<Change>,
    /// Change → visible in `GET /api/v1/devices/{id}`, for the followed
    /// ones (`None`: back up before REST showed it down).
    pub rest_lags: Vec<Option<Duration>>,
}

/// The controller's and the database's CPU and memory at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Resources {
    /// The controllers, summed.
    pub controller: watch::Usage,
    /// PostgreSQL's processes (zero on SQLite).
    pub postgres: watch::Usage,
}

impl Resources {
    /// Now.
    pub fn sample(controllers: &[u32], postgres: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            controller: watch::usage_of_all(controllers)?,
            postgres: postgres
                .map_or(Ok(watch::Usage::default()), |pid| watch::usage(pid, true))?,
        })
    }
}

struct Injector<'a> {
    world: &'a World,
    orders: &'a [mpsc::UnboundedSender<Order>],
    changes: Vec<Change>,
    /// (due, agent, devices, burst) to bring back up.
    restores: VecDeque<(Instant, usize, Vec<u64>, bool)>,
    down: std::collections::HashSet<u64>,
    followers: tokio::task::JoinSet<anyhow::Result<Option<Duration>>>,
}

impl Injector<'_> {
    fn set(
        &mut self,
        agent: usize,
        devices: Vec<u64>,
        down: bool,
        burst: bool,
    ) -> anyhow::Result<()> {
        let at = Instant::now();
        for &device_id in &devices {
            self.changes.push(Change {
                device_id,
                down,
                at,
                burst,
            });
            if down {
                self.down.insert(device_id);
            } else {
                self.down.remove(&device_id);
            }
        }
        let batch = devices.iter().map(|&id| (id, down)).collect();
        self.orders[agent]
            .send(Order::Set(batch))
            .map_err(|_| anyhow::anyhow!("agent {agent} stopped"))?;
        if down {
            self.restores
                .push_back((at + OUTAGE, agent, devices, burst));
        }
        Ok(())
    }

    fn restore_due(&mut self, now: Instant) -> anyhow::Result<()> {
        while self.restores.front().is_some_and(|(due, ..)| *due <= now) {
            let (_, agent, devices, burst) = self.restores.pop_front().expect("front");
            self.set(agent, devices, false, burst)?;
        }
        Ok(())
    }

    /// One device of a random agent, not down already, down; every
    /// [`FOLLOW_EVERY`]th followed through REST.
    fn one_down(&mut self) -> anyhow::Result<()> {
        let agent = fastrand::usize(..self.world.agents.len());
        let devices = &self.world.agents[agent].1;
        let device = devices[fastrand::usize(..devices.len())];
        if self.down.contains(&device) {
            return Ok(());
        }
        self.set(agent, vec![device], true, false)?;
        if self.changes.len().is_multiple_of(FOLLOW_EVERY) {
            self.followers
                .spawn(follow(self.world.any_api().clone(), device, Instant::now()));
        }
        Ok(())
    }

    /// A random 1 % of every device, down at once (each agent one batch).
    fn one_percent_down(&mut self) -> anyhow::Result<()> {
        for agent in 0..self.world.agents.len() {
            let picked: Vec<u64> = self.world.agents[agent]
                .1
                .iter()
                .copied()
                .filter(|device| !self.down.contains(device) && fastrand::u8(..100) == 0)
                .collect();
            if !picked.is_empty() {
                self.set(agent, picked, true, true)?;
            }
        }
        Ok(())
    }
}

/// `GET /api/v1/devices/{device}` every 10 ms until it shows `down`:
/// how long that took, or `None` if the device came back first (REST
/// never showed its outage).
async fn follow(api: Api, device: u64, from: Instant) -> anyhow::Result<Option<Duration>> {
    loop {
        let (body, _) = api.get(&format!("/api/v1/devices/{device}")).await?;
        if body["status"] == "down" {
            return Ok(Some(from.elapsed()));
        }
        if from.elapsed() > OUTAGE {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The steady phase: `params.churn` transitions a second for
/// `params.steady`; every outage ends before it returns.
pub async fn run(
    params: &Params,
    world: &World,
    orders: &[mpsc::UnboundedSender<Order>],
) -> anyhow::Result<Injected> {
    let mut injector = Injector {
        world,
        orders,
        changes: Vec::new(),
        restores: VecDeque::new(),
        down: Default::default(),
        followers: tokio::task::JoinSet::new(),
    };
    // Each single outage is two transitions.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(2.0 / params.churn));
    let started = Instant::now();
    let (mut site_done, mut percent_done) = (false, false);
    while started.elapsed() < params.steady {
        tick.tick().await;
        let now = Instant::now();
        injector.restore_due(now)?;
        let into = now - started;
        if !site_done && into >= params.steady / 2 {
            site_done = true;
            let agent = fastrand::usize(..world.agents.len());
            let devices = world.agents[agent].1.clone();
            let down: Vec<u64> = devices
                .into_iter()
                .filter(|d| !injector.down.contains(d))
                .collect();
            injector.set(agent, down, true, true)?;
        } else if !percent_done && into >= params.steady * 3 / 4 {
            percent_done = true;
            injector.one_percent_down()?;
        } else {
            injector.one_down()?;
        }
    }
    injector.restore_due(Instant::now() + OUTAGE)?;
    let mut rest_lags = Vec::new();
    while let Some(lag) = injector.followers.join_next().await {
        rest_lags.push(lag??);
    }
    Ok(Injected {
        changes: injector.changes,
        rest_lags,
    })
}
