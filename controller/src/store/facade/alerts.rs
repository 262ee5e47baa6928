//! Alerts after they open: acknowledgements, maintenance holds, flapping
//! settled ([`super::acknowledgements`], [`super::held`],
//! [`super::settling`]).

use super::super::{
    AckOutcome, Actor, Alert, Attached, FlapPolicy, Store, StoreError, acknowledgements, held,
    settling, traces,
};
use ward_domain::trace::Trace;

impl Store {
    /// Acknowledges open alert `id` as `actor` with `comment`, or
    /// withdraws its acknowledgement (`None`); audited
    /// ([`acknowledgements`]).
    pub async fn acknowledge(
        &self,
        id: i64,
        comment: Option<&str>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let (comment, actor) = (comment.map(str::to_owned), actor.clone());
        transaction!(self, |tx| acknowledgements::acknowledge(
            tx,
            id,
            comment.as_deref(),
            &actor,
            now_ms
        ))
    }
    /// Drops notification `notification` of alert `alert` and marks the
    /// alert held (its device is in maintenance; [`held`]).
    pub async fn hold_notification(&self, notification: i64, alert: i64) -> Result<(), StoreError> {
        transaction!(self, |tx| held::hold(tx, notification, alert))
    }
    /// Ends the flapping of the devices stable for `policy`'s window at
    /// `now_ms`, each one's `settled` queued ([`settling`]); returns their
    /// ids.
    pub async fn settle_flapping(
        &self,
        policy: &FlapPolicy,
        now_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let policy = *policy;
        transaction!(self, |tx| settling::settle_flapping(tx, &policy, now_ms))
    }
    /// The latest alert of each flapping device.
    pub async fn flapping_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        on_connection!(self, |tx| settling::latest_of_flapping(tx))
    }
    /// The open alerts whose notifications are held.
    pub async fn held_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        on_connection!(self, |tx| held::held_open(tx))
    }
    /// Releases held alert `alert`, queueing its `firing`; false if it was
    /// not held any more.
    pub async fn release_alert(&self, alert: i64, now_ms: i64) -> Result<bool, StoreError> {
        transaction!(self, |tx| held::release(tx, alert, now_ms))
    }
    /// Keeps each trace as the last trace of its devices and attaches it
    /// to their open device alerts (each notified as `traced` unless
    /// held), all in one transaction; says where each went ([`traces`]).
    pub async fn attach_traces(
        &self,
        traces: &[(Vec<i64>, Trace)],
        now_ms: i64,
    ) -> Result<Vec<Attached>, StoreError> {
        let traces = traces.to_vec();
        transaction!(self, |tx| traces::attach_all(tx, &traces, now_ms))
    }
    /// Device `id`'s last trace, if it has one.
    pub async fn last_trace(&self, id: i64) -> Result<Option<Trace>, StoreError> {
        on_connection!(self, |q| traces::last_of(q, id))
    }
}
