//! Applying agents' transition reports: one alone, or several in one
//! transaction (group commit). Together they take one data version: one
//! turn at the section every status commit goes through one at a time
//! (the version's bump to the commit), where a thousand agents each
//! reporting a change at once took a thousand turns one after another.

use std::collections::{HashMap, HashSet};

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
/// time cannot deadlock; that read is the first wave's. Whether each is
/// new and what of it its reporter owns are one statement each for them
/// all. The reports go in waves, each as far as the next report that
/// touches what one before it in the wave touches; a wave reads what its
/// reports read in one statement and their plans are executed together,
/// each set of rows in one statement: a group of 256 single-device
/// reports is a handful of statements, not a thousand.
pub(super) async fn apply_together(
    tx: &impl WriteTx,
    reports: &[Received],
    flapping: &FlapPolicy,
) -> Result<AppliedTogether, StoreError> {
    // Read (and locked) at once: what the first wave reads.
    let mut read_ahead = if reports.len() > 1 {
        let ids: Vec<i64> = reports
            .iter()
            .flat_map(|(report, _)| report.transitions.iter().map(|t| t.device_id))
            .collect();
        Some(tx.current_devices(&ids).await?)
    } else {
        None
    };
    let firsts = tx.first_applications(reports).await?;
    let new: Vec<&Received> = reports
        .iter()
        .zip(&firsts)
        .filter_map(|(received, &first)| first.then_some(received))
        .collect();
    let new_reports: Vec<&TransitionReport> = new.iter().map(|(report, _)| report).collect();
    let owned = ownership::owned_by_reporters(tx, &new_reports).await?;
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
        read_current(tx, &mut pending, read_ahead.take()).await?;
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
async fn read_current(
    tx: &impl WriteTx,
    pending: &mut [Pending],
    read_ahead: Option<HashMap<i64, CurrentDevice>>,
) -> Result<(), StoreError> {
    let mut unread: Vec<&mut Pending> =
        pending.iter_mut().filter(|p| p.current.is_none()).collect();
    if unread.is_empty() {
        return Ok(());
    }
    let every = match read_ahead {
        Some(every) => every,
        None => {
            let ids: Vec<i64> = unread
                .iter()
                .flat_map(|p| p.report.transitions.iter().map(|t| t.device_id))
                .collect();
            tx.current_devices(&ids).await?
        }
    };
    if let [only] = &mut unread[..] {
        only.current = Some(every);
        return Ok(());
    }
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for (&id, device) in &every {
        if let Some(parent) = device.parent_id {
            children.entry(parent).or_default().push(id);
        }
    }
    for p in unread {
        p.current = Some(read_of(&p.report, &every, &children));
    }
    Ok(())
}

/// What `WriteTx::current_devices` reads for `report` alone (its devices,
/// their parents and all their descendants), out of what it read for
/// several reports (`every`, with the `children` of each device there).
fn read_of(
    report: &TransitionReport,
    every: &HashMap<i64, CurrentDevice>,
    children: &HashMap<i64, Vec<i64>>,
) -> HashMap<i64, CurrentDevice> {
    let mut read = HashMap::new();
    let mut tree: HashSet<i64> = HashSet::new();
    let mut stack: Vec<i64> = report.transitions.iter().map(|t| t.device_id).collect();
    for id in &stack {
        if let Some(parent) = every.get(id).and_then(|device| device.parent_id)
            && let Some(device) = every.get(&parent)
        {
            read.insert(parent, device.clone());
        }
    }
    while let Some(id) = stack.pop() {
        let Some(device) = every.get(&id) else {
            continue;
        };
        if tree.insert(id) {
            read.insert(id, device.clone());
            stack.extend(children.get(&id).into_iter().flatten());
        }
    }
    read
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
