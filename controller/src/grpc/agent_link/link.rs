//! One agent's link once admitted: its assignment sent and kept current,
//! its sight settled, its reports screened and applied in stream order:
//! transitions at once, statistics handed to the time-series writer in
//! the background (one batch at a time; the writer spools what
//! VictoriaMetrics cannot take yet, so it waits only on its own encoding),
//! and acknowledged cumulatively once done (`acks`).

use std::collections::HashMap;

use tokio_stream::StreamExt as _;
use tonic::{Status as GrpcStatus, Streaming};
use tracing::{info, warn};
use ward_domain::agent_clock::LinkClock;
use ward_proto::v1::{
    self as pb, AgentMessage, DeviceState, RejectionReason, agent_message, controller_message,
};

use super::acks::AckQueue;
use super::{
    LinkServices, RefusalCode, SILENCE_LIMIT, SLOW_MESSAGE, Sender, message, refuse,
    revoked_refusal,
};
use crate::services::Taken;
use crate::store::{AgentRecord, Device, ReportedTransition, Status, TransitionReport};
use crate::time::now_ms;
use crate::tsdb::{DeviceLabels, DeviceStatistics, StatisticsReport, WriterStopped};
use ward_domain::check::Check;
use ward_domain::model::Degradation;
use ward_domain::quality::Thresholds;
use ward_domain::sight::Blindness;
use ward_domain::trace::Trace;

pub(super) struct Link {
    pub(super) services: LinkServices,
    pub(super) agent: AgentRecord,
    /// The families it opened ICMP sockets for.
    pub(super) probe_families: Vec<&'static str>,
    /// What it could not probe when last settled (`None`: not yet).
    pub(super) blindness: Option<Blindness>,
    /// The boot id of the controller's reports about this link's sight.
    pub(super) sight_reports: String,
    pub(super) boot_id: String,
    /// What the agent was told to probe, by device id.
    pub(super) assigned: HashMap<i64, pb::ProbeTarget>,
    /// Their time-series labels; `up` follows this link's reports.
    pub(super) labels: HashMap<i64, DeviceLabels>,
    pub(super) generation: u64,
    pub(super) outbound: Sender,
    /// The fingerprint of its client certificate (none in plaintext).
    pub(super) fingerprint: Option<String>,
    /// The agent's clock against ours: how its reports are dated.
    pub(super) clock: LinkClock,
    /// Reports received and not yet acknowledged.
    pub(super) acks: AckQueue,
    /// The statistics batch being handed to the time-series writer.
    pub(super) statistics_in_flight: Option<StatisticsInFlight>,
}

/// A statistics batch on its way to the time-series writer.
pub(super) struct StatisticsInFlight {
    seq: u64,
    rejected: Vec<pb::RejectedEntry>,
    handing: tokio::task::JoinHandle<Result<usize, WriterStopped>>,
}

impl Link {
    pub(super) async fn run(
        &mut self,
        inbound: &mut Streaming<AgentMessage>,
    ) -> Result<(), GrpcStatus> {
        let mut inventory = self.services.core.live.inventory_changes();
        inventory.mark_unchanged();
        let mut revocations = self.services.core.live.revocations();
        revocations.mark_unchanged();
        let stopped = self.services.core.live.stopped();
        tokio::pin!(stopped);
        self.send_assignment().await?;
        loop {
            tokio::select! {
                () = &mut stopped => {
                    return Err(GrpcStatus::unavailable("the controller is shutting down; reconnect shortly"));
                }
                next = tokio::time::timeout(SILENCE_LIMIT, inbound.next()) => match next {
                    Err(_) => return Err(GrpcStatus::deadline_exceeded(format!("no message from the agent for {SILENCE_LIMIT:?}"))),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(status))) => {
                        warn!(agent = %self.agent.id, %status, "agent stream failed");
                        return Ok(());
                    }
                    Ok(Some(Ok(message))) => self.handle(message).await?,
                },
                changed = inventory.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.send_assignment().await?;
                }
                handed = async { (&mut self.statistics_in_flight.as_mut().expect("guarded").handing).await },
                    if self.statistics_in_flight.is_some() => {
                    self.statistics_handed(handed).await?;
                }
                changed = revocations.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Some((code, text)) = self.revoked().await {
                        refuse(&self.outbound, code, text).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The refusal to end this link with, if its certificate was revoked.
    async fn revoked(&self) -> Option<(RefusalCode, String)> {
        let fingerprint = self.fingerprint.as_deref()?;
        match self
            .services
            .core
            .store
            .certificate_presented(fingerprint, &self.agent.id, now_ms())
            .await
        {
            Ok(revoked_at_ms) => {
                revoked_at_ms.map(|at| revoked_refusal(&self.agent.id, fingerprint, at))
            }
            // Counted by the store; checked again at the next revocation,
            // and the link stays.
            Err(_) => None,
        }
    }

    async fn send(&self, kind: controller_message::Kind) -> Result<(), GrpcStatus> {
        self.outbound
            .send(message(kind))
            .await
            .map_err(|_| GrpcStatus::cancelled("the agent went away"))
    }

    /// The first call sends a snapshot; later calls send what changed.
    async fn send_assignment(&mut self) -> Result<(), GrpcStatus> {
        let unanswered = |error: crate::store::StoreError| {
            GrpcStatus::unavailable(format!("the status database is not answering: {error}"))
        };
        let devices = self
            .services
            .core
            .devices_of(&self.agent.id)
            .await
            .map_err(unanswered)?;
        let book = self
            .services
            .core
            .profile_book()
            .await
            .map_err(unanswered)?;
        let wanted: HashMap<i64, pb::ProbeTarget> = devices
            .iter()
            .filter(|device| device.spec.enabled)
            .map(|device| {
                let thresholds = book.thresholds_for(
                    device.spec.profile.as_deref(),
                    &device.spec.site,
                    self.services.reports.quality,
                );
                (device.id, probe_target(device, &thresholds))
            })
            .collect();
        let first = self.generation == 0;
        self.generation += 1;
        if first {
            let mut targets: Vec<pb::ProbeTarget> = wanted.values().cloned().collect();
            targets.sort_by_key(|target| target.device_id);
            info!(agent = %self.agent.id, devices = targets.len(), "assignment sent");
            self.send(controller_message::Kind::Snapshot(pb::AssignmentSnapshot {
                generation: self.generation,
                targets,
                controller_protocol: ward_proto::PROTOCOL_VERSION,
            }))
            .await?;
        } else {
            let mut upserts: Vec<pb::ProbeTarget> = wanted
                .iter()
                .filter(|(id, target)| {
                    self.assigned
                        .get(id)
                        .is_none_or(|sent| !same_probing(sent, target))
                })
                .map(|(_, target)| target.clone())
                .collect();
            upserts.sort_by_key(|target| target.device_id);
            let mut removed: Vec<u64> = self
                .assigned
                .keys()
                .filter(|id| !wanted.contains_key(id))
                .filter_map(|&id| u64::try_from(id).ok())
                .collect();
            removed.sort_unstable();
            if upserts.is_empty() && removed.is_empty() {
                self.generation -= 1;
                return Ok(());
            }
            self.send(controller_message::Kind::Update(pb::AssignmentUpdate {
                generation: self.generation,
                upserts,
                removed_device_ids: removed,
            }))
            .await?;
        }
        self.assigned = wanted;
        self.labels = devices
            .iter()
            .filter(|device| self.assigned.contains_key(&device.id))
            .map(|device| (device.id, DeviceLabels::of(device)))
            .collect();
        let assigned = devices
            .iter()
            .map(AsRef::as_ref)
            .filter(|device| self.assigned.contains_key(&device.id));
        self.settle_sight(Blindness::of(assigned, &self.probe_families))
            .await
    }

    /// Once per change of what the agent cannot probe (and at the start,
    /// which resolves an `AgentDown` from its absence): the devices it
    /// cannot probe become `unknown`, and its `AgentDown` alert is open
    /// while it is blind, in one transaction.
    async fn settle_sight(&mut self, blindness: Blindness) -> Result<(), GrpcStatus> {
        let unchanged = self.blindness.as_ref().is_some_and(|last| {
            last.families == blindness.families
                && last.devices.len() == blindness.devices.len()
                && last
                    .devices
                    .iter()
                    .zip(&blindness.devices)
                    .all(|(a, b)| a.0 == b.0)
        });
        if unchanged {
            return Ok(());
        }
        let reason = blindness.reason(&self.agent.id);
        if let Some(reason) = &reason {
            warn!(agent = %self.agent.id, %reason, "agent is blind to some of its devices");
        }
        self.services
            .presence
            .agent_sight(
                &self.agent,
                &self.probe_families,
                &blindness,
                (&self.sight_reports, self.generation),
                now_ms(),
            )
            .await
            .map_err(|error| {
                GrpcStatus::unavailable(format!("the status database is not answering: {error}"))
            })?;
        self.blindness = Some(blindness);
        Ok(())
    }

    async fn handle(&mut self, message: AgentMessage) -> Result<(), GrpcStatus> {
        let started = std::time::Instant::now();
        let kind = match &message.kind {
            Some(agent_message::Kind::Transitions(_)) => "transitions",
            Some(agent_message::Kind::Statistics(_)) => "statistics",
            Some(agent_message::Kind::Heartbeat(_)) => "heartbeat",
            _ => "other",
        };
        let handled = self.dispatch(message).await;
        let elapsed = started.elapsed();
        if elapsed > SLOW_MESSAGE {
            warn!(agent = %self.agent.id, kind, elapsed_ms = elapsed.as_millis(), "slow agent message: reports behind it wait");
        }
        handled
    }

    async fn dispatch(&mut self, message: AgentMessage) -> Result<(), GrpcStatus> {
        match message.kind {
            Some(agent_message::Kind::Transitions(batch)) => self.transitions(batch).await,
            Some(agent_message::Kind::Statistics(batch)) => self.statistics(batch).await,
            Some(agent_message::Kind::Heartbeat(heartbeat)) => {
                let counters = heartbeat.counters.unwrap_or_default();
                let now = now_ms();
                self.clock.sample(heartbeat.sent_at_unix_ms, now);
                self.services.presence.heartbeat(
                    &self.agent.id,
                    counters,
                    self.clock.offset_ms(),
                    now,
                );
                Ok(())
            }
            Some(agent_message::Kind::Hello(_)) | None => Err(GrpcStatus::invalid_argument(
                "Hello is only the first message; every message needs a kind",
            )),
        }
    }

    /// Splits a report into what this agent may report and what it may not.
    fn screen(&self, device_id: u64) -> Result<i64, RejectionReason> {
        let id = i64::try_from(device_id).map_err(|_| RejectionReason::UnknownDevice)?;
        if self.assigned.contains_key(&id) {
            Ok(id)
        } else {
            Err(RejectionReason::NotAssigned)
        }
    }

    async fn transitions(&mut self, batch: pb::TransitionBatch) -> Result<(), GrpcStatus> {
        let received_ms = now_ms();
        let mut rejected = Vec::new();
        let mut transitions = Vec::with_capacity(batch.transitions.len());
        for transition in batch.transitions {
            let degraded = transition
                .degraded
                .as_ref()
                .and_then(crate::grpc::convert::from_degradation);
            let status = match DeviceState::try_from(transition.state) {
                Ok(DeviceState::Up) => Status::Up,
                Ok(DeviceState::Degraded) if degraded.is_some() => Status::Degraded,
                Ok(DeviceState::Down) => Status::Down,
                Ok(DeviceState::Unreachable) => Status::Unreachable,
                _ => {
                    rejected.push(rejection(transition.device_id, RejectionReason::Malformed));
                    continue;
                }
            };
            match self.screen(transition.device_id) {
                Ok(device_id) => transitions.push(ReportedTransition {
                    device_id,
                    status,
                    probed_at_ms: self.clock.date(
                        device_id,
                        transition.probed_at_unix_us.div_euclid(1_000),
                        received_ms,
                    ),
                    last_rtt_us: transition.last_rtt_us,
                    reason: match (&degraded, transition.detail.is_empty()) {
                        (Some(degraded), _) => degraded_text(degraded),
                        (None, true) => reason_text(transition.reason),
                        (None, false) => transition.detail,
                    },
                    degraded: degraded.filter(|_| status == Status::Degraded),
                }),
                Err(reason) => rejected.push(rejection(transition.device_id, reason)),
            }
        }
        for transition in &transitions {
            if let Some(labels) = self.labels.get_mut(&transition.device_id) {
                labels.up = transition.status == Status::Up;
            }
        }
        let traces = self.screen_traces(&batch.traces, &mut rejected);
        let report = TransitionReport {
            agent_alerts: Vec::new(),
            agent_id: self.agent.id.clone(),
            boot_id: self.boot_id.clone(),
            seq: batch.seq,
            transitions,
        };
        let unavailable = |error| {
            GrpcStatus::unavailable(format!(
                "the status database is not answering: {error}; replay from your spool"
            ))
        };
        self.services
            .reports
            .apply_report(&report, now_ms())
            .await
            .map_err(unavailable)?;
        self.services
            .reports
            .attach_traces(&traces, now_ms())
            .await
            .map_err(unavailable)?;
        self.done(batch.seq, rejected).await
    }

    /// The traces of a batch, each for the devices of it this agent may
    /// report on (a trace naming none of them, or with a bad address, is
    /// refused).
    fn screen_traces(
        &self,
        traces: &[pb::Trace],
        rejected: &mut Vec<pb::RejectedEntry>,
    ) -> Vec<(Vec<i64>, Trace)> {
        let mut screened = Vec::with_capacity(traces.len());
        for trace in traces {
            let mut devices = Vec::with_capacity(trace.device_ids.len());
            for &device_id in &trace.device_ids {
                match self.screen(device_id) {
                    Ok(id) => devices.push(id),
                    Err(reason) => rejected.push(rejection(device_id, reason)),
                }
            }
            match crate::grpc::convert::trace_from_proto(trace) {
                Some(trace) if !devices.is_empty() => screened.push((devices, trace)),
                Some(_) => {}
                None => rejected.extend(
                    trace
                        .device_ids
                        .iter()
                        .map(|id| rejection(*id, RejectionReason::Malformed)),
                ),
            }
        }
        screened
    }

    /// Starts handing a statistics batch to the time-series writer, once
    /// the one before it is handed (backpressure: a writer whose encoding
    /// is a whole report period behind holds this agent's stream).
    async fn statistics(&mut self, batch: pb::StatisticsBatch) -> Result<(), GrpcStatus> {
        if let Some(in_flight) = &mut self.statistics_in_flight {
            let handed = (&mut in_flight.handing).await;
            self.statistics_handed(handed).await?;
        }
        let mut rejected = Vec::new();
        let mut devices = Vec::with_capacity(batch.devices.len());
        for entry in batch.devices {
            match self.screen(entry.device_id) {
                Ok(device_id) => devices.push(DeviceStatistics {
                    device_id,
                    sent: entry.sent,
                    received: entry.received,
                    rtt_min_us: entry.rtt_min_us,
                    rtt_avg_us: entry.rtt_avg_us,
                    rtt_max_us: entry.rtt_max_us,
                    jitter_us: entry.jitter_us,
                    rtt_quantiles_us: entry.rtt_p50_us.zip(entry.rtt_p90_us),
                }),
                Err(reason) => rejected.push(rejection(entry.device_id, reason)),
            }
        }
        let report = StatisticsReport {
            agent_id: self.agent.id.clone(),
            period_end_ms: batch.period_start_unix_ms + i64::from(batch.period_ms),
            devices,
        };
        // Labelled now, from this link's own map (no device list per
        // report; `up` as of the transitions before it in the stream).
        // Acknowledged only once the writer holds them: nothing
        // acknowledged is dropped.
        let samples = match self
            .services
            .reports
            .statistics_samples(&report, |id| self.labels.get(&id).cloned())
        {
            Taken::Recorded(_) => return self.done(batch.seq, rejected).await,
            Taken::ForWriter(samples) => samples,
        };
        let reports = std::sync::Arc::clone(&self.services.reports);
        self.acks.started(batch.seq);
        self.statistics_in_flight = Some(StatisticsInFlight {
            seq: batch.seq,
            rejected,
            handing: tokio::spawn(async move { reports.write_samples(samples).await }),
        });
        Ok(())
    }

    /// The statistics batch in flight was handed to the writer (or the
    /// writer stopped: then nothing after the last ack counts).
    async fn statistics_handed(
        &mut self,
        handed: Result<Result<usize, WriterStopped>, tokio::task::JoinError>,
    ) -> Result<(), GrpcStatus> {
        let Some(in_flight) = self.statistics_in_flight.take() else {
            return Ok(());
        };
        match handed {
            Ok(Ok(_)) => self.done(in_flight.seq, in_flight.rejected).await,
            Ok(Err(stopped)) => Err(GrpcStatus::unavailable(stopped.to_string())),
            Err(failed) => Err(GrpcStatus::internal(format!(
                "handing statistics to the time-series writer failed: {failed}; replay from your spool"
            ))),
        }
    }

    /// Report `seq` is done: acknowledges what is now due.
    async fn done(&mut self, seq: u64, rejected: Vec<pb::RejectedEntry>) -> Result<(), GrpcStatus> {
        match self.acks.done(seq, rejected) {
            Some(due) => self.ack(due.seq, due.rejected).await,
            None => Ok(()),
        }
    }

    async fn ack(&self, seq: u64, rejected: Vec<pb::RejectedEntry>) -> Result<(), GrpcStatus> {
        if !rejected.is_empty() {
            warn!(agent = %self.agent.id, seq, rejected = rejected.len(), "report entries refused");
            self.services
                .core
                .metrics
                .report_entries_rejected
                .fetch_add(rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        self.send(controller_message::Kind::Ack(pb::Ack {
            acked_seq: seq,
            rejected,
        }))
        .await
    }
}

fn rejection(device_id: u64, reason: RejectionReason) -> pb::RejectedEntry {
    pb::RejectedEntry {
        device_id,
        reason: reason.into(),
    }
}

fn reason_text(reason: i32) -> String {
    match pb::TransitionReason::try_from(reason) {
        Ok(pb::TransitionReason::Replies) => "replies".into(),
        Ok(pb::TransitionReason::Timeouts) => "timeouts".into(),
        Ok(pb::TransitionReason::IcmpUnreachable) => "ICMP unreachable".into(),
        Ok(pb::TransitionReason::Quality) => "loss and RTT back under the thresholds".into(),
        _ => "unspecified".into(),
    }
}

/// Why a device is degraded, in words: `warning: loss 30.5 %, RTT 12 ms`.
fn degraded_text(degraded: &Degradation) -> String {
    let rtt = degraded
        .rtt_us
        .map_or_else(|| "no reply".into(), |us| format!("RTT {} ms", us / 1000));
    format!(
        "{}: loss {} %, {rtt}",
        degraded.level.as_str(),
        ward_domain::quality::pct(degraded.loss_permille)
    )
}

/// The same device probed and judged the same way: a status or level that
/// changed since (`known_state`, `known_level`, where a new owner starts)
/// is no reason to send it again.
fn same_probing(sent: &pb::ProbeTarget, wanted: &pb::ProbeTarget) -> bool {
    pb::ProbeTarget {
        known_state: wanted.known_state,
        known_level: wanted.known_level,
        ..sent.clone()
    } == *wanted
}

fn probe_target(device: &Device, quality: &Thresholds) -> pb::ProbeTarget {
    pb::ProbeTarget {
        tcp: device.spec.check.tcp_port().map(|port| pb::TcpCheck {
            port: u32::from(port),
            icmp_too: matches!(device.spec.check, Check::IcmpOrTcp(_)),
            rst_alive: device.spec.rst_alive,
        }),
        device_id: u64::try_from(device.id).unwrap_or_default(),
        address: device.spec.address.to_string(),
        interval_ms: device.spec.interval_ms,
        timeout_ms: device.spec.timeout_ms,
        down_after: u32::from(device.spec.down_after),
        up_after: u32::from(device.spec.up_after),
        known_state: crate::grpc::convert::state(device.status) as i32,
        quality: Some(crate::grpc::convert::quality(quality)),
        known_level: device.degraded.map_or(0, |degraded| {
            crate::grpc::convert::degradation(&degraded).level
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(known: pb::DeviceState, interval_ms: u32) -> pb::ProbeTarget {
        pb::ProbeTarget {
            tcp: None,
            quality: None,
            known_level: 0,
            device_id: 7,
            address: "198.18.1.7".into(),
            interval_ms,
            timeout_ms: 300,
            down_after: 3,
            up_after: 2,
            known_state: known as i32,
        }
    }

    #[test]
    fn a_status_change_alone_is_not_sent_again_a_new_interval_is() {
        let sent = target(pb::DeviceState::Unknown, 1000);
        assert!(same_probing(&sent, &target(pb::DeviceState::Up, 1000)));
        assert!(!same_probing(&sent, &target(pb::DeviceState::Up, 500)));
        // A level that changed is not sent again; thresholds that did are.
        let critical = pb::ProbeTarget {
            known_level: pb::DegradedLevel::Critical as i32,
            ..target(pb::DeviceState::Degraded, 1000)
        };
        assert!(same_probing(&sent, &critical));
        let judged = pb::ProbeTarget {
            quality: Some(pb::QualityThresholds::default()),
            ..target(pb::DeviceState::Up, 1000)
        };
        assert!(!same_probing(&sent, &judged));
    }
}
