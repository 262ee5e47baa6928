//! Applying agents' transition reports: one alone, or several in one
//! transaction (group commit). Together they take one data version: one
//! turn at the section every status commit goes through one at a time
//! (the version's bump to the commit), where a thousand agents each
//! reporting a change at once took a thousand turns one after another.

use std::collections::HashSet;

use super::StoreError;
use super::flap::FlapPolicy;
use super::model::{ApplyOutcome, StatusChanges, TransitionReport};
use super::operations::next_version;
use super::ownership;
use super::plan::plan;
use super::plan_execution;
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

/// Applies `reports` in order in one transaction, each once per (agent,
/// boot, seq): a later one sees what an earlier one wrote. Their devices
/// are locked first, all in id order, so transactions applying groups at
/// the same time cannot deadlock.
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
    let mut outcomes = Vec::with_capacity(reports.len());
    let mut written = Vec::new();
    let mut changed_something = false;
    for (report, now_ms) in reports {
        if !tx.first_application(report, *now_ms).await? {
            outcomes.push(ApplyOutcome::AlreadyApplied);
            continue;
        }
        let (report, mut ignored) = ownership::owned_by_reporter(tx, report).await?;
        let ids: Vec<i64> = report.transitions.iter().map(|t| t.device_id).collect();
        let current = tx.current_devices(&ids).await?;
        let plan = plan(&report, &current, flapping);
        let executed = plan_execution::execute(tx, &plan, &report.agent_id, *now_ms).await?;
        changed_something |= !executed.changed_nothing();
        written.extend(executed.status_written);
        ignored.extend(plan.ignored.iter().cloned());
        outcomes.push(ApplyOutcome::Applied {
            changes: plan.into(),
            ignored,
        });
    }
    let mut changes = combined(&outcomes);
    // Reports that changed nothing (agents back with no alert open,
    // entries all stale) take no version: a fleet reconnecting would
    // otherwise queue a thousand empty commits on the version row.
    if changed_something {
        let mut seen = HashSet::new();
        written.retain(|id| seen.insert(*id));
        next_version(tx, &mut changes, &written).await?;
        for outcome in &mut outcomes {
            if let ApplyOutcome::Applied { changes: own, .. } = outcome {
                own.version = changes.version;
            }
        }
    }
    Ok(AppliedTogether { outcomes, changes })
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
