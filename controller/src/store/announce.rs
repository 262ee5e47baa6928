//! Committed status changes announced to every controller on a PostgreSQL
//! database: the transaction that changes statuses sends a `NOTIFY` on
//! [`CHANNEL`] (delivered at its commit, in commit order), naming the
//! controller it came from (its connections' `ward.origin` setting) and
//! the devices with their previous status, or only that there were too
//! many to name; an inventory write (devices, their owners) sends
//! [`INVENTORY`]. Each controller listens, hands the others' changes to
//! its live subscribers and tells its agent links of new inventories.

use tokio::sync::mpsc;

use super::model::StatusChanges;

/// The notification channel.
pub(super) const CHANNEL: &str = "ward_changes";

/// The payload after the origin of an inventory write.
pub(super) const INVENTORY: &str = "inventory";

/// `NOTIFY` payloads are at most 8000 bytes: beyond this, "too many".
const MOST_BYTES: usize = 7_000;

/// What a transaction's payload says after its origin: its data version,
/// then `[[id,"down"],…]`, or `resync` when naming them all would not fit
/// (`v42 [[7,"up"]]`).
pub(super) fn payload(changes: &StatusChanges) -> String {
    let named: Vec<(i64, &str)> = changes
        .changed
        .iter()
        .copied()
        .zip(changes.previous.iter().map(|status| status.as_str()))
        .collect();
    let text = serde_json::to_string(&named).unwrap_or_default();
    if text.is_empty() || text.len() > MOST_BYTES {
        "resync".into()
    } else {
        text
    }
}

/// A commit of some controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    /// The store (of a controller) that committed it.
    pub origin: String,
    /// What it changed.
    pub what: Announcement,
}

/// What a commit changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// These statuses.
    Changes(StatusChanges),
    /// Too many statuses to name (committed at this data version):
    /// reload.
    Resync(i64),
    /// The inventory (devices, their owners).
    Inventory,
}

/// Reads a notification's payload (`origin changes`); `None` if it is not
/// one of ours.
pub(super) fn parse(payload: &str) -> Option<Announced> {
    let (origin, rest) = payload.split_once(' ')?;
    let what = if rest == INVENTORY {
        Announcement::Inventory
    } else {
        let (version, rest) = rest.strip_prefix('v')?.split_once(' ')?;
        let version: i64 = version.parse().ok()?;
        if rest == "resync" {
            return Some(Announced {
                origin: origin.to_owned(),
                what: Announcement::Resync(version),
            });
        }
        let named: Vec<(i64, String)> = serde_json::from_str(rest).ok()?;
        let mut changes = StatusChanges {
            withheld: 0,
            version: Some(version),
            ..StatusChanges::default()
        };
        for (id, previous) in named {
            changes.changed.push(id);
            changes.previous.push(previous.parse().ok()?);
        }
        Announcement::Changes(changes)
    };
    Some(Announced {
        origin: origin.to_owned(),
        what,
    })
}

/// A connection listening on [`CHANNEL`]; announcements arrive on
/// `announced` until the connection ends (then it closes).
pub struct Listening {
    /// The announcements, in commit order.
    pub announced: mpsc::UnboundedReceiver<Announced>,
    /// Keeps the connection open.
    pub(super) _client: tokio_postgres::Client,
}

#[cfg(test)]
mod tests {
    use super::super::model::Status;
    use super::*;

    #[test]
    fn changes_round_trip_and_too_many_become_a_resync() {
        let changes = StatusChanges {
            changed: vec![7, 9],
            previous: vec![Status::Up, Status::Unknown],
            withheld: 0,
            version: Some(42),
            devices: Vec::new(),
        };
        let text = payload(&changes);
        let announced = parse(&format!("abc v42 {text}")).expect("ours");
        assert_eq!(announced.origin, "abc");
        let Announcement::Changes(changes) = announced.what else {
            panic!("named changes");
        };
        assert_eq!(changes.changed, [7, 9]);
        assert_eq!(changes.previous, [Status::Up, Status::Unknown]);
        assert_eq!(changes.version, Some(42));
        let many = StatusChanges {
            changed: (0..2_000).collect(),
            previous: vec![Status::Down; 2_000],
            version: None,
            withheld: 0,
            devices: Vec::new(),
        };
        assert_eq!(payload(&many), "resync");
        assert_eq!(
            parse("abc v43 resync").expect("ours").what,
            Announcement::Resync(43)
        );
        assert_eq!(
            parse("abc inventory").expect("ours").what,
            Announcement::Inventory
        );
        assert_eq!(parse("garbage"), None);
    }
}
