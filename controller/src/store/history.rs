//! The change history: every recorded status change, newest first, paged
//! by a cursor, and pruned past its retention.

use super::StoreError;
use super::args::Arg;
use super::model::Status;
use super::parse_stored;
use super::tx::{Query, WriteTx};

/// Changes per page unless asked otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most changes one page holds.
pub const MAX_LIMIT: u32 = 1000;

/// Which changes to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this device's.
    pub device: Option<i64>,
    /// Only the changes of this site's devices.
    pub site: Option<String>,
    /// At or after, Unix ms.
    pub from_ms: Option<i64>,
    /// Before, Unix ms.
    pub to_ms: Option<i64>,
    /// Only the changes after this place in the order (the last change of
    /// the previous page).
    pub after: Option<HistoryCursor>,
    /// At most this many (a page).
    pub limit: u32,
}

/// One page of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first.
    pub changes: Vec<HistoryEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<HistoryCursor>,
}

/// A place in the history's order (newest first): a change's time and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The change's time, Unix ms.
    pub at_ms: i64,
    /// The change's id (orders changes of the same millisecond).
    pub id: i64,
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at_ms, self.id)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split_once('.')
            .and_then(|(at_ms, id)| {
                Some(Self {
                    at_ms: at_ms.parse().ok()?,
                    id: id.parse().ok()?,
                })
            })
            .ok_or_else(|| {
                format!("`{text}` is not a history cursor: pass `next_cursor` from the last page")
            })
    }
}

/// One recorded status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The change's id.
    pub id: i64,
    /// The device.
    pub device_id: i64,
    /// Its name and site now (as they were, if it was deleted).
    pub device_name: String,
    pub site: String,
    /// Its status before and after.
    pub from: Status,
    pub to: Status,
    /// When it changed (the agent's time of the transition), Unix ms.
    pub at_ms: i64,
    /// Why, as recorded (e.g. "3 probes missed", "parent down").
    pub reason: String,
    /// Who reported it: the agent, or the controller's own rule.
    pub agent: String,
}

impl HistoryEntry {
    /// Where the next page starts after this entry.
    pub fn cursor(&self) -> HistoryCursor {
        HistoryCursor {
            at_ms: self.at_ms,
            id: self.id,
        }
    }
}

/// The page of changes `filter` selects, newest first.
pub(super) async fn list<T: Query>(
    tx: &T,
    filter: &HistoryFilter,
) -> Result<HistoryPage, StoreError> {
    let after = filter.after.unwrap_or(HistoryCursor {
        at_ms: i64::MAX,
        id: i64::MAX,
    });
    // One more than the page: whether there is a next page.
    let mut changes = tx
        .rows(
            "SELECT e.id, e.device_id, COALESCE(d.name, x.name, ''), \
             COALESCE(d.site, x.site, ''), e.previous, e.status, e.at_ms, e.reason, e.agent_id \
             FROM status_events e LEFT JOIN devices d ON d.id = e.device_id \
             LEFT JOIN deleted_devices x ON x.id = e.device_id \
             WHERE (CAST($1 AS BIGINT) = 0 OR e.device_id = $1) \
             AND ($2 = '' OR COALESCE(d.site, x.site) = $2) \
         AND e.at_ms >= $3 AND e.at_ms < $4 \
         AND (e.at_ms < $5 OR (e.at_ms = $5 AND e.id < $6)) \
         ORDER BY e.at_ms DESC, e.id DESC LIMIT $7",
            &[
                Arg::Int(filter.device.unwrap_or(0)),
                Arg::Text(filter.site.as_deref().unwrap_or_default()),
                Arg::Int(filter.from_ms.unwrap_or(i64::MIN)),
                Arg::Int(filter.to_ms.unwrap_or(i64::MAX)),
                Arg::Int(after.at_ms),
                Arg::Int(after.id),
                Arg::Int(i64::from(filter.limit) + 1),
            ],
            |row| {
                Ok(HistoryEntry {
                    id: row.int(0)?,
                    device_id: row.int(1)?,
                    device_name: row.text(2)?,
                    site: row.text(3)?,
                    from: parse_stored("previous", &row.text(4)?)?,
                    to: parse_stored("status", &row.text(5)?)?,
                    at_ms: row.int(6)?,
                    reason: row.text(7)?,
                    agent: row.text(8)?,
                })
            },
        )
        .await?;
    let more = changes.len() > filter.limit as usize;
    changes.truncate(filter.limit as usize);
    let next = more
        .then(|| changes.last().map(HistoryEntry::cursor))
        .flatten();
    Ok(HistoryPage { changes, next })
}

/// Deletes the changes recorded before `before_ms`; returns how many.
pub(super) async fn prune<T: WriteTx>(tx: &T, before_ms: i64) -> Result<u64, StoreError> {
    tx.run(
        "DELETE FROM status_events WHERE at_ms < $1",
        &[Arg::Int(before_ms)],
    )
    .await
}
