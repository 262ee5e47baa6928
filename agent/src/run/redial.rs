//! When and where the agent links next: the controllers in turn (a lost,
//! refused or unreachable one is followed at once by the next), and a
//! jittered, doubling backoff once every one was tried.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::{FIRST_BACKOFF, LAST_BACKOFF, failover, jittered, link};

/// When and where the agent links next: the controllers in turn, each
/// one at once after the one before it failed, then a backoff once every
/// one was tried.
pub(super) struct Redial {
    pub(super) reconnect_at: Instant,
    pub(super) backoff: Duration,
    pub(super) failover: failover::Failover,
}

impl Redial {
    pub(super) fn new(controllers: usize) -> Self {
        Self {
            reconnect_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            failover: failover::Failover::new(controllers),
        }
    }

    /// The controller tried could not be reached.
    pub(super) fn unreachable(&mut self, error: &link::LinkError, controllers: &[String]) {
        if self.failover.missed() == failover::Next::Wait {
            warn!(%error, retry_in = ?self.backoff, "no link to any controller; reports wait in the spool");
            self.reconnect_at = Instant::now() + jittered(self.backoff);
            self.backoff = (self.backoff * 2).min(LAST_BACKOFF);
        } else {
            warn!(%error, next = %controllers[self.failover.current()],
                "no link to this controller; trying the next");
            self.reconnect_at = Instant::now();
        }
    }

    /// The link was lost (or ended by the agent).
    pub(super) fn lost(&mut self) {
        if self.failover.missed() == failover::Next::Wait {
            self.reconnect_at = self
                .reconnect_at
                .max(Instant::now() + jittered(self.backoff));
            self.backoff = (self.backoff * 2).min(LAST_BACKOFF);
        } else {
            // Another controller of the cluster takes over at once.
            self.reconnect_at = Instant::now();
        }
    }
}
