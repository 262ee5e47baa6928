//! Applying agents' transition reports: one alone, or several in one
//! transaction (group commit). Together they take one data version: one
//! turn at the section every status commit goes through one at a time
//! (the version's bump to the commit), where a thousand agents each
//! reporting a change at once took a thousand turns one after another.

use std::collections::{HashMap, HashSet};

use futures_util::future::try_join_all;

use super::StoreError;
use super::flap::FlapPolicy;
use super::model::{ApplyOutcome, Ignored, StatusChanges, TransitionReport};
use super::operations::next_version;
use super::ownership;
use super::plan::{CurrentDevice, Plan, plan};
use super::plan_execution::{self, Planned, StatusWrites};
use super::tx::WriteTx;

/// A report and the time it is applied at.
pub type Received = (TransitionReport, i64);

/// What applying reports together did.
#[derive(Debug)]
pub struct AppliedTogether {
    /// Each report's outcome, in order; an applied one's changes are its
    /// own, at the version of them all.
    pub outcomes: Vec<ApplyOutcome>,
    /// Every report's changes as one write (a device changed by two keeps
    /// its first `previous`), with the devices as the transaction left
    /// them: what live events show.
    pub changes: StatusChanges,
}

/// Applies `reports` in one transaction, each once per (agent, boot, seq),
/// as if one after another: a report that reads a device (or an agent's
/// alert) an earlier one writes sees that write. Their devices are locked
/// first, all in id order, so transactions applying groups at the same
/// time cannot deadlock. The reports go in waves, each as far as the next
/// report that touches what one before it in the wave touches; within a
/// wave each step of every report goes at once (on PostgreSQL pipelined on
/// the connection) and their plans are executed together, each set of
/// rows in one statement: a wave of 256 single-device reports is a few
/// round trips and a handful of writes, not a thousand.
pub(super) async fn apply_together(
    tx: &impl WriteTx,
    reports: &[Received],
    flapping: &FlapPolicy,
) -> Result<AppliedTogether, StoreError> {
    if reports.len() > 1 {
        let ids: Vec<i64> = reports
            .iter()
            .flat_map(|(report, _)| report.transitions.iter().map(|t| t.device_id))
            .collect();
        tx.current_devices(&ids).await?;
    }
    let firsts = try_join_all(
        reports
            .iter()
            .map(|(report, now_ms)| tx.first_application(report, *now_ms)),
    )
    .await?;
    let new: Vec<&Received> = reports
        .iter()
        .zip(&firsts)
        .filter_map(|(received, &first)| first.then_some(received))
        .collect();
    let owned = try_join_all(
        new.iter()
            .map(|(report, _)| ownership::owned_by_reporter(tx, report)),
    )
    .await?;
    let mut pending: Vec<Pending> = new
        .iter()
        .zip(owned)
        .map(|((_, now_ms), (report, ignored))| Pending {
            report,
            ignored,
            now_ms: *now_ms,
            current: None,
        })
        .collect();
    let mut applied = Vec::with_capacity(pending.len());
    let mut written = StatusWrites::default();
    let mut changed_something = false;
    while !pending.is_empty() {
        read_current(tx, &mut pending).await?;
        let wave = wave_length(&pending);
        let rest = pending.split_off(wave);
        let none = HashMap::new();
        let plans: Vec<Plan> = pending
            .iter()
            .map(|p| plan(&p.report, p.current.as_ref().unwrap_or(&none), flapping))
            .collect();
        let planned: Vec<Planned<'_>> = pending
            .iter()
            .zip(&plans)
            .map(|(p, plan)| Planned {
                plan,
                actor: &p.report.agent_id,
                now_ms: p.now_ms,
            })
            .collect();
        let executed = plan_execution::execute_together(tx, &planned).await?;
        let touched: HashSet<Touched> = pending.iter().flat_map(Pending::touches).collect();
        for ((p, plan), executed) in pending.into_iter().zip(plans).zip(executed) {
            changed_something |= !executed.changed_nothing();
            written.extend(executed.status_written);
            let mut ignored = p.ignored;
            ignored.extend(plan.ignored.iter().cloned());
            applied.push(ApplyOutcome::Applied {
                changes: plan.into(),
                ignored,
            });
        }
        pending = rest;
        // What the wave wrote is read again by the reports that read it.
        for p in &mut pending {
            if p.touches().any(|key| touched.contains(&key)) {
                p.current = None;
            }
        }
    }
    let mut applied = applied.into_iter();
    let mut outcomes: Vec<ApplyOutcome> = firsts
        .iter()
        .map(|&first| {
            let applied = if first { applied.next() } else { None };
            applied.unwrap_or(ApplyOutcome::AlreadyApplied)
        })
        .collect();
    let mut changes = combined(&outcomes);
    // Reports that changed nothing (agents back with no alert open,
    // entries all stale) take no version: a fleet reconnecting would
    // otherwise queue a thousand empty commits on the version row.
    if changed_something {
        next_version(tx, &mut changes, written).await?;
        for outcome in &mut outcomes {
            if let ApplyOutcome::Applied { changes: own, .. } = outcome {
                own.version = changes.version;
            }
        }
    }
    Ok(AppliedTogether { outcomes, changes })
}

/// A new report of a group, what of it its reporter owns, and the rows
/// its plan reads once read.
struct Pending {
    report: TransitionReport,
    ignored: Vec<(i64, Ignored)>,
    now_ms: i64,
    current: Option<HashMap<i64, CurrentDevice>>,
}

/// What a report's plan reads and writes: device rows (its devices, their
/// parents and descendants) and agents' alerts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Touched {
    Device(i64),
    Agent(String),
}

impl Pending {
    fn touches(&self) -> impl Iterator<Item = Touched> + '_ {
        let devices = self
            .current
            .iter()
            .flat_map(|current| current.keys().copied().map(Touched::Device));
        // Not yet read: what it reports on.
        let reported = self
            .current
            .is_none()
            .then(|| {
                self.report
                    .transitions
                    .iter()
                    .map(|t| Touched::Device(t.device_id))
            })
            .into_iter()
            .flatten();
        let agents = self
            .report
            .agent_alerts
            .iter()
            .map(|alert| Touched::Agent(alert.agent_id.clone()));
        devices.chain(reported).chain(agents)
    }
}

/// Reads, all at once, the rows of the reports that have none read.
async fn read_current(tx: &impl WriteTx, pending: &mut [Pending]) -> Result<(), StoreError> {
    let unread: Vec<&mut Pending> = pending.iter_mut().filter(|p| p.current.is_none()).collect();
    let read = try_join_all(unread.iter().map(|p| {
        let ids: Vec<i64> = p.report.transitions.iter().map(|t| t.device_id).collect();
        async move { tx.current_devices(&ids).await }
    }))
    .await?;
    for (p, current) in unread.into_iter().zip(read) {
        p.current = Some(current);
    }
    Ok(())
}

/// How many of `pending` (at least one) go in the next wave: up to the
/// first that touches what one before it touches.
fn wave_length(pending: &[Pending]) -> usize {
    let mut touched = HashSet::new();
    for (index, p) in pending.iter().enumerate() {
        let keys: Vec<Touched> = p.touches().collect();
        if index > 0 && keys.iter().any(|key| touched.contains(key)) {
            return index;
        }
        touched.extend(keys);
    }
    pending.len()
}

/// The applied reports' changes as one: each device once, with its first
/// `previous`.
fn combined(outcomes: &[ApplyOutcome]) -> StatusChanges {
    let mut together = StatusChanges::default();
    let mut seen = HashSet::new();
    for outcome in outcomes {
        let ApplyOutcome::Applied { changes, .. } = outcome else {
            continue;
        };
        for (&id, &previous) in changes.changed.iter().zip(&changes.previous) {
            if seen.insert(id) {
                together.changed.push(id);
                together.previous.push(previous);
            }
        }
        together.withheld += changes.withheld;
    }
    together
}

/// Applies one report (see [`apply_together`]); its changes carry the
/// devices as the transaction left them.
pub(super) async fn apply(
    tx: &impl WriteTx,
    report: &Received,
    flapping: &FlapPolicy,
) -> Result<ApplyOutcome, StoreError> {
    let together = apply_together(tx, std::slice::from_ref(report), flapping).await?;
    Ok(match together.outcomes.into_iter().next() {
        Some(ApplyOutcome::Applied { ignored, .. }) => ApplyOutcome::Applied {
            changes: together.changes,
            ignored,
        },
        _ => ApplyOutcome::AlreadyApplied,
    })
}
