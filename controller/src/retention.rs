//! What the controller deletes on its own, and when: audit entries older
//! than `audit_retention` and status changes (the history) older than
//! `history_retention` (400 days each by default), hourly and at start, by
//! one controller of a cluster (each under its own lease). The audit
//! log's deletion is itself audited (`audit.prune`); a failure is counted
//! and tried again at the next round.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::state::Controller;

/// How often old entries are looked for.
const ROUND: Duration = Duration::from_secs(3600);

/// What is kept for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The audit log.
    AuditLog,
    /// The status changes (`GET /api/v1/history`, availability).
    History,
}

impl Kept {
    /// The lease one controller of a cluster holds to prune it.
    fn lease(self) -> &'static str {
        match self {
            Kept::AuditLog => "audit retention",
            Kept::History => "history retention",
        }
    }

    async fn prune(self, controller: &Controller, before_ms: i64, now_ms: i64) -> Result<u64, ()> {
        let pruned = match self {
            Kept::AuditLog => controller.store.prune_audit(before_ms, now_ms).await,
            Kept::History => controller.store.prune_history(before_ms).await,
        };
        pruned.map_err(|error| {
            controller.store_failed(error);
        })
    }
}

/// Prunes `kept` to `retention` until `stop` completes.
pub async fn prune_past_retention(
    controller: Arc<Controller>,
    kept: Kept,
    retention: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut rounds = tokio::time::interval(ROUND);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = rounds.tick() => {}
        }
        if !controller.holds(kept.lease()).await {
            continue;
        }
        let now = crate::time::now_ms();
        if let Ok(deleted) = kept
            .prune(&controller, now.saturating_sub(retention_ms), now)
            .await
            && deleted > 0
        {
            info!(
                deleted,
                ?kept,
                retention_days = retention.as_secs() / 86_400,
                "entries past their retention deleted"
            );
        }
    }
}
