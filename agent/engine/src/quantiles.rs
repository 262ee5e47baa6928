//! Exact RTT quantiles per report period, in fixed memory. When the engine
//! is told its report period, each target gets, as it is added, room for
//! every reply one period can hold (`period / interval + 2`, at most
//! [`MOST_SAMPLES`]) and never more; the period's median and 90th
//! percentile are picked from its replies (nearest rank) when its
//! statistics are taken. Without a period (the `probe` command) nothing is
//! kept.

/// The most replies kept per target and period (16 KiB): beyond, the
/// quantiles are those of the first ones.
pub const MOST_SAMPLES: usize = 4_096;

/// Every target's replies of the current period.
#[derive(Debug, Default)]
pub(super) struct RttSamples {
    period_ms: Option<u32>,
    slots: Vec<Slot>,
}

/// One target's replies and the most it keeps.
#[derive(Debug, Default)]
struct Slot {
    room: usize,
    values: Vec<u32>,
}

impl RttSamples {
    pub fn new(period_ms: Option<u32>) -> Self {
        Self {
            period_ms,
            slots: Vec::new(),
        }
    }

    /// Slot `index` now holds a target probed every `interval_ms`: room
    /// for one period of its replies, none kept yet.
    pub fn reset(&mut self, index: u32, interval_ms: u32) {
        let Some(period_ms) = self.period_ms else {
            return;
        };
        let index = index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let room = ((period_ms / interval_ms.max(1)) as usize + 2).min(MOST_SAMPLES);
        let slot = &mut self.slots[index];
        slot.room = room;
        slot.values.clear();
        slot.values.shrink_to(room);
        slot.values.reserve(room);
    }

    /// A reply of `rtt_us` for slot `index` (kept while there is room).
    pub fn record(&mut self, index: u32, rtt_us: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize)
            && slot.values.len() < slot.room
        {
            slot.values.push(rtt_us);
        }
    }

    /// Slot `index`'s median and 90th percentile this period, µs (`None`
    /// without replies, or without a period); starts a new period.
    pub fn take(&mut self, index: u32) -> Option<(u32, u32)> {
        let values = &mut self.slots.get_mut(index as usize)?.values;
        if values.is_empty() {
            return None;
        }
        let quantiles = (nearest_rank(values, 50), nearest_rank(values, 90));
        values.clear();
        Some(quantiles)
    }
}

/// The `percent`-th percentile of `values` by nearest rank (the value at
/// rank ⌈percent × n / 100⌉ in ascending order); reorders `values`.
pub fn nearest_rank(values: &mut [u32], percent: u32) -> u32 {
    let n = values.len();
    let rank = (n * percent as usize).div_ceil(100).clamp(1, n);
    *values.select_nth_unstable(rank - 1).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_a_sort() {
        for n in 1..=40u32 {
            let mut values: Vec<u32> = (0..n).map(|i| (i * 7_919) % 1_000).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for percent in [50, 90] {
                let rank = ((n * percent).div_ceil(100)).max(1) as usize;
                assert_eq!(
                    nearest_rank(&mut values, percent),
                    sorted[rank - 1],
                    "n={n} p{percent}"
                );
            }
        }
        assert_eq!(nearest_rank(&mut [300, 100, 200, 400], 50), 200);
        assert_eq!(nearest_rank(&mut [300, 100, 200, 400], 90), 400);
    }

    #[test]
    fn a_slot_keeps_one_period_of_replies_in_fixed_room() {
        let mut samples = RttSamples::new(Some(10_000));
        samples.reset(3, 1_000);
        for rtt in 1..=50 {
            samples.record(3, rtt * 10);
        }
        // Room for 12 replies (10 s / 1 s + 2): the first 12 are kept.
        assert_eq!(samples.take(3), Some((60, 110)));
        assert_eq!(samples.take(3), None, "a new period");
        samples.record(3, 500);
        assert_eq!(samples.take(3), Some((500, 500)));
        assert_eq!(samples.take(7), None, "no such slot");
    }

    #[test]
    fn without_a_period_nothing_is_kept() {
        let mut samples = RttSamples::new(None);
        samples.reset(0, 1_000);
        samples.record(0, 100);
        assert_eq!(samples.take(0), None);
    }
}
