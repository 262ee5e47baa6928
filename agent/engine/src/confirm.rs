//! How many consecutive timeouts confirm DOWN: enough that a live link at
//! the target's measured loss would, at most once a month, miss them all.
//!
//! A target that answers is a link with some loss `p`. A run of misses
//! starts after a reply with probability `(1 − p) × p` and runs to `n`
//! misses with probability `p^(n−1)` more, so a live target probed every
//! interval goes falsely DOWN about `probes_per_month × (1 − p) × p^n`
//! times a month, less than `probes_per_month × p^n`. The smallest `n` (at
//! least the target's own `down_after`) that keeps the latter at or under
//! one is the run that confirms DOWN: 3 on a clean link, 13 at 30 % loss
//! (0.3¹³ × 2.59 M ≈ 0.41 a month), 22 at 50 % (0.5²² × 2.59 M ≈ 0.62 a
//! month, 0.14 a week), at a 1 s interval. `p` is not known, only measured: the rule takes the
//! measurement's upper bound (mean plus two standard errors), so a short
//! or noisy history asks for more probes, not fewer; and a link that just
//! turned lossy is caught up with by a second, fast mean (about the last
//! 16 probes), whichever is higher.
//!
//! The loss is measured only while the target answers: a run of misses
//! enters the measurement when a reply ends it (loss on a live link); a
//! run that ends in DOWN never does (the device was dead, not lossy), so a
//! device back from an outage is confirmed as fast as before it; once a
//! down target answers, its misses count again. A target with no history
//! has shown no loss and is confirmed as a clean one: fast DOWN after a
//! start, at the price of a possible false DOWN of a lossy link in its
//! first seconds (whose misses then count).

/// Probes the loss measurement remembers, about (an exponentially
/// weighted mean, plain mean until it has seen this many).
const MEMORY: u16 = 256;

/// Probes the fast mean remembers, about.
const FAST_MEMORY: u16 = 16;

/// The most misses ever asked for: a link losing more than about 60 % is
/// confirmed DOWN after this many whatever its measurement says.
pub(crate) const MOST_MISSES: u8 = 32;

/// A month, ms: the period the false-DOWN budget of one is counted over.
const MONTH_MS: f64 = 30.0 * 24.0 * 3600.0 * 1000.0;

/// A mean of 1 in [`LossEstimate`]'s fixed point.
const ONE: i32 = u16::MAX as i32;

/// A target's recent loss while it answered (means in fixed point,
/// 0..=[`ONE`]: a target's record stays small).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LossEstimate {
    /// Weighted mean of misses (1) and replies (0).
    mean: u16,
    /// The same over about the last [`FAST_MEMORY`] probes.
    fast_mean: u16,
    /// Outcomes seen, up to [`MEMORY`].
    samples: u16,
}

impl LossEstimate {
    /// Takes in a reply that ended a run of `misses` (0 if none).
    pub fn reply_after(&mut self, misses: u8) {
        for _ in 0..misses {
            self.take(true);
        }
        self.take(false);
    }

    fn take(&mut self, missed: bool) {
        self.samples = (self.samples + 1).min(MEMORY);
        let outcome = if missed { ONE } else { 0 };
        let moved = |mean: u16, weight: u16| {
            let mean = i32::from(mean);
            let step = (outcome - mean) as f32 / f32::from(weight);
            u16::try_from((mean + step.round() as i32).clamp(0, ONE)).unwrap_or(u16::MAX)
        };
        self.mean = moved(self.mean, self.samples);
        self.fast_mean = moved(self.fast_mean, self.samples.min(FAST_MEMORY));
    }

    /// The loss this target may have, at the upper end: the mean plus two
    /// standard errors (over the effective sample count of the weighted
    /// mean, about `2 × MEMORY`), or the fast mean if higher.
    pub fn upper(&self) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        let share = |mean: u16| f64::from(mean) / f64::from(ONE);
        let mean = share(self.mean);
        let effective = if self.samples < MEMORY {
            f64::from(self.samples)
        } else {
            2.0 * f64::from(MEMORY) - 1.0
        };
        let bound = mean + 2.0 * (mean * (1.0 - mean) / effective).sqrt();
        bound.max(share(self.fast_mean)).min(1.0)
    }
}

/// The consecutive timeouts that confirm DOWN for a target probed every
/// `interval_ms` whose loss is at most `loss` (see the module): the
/// fewest `n ≥ down_after` with `probes_per_month × loss^n ≤ 1`, at most
/// [`MOST_MISSES`].
pub(crate) fn misses_to_confirm(down_after: u8, loss: f64, interval_ms: u32) -> u8 {
    let probes_per_month = MONTH_MS / f64::from(interval_ms.max(1));
    let false_downs = |n: u8| probes_per_month * loss.powi(i32::from(n));
    let mut n = down_after.max(1);
    while n < MOST_MISSES && false_downs(n) > 1.0 {
        n += 1;
    }
    n.max(down_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_link_confirms_with_its_own_threshold() {
        assert_eq!(misses_to_confirm(3, 0.0, 1000), 3);
        assert_eq!(misses_to_confirm(5, 0.0, 1000), 5);
        assert_eq!(LossEstimate::default().upper(), 0.0);
        let mut clean = LossEstimate::default();
        for _ in 0..1000 {
            clean.reply_after(0);
        }
        assert_eq!(misses_to_confirm(3, clean.upper(), 1000), 3);
    }

    #[test]
    fn the_issues_arithmetic() {
        // 2.59 M probes a month: 0.3¹² × 2.59 M ≈ 1.37, 0.3¹³ × 2.59 M ≈ 0.41.
        assert_eq!(misses_to_confirm(3, 0.3, 1000), 13);
        // 0.5²¹ × 2.59 M ≈ 1.24, 0.5²² × 2.59 M ≈ 0.62.
        assert_eq!(misses_to_confirm(3, 0.5, 1000), 22);
        // A longer interval sends fewer probes a month: fewer misses.
        assert!(misses_to_confirm(3, 0.3, 60_000) < 13);
        assert_eq!(misses_to_confirm(3, 0.95, 1000), MOST_MISSES);
    }

    #[test]
    fn a_link_that_turns_lossy_is_caught_up_with_fast() {
        let mut estimate = LossEstimate::default();
        for _ in 0..1000 {
            estimate.reply_after(0);
        }
        // Half the probes lost for 16 probes.
        for _ in 0..8 {
            estimate.reply_after(1);
        }
        let upper = estimate.upper();
        assert!(upper > 0.25, "{upper}");
        assert!(misses_to_confirm(3, upper, 1000) >= 10);
    }

    #[test]
    fn more_loss_never_asks_for_fewer_misses() {
        let mut previous = 0;
        for percent in 0..=100 {
            let n = misses_to_confirm(3, f64::from(percent) / 100.0, 1000);
            assert!(n >= previous, "{percent} %: {n} < {previous}");
            previous = n;
        }
    }

    #[test]
    fn the_measurement_follows_the_loss_with_its_upper_bound_above_it() {
        // Every third probe lost, over many runs: about 33 %.
        let mut estimate = LossEstimate::default();
        for _ in 0..2000 {
            estimate.reply_after(1);
            estimate.reply_after(0);
        }
        let upper = estimate.upper();
        assert!((0.33..0.42).contains(&upper), "{upper}");
        // Few samples: a wide bound.
        let mut young = LossEstimate::default();
        young.reply_after(1);
        young.reply_after(0);
        assert!(young.upper() > 0.8, "{}", young.upper());
    }
}
