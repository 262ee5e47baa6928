//! Maintenance windows: changed by operators (audited), the ones open now
//! kept in memory (re-read by the maintenance job and after each change
//! here), the alerts they held released when they end, and the
//! availability report that accounts for them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::core::Core;
use super::live::LiveEvent;
use crate::store::{Actor, MaintenanceSpec, MaintenanceWindow, StoreError};
use ward_domain::maintenance::OpenWindow;

/// The maintenance windows.
pub struct Maintenance {
    core: Arc<Core>,
    /// The windows open now (re-read every
    /// the maintenance job's period (0.5 s), and after this controller
    /// changes one).
    open_windows: tokio::sync::watch::Sender<Arc<Vec<OpenWindow>>>,
}

impl Maintenance {
    /// No window open until the first refresh.
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            open_windows: tokio::sync::watch::channel(Arc::default()).0,
        }
    }

    /// The maintenance windows open now (at most the maintenance job's period (0.5 s)
    /// old; this controller's own changes at once).
    pub fn open_windows(&self) -> Arc<Vec<OpenWindow>> {
        Arc::clone(&self.open_windows.borrow())
    }

    /// Creates a maintenance window (`id` `None`), replaces window `id`
    /// (`spec` given) or deletes it (`spec` `None`); audited as `actor`.
    /// This controller sees the change at once, the others within
    /// the maintenance job's period (0.5 s). `None` if there is no such window.
    pub async fn change_maintenance(
        &self,
        id: Option<i64>,
        spec: Option<MaintenanceSpec>,
        actor: &Actor,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        let now = crate::time::now_ms();
        let changed = match (id, spec) {
            (None, Some(spec)) => Some(
                self.core
                    .store
                    .create_maintenance(&spec, actor, now)
                    .await?,
            ),
            (Some(id), spec) => {
                self.core
                    .store
                    .change_maintenance(id, spec.as_ref(), actor, now)
                    .await?
            }
            (None, None) => None,
        };
        // A failed re-read is counted by the store; the maintenance job
        // reads them again within half a second.
        let _ = self.refresh_maintenance().await;
        Ok(changed)
    }

    /// Releases the held alerts no open window covers any more (their
    /// `firing` queued; the outbox woken); returns how many.
    pub async fn release_held(&self) -> Result<u64, StoreError> {
        let open = self.open_windows();
        let mut released = 0;
        for alert in self.core.store.held_alerts().await? {
            // A flapping device's alerts wait for it to settle.
            if alert.flapping {
                continue;
            }
            let covered = alert.device_id.is_some_and(|id| {
                open.iter().any(|open| {
                    open.window
                        .spec
                        .covers_subject(id, &alert.site, &alert.tags)
                })
            });
            if !covered
                && self
                    .core
                    .store
                    .release_alert(alert.id, crate::time::now_ms())
                    .await?
            {
                released += 1;
            }
        }
        if released > 0 {
            self.core
                .metrics
                .held_alerts_released
                .fetch_add(released, Ordering::Relaxed);
            self.core.live.outbox_changed();
            tracing::info!(
                released,
                "maintenance over: the held alerts' firing notifications are queued"
            );
        }
        Ok(released)
    }

    /// The availability report over `range` ([`ward_domain::availability`]):
    /// the recorded changes and the maintenance windows as they are now.
    pub async fn availability(
        &self,
        range: ward_domain::availability::Span,
        by: ward_domain::availability::By,
        filter: &ward_domain::availability::ReportFilter,
    ) -> Result<
        Vec<(
            ward_domain::availability::RowKey,
            ward_domain::availability::Totals,
        )>,
        StoreError,
    > {
        let (devices, changes) = self.core.store.availability_input(range.0, range.1).await?;
        let windows = self.core.store.maintenance_windows().await?;
        Ok(ward_domain::availability::report(
            &devices, &changes, &windows, range, by, filter,
        ))
    }

    /// Reads the windows again and keeps those open now. When that
    /// changes (a window made, edited or deleted, or one starting or
    /// ending on its schedule) every live screen is told to reload
    /// (`resync`): which devices are in maintenance is read, not written
    /// per device, so there is no status event to carry it.
    pub async fn refresh_maintenance(&self) -> Result<(), StoreError> {
        let windows = self.core.store.maintenance_windows().await?;
        let open = Arc::new(ward_domain::maintenance::open_at(
            windows,
            crate::time::now_ms(),
        ));
        let before = self.open_windows.send_replace(Arc::clone(&open));
        if before != open {
            self.core.live.send(LiveEvent::Resync);
        }
        Ok(())
    }
}
