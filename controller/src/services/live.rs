//! The live change feed inside one controller process: committed status
//! changes for subscribers (SSE, gRPC `WatchStatus`), and the wake-ups
//! that follow a commit (agent links re-send assignments, notification
//! workers look at the outbox, links re-check revoked certificates), and
//! the shutdown signal that ends long-lived streams.

use std::sync::{Arc, OnceLock};

use tokio::sync::{broadcast, watch};

use crate::store::{Device, Status};

/// Status changes buffered per live-event subscriber before it must resync.
const EVENT_BUFFER: usize = 16_384;

/// A committed status change: the device after it, and its status before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEvent {
    /// The device after the change.
    pub device: Device,
    /// Its status before.
    pub previous: Status,
    /// The data version the change was committed at (commit order).
    pub version: Option<i64>,
    /// The last change of that version: a client that saw it has seen
    /// every change up to the version (the event stream's `id:`).
    pub closes_version: bool,
    /// Its event-stream `data:`, encoded by the first subscriber that
    /// sends it and shared by every other (fifty dashboards do not encode
    /// each change fifty times).
    pub encoded: OnceLock<String>,
}

/// What live subscribers (SSE, gRPC `WatchStatus`) receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveEvent {
    /// A committed status change, one for every subscriber.
    Status(Arc<StatusEvent>),
    /// Changes were committed that could not be published one by one:
    /// reload the lists.
    Resync,
}

/// The feed's channels.
pub struct Live {
    /// Committed status changes, for live events.
    events: broadcast::Sender<LiveEvent>,
    /// Set when the controller shuts down: long-lived streams (agent links,
    /// live events) end, so the servers can stop.
    stopping: watch::Sender<bool>,
    /// Bumped after every committed change to the device inventory, so
    /// agent links send assignment updates.
    inventory_changes: watch::Sender<u64>,
    /// How many agent certificates were ever revoked, as last read from
    /// the store: links re-check theirs on change.
    revocations: watch::Sender<i64>,
    /// Bumped after commits that may have queued notifications.
    outbox_wakeup: watch::Sender<()>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            events: broadcast::channel(EVENT_BUFFER).0,
            stopping: watch::channel(false).0,
            inventory_changes: watch::channel(0).0,
            revocations: watch::channel(0).0,
            outbox_wakeup: watch::channel(()).0,
        }
    }
}

impl Live {
    /// Subscribes to committed status changes (the device after each).
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Whether anyone listens for status changes.
    pub fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Hands `event` to every subscriber (none listening is not an error).
    pub fn send(&self, event: LiveEvent) {
        // Fails only when every subscriber has gone.
        let _ = self.events.send(event);
    }

    /// Ends every long-lived stream (agent links, live events).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once [`Live::begin_shutdown`] was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Changes after every committed change to the device inventory.
    pub fn inventory_changes(&self) -> watch::Receiver<u64> {
        self.inventory_changes.subscribe()
    }

    /// The device inventory (or who owns which device) changed.
    pub fn inventory_changed(&self) {
        self.inventory_changes
            .send_modify(|generation| *generation += 1);
    }

    /// Changes when agent certificates were revoked.
    pub fn revocations(&self) -> watch::Receiver<i64> {
        self.revocations.subscribe()
    }

    /// Notes how many agent certificates were ever revoked, as just read
    /// from the store: agent links re-check theirs when it changed.
    pub fn note_revocations(&self, count: i64) {
        self.revocations.send_if_modified(|known| {
            let changed = count != *known;
            *known = count;
            changed
        });
    }

    /// Changes after every commit that may have queued notifications.
    pub fn outbox_wakeups(&self) -> watch::Receiver<()> {
        self.outbox_wakeup.subscribe()
    }

    /// Wakes the notification workers: a commit may have queued some.
    pub fn outbox_changed(&self) {
        self.outbox_wakeup.send_replace(());
    }
}
