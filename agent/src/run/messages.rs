//! What the agent says and hears on its link: its Hello, transitions and
//! statistics spooled then sent, heartbeats, the spool replayed after a
//! (re)connect, and the controller's messages (assignments, acks,
//! refusals) handled.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use tokio::time::Instant;
use tracing::{error, info, warn};
use ward_proto::v1::{self as pb, agent_message, controller_message};

use super::{
    Agent, FIRST_BACKOFF, REFUSED_BACKOFF, RunError, SEND_TIMEOUT, SLOW_REPORT, TRACE_REPORT_DELAY,
    convert, now_ms, off_the_workers,
};
use crate::engine::Check;
use crate::engine::trace::TraceResult;
use crate::packet::Family;
use crate::prober::Control;
use crate::spool::Kind;
use crate::tracer::TraceThread;

impl Agent {
    pub(super) fn hello(&self) -> pb::Hello {
        let families = self.prober.families();
        let features = self.prober.features();
        let tcp = self.prober.tcp_families();
        pb::Hello {
            agent_id: self.settings.agent_id.clone(),
            site: self.settings.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            boot_id: self.spool.boot_id().to_owned(),
            capabilities: Some(pb::Capabilities {
                raw_sockets: features
                    .iter()
                    .any(|(_, f)| f.kind == crate::sys::SocketKind::Raw),
                ipv4: families.contains(&Family::V4),
                ipv6: families.contains(&Family::V6),
                kernel_timestamps: features.iter().all(|(_, f)| f.kernel_timestamps),
                kernel_filter: features.iter().all(|(_, f)| f.kernel_filter),
                tcp_ipv4: tcp.contains(&Family::V4),
                tcp_ipv6: tcp.contains(&Family::V6),
            }),
            last_acked_seq: self.last_acked_seq,
            assignment_generation: self.generation,
            sent_at_unix_ms: now_ms(),
            protocol: ward_proto::PROTOCOL_VERSION,
        }
    }

    /// Sends `message` if linked; a failure breaks the link (the message
    /// is in the spool and is replayed).
    pub(super) async fn send(&mut self, message: pb::AgentMessage) {
        let Some(outbound) = &self.outbound else {
            return;
        };
        match tokio::time::timeout(SEND_TIMEOUT, outbound.send(message)).await {
            Ok(Ok(())) => {}
            _ => self.link_broken = true,
        }
    }

    /// Spools `message` (built for its sequence number) and sends it.
    pub(super) async fn spool_and_send(
        &mut self,
        kind: Kind,
        message: impl FnOnce(u64) -> pb::AgentMessage,
    ) -> Result<(), RunError> {
        let mut built = None;
        let spool = &mut self.spool;
        off_the_workers(|| {
            spool.append(kind, |seq| {
                let message = message(seq);
                let bytes = message.encode_to_vec();
                built = Some(message);
                bytes
            })
        })
        .map_err(RunError::SpoolWrite)?;
        if let Some(message) = built {
            self.send(message).await;
        }
        Ok(())
    }

    pub(super) async fn report_transitions(
        &mut self,
        transitions: Vec<pb::Transition>,
    ) -> Result<(), RunError> {
        for transition in &transitions {
            let previous = self
                .latest
                .insert(transition.device_id, transition.clone())
                .map(|previous| previous.state);
            self.trace_if_failed(transition, previous);
        }
        let started = std::time::Instant::now();
        let count = transitions.len();
        let traces = self.take_traces();
        let reported = self
            .spool_and_send(Kind::Transitions, |seq| pb::AgentMessage {
                kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
                    seq,
                    transitions,
                    traces,
                })),
            })
            .await;
        let elapsed = started.elapsed();
        if elapsed > SLOW_REPORT {
            warn!(
                transitions = count,
                elapsed_ms = elapsed.as_millis(),
                "slow transition report (spool sync and send)"
            );
        }
        reported
    }

    /// Asks for the path to a device that just went down, unreachable or
    /// degraded.
    fn trace_if_failed(&self, transition: &pb::Transition, previous: Option<i32>) {
        let failed = [
            pb::DeviceState::Down,
            pb::DeviceState::Unreachable,
            pb::DeviceState::Degraded,
        ]
        .map(i32::from);
        if !failed.contains(&transition.state) || previous == Some(transition.state) {
            return;
        }
        if let (Some(tracer), Some((spec, _))) =
            (&self.tracer, self.assigned.get(&transition.device_id))
        {
            let tcp_port = match spec.check {
                Check::Icmp => None,
                Check::Tcp { port, .. } | Check::IcmpOrTcp { port, .. } => Some(port),
            };
            tracer.request(transition.device_id, spec.address, tcp_port);
        }
    }

    /// Keeps a finished trace for the next report (see `Agent::traced`).
    pub(super) fn hold_trace(&mut self, trace: TraceResult) {
        self.traced.push((trace, now_ms()));
        self.traces_due
            .get_or_insert_with(|| Instant::now() + TRACE_REPORT_DELAY);
    }

    /// The traces held, as reported (none are held after).
    fn take_traces(&mut self) -> Vec<pb::Trace> {
        self.traces_due = None;
        std::mem::take(&mut self.traced)
            .iter()
            .map(|(trace, traced_at_unix_ms)| convert::trace(trace, *traced_at_unix_ms))
            .collect()
    }

    /// Reports the traces held by themselves (no transition came to take
    /// them): spooled like transitions, so they reach the controller as
    /// surely.
    pub(super) async fn report_traces(&mut self) -> Result<(), RunError> {
        let traces = self.take_traces();
        if traces.is_empty() {
            return Ok(());
        }
        self.spool_and_send(Kind::Transitions, |seq| pb::AgentMessage {
            kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
                seq,
                transitions: Vec::new(),
                traces,
            })),
        })
        .await
    }

    pub(super) async fn report_statistics(&mut self) -> Result<(), RunError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if self.prober.control(Control::TakeStatistics(reply)).is_err() {
            warn!("prober busy; statistics skipped this period");
            return Ok(());
        }
        let Ok(Ok(statistics)) =
            tokio::task::spawn_blocking(move || answer.recv_timeout(Duration::from_secs(5))).await
        else {
            warn!("prober did not hand out statistics; skipped this period");
            return Ok(());
        };
        let end = now_ms();
        let start = std::mem::replace(&mut self.period_start_ms, end);
        if statistics.is_empty() {
            return Ok(());
        }
        let devices = statistics
            .iter()
            .map(|(id, stats, quantiles)| convert::statistics(*id, stats, *quantiles))
            .collect();
        self.spool_and_send(Kind::Statistics, |seq| pb::AgentMessage {
            kind: Some(agent_message::Kind::Statistics(pb::StatisticsBatch {
                seq,
                period_start_unix_ms: start,
                period_ms: u32::try_from(end - start).unwrap_or(u32::MAX),
                devices,
            })),
        })
        .await
    }

    pub(super) async fn heartbeat(&mut self) {
        let counters = convert::counters(
            self.prober.counters(),
            self.tracer.as_ref().map(TraceThread::stats),
            self.spool.records(),
            self.spool.statistics_dropped(),
        );
        self.send(pb::AgentMessage {
            kind: Some(agent_message::Kind::Heartbeat(pb::Heartbeat {
                sent_at_unix_ms: now_ms(),
                counters: Some(counters),
            })),
        })
        .await;
    }

    /// After a connect: everything unacknowledged, then the resync batch.
    pub(super) async fn replay(&mut self) -> Result<(), RunError> {
        let spool = &self.spool;
        let records = off_the_workers(|| spool.unacked()).map_err(RunError::SpoolWrite)?;
        if !records.is_empty() {
            info!(records = records.len(), "replaying the spool");
        }
        for record in records {
            match pb::AgentMessage::decode(record.payload.as_slice()) {
                Ok(message) => self.send(message).await,
                Err(error) => {
                    error!(seq = record.seq, %error, "spooled record does not decode; skipped")
                }
            }
            if self.link_broken {
                return Ok(());
            }
        }
        let mut resync: Vec<pb::Transition> = self
            .latest
            .values()
            .filter(|t| self.assigned.contains_key(&t.device_id))
            .cloned()
            .collect();
        if resync.is_empty() {
            return Ok(());
        }
        resync.sort_by_key(|t| t.device_id);
        self.spool_and_send(Kind::Transitions, |seq| pb::AgentMessage {
            kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
                seq,
                transitions: resync,
                traces: Vec::new(),
            })),
        })
        .await
    }

    pub(super) async fn handle(
        &mut self,
        message: pb::ControllerMessage,
        backoff: &mut Duration,
        reconnect_at: &mut Instant,
    ) -> Result<(), RunError> {
        match message.kind {
            Some(controller_message::Kind::Snapshot(snapshot)) => {
                *backoff = FIRST_BACKOFF;
                let wanted: std::collections::HashSet<u64> =
                    snapshot.targets.iter().map(|t| t.device_id).collect();
                let gone: Vec<u64> = self
                    .assigned
                    .keys()
                    .filter(|id| !wanted.contains(id))
                    .copied()
                    .collect();
                self.apply_assignment(&snapshot.targets, &gone).await;
                self.generation = snapshot.generation;
                info!(
                    devices = self.assigned.len(),
                    generation = self.generation,
                    controller_protocol = snapshot.controller_protocol.max(1),
                    "assignment received"
                );
            }
            Some(controller_message::Kind::Update(update)) => {
                if update.generation != self.generation + 1 {
                    warn!(
                        expected = self.generation + 1,
                        got = update.generation,
                        "assignment update out of order; reconnecting for a fresh snapshot"
                    );
                    self.link_broken = true;
                    return Ok(());
                }
                self.apply_assignment(&update.upserts, &update.removed_device_ids)
                    .await;
                self.generation = update.generation;
                info!(
                    upserts = update.upserts.len(),
                    removed = update.removed_device_ids.len(),
                    devices = self.assigned.len(),
                    "assignment updated"
                );
            }
            Some(controller_message::Kind::Ack(ack)) => {
                self.last_acked_seq = self.last_acked_seq.max(ack.acked_seq);
                let spool = &mut self.spool;
                off_the_workers(|| spool.ack(ack.acked_seq)).map_err(RunError::SpoolWrite)?;
                if !ack.rejected.is_empty() {
                    self.counters
                        .entries_rejected
                        .fetch_add(ack.rejected.len() as u64, Ordering::Relaxed);
                    warn!(seq = ack.acked_seq, rejected = ?ack.rejected, "the controller refused report entries");
                }
            }
            Some(controller_message::Kind::Refusal(refusal)) => {
                error!(code = ?pb::RefusalCode::try_from(refusal.code).unwrap_or_default(), reason = %refusal.message, "the controller refused this agent");
                self.link_broken = true;
                *reconnect_at = Instant::now() + REFUSED_BACKOFF;
            }
            None => warn!("empty message from the controller; ignored"),
        }
        Ok(())
    }

    /// Starts probing `upserts` and stops `removed`.
    pub(super) async fn apply_assignment(&mut self, upserts: &[pb::ProbeTarget], removed: &[u64]) {
        for &id in removed {
            if self.assigned.remove(&id).is_some() {
                self.control(Control::Remove { id }).await;
            }
            self.latest.remove(&id);
        }
        for target in upserts {
            match convert::target_spec(target) {
                Ok(spec) => {
                    let quality = convert::quality(target);
                    if self.assigned.get(&target.device_id) != Some(&(spec, quality)) {
                        self.assigned.insert(target.device_id, (spec, quality));
                        self.control(Control::Upsert {
                            id: target.device_id,
                            spec,
                            known: convert::known_status(target),
                            quality,
                            known_level: convert::known_level(target),
                        })
                        .await;
                    }
                }
                Err(error) => {
                    self.counters
                        .targets_refused
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(%error, "assigned device cannot be probed");
                }
            }
        }
    }

    /// Hands `control` to the prober, waiting while its queue is full.
    pub(super) async fn control(&self, mut control: Control) {
        loop {
            match self.prober.control(control) {
                Ok(()) => return,
                Err(back) => {
                    control = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}
