//! Every periodic job of a controller, declared once: what it does, how
//! often, and the lease that makes it run on one controller of a cluster.
//! [`start`] spawns them all with the feed of other controllers' changes;
//! they end when the controller stops.
//!
//! A round runs, then the job sleeps its period. A job with a lease takes
//! or renews it before each round and is told whether it holds it: the
//! lease outlives a dead holder by `failover_delay`, so another controller
//! takes the job over within that and one period. A failed round is
//! counted and logged by the store; the next round tries again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::retention::Kept;
use crate::services::{App, Core, Lease, Reports};
use crate::time::now_ms;

/// A periodic job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Tells the other controllers which agents this one holds (and that
    /// it is alive: its membership heartbeat).
    PresenceShare,
    /// The offline rule: a site with no connected agent for its grace
    /// period has its devices made `unknown` and an `AgentDown` per agent.
    OfflineSweep,
    /// Moves the devices of lost agents and rebalances agent groups.
    AgentGroups,
    /// Re-reads the open maintenance windows (every controller); the lease
    /// holder releases the alerts they held once they end.
    Maintenance,
    /// Ends the flapping of devices stable for the flap window.
    FlapSettle,
    /// Deletes what is past its retention.
    Retention(Kept, Duration),
    /// Reads how many agent certificates were revoked; links re-check
    /// theirs when it changes.
    RevocationPoll,
    /// Forgets the store's record of which devices the commits of a round
    /// ago wrote (every controller; a device list read within the round is
    /// patched from it, an older one loaded again).
    ForgetDeviceWrites,
    /// Reminds and escalates open alerts nobody acknowledged, as the
    /// routes say.
    Chase,
}

/// How often [`Job::Chase`] runs: a reminder or escalation leaves within
/// this of its time.
const CHASE_PERIOD: Duration = Duration::from_secs(5);

/// How often [`Job::Maintenance`] runs: a window opens and closes within
/// this of its time.
pub const MAINTENANCE_REFRESH: Duration = Duration::from_millis(500);

/// How often [`Job::RevocationPoll`] runs: a revoked agent's link ends
/// within about this long (`ward-controller agents revoke` runs in another
/// process).
const REVOCATION_POLL: Duration = Duration::from_millis(250);

impl Job {
    /// How long the job sleeps between rounds.
    pub fn period(self) -> Duration {
        match self {
            Job::PresenceShare => crate::store::SHARE_INTERVAL,
            // A dead holder's lease is taken at most this after it expires.
            Job::OfflineSweep | Job::AgentGroups | Job::FlapSettle => Duration::from_millis(500),
            Job::Maintenance => MAINTENANCE_REFRESH,
            Job::Retention(..) => Duration::from_secs(3600),
            Job::RevocationPoll => REVOCATION_POLL,
            Job::ForgetDeviceWrites => crate::services::WRITES_KEPT,
            Job::Chase => CHASE_PERIOD,
        }
    }

    /// The lease it needs, if it runs on one controller of a cluster.
    pub fn lease(self) -> Option<Lease> {
        match self {
            Job::PresenceShare | Job::RevocationPoll | Job::ForgetDeviceWrites => None,
            Job::OfflineSweep => Some(Lease::OfflineSweep),
            Job::AgentGroups => Some(Lease::AgentGroups),
            Job::Maintenance => Some(Lease::MaintenanceRelease),
            Job::FlapSettle => Some(Lease::FlapSettle),
            Job::Retention(Kept::AuditLog, _) => Some(Lease::AuditRetention),
            Job::Retention(Kept::History, _) => Some(Lease::HistoryRetention),
            Job::Chase => Some(Lease::Chase),
        }
    }

    /// One round; `leased` says whether this controller holds the job's
    /// lease now.
    async fn round(self, app: &App, leased: bool) {
        match self {
            Job::PresenceShare => {
                if let Err(error) = app.presence.share_presence().await {
                    warn!(%error, "cannot share which agents this controller holds; retrying");
                }
            }
            Job::OfflineSweep if leased => {
                if let Err(error) = app.presence.forget_offline_sites(now_ms()).await {
                    warn!(%error, "offline-agent sweep failed; retrying");
                }
            }
            Job::AgentGroups if leased => {
                if let Err(error) = app.presence.settle_groups(now_ms()).await {
                    warn!(%error, "cannot settle the agent groups; retrying");
                }
            }
            Job::Maintenance => {
                if app.maintenance.refresh_maintenance().await.is_err() {
                    return;
                }
                if leased {
                    let _ = app.maintenance.release_held().await;
                }
            }
            Job::FlapSettle if leased => settle_flapping(&app.core, &app.reports).await,
            Job::Retention(kept, retention) if leased => {
                kept.prune_past(&app.core, retention, now_ms()).await;
            }
            // A failed read is counted and logged by the store.
            Job::RevocationPoll => {
                if let Ok(count) = app.core.store.revocations().await {
                    app.core.live.note_revocations(count);
                }
            }
            Job::ForgetDeviceWrites => app.core.forget_old_device_writes().await,
            Job::Chase if leased => {
                if let Err(error) = app.notifications.chase(now_ms()).await {
                    warn!(%error, "cannot queue reminders and escalations; retrying");
                }
            }
            Job::OfflineSweep
            | Job::AgentGroups
            | Job::FlapSettle
            | Job::Retention(..)
            | Job::Chase => {}
        }
    }

    /// Runs the job until `shutdown` completes.
    async fn run(self, app: App, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let lease = self.lease().map(|lease| lease.name());
        loop {
            let leased = match &lease {
                Some(lease) => app.cluster.holds(lease).await,
                None => false,
            };
            self.round(&app, leased).await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.period()) => {}
            }
        }
    }
}

/// One controller of a cluster settles flapping devices that were stable
/// for the flap window and queues their `settled` notifications.
async fn settle_flapping(core: &Core, reports: &Reports) {
    let settled = core
        .store
        .settle_flapping(&reports.flapping, now_ms())
        .await;
    match settled {
        Ok(devices) if !devices.is_empty() => {
            core.metrics
                .flapping_settled
                .fetch_add(devices.len() as u64, Ordering::Relaxed);
            core.live.outbox_changed();
            info!(
                ?devices,
                "flapping devices stable for the flap window: their settled notifications are queued"
            );
        }
        Ok(_) | Err(_) => {}
    }
}

/// The jobs every controller runs, with the retention periods configured.
pub fn every_job(audit_retention: Duration, history_retention: Duration) -> Vec<Job> {
    vec![
        Job::OfflineSweep,
        Job::AgentGroups,
        Job::Maintenance,
        Job::FlapSettle,
        Job::PresenceShare,
        Job::Retention(Kept::AuditLog, audit_retention),
        Job::Retention(Kept::History, history_retention),
        Job::RevocationPoll,
        Job::ForgetDeviceWrites,
        Job::Chase,
    ]
}

/// Spawns `jobs` and the feed of other controllers' changes; each ends
/// when a future of `stopped` completes. (The notification workers are
/// `notify::Workers`', started and replaced as the configuration says.)
pub fn start<S: Future<Output = ()> + Send + 'static>(
    app: &App,
    jobs: Vec<Job>,
    stopped: impl Fn() -> S,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::services::follow_other_controllers(
        Arc::clone(&app.core),
        stopped(),
    )));
    for job in jobs {
        tasks.push(tokio::spawn(job.run(app.clone(), stopped())));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are stored in the lease table by controllers of the
    /// previous release too: they must not change.
    #[test]
    fn lease_names_are_the_stored_ones() {
        let jobs = every_job(Duration::from_secs(1), Duration::from_secs(1));
        let names: Vec<String> = jobs
            .iter()
            .filter_map(|job| job.lease())
            .map(|lease| lease.name())
            .collect();
        assert_eq!(
            names,
            [
                "offline sweep",
                "agent groups",
                "maintenance release",
                "flap settle",
                "audit retention",
                "history retention",
                "reminders"
            ]
        );
        assert_eq!(
            Lease::Resend("alertmanager-2".into()).name(),
            "resend alertmanager-2"
        );
    }
}
