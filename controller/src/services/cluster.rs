//! The controllers sharing one database: who this one is, the leases of
//! once-per-cluster jobs, the membership list, and the feed of the other
//! controllers' commits to this one's live subscribers.

use std::sync::Arc;
use std::time::Duration;

use super::core::Core;
use super::live::LiveEvent;
use crate::store::{Announcement, ControllerMember, StoreError};

/// How long a dead controller's leases outlive it by default.
pub const DEFAULT_FAILOVER_DELAY: Duration = Duration::from_secs(5);

/// A once-per-cluster job's lease, as the store names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// the offline sweep job.
    OfflineSweep,
    /// the agent groups job.
    AgentGroups,
    /// The release half of the maintenance job.
    MaintenanceRelease,
    /// the flap settle job.
    FlapSettle,
    /// Retention of the audit log.
    AuditRetention,
    /// Retention of the history.
    HistoryRetention,
    /// Re-sending open alerts to the Alertmanager channel named so.
    Resend(String),
    /// Reminders and escalations of open alerts.
    Chase,
}

impl Lease {
    /// The lease's name in the store (`GET /api/v1/controllers` shows it).
    pub fn name(&self) -> String {
        match self {
            Lease::OfflineSweep => "offline sweep".into(),
            Lease::AgentGroups => "agent groups".into(),
            Lease::MaintenanceRelease => "maintenance release".into(),
            Lease::FlapSettle => "flap settle".into(),
            Lease::AuditRetention => "audit retention".into(),
            Lease::HistoryRetention => "history retention".into(),
            Lease::Resend(channel) => format!("resend {channel}"),
            Lease::Chase => "reminders".into(),
        }
    }
}

/// This controller in its cluster.
pub struct Cluster {
    core: Arc<Core>,
    /// A random id of this controller process, as the other controllers
    /// on the database know it (shared presence, leases).
    pub instance: String,
    /// When this controller started, Unix ms.
    pub started_ms: i64,
    /// How long a dead controller's lease outlives it (`failover_delay`).
    failover_delay: Duration,
}

impl Cluster {
    /// This controller, its leases outliving it by `failover_delay`.
    pub fn new(core: Arc<Core>, failover_delay: Duration) -> Self {
        Self {
            core,
            instance: crate::auth::instance_id(),
            started_ms: crate::time::now_ms(),
            failover_delay,
        }
    }

    /// A job meant to run once per cluster is this controller's now: it
    /// took or renewed the job's lease for the failover delay. A store
    /// that fails holds nothing (the job needs it anyway).
    pub async fn holds(&self, lease: &str) -> bool {
        let ttl_ms = i64::try_from(self.failover_delay.as_millis()).unwrap_or(i64::MAX);
        // A failure is counted and logged by the store.
        self.core
            .store
            .take_lease(lease, &self.instance, ttl_ms)
            .await
            .unwrap_or(false)
    }

    /// Every controller of the cluster (membership rows), with whether it
    /// is alive (heard within the failover delay) and the jobs it holds.
    pub async fn controllers(&self) -> Result<Vec<(ControllerMember, bool)>, StoreError> {
        let delay_ms = i64::try_from(self.failover_delay.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .core
            .store
            .controllers()
            .await?
            .into_iter()
            .map(|member| {
                let alive = member.heard_ago_ms < delay_ms;
                (member, alive)
            })
            .collect())
    }
}

/// The most changes of one other controller's commit read back from the
/// event log for live subscribers; beyond, they are told to resync.
const MOST_READ_BACK: i64 = 20_000;

/// Another controller's commit that changed too many devices to name in
/// its announcement (a group of agents' reports, a site's outage): its
/// changes are read from the event log and sent to live subscribers like
/// any other; only a commit of more than [`MOST_READ_BACK`] (or a failed
/// read) makes them resync.
async fn broadcast_logged(core: &Core, version: i64) {
    match core.store.changes_at(version, MOST_READ_BACK + 1).await {
        Ok(logged) if i64::try_from(logged.len()).unwrap_or(i64::MAX) <= MOST_READ_BACK => {
            let mut changes = crate::store::StatusChanges {
                version: Some(version),
                ..Default::default()
            };
            let mut seen = std::collections::HashSet::new();
            for change in logged {
                // A device changed twice in the commit: its first previous.
                if seen.insert(change.device_id) {
                    changes.changed.push(change.device_id);
                    changes.previous.push(change.previous);
                }
            }
            core.broadcast(&changes).await;
        }
        Ok(_) => core.live.send(LiveEvent::Resync),
        Err(error) => {
            tracing::warn!(%error, version, "another controller's changes could not be read from the event log; live subscribers told to resync");
            core.live.send(LiveEvent::Resync);
        }
    }
}

/// Hands the status changes other controllers on the database commit to
/// this one's live subscribers (SSE, `WatchStatus`) until `shutdown`; a
/// lost listening connection is opened again after a second, and the
/// subscribers told to resync (changes may have passed meanwhile). Returns
/// at once on SQLite: it has one controller.
pub async fn follow_other_controllers(
    core: Arc<Core>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut lost = false;
    loop {
        match core.store.listen().await {
            Ok(None) => return,
            Ok(Some(mut listening)) => {
                if lost {
                    core.live.send(LiveEvent::Resync);
                    core.live.inventory_changed();
                }
                let own = core.store.origin().map(str::to_owned);
                loop {
                    let announced = tokio::select! {
                        () = &mut shutdown => return,
                        announced = listening.announced.recv() => announced,
                    };
                    let Some(announced) = announced else { break };
                    if own.as_deref() == Some(announced.origin.as_str()) {
                        continue;
                    }
                    match announced.what {
                        Announcement::Changes(changes) => core.broadcast(&changes).await,
                        Announcement::Resync(version) => broadcast_logged(&core, version).await,
                        Announcement::Inventory => core.live.inventory_changed(),
                    }
                }
                tracing::warn!(
                    "lost the connection that hears other controllers' changes; opening it again"
                );
            }
            // Counted by the store; tried again in a second.
            Err(_) => {}
        }
        lost = true;
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
