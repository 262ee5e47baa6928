//! The notification channels with a delivery worker, and which of them
//! failed their last round (for `/readyz`). Delivery itself is
//! `crate::notify`'s.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use super::core::Core;
use crate::store::StoreError;

/// The configured channels.
pub struct Notifications {
    /// The store (the outbox), counters and feed (wake-ups).
    pub core: Arc<Core>,
    /// Channels with a worker (`webhook`, `alertmanager`, `alertmanager-2`, …).
    channels: Vec<String>,
    /// Channels whose last delivery round only failed.
    failing: RwLock<BTreeSet<String>>,
}

impl Notifications {
    /// Queues every new alert notification for `channels` (and discards
    /// waiting ones of channels no longer configured, with a warning).
    pub async fn new(core: Arc<Core>, channels: &[String]) -> Result<Self, StoreError> {
        let names: Vec<&str> = channels.iter().map(String::as_str).collect();
        let discarded = core.store.set_notification_channels(&names).await?;
        if discarded > 0 {
            tracing::warn!(
                discarded,
                "notifications for channels no longer configured were discarded"
            );
        }
        Ok(Self {
            core,
            channels: channels.to_vec(),
            failing: RwLock::default(),
        })
    }

    /// The channels, by name.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Whether channel `name`'s last round only failed.
    pub fn failing(&self, name: &str) -> bool {
        self.failing
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(name)
    }

    /// Notes whether channel `name`'s last delivery round only failed.
    pub fn set_failing(&self, name: &str, failing: bool) {
        let mut channels = self
            .failing
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if failing {
            channels.insert(name.to_owned());
        } else {
            channels.remove(name);
        }
    }
}
