//! The agent link's writes: transition reports applied through the store's
//! rules (each to its end, then published), and probe statistics handed to
//! the time-series writer. Reports wait while the offline sweep holds its
//! gate, so an agent that comes back is never applied under its site's
//! `unknown`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use ward_domain::quality::Thresholds;
use ward_domain::trace::Trace;

use super::core::{Core, to_the_end};
use super::group_commit::Queue;
use crate::store::{ApplyOutcome, FlapPolicy, Ignored, Received, StoreError, TransitionReport};
use crate::tsdb::recent::RecentRtt;
use crate::tsdb::{
    DeviceLabels, DeviceSample, DeviceStatistics, SampleBatch, StatisticsReport, Tsdb,
    WriterStopped,
};

/// A status commit slower than this is logged.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Statistics that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StatisticsError {
    /// The device list could not be read for labels.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The time-series writer has stopped.
    #[error(transparent)]
    Stopped(#[from] WriterStopped),
}

/// Applies agents' (and the controller's own) reports.
pub struct Reports {
    core: Arc<Core>,
    /// When a device is flapping (`flap_changes`, `flap_window`).
    pub flapping: FlapPolicy,
    /// The time-series writer, when VictoriaMetrics is configured.
    pub tsdb: Option<Tsdb>,
    /// When a device that answers is degraded (its agent judges it).
    pub quality: Thresholds,
    /// The built-in short RTT history, when it is not.
    pub recent: Option<RecentRtt>,
    /// Agent reports hold it shared; the offline sweep holds it alone from
    /// its presence check to its commit.
    offline_gate: tokio::sync::RwLock<()>,
    /// Reports waiting to be committed together.
    queue: Queue,
}

impl Reports {
    /// Reports over `core`, devices flapping under `flapping` and judged
    /// by `quality`, statistics to `tsdb` when there is one.
    pub fn new(
        core: Arc<Core>,
        flapping: FlapPolicy,
        quality: Thresholds,
        tsdb: Option<Tsdb>,
    ) -> Self {
        Self {
            core,
            flapping,
            recent: tsdb.is_none().then(RecentRtt::default),
            tsdb,
            quality,
            offline_gate: tokio::sync::RwLock::new(()),
            queue: Queue::default(),
        }
    }

    /// Applies an agent report, to its end whatever the caller does; after
    /// the commit live-event subscribers get the changed devices. Reports
    /// that arrive while commits run are committed together
    /// ([`group_commit`](super::group_commit)); the outcome is this
    /// report's (its changes at the version of the group).
    pub async fn apply_report(
        self: &Arc<Self>,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let outcome = self.queue.push((report.clone(), now_ms));
        let reports = Arc::clone(self);
        to_the_end(async move {
            reports.commit_waiting().await;
            Ok(())
        })
        .await?;
        outcome.await.map_err(|_| {
            StoreError::Task("a group commit ended without its reports' outcomes".into())
        })?
    }

    /// Once a turn comes, commits the reports waiting then as one group
    /// (none if another caller took them); a group that fails is committed
    /// report by report, so one report cannot hold back the others.
    async fn commit_waiting(&self) {
        let _turn = self.queue.turn().await;
        let group = self.queue.next_group();
        if group.is_empty() {
            return;
        }
        let _gate = self.offline_gate.read().await;
        let (received, tell): (Vec<Received>, Vec<_>) = group
            .into_iter()
            .map(|waiting| (waiting.received, waiting.outcome))
            .unzip();
        match self.commit_together(&received).await {
            Ok(outcomes) => {
                for (tell, outcome) in tell.into_iter().zip(outcomes) {
                    // A caller that went away needs no outcome.
                    let _ = tell.send(Ok(outcome));
                }
            }
            Err(error) if received.len() == 1 => {
                if let Some(tell) = tell.into_iter().next() {
                    let _ = tell.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(%error, reports = received.len(),
                    "reports could not be committed together; committing each alone");
                for (one, tell) in received.into_iter().zip(tell) {
                    let _ = tell.send(self.commit_one(one).await);
                }
            }
        }
    }

    /// Keeps each trace as its devices' last one and attaches it to their
    /// open alerts (notified as `traced`), all in one commit; counted. A
    /// trace comes after
    /// the transition it explains (the agent traces once it has reported
    /// the failure); a replayed one is attached again, which changes
    /// nothing.
    pub async fn attach_traces(
        &self,
        traces: &[(Vec<i64>, Trace)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if traces.is_empty() {
            return Ok(());
        }
        let core = &self.core;
        let attached = core.store.attach_traces(traces, now_ms).await?;
        for ((devices, trace), attached) in traces.iter().zip(&attached) {
            core.metrics.traces_received.fetch_add(1, Ordering::Relaxed);
            if attached.open == 0 {
                core.metrics
                    .traces_without_alert
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(devices = devices.len(), alerts = attached.now.len(), target = %trace.target,
                last_hop = trace.last_hop.as_deref().unwrap_or("none"), "path traced");
        }
        if attached.iter().any(|attached| !attached.now.is_empty()) {
            core.live.outbox_changed();
        }
        Ok(())
    }

    /// Holds reports back until the guard drops (the offline sweep, from
    /// its presence check to its commit).
    pub(super) async fn hold_back(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.offline_gate.write().await
    }

    /// Applies `report` in the caller's task (the offline sweep, which
    /// holds the gate already).
    pub(super) async fn commit_report(
        &self,
        report: &TransitionReport,
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        self.commit_one((report.clone(), now_ms)).await
    }

    async fn commit_one(&self, received: Received) -> Result<ApplyOutcome, StoreError> {
        let mut outcomes = self
            .commit_together(std::slice::from_ref(&received))
            .await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a commit of one report had no outcome".into()))
    }

    /// Commits `received` in one transaction, counts what each report did
    /// and publishes their changes: each report's outcome, in order.
    async fn commit_together(
        &self,
        received: &[Received],
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let core = &self.core;
        let started = std::time::Instant::now();
        let applied = core.store.apply_together(received, &self.flapping).await?;
        let elapsed = started.elapsed();
        if elapsed > SLOW_COMMIT {
            let transitions: usize = received
                .iter()
                .map(|(report, _)| report.transitions.len())
                .sum();
            let (first, _) = &received[0];
            tracing::warn!(agent = %first.agent_id, seq = first.seq, reports = received.len(), transitions,
                elapsed_ms = elapsed.as_millis(), "slow status commit");
        }
        core.metrics.report_commits.fetch_add(1, Ordering::Relaxed);
        core.metrics
            .reports_committed
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        core.metrics
            .notifications_withheld
            .fetch_add(applied.changes.withheld, Ordering::Relaxed);
        for ((report, _), outcome) in received.iter().zip(&applied.outcomes) {
            self.count(report, outcome);
        }
        core.publish(&applied.changes).await;
        Ok(applied.outcomes)
    }

    /// Counts what was ignored or replayed of `report`, and wakes the
    /// outbox for its agent alerts.
    fn count(&self, report: &TransitionReport, outcome: &ApplyOutcome) {
        let core = &self.core;
        let ApplyOutcome::Applied { ignored, .. } = outcome else {
            core.metrics
                .reports_replayed
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        core.metrics
            .transitions_ignored
            .fetch_add(ignored.len() as u64, Ordering::Relaxed);
        let foreign = ignored
            .iter()
            .filter(|(_, why)| *why == Ignored::NotOwner)
            .count();
        if foreign > 0 {
            core.metrics
                .transitions_not_owner
                .fetch_add(foreign as u64, Ordering::Relaxed);
            tracing::info!(agent = %report.agent_id, seq = report.seq, devices = foreign,
                "reports about devices another agent of the site owns were ignored");
        }
        // An agent alert may have been queued without any device
        // changing (its devices were unknown already).
        if !report.agent_alerts.is_empty() {
            core.live.outbox_changed();
        }
    }

    /// Hands an agent's probe statistics to the time-series writer, with
    /// each device's labels and current status from the device list;
    /// entries for devices the store does not know are counted and
    /// skipped. Returns the samples queued (none when no time-series
    /// database is configured).
    pub async fn record_statistics(
        &self,
        report: &StatisticsReport,
    ) -> Result<usize, StatisticsError> {
        if let Some(recent) = &self.recent {
            recent.record(report);
            return Ok(report.devices.len());
        }
        let devices = self.core.devices().await?;
        let by_id: HashMap<i64, DeviceLabels> = devices
            .iter()
            .map(|device| (device.id, DeviceLabels::of(device)))
            .collect();
        Ok(self
            .record_statistics_with(report, |id| by_id.get(&id).cloned())
            .await?)
    }

    /// [`Reports::record_statistics`] with labels from `labels` (an agent
    /// link keeps its own, so no device list is loaded per report).
    /// Returns once the writer holds the samples (waiting while its queue
    /// is full), so an acknowledgement after it never covers dropped data.
    pub async fn record_statistics_with(
        &self,
        report: &StatisticsReport,
        labels: impl Fn(i64) -> Option<DeviceLabels>,
    ) -> Result<usize, WriterStopped> {
        match self.statistics_samples(report, labels) {
            Taken::Recorded(taken) => Ok(taken),
            Taken::ForWriter(batch) => self.write_samples(batch).await,
        }
    }

    /// The first half of [`Reports::record_statistics_with`], at once:
    /// `report` labelled by `labels` for the time-series writer, or,
    /// without VictoriaMetrics, recorded in the built-in history (the
    /// devices `labels` does not know counted as ignored).
    pub fn statistics_samples(
        &self,
        report: &StatisticsReport,
        labels: impl Fn(i64) -> Option<DeviceLabels>,
    ) -> Taken {
        if self.tsdb.is_none() {
            let Some(recent) = &self.recent else {
                return Taken::Recorded(0);
            };
            let known = |statistics: &&DeviceStatistics| labels(statistics.device_id).is_some();
            let taken = report.devices.iter().filter(known).count();
            self.core
                .metrics
                .statistics_ignored
                .fetch_add((report.devices.len() - taken) as u64, Ordering::Relaxed);
            recent.record_periods(report.period_end_ms, report.devices.iter().filter(known));
            return Taken::Recorded(taken);
        }
        let mut samples = Vec::with_capacity(report.devices.len());
        for statistics in &report.devices {
            let Some(labels) = labels(statistics.device_id) else {
                self.core
                    .metrics
                    .statistics_ignored
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            samples.push(DeviceSample {
                device_id: statistics.device_id,
                labels,
                statistics: *statistics,
            });
        }
        Taken::ForWriter(SampleBatch {
            agent_id: report.agent_id.clone(),
            at_ms: report.period_end_ms,
            samples,
        })
    }

    /// The second half: hands `batch` to the time-series writer, returning
    /// once it holds it (waiting while its queue is full); the samples
    /// handed.
    pub async fn write_samples(&self, batch: SampleBatch) -> Result<usize, WriterStopped> {
        let Some(tsdb) = &self.tsdb else {
            return Ok(0);
        };
        let queued = batch.samples.len();
        tsdb.write(batch).await?;
        Ok(queued)
    }
}

/// What became of a statistics report at once.
pub enum Taken {
    /// Recorded in the built-in history (or nowhere, with neither): this
    /// many devices' statistics.
    Recorded(usize),
    /// To be handed to the time-series writer
    /// ([`Reports::write_samples`]).
    ForWriter(SampleBatch),
}
