//! Device ownership in the store: the agent groups' rules ([`groups`])
//! run over the rows of one transaction, whole settlements serialised (two
//! controllers never settle every group from the same rows), and a
//! report about a device is applied only from its owner.

use std::collections::{BTreeMap, HashMap};

use super::StoreError;
use super::args::Arg;
use super::groups::{self, Member, Move, Owned, Scope};
use super::model::{CONTROLLER_REPORTS, Ignored, TransitionReport};
use super::tx::WriteTx;

/// What a settlement found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Every agent, as the shared presence knows it.
    pub members: Vec<Member>,
    /// The devices given to another agent.
    pub moves: Vec<Move>,
}

/// Ids written into one statement at most.
pub(super) const IDS_PER_STATEMENT: usize = 500;

/// Settles the groups of `sites` (every site when `None`) within `scope`,
/// an agent counting as live while heard within `failover_delay_ms`.
pub(super) async fn settle<T: WriteTx>(
    tx: &T,
    sites: Option<&[String]>,
    failover_delay_ms: i64,
    scope: Scope,
) -> Result<Settlement, StoreError> {
    // Whole settlements one at a time (two lease holders overlapping at a
    // hand-over); placing orphans needs no lock: concurrent placements of
    // one device end with the last one, a valid owner.
    if scope == Scope::Everything {
        tx.rows(T::LOCK_SETTLEMENTS, &[], |_| Ok(())).await?;
    }
    let members = members(tx).await?;
    let devices = owned_devices(tx, sites).await?;
    let moves = groups::settle(&members, &devices, failover_delay_ms, scope);
    write_moves(tx, &moves).await?;
    Ok(Settlement { members, moves })
}

/// Every registered agent with how long ago it was heard and since when
/// it has been heard without a gap (the database's clock).
async fn members<T: WriteTx>(tx: &T) -> Result<Vec<Member>, StoreError> {
    tx.rows(
        &format!(
            "SELECT a.id, a.site, {now} - p.heard_at_ms, {now} - p.online_since_ms \
                 FROM agents a LEFT JOIN agent_presence p ON p.agent_id = a.id",
            now = T::NOW_MS
        ),
        &[],
        |row| {
            Ok(Member {
                id: row.text(0)?,
                site: row.text(1)?,
                heard_ago_ms: row.opt_int(2)?,
                online_for_ms: row.opt_int(3)?,
            })
        },
    )
    .await
}

/// The devices of every agent group (a site with two or more agents),
/// through the `(site, name)` index: only a group's devices move once
/// placed (a one-agent site's devices are placed when written or when its
/// agent registers, `Scope::Orphans`, and stay). Reading all 200,000
/// devices of a fleet of one-agent sites took 300 ms every half second.
const GROUPED_DEVICES: &str = "SELECT id, site, agent FROM devices \
     WHERE site IN (SELECT site FROM agents GROUP BY site HAVING COUNT(*) > 1)";

/// The devices of `sites` with their owners; with `None`, every agent
/// group's ([`GROUPED_DEVICES`]).
async fn owned_devices<T: WriteTx>(
    tx: &T,
    sites: Option<&[String]>,
) -> Result<Vec<Owned>, StoreError> {
    let read = |row: &dyn super::rows::Columns| {
        Ok(Owned {
            device_id: row.int(0)?,
            site: row.text(1)?,
            agent: row.opt_text(2)?,
        })
    };
    Ok(match sites {
        None => tx.rows(GROUPED_DEVICES, &[], read).await?,
        Some(sites) => {
            let mut devices = Vec::new();
            for site in sites {
                devices.extend(
                    tx.rows(
                        "SELECT id, site, agent FROM devices WHERE site = $1",
                        &[Arg::Text(site)],
                        read,
                    )
                    .await?,
                );
            }
            devices
        }
    })
}

/// Writes `moves`, the devices locked in id order first.
async fn write_moves<T: WriteTx>(tx: &T, moves: &[Move]) -> Result<(), StoreError> {
    // Locked in id order first, as report transactions lock devices: two
    // writers never wait on each other's rows in opposite orders.
    let mut moved: Vec<i64> = moves.iter().map(|m| m.device_id).collect();
    moved.sort_unstable();
    for chunk in moved.chunks(IDS_PER_STATEMENT) {
        tx.rows(
            &format!(
                "SELECT id FROM devices WHERE id IN ({}) ORDER BY id {}",
                id_list(chunk),
                T::LOCKING
            ),
            &[],
            |row| row.int(0),
        )
        .await?;
    }
    let mut by_owner: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for moved in moves {
        by_owner.entry(&moved.to).or_default().push(moved.device_id);
    }
    for (agent, ids) in by_owner {
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            tx.run(
                &format!(
                    "UPDATE devices SET agent = $1 WHERE id IN ({})",
                    id_list(chunk)
                ),
                &[Arg::Text(agent)],
            )
            .await?;
        }
    }
    Ok(())
}

/// Each of `reports` without what its agent may not report (devices it
/// does not own), and what that was, in order; the owners of every
/// report's devices read at once. The controller's own reports pass whole.
pub(super) async fn owned_by_reporters<T: WriteTx>(
    tx: &T,
    reports: &[&TransitionReport],
) -> Result<Vec<(TransitionReport, Vec<(i64, Ignored)>)>, StoreError> {
    let checked = |report: &&&TransitionReport| {
        report.agent_id != CONTROLLER_REPORTS && !report.transitions.is_empty()
    };
    let mut ids: Vec<i64> = reports
        .iter()
        .filter(checked)
        .flat_map(|report| report.transitions.iter().map(|t| t.device_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let statements: Vec<String> = ids
        .chunks(IDS_PER_STATEMENT)
        .map(|chunk| {
            format!(
                "SELECT id, agent FROM devices WHERE id IN ({})",
                id_list(chunk)
            )
        })
        .collect();
    let read = futures_util::future::try_join_all(
        statements
            .iter()
            .map(|statement| tx.rows(statement, &[], |row| Ok((row.int(0)?, row.opt_text(1)?)))),
    )
    .await?;
    let owners: HashMap<i64, Option<String>> = read.into_iter().flatten().collect();
    Ok(reports
        .iter()
        .map(|report| {
            let mut owned = (*report).clone();
            let mut ignored = Vec::new();
            if checked(&report) {
                owned.transitions.retain(|transition| {
                    // A device without an owner (its site has no agent) or
                    // unknown here is for the rules to judge.
                    let foreign = owners
                        .get(&transition.device_id)
                        .and_then(Option::as_deref)
                        .is_some_and(|owner| owner != report.agent_id);
                    if foreign {
                        ignored.push((transition.device_id, Ignored::NotOwner));
                    }
                    !foreign
                });
            }
            (owned, ignored)
        })
        .collect())
}

/// `1,2,3`: ids are integers, written into the statement as they are.
pub(super) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
