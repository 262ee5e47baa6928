//! Group commit of transition reports: a report that arrives while a
//! commit of reports runs waits, and goes with every other report waiting
//! then into the next commit (one transaction, one data version;
//! `store::applying`). One group commits at a time, so their live events
//! go out in version order. No task of its own: a report's caller, once
//! it has the turn, commits whatever waits, its own report or others'
//! (which one's caller takes it does not matter: each waits for its
//! outcome, and its agent sends nothing else meanwhile).

use std::collections::VecDeque;

use tokio::sync::{MutexGuard, oneshot};

use crate::store::{ApplyOutcome, Received, StoreError};

/// Reports in one group at most…
const MOST_REPORTS: usize = 256;
/// …and transitions (a group's first report goes in whatever its size).
const MOST_TRANSITIONS: usize = 20_000;

/// A report waiting for a commit, and where its outcome goes.
pub(super) struct Waiting {
    /// The report and the time it is applied at.
    pub received: Received,
    /// Its caller, waiting.
    pub outcome: oneshot::Sender<Result<ApplyOutcome, StoreError>>,
}

/// The reports waiting, and the turn at committing them.
pub(super) struct Queue {
    #[allow(
        clippy::disallowed_types,
        reason = "held only to push or take reports, never across an await; not on the probe path"
    )]
    waiting: std::sync::Mutex<VecDeque<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            #[allow(clippy::disallowed_types, reason = "see the field")]
            waiting: std::sync::Mutex::new(VecDeque::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl Queue {
    /// Queues `received`; its outcome comes on the receiver once a group
    /// with it committed (or failed).
    pub fn push(&self, received: Received) -> oneshot::Receiver<Result<ApplyOutcome, StoreError>> {
        let (outcome, told) = oneshot::channel();
        self.lock().push_back(Waiting { received, outcome });
        told
    }

    /// The turn at committing, once the group before has committed and
    /// been published.
    pub async fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// The next group, oldest first: empty when another caller took every
    /// report waiting.
    pub fn next_group(&self) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let mut group = Vec::new();
        let mut transitions = 0;
        while let Some(next) = waiting.front() {
            let size = next.received.0.transitions.len();
            if !group.is_empty()
                && (group.len() == MOST_REPORTS || transitions + size > MOST_TRANSITIONS)
            {
                break;
            }
            transitions += size;
            group.extend(waiting.pop_front());
        }
        group
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
