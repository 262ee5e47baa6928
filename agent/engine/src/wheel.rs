//! A timing wheel: one pending event per target, O(1) insert and expiry.
//!
//! Slots are [`RESOLUTION_NS`] wide and the wheel spans [`SLOTS`] of them.
//! An event further away than the span lands in the slot it maps to and is
//! handed out early; the engine sees that its target's event time is still
//! in the future and inserts it again. Entries carry a token: when a target
//! is rescheduled its token changes, and the entry left behind is stale.

use super::Nanos;

/// Width of one slot: events fire up to this much after their time.
pub const RESOLUTION_NS: Nanos = 250_000;
const SLOTS: usize = 8192;

/// A scheduled event: which target, and which of its schedulings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Target slot.
    pub index: u32,
    /// The target's schedule token when this entry was made.
    pub token: u16,
}

/// The wheel. Slot vectors keep their capacity, so a steady state
/// allocates nothing.
pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    /// Absolute number of the next slot to expire; all before it are done.
    cursor: u64,
}

impl Wheel {
    /// An empty wheel positioned at `now`.
    pub fn new(now: Nanos) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: now / RESOLUTION_NS,
        }
    }

    /// Schedules `entry` at `due` (never earlier than the next slot to
    /// expire).
    pub fn insert(&mut self, due: Nanos, entry: Entry) {
        let slot = (due / RESOLUTION_NS).max(self.cursor);
        self.slots[slot_position(slot)].push(entry);
    }

    /// Moves every entry of the slots that ended by `now` into `expired`,
    /// in slot order. Entries inserted afterwards for times up to `now`
    /// land in the next slot.
    pub fn expire(&mut self, now: Nanos, expired: &mut Vec<Entry>) {
        let last = now / RESOLUTION_NS;
        while self.cursor <= last {
            expired.append(&mut self.slots[slot_position(self.cursor)]);
            self.cursor += 1;
        }
    }

    /// When the next live entry is due, if any: `due` gives a live
    /// entry's time (`None` for a stale one), the earliest of the first
    /// slot holding one is returned (within that slot), and
    /// the stale entries of the slots before it are dropped (a probe
    /// answered leaves its timeout behind: without this, an idle engine
    /// would wake for every one). Scans at most the whole wheel; used only
    /// to decide how long to sleep.
    pub fn next_due(&mut self, due: impl Fn(&Entry) -> Option<Nanos>) -> Option<Nanos> {
        for slot in (0..SLOTS as u64).map(|offset| self.cursor + offset) {
            let entries = &mut self.slots[slot_position(slot)];
            if entries.is_empty() {
                continue;
            }
            entries.retain(|entry| due(entry).is_some());
            // An entry due beyond the slot is one further away than the
            // wheel's span, placed here to be inserted again: wake at the
            // slot's end for it.
            let end = (slot + 1) * RESOLUTION_NS;
            if let Some(earliest) = entries.iter().filter_map(&due).map(|at| at.min(end)).min() {
                return Some(earliest.max(slot * RESOLUTION_NS));
            }
        }
        None
    }
}

fn slot_position(slot: u64) -> usize {
    (slot % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32) -> Entry {
        Entry { index, token: 0 }
    }

    #[test]
    fn entries_expire_in_time_order_and_not_before() {
        let mut wheel = Wheel::new(0);
        wheel.insert(3_000_000, entry(3));
        wheel.insert(1_000_000, entry(1));
        wheel.insert(2_000_000, entry(2));
        let mut seen = Vec::new();
        wheel.expire(999_999, &mut seen);
        assert!(seen.is_empty());
        wheel.expire(3_000_000, &mut seen);
        let order: Vec<u32> = seen.iter().map(|e| e.index).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn an_entry_inserted_for_the_past_waits_for_the_next_slot() {
        let mut wheel = Wheel::new(0);
        wheel.insert(0, entry(1));
        let mut seen = Vec::new();
        wheel.expire(0, &mut seen);
        assert_eq!(seen, [entry(1)]);
        wheel.insert(0, entry(2));
        wheel.expire(0, &mut seen);
        assert_eq!(seen, [entry(1)], "slot 0 is over");
        wheel.expire(RESOLUTION_NS, &mut seen);
        assert_eq!(seen, [entry(1), entry(2)]);
    }

    #[test]
    fn the_next_due_time_is_the_earliest_live_entry_of_the_first_busy_slot() {
        let mut wheel = Wheel::new(0);
        let due_at = |entry: &Entry| Some(Nanos::from(entry.index) * 1000);
        assert_eq!(wheel.next_due(due_at), None);
        wheel.insert(10 * RESOLUTION_NS + 5, entry(2_505));
        wheel.insert(10 * RESOLUTION_NS + 7, entry(2_507));
        wheel.insert(20 * RESOLUTION_NS, entry(5_000));
        assert_eq!(wheel.next_due(due_at), Some(2_505_000));
        // 2,505 and 2,507 are stale (their targets were rescheduled):
        // skipped, and gone.
        let live = |entry: &Entry| (entry.index == 5_000).then_some(5_000_000);
        assert_eq!(wheel.next_due(live), Some(20 * RESOLUTION_NS));
        let mut seen = Vec::new();
        wheel.expire(20 * RESOLUTION_NS, &mut seen);
        assert_eq!(seen, [entry(5_000)]);
        // An entry beyond the span sits in an earlier slot: wake at that
        // slot's end to insert it again, not at its far time.
        let far = SLOTS as Nanos * RESOLUTION_NS + 30 * RESOLUTION_NS;
        wheel.insert(far, entry(1));
        wheel.insert(40 * RESOLUTION_NS, entry(2));
        let due = |entry: &Entry| {
            Some(if entry.index == 1 {
                far
            } else {
                40 * RESOLUTION_NS
            })
        };
        assert_eq!(wheel.next_due(due), Some(31 * RESOLUTION_NS));
    }
}
