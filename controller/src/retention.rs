//! What the controller deletes on its own, and when: audit entries older
//! than `audit_retention` and status changes (the history) older than
//! `history_retention` (400 days each by default), hourly and at start, by
//! one controller of a cluster (each under its own lease). The audit
//! log's deletion is itself audited (`audit.prune`); a failure is counted
//! and tried again at the next round.

use std::time::Duration;

use tracing::info;

use crate::services::Core;

/// What is kept for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The audit log.
    AuditLog,
    /// The status changes (`GET /api/v1/history`, availability).
    History,
}

impl Kept {
    /// Deletes what is older than `retention` at `now_ms` (a failure is
    /// counted; the next round tries again).
    pub async fn prune_past(self, core: &Core, retention: Duration, now_ms: i64) {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        if let Ok(deleted) = self
            .prune(core, now_ms.saturating_sub(retention_ms), now_ms)
            .await
            && deleted > 0
        {
            info!(
                deleted,
                kept = ?self,
                retention_days = retention.as_secs() / 86_400,
                "entries past their retention deleted"
            );
        }
    }

    async fn prune(self, core: &Core, before_ms: i64, now_ms: i64) -> Result<u64, ()> {
        let pruned = match self {
            Kept::AuditLog => core.store.prune_audit(before_ms, now_ms).await,
            Kept::History => core.store.prune_history(before_ms).await,
        };
        // A failure is counted and logged by the store.
        pruned.map_err(drop)
    }
}
