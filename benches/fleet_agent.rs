//! One simulated agent of `ward-capacity fleet`: the real agent's link code (`ward_agent::run::link`,
//! mTLS with its own certificate) and spool (`ward_agent::spool`: every
//! report is spooled before it is sent, acknowledged reports leave it,
//! unacknowledged ones are replayed after a reconnect, then a resync of
//! every device's state), but no probing: its devices' states are what the
//! harness sets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use ward_agent::run::RunSettings;
use ward_agent::spool::{Kind, Spool, SpoolConfig};
use ward_proto::v1::{self as pb, agent_message, controller_message};

/// What the harness tells an agent.
#[derive(Debug)]
pub enum Order {
    /// Report these devices in this state (true: down), in one batch.
    Set(Vec<(u64, bool)>),
    /// Finish: wait until everything spooled is acknowledged, then close.
    Finish,
}

/// What every agent adds up, for the harness to check.
#[derive(Debug, Default)]
pub struct Tally {
    /// Streams opened (the first and every reconnect).
    pub connects: AtomicU64,
    /// Reports acknowledged (transitions and statistics).
    pub acked: AtomicU64,
    /// Device statistics in acknowledged statistics batches.
    pub statistics_acked: AtomicU64,
    /// Entries the controller rejected.
    pub rejected: AtomicU64,
    /// Streams that ended in an error or a refusal.
    pub link_errors: AtomicU64,
}

/// How an agent reports.
#[derive(Clone, Debug)]
pub struct Cadence {
    /// Statistics period.
    pub report_period: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
}

/// A simulated agent's fixed parts.
pub struct SimAgent {
    /// Its link settings (controller URL, id, site, spool, TLS files).
    pub settings: RunSettings,
    /// The devices it expects in its snapshot.
    pub devices: Vec<u64>,
    /// Its reporting cadence.
    pub cadence: Cadence,
    /// Shared outcome counters.
    pub tally: Arc<Tally>,
}

struct Live {
    spool: Spool,
    /// Device id → down.
    states: BTreeMap<u64, bool>,
    /// Statistics batches in the spool: seq → devices in it.
    statistics_seqs: BTreeMap<u64, u64>,
    last_acked: u64,
}

impl SimAgent {
    /// Runs until [`Order::Finish`] and everything is acknowledged;
    /// reconnects after a broken stream, as the real agent.
    pub async fn run(self, mut orders: mpsc::UnboundedReceiver<Order>) -> anyhow::Result<()> {
        let (spool, _) = Spool::open(
            &self.settings.spool_dir,
            SpoolConfig {
                statistics_max_bytes: 16 << 20,
            },
            || format!("sim-{}", fastrand::u64(..)),
        )?;
        let mut live = Live {
            spool,
            states: self.devices.iter().map(|&id| (id, false)).collect(),
            statistics_seqs: BTreeMap::new(),
            last_acked: 0,
        };
        let mut finishing = false;
        loop {
            match self.session(&mut live, &mut orders, &mut finishing).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    self.tally.link_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(agent = %self.settings.agent_id, %error, "link broken; redialling");
                    tokio::time::sleep(Duration::from_millis(500 + fastrand::u64(..500))).await;
                }
            }
        }
    }

    async fn session(
        &self,
        live: &mut Live,
        orders: &mut mpsc::UnboundedReceiver<Order>,
        finishing: &mut bool,
    ) -> anyhow::Result<()> {
        let url = &self.settings.controllers[0];
        let hello = pb::Hello {
            agent_id: self.settings.agent_id.clone(),
            site: self.settings.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            boot_id: live.spool.boot_id().to_owned(),
            capabilities: Some(pb::Capabilities {
                raw_sockets: true,
                ipv4: true,
                ipv6: true,
                ..Default::default()
            }),
            last_acked_seq: live.last_acked,
            assignment_generation: 0,
            sent_at_unix_ms: ward_controller::time::now_ms(),
            protocol: ward_proto::PROTOCOL_VERSION,
        };
        let mut link = ward_agent::run::link::open(&self.settings, url, hello).await?;
        self.tally.connects.fetch_add(1, Ordering::Relaxed);
        let snapshot = match link.inbound.recv().await.flatten().transpose()? {
            Some(pb::ControllerMessage {
                kind: Some(controller_message::Kind::Snapshot(snapshot)),
            }) => snapshot,
            other => anyhow::bail!("expected a snapshot first, got {other:?}"),
        };
        let mut assigned: Vec<u64> = snapshot.targets.iter().map(|t| t.device_id).collect();
        assigned.sort_unstable();
        anyhow::ensure!(
            assigned == self.devices,
            "{}: snapshot of {} devices, expected {}",
            self.settings.agent_id,
            assigned.len(),
            self.devices.len()
        );
        for record in block(|| live.spool.unacked())? {
            link.outbound
                .send(pb::AgentMessage::decode(record.payload.as_slice())?)
                .await?;
        }
        let resync: Vec<(u64, bool)> = live.states.iter().map(|(&id, &down)| (id, down)).collect();
        self.report(live, &link, resync).await?;
        let mut statistics = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cadence.report_period.mul_f64(fastrand::f64()),
            self.cadence.report_period,
        );
        let mut heartbeat = tokio::time::interval(self.cadence.heartbeat);
        loop {
            if *finishing && block(|| live.spool.unacked())?.is_empty() {
                return Ok(());
            }
            tokio::select! {
                inbound = link.inbound.recv() => self.take(live, inbound.flatten())?,
                order = orders.recv(), if !*finishing => match order {
                    Some(Order::Set(changes)) => self.report(live, &link, changes).await?,
                    Some(Order::Finish) | None => *finishing = true,
                },
                _ = statistics.tick(), if !*finishing => self.statistics(live, &link).await?,
                _ = heartbeat.tick() => {
                    let beat = agent_message::Kind::Heartbeat(pb::Heartbeat {
                        sent_at_unix_ms: ward_controller::time::now_ms(),
                        counters: Some(pb::EngineCounters::default()),
                    });
                    link.outbound.send(pb::AgentMessage { kind: Some(beat) }).await?;
                }
            }
        }
    }

    /// A controller message: acks leave the spool; updates and refusals
    /// are not expected here.
    fn take(
        &self,
        live: &mut Live,
        inbound: Option<Result<pb::ControllerMessage, tonic::Status>>,
    ) -> anyhow::Result<()> {
        let message = inbound
            .transpose()?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        match message.kind {
            Some(controller_message::Kind::Ack(ack)) => {
                let newly: Vec<u64> = live
                    .statistics_seqs
                    .range(..=ack.acked_seq)
                    .map(|(&seq, _)| seq)
                    .collect();
                for seq in newly {
                    let devices = live.statistics_seqs.remove(&seq).unwrap_or(0);
                    self.tally
                        .statistics_acked
                        .fetch_add(devices, Ordering::Relaxed);
                }
                let acked = ack.acked_seq.saturating_sub(live.last_acked);
                self.tally.acked.fetch_add(acked, Ordering::Relaxed);
                self.tally
                    .rejected
                    .fetch_add(ack.rejected.len() as u64, Ordering::Relaxed);
                live.last_acked = live.last_acked.max(ack.acked_seq);
                block(|| live.spool.ack(ack.acked_seq))?;
                Ok(())
            }
            Some(controller_message::Kind::Refusal(refusal)) => {
                anyhow::bail!("refused: {}", refusal.message)
            }
            other => anyhow::bail!("unexpected from the controller: {other:?}"),
        }
    }

    /// One transition batch of `changes`, spooled then sent.
    async fn report(
        &self,
        live: &mut Live,
        link: &ward_agent::run::link::Link,
        changes: Vec<(u64, bool)>,
    ) -> anyhow::Result<()> {
        let now_us = ward_controller::time::now_ms() * 1000;
        let transitions = changes
            .iter()
            .map(|&(device_id, down)| {
                live.states.insert(device_id, down);
                let (state, reason) = if down {
                    (pb::DeviceState::Down, pb::TransitionReason::Timeouts)
                } else {
                    (pb::DeviceState::Up, pb::TransitionReason::Replies)
                };
                pb::Transition {
                    device_id,
                    state: state.into(),
                    probed_at_unix_us: now_us,
                    last_rtt_us: (!down).then_some(800),
                    reason: reason.into(),
                    ..Default::default()
                }
            })
            .collect();
        let message = |seq| pb::AgentMessage {
            kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
                seq,
                transitions,
                traces: Vec::new(),
            })),
        };
        self.spool_and_send(live, link, Kind::Transitions, message)
            .await
    }

    /// One statistics batch: ten probes per device in the period, every
    /// one answered unless the device is down.
    async fn statistics(
        &self,
        live: &mut Live,
        link: &ward_agent::run::link::Link,
    ) -> anyhow::Result<()> {
        let period_ms = u32::try_from(self.cadence.report_period.as_millis())?;
        let devices: Vec<pb::DeviceStatistics> = live
            .states
            .iter()
            .map(|(&device_id, &down)| pb::DeviceStatistics {
                device_id,
                sent: 10,
                received: if down { 0 } else { 10 },
                rtt_min_us: 700,
                rtt_avg_us: 800,
                rtt_max_us: 950,
                jitter_us: 40,
                rtt_p50_us: Some(790),
                rtt_p90_us: Some(900),
            })
            .collect();
        let count = devices.len() as u64;
        let message = |seq| pb::AgentMessage {
            kind: Some(agent_message::Kind::Statistics(pb::StatisticsBatch {
                seq,
                period_start_unix_ms: ward_controller::time::now_ms() - i64::from(period_ms),
                period_ms,
                devices,
            })),
        };
        let seq = live.spool.next_seq();
        live.statistics_seqs.insert(seq, count);
        self.spool_and_send(live, link, Kind::Statistics, message)
            .await
    }

    async fn spool_and_send(
        &self,
        live: &mut Live,
        link: &ward_agent::run::link::Link,
        kind: Kind,
        message: impl FnOnce(u64) -> pb::AgentMessage,
    ) -> anyhow::Result<()> {
        let mut encoded = None;
        block(|| {
            live.spool.append(kind, |seq| {
                let message = message(seq);
                let bytes = message.encode_to_vec();
                encoded = Some(message);
                bytes
            })
        })?;
        let message = encoded.expect("encoded while appended");
        link.outbound.send(message).await?;
        Ok(())
    }
}

/// Spool file I/O (`fsync` for transitions) off the async workers, as the
/// real agent does it.
fn block<T>(work: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    tokio::task::block_in_place(work)
}

/// The spool directory of agent `id` under `dir`.
pub fn spool_dir(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join(format!("spool-{id}"))
}
