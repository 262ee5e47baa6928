//! What the controller deletes on its own, and when: audit entries older
//! than `audit_retention` (400 days by default), hourly and at start. The
//! deletion is itself audited (`audit.prune`); a failure is counted and
//! tried again at the next round.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::state::Controller;

/// How often old entries are looked for.
const ROUND: Duration = Duration::from_secs(3600);

/// Prunes the audit log to `retention` until `stop` completes.
pub async fn prune_audit_log(
    controller: Arc<Controller>,
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
        if !controller.holds("audit retention").await {
            continue;
        }
        let now = crate::time::now_ms();
        match controller
            .store
            .prune_audit(now.saturating_sub(retention_ms), now)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => info!(
                deleted,
                retention_days = retention.as_secs() / 86_400,
                "audit entries past their retention deleted"
            ),
            Err(error) => {
                controller.store_failed(error);
            }
        }
    }
}
