//! What the controllers of one database share: announcements, which
//! controller holds which agent, leases, membership, agent groups, the
//! event log ([`super::presence`], [`super::announce`],
//! [`super::event_log`]).

use super::super::{
    Backend, ControllerMember, HeardAgent, Listening, LoggedChange, Settlement, Store, StoreError,
    event_log, operations, presence,
};

impl Store {
    /// A connection listening for the status changes every controller on
    /// the database commits ([`announce`]); `None` on SQLite, which has one
    /// controller.
    pub async fn listen(&self) -> Result<Option<Listening>, StoreError> {
        match &self.backend {
            Backend::Postgres(store) => Ok(Some(self.counted(store.listen().await)?)),
            Backend::Sqlite(_) => Ok(None),
        }
    }
    /// This store's id in its announcements (`None` on SQLite).
    pub fn origin(&self) -> Option<&str> {
        match &self.backend {
            Backend::Postgres(store) => Some(store.origin()),
            Backend::Sqlite(_) => None,
        }
    }
    /// `controller` (an instance id) holds the links of `agents` now.
    pub async fn heard(&self, controller: &str, agents: &[String]) -> Result<(), StoreError> {
        let (controller, agents) = (controller.to_owned(), agents.to_vec());
        transaction!(self, |tx| presence::heard(tx, &controller, &agents))
    }
    /// Takes or renews lease `name` for `holder` for `ttl_ms` (the
    /// database's clock); `true` while `holder` holds it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        transaction!(self, |tx| presence::take_lease(tx, &name, &holder, ttl_ms))
    }
    /// Settles every agent group (see [`groups`]): devices of lost agents
    /// to live ones, groups rebalanced; an agent is live while heard
    /// within `failover_delay_ms` (the database's clock).
    pub async fn settle_groups(&self, failover_delay_ms: i64) -> Result<Settlement, StoreError> {
        transaction!(self, |tx| operations::settle_groups(tx, failover_delay_ms))
    }
    /// Controller `instance` (of `version`, started at `started_at_ms`)
    /// is alive: its membership row heard now.
    pub async fn controller_alive(
        &self,
        instance: &str,
        version: &str,
        started_at_ms: i64,
    ) -> Result<(), StoreError> {
        let (instance, version) = (instance.to_owned(), version.to_owned());
        transaction!(self, |tx| presence::controller_alive(
            tx,
            &instance,
            &version,
            started_at_ms
        ))
    }
    /// Every controller of the cluster, with the jobs each holds.
    pub async fn controllers(&self) -> Result<Vec<ControllerMember>, StoreError> {
        on_connection!(self, |tx| presence::members(tx))
    }
    /// The status changes committed after data version `version`, in
    /// commit order, at most `limit`.
    pub async fn changes_since(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        on_connection!(self, |tx| event_log::since(tx, version, limit))
    }
    /// The status changes one transaction committed at data version
    /// `version`, at most `limit`.
    pub async fn changes_at(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        on_connection!(self, |tx| event_log::at(tx, version, limit))
    }
    /// Every agent some controller heard, with how long ago (by the
    /// database's clock).
    pub async fn heard_agents(&self) -> Result<Vec<HeardAgent>, StoreError> {
        on_connection!(self, |tx| presence::heard_agents(tx))
    }
}
