//! Maintenance windows, the history of status changes, and what an
//! availability report reads ([`super::maintenance`], [`super::history`],
//! [`super::availability`]).

use super::super::{
    Actor, HistoryFilter, HistoryPage, MaintenanceSpec, MaintenanceWindow, ReportedDevice, Status,
    Store, StoreError, availability, history, maintenance,
};

impl Store {
    /// What an availability report over `from_ms..to_ms` reads: the
    /// devices that existed then (with their status at the start) and the
    /// changes inside the range (device, when, to what), in one
    /// transaction ([`availability`]).
    pub async fn availability_input(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(Vec<ReportedDevice>, Vec<(i64, i64, Status)>), StoreError> {
        transaction!(self, |tx| availability::read(tx, from_ms, to_ms))
    }
    /// Every maintenance window, by id ([`maintenance`]).
    pub async fn maintenance_windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        on_connection!(self, |tx| maintenance::windows(tx, None))
    }
    /// Maintenance window `id`.
    pub async fn maintenance_window(
        &self,
        id: i64,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        Ok(on_connection!(self, |tx| maintenance::windows(tx, Some(id)))?.pop())
    }
    /// Creates a maintenance window (checked first); audited.
    pub async fn create_maintenance(
        &self,
        spec: &MaintenanceSpec,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<MaintenanceWindow, StoreError> {
        spec.validate()?;
        let (spec, actor) = (spec.clone(), actor.clone());
        transaction!(self, |tx| maintenance::create(tx, &spec, &actor, now_ms))
    }
    /// Replaces window `id` (`Some`, checked first) or deletes it
    /// (`None`); audited. `None` if there is no such window; else the
    /// window after (or, deleted, before) the change.
    pub async fn change_maintenance(
        &self,
        id: i64,
        spec: Option<&MaintenanceSpec>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        if let Some(spec) = spec {
            spec.validate()?;
        }
        let (spec, actor) = (spec.cloned(), actor.clone());
        transaction!(self, |tx| maintenance::change(
            tx,
            id,
            spec.as_ref(),
            &actor,
            now_ms
        ))
    }
    /// The status changes `filter` selects, newest first ([`history`]).
    pub async fn history(&self, filter: &HistoryFilter) -> Result<HistoryPage, StoreError> {
        let filter = filter.clone();
        on_connection!(self, |tx| history::list(tx, &filter))
    }
    /// Deletes the status changes recorded before `before_ms` (retention);
    /// returns how many went.
    pub async fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        transaction!(self, |tx| history::prune(tx, before_ms))
    }
}
