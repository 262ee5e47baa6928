//! Whether a target that answers is degraded: its loss or its RTT over a
//! window of report periods crosses a threshold (a profile's, see
//! [`Thresholds`]).
//!
//! Evaluated when a period's statistics are taken, from what the period
//! kept anyway (probes sent, replies, the exact median and 90th percentile
//! of its RTTs), so probing pays nothing for it. The window is the last
//! `window / period` periods: its loss is the share of its probes that
//! went unanswered, its RTT the median of its periods' medians (or 90th
//! percentiles) weighted by their replies. Nothing is said before a whole
//! window has been seen since the target came up, so a target that just
//! started, or came back from an outage, is never degraded by a few
//! probes.
//!
//! Hysteresis: a level is raised at the first period that crosses it; it
//! is lowered (or cleared) only after every period of the clear window
//! stayed below it. A target that goes down, unreachable or unknown
//! forgets its window: DOWN supersedes degraded.
//!
//! Memory: a target with thresholds keeps at most [`MOST_SLOTS`] slots of
//! 12 bytes (a window of more periods folds several into one slot), about
//! 400 bytes a target for a 5-minute window of 10-second periods; a target
//! without thresholds keeps nothing.

use std::net::IpAddr;

use crate::target::{Pending, PeriodStats, RttQuantiles, Status};
use crate::{Cause, Engine, Transition};

/// The most slots a window keeps.
pub const MOST_SLOTS: usize = 32;

/// How bad a degradation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// A warning threshold crossed.
    Warning,
    /// A critical threshold crossed.
    Critical,
}

/// Which RTT the thresholds apply to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RttFigure {
    /// The window's median.
    #[default]
    Median,
    /// The window's 90th percentile.
    P90,
}

/// When a target that answers is degraded. A threshold of 0 is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Thresholds {
    /// The window its loss and RTT are measured over, ms.
    pub window_ms: u32,
    /// How long it must stay below a level before the level is lowered,
    /// ms.
    pub clear_window_ms: u32,
    /// Loss above this, ‰ of probes, is a warning.
    pub loss_warn_permille: u16,
    /// Loss above this is critical.
    pub loss_crit_permille: u16,
    /// RTT above this, µs, is a warning.
    pub rtt_warn_us: u32,
    /// RTT above this is critical.
    pub rtt_crit_us: u32,
    /// Which RTT is compared.
    pub rtt_figure: RttFigure,
}

/// A degraded target's level and the figures that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Degradation {
    /// The level crossed.
    pub level: Level,
    /// The window's loss, ‰.
    pub loss_permille: u16,
    /// The window's RTT (as the thresholds compare it), µs; `None` when
    /// nothing answered in the window.
    pub rtt_us: Option<u32>,
}

/// A period's end, and how each target is judged: the engine's side.
impl Engine {
    /// Judges an added target's loss and RTT by `thresholds` from now on
    /// (`None`: not at all), starting at `assumed` (the level its previous
    /// prober left it at; without one, the level it is judged at now). Needs a report period (`quantile_period_ms`):
    /// without one nothing is judged.
    pub fn judge_quality(
        &mut self,
        index: u32,
        thresholds: Option<Thresholds>,
        assumed: Option<Level>,
    ) {
        let assumed = assumed.or_else(|| self.windows.level(index));
        let window =
            thresholds
                .zip(self.config.quantile_period_ms)
                .map(|(thresholds, period_ms)| {
                    let mut window = Window::new(thresholds, period_ms);
                    if let Some(level) = assumed {
                        window.assume(level);
                    }
                    window
                });
        self.windows.set(index, window);
    }

    /// Hands each live target's statistics to `report` and starts a new
    /// period; a target judged for degradation whose level changed with
    /// this period reports a transition (see [`quality`]).
    pub fn take_period_stats(
        &mut self,
        mut report: impl FnMut(u64, IpAddr, PeriodStats, RttQuantiles),
    ) {
        for (index, target) in self.targets.iter_mut().enumerate() {
            let slot = u32::try_from(index).unwrap_or(u32::MAX);
            let quantiles = self.samples.take(slot);
            if target.pending != Pending::Nothing || target.probes_left != 0 {
                let stats = std::mem::take(&mut target.stats);
                if let Some(degraded) =
                    self.windows
                        .end_period(slot, target.status, &stats, quantiles)
                {
                    self.transitions.push_back(Transition {
                        index: slot,
                        id: target.id,
                        address: target.spec.address,
                        previous: target.status,
                        status: target.status,
                        probed_at: target.sent_at,
                        last_rtt_us: target.last_rtt_us,
                        degraded,
                        cause: Cause::Quality,
                    });
                }
                report(target.id, target.spec.address, stats, quantiles);
            }
        }
    }
}

/// The windows of every target judged, by slot.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    slots: Vec<Option<Window>>,
}

impl Windows {
    /// Slot `index` is judged by `window` from now on (`None`: not).
    pub fn set(&mut self, index: u32, window: Option<Window>) {
        let index = index as usize;
        if window.is_some() && self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = window;
        }
    }

    /// The level slot `index` is degraded at now.
    pub fn level(&self, index: u32) -> Option<Level> {
        let window = self.slots.get(index as usize)?.as_ref()?;
        window.current.map(|degradation| degradation.level)
    }

    /// Slot `index` changed state: its window starts again.
    pub fn forget(&mut self, index: u32) {
        if let Some(Some(window)) = self.slots.get_mut(index as usize) {
            window.forget();
        }
    }

    /// Slot `index`'s period ended with it in `status`: its new
    /// degradation when that changed (only an `Up` target is judged).
    pub fn end_period(
        &mut self,
        index: u32,
        status: Status,
        stats: &PeriodStats,
        quantiles: RttQuantiles,
    ) -> Option<Option<Degradation>> {
        let window = self.slots.get_mut(index as usize)?.as_mut()?;
        if status != Status::Up {
            window.forget();
            return None;
        }
        window.end_period(stats, quantiles)
    }
}

/// One or more periods of a window.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    sent: u16,
    received: u16,
    /// Reply-weighted RTT of the slot's periods, µs.
    rtt_us: u32,
    /// Periods folded into it.
    periods: u16,
}

/// One target's window and what it last said.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    thresholds: Thresholds,
    /// Periods one slot holds.
    periods_per_slot: u16,
    slots: Box<[Slot]>,
    /// The slot being filled.
    next: usize,
    /// Periods seen since the window was last forgotten (saturating).
    seen: u32,
    /// Periods a window spans.
    window_periods: u32,
    /// Consecutive periods below the current level.
    calm: u32,
    /// Periods the clear window spans.
    clear_periods: u32,
    current: Option<Degradation>,
}

impl Window {
    /// A window for `thresholds`, with report periods of `period_ms`.
    pub fn new(thresholds: Thresholds, period_ms: u32) -> Self {
        let periods = |ms: u32| ms.div_ceil(period_ms.max(1)).max(1);
        let window_periods = periods(thresholds.window_ms);
        let slot_count = usize::try_from(window_periods)
            .unwrap_or(MOST_SLOTS)
            .min(MOST_SLOTS);
        let periods_per_slot =
            u16::try_from(window_periods.div_ceil(slot_count as u32)).unwrap_or(u16::MAX);
        Self {
            thresholds,
            periods_per_slot,
            slots: vec![Slot::default(); slot_count].into_boxed_slice(),
            next: 0,
            seen: 0,
            window_periods,
            calm: 0,
            clear_periods: periods(thresholds.clear_window_ms),
            current: None,
        }
    }

    /// A target that starts degraded at `level` as a previous prober left
    /// it: it is lowered as any other once its window says so.
    pub fn assume(&mut self, level: Level) {
        self.current = Some(Degradation {
            level,
            loss_permille: 0,
            rtt_us: None,
        });
    }

    /// The target went down or away: start again, degraded by nothing.
    pub fn forget(&mut self) {
        self.slots.fill(Slot::default());
        self.next = 0;
        self.seen = 0;
        self.calm = 0;
        self.current = None;
    }

    /// Takes in a period of a target that answers; returns what it is from
    /// now on when that changed (`Some(None)`: healthy again).
    pub fn end_period(
        &mut self,
        stats: &PeriodStats,
        quantiles: RttQuantiles,
    ) -> Option<Option<Degradation>> {
        self.take(stats, quantiles);
        if self.seen < self.window_periods {
            return None;
        }
        let measured = self.measure()?;
        let level = self.level(&measured);
        let current = self.current.map(|degradation| degradation.level);
        if level > current {
            self.calm = 0;
            self.current = level.map(|level| Degradation { level, ..measured });
            return Some(self.current);
        }
        if level == current {
            self.calm = 0;
            return None;
        }
        self.calm += 1;
        if self.calm < self.clear_periods {
            return None;
        }
        self.calm = 0;
        self.current = level.map(|level| Degradation { level, ..measured });
        Some(self.current)
    }

    fn take(&mut self, stats: &PeriodStats, quantiles: RttQuantiles) {
        let rtt = quantiles.map(|(p50, p90)| match self.thresholds.rtt_figure {
            RttFigure::Median => p50,
            RttFigure::P90 => p90,
        });
        let slot = &mut self.slots[self.next];
        let received = u16::try_from(stats.received).unwrap_or(u16::MAX);
        if let Some(rtt) = rtt.filter(|_| received > 0) {
            let before = u64::from(slot.rtt_us) * u64::from(slot.received);
            let total = u64::from(slot.received) + u64::from(received);
            let weighted = (before + u64::from(rtt) * u64::from(received)) / total.max(1);
            slot.rtt_us = u32::try_from(weighted).unwrap_or(u32::MAX);
        }
        slot.sent = slot
            .sent
            .saturating_add(u16::try_from(stats.sent).unwrap_or(u16::MAX));
        slot.received = slot.received.saturating_add(received);
        slot.periods += 1;
        self.seen = self.seen.saturating_add(1);
        if slot.periods >= self.periods_per_slot {
            self.next = (self.next + 1) % self.slots.len();
            self.slots[self.next] = Slot::default();
        }
    }

    /// The window's loss and RTT, with the level left for the caller;
    /// `None` when nothing was sent in it.
    fn measure(&self) -> Option<Degradation> {
        let (sent, received) = self.slots.iter().fold((0u32, 0u32), |(s, r), slot| {
            (s + u32::from(slot.sent), r + u32::from(slot.received))
        });
        if sent == 0 {
            return None;
        }
        let lost = sent.saturating_sub(received);
        let loss_permille = u16::try_from(u64::from(lost) * 1000 / u64::from(sent)).unwrap_or(1000);
        Some(Degradation {
            level: Level::Warning,
            loss_permille,
            rtt_us: self.weighted_median(received),
        })
    }

    /// The reply-weighted median of the slots' RTTs (sorted on the stack:
    /// judging allocates nothing).
    fn weighted_median(&self, received: u32) -> Option<u32> {
        let mut sorted = [(0u32, 0u32); MOST_SLOTS];
        let mut count = 0;
        for slot in self.slots.iter().filter(|slot| slot.received > 0) {
            sorted[count] = (slot.rtt_us, u32::from(slot.received));
            count += 1;
        }
        let sorted = &mut sorted[..count];
        sorted.sort_unstable();
        let half = received.div_ceil(2);
        let mut counted = 0;
        sorted.iter().find_map(|&(rtt, weight)| {
            counted += weight;
            (counted >= half).then_some(rtt)
        })
    }

    fn level(&self, measured: &Degradation) -> Option<Level> {
        let t = &self.thresholds;
        let above = |value: u32, threshold: u32| threshold > 0 && value > threshold;
        let loss = u32::from(measured.loss_permille);
        let rtt = measured.rtt_us.unwrap_or(0);
        if above(loss, t.loss_crit_permille.into()) || above(rtt, t.rtt_crit_us) {
            Some(Level::Critical)
        } else if above(loss, t.loss_warn_permille.into()) || above(rtt, t.rtt_warn_us) {
            Some(Level::Warning)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zabbix's template as the defaults: loss 20 % / 50 %, RTT 150 / 500
    /// ms; a window of 6 periods, a clear window of 3.
    fn thresholds() -> Thresholds {
        Thresholds {
            window_ms: 60_000,
            clear_window_ms: 30_000,
            loss_warn_permille: 200,
            loss_crit_permille: 500,
            rtt_warn_us: 150_000,
            rtt_crit_us: 500_000,
            rtt_figure: RttFigure::Median,
        }
    }

    fn period(sent: u32, received: u32, rtt_ms: u32) -> (PeriodStats, RttQuantiles) {
        let stats = PeriodStats {
            sent,
            received,
            ..PeriodStats::default()
        };
        let quantiles = (received > 0).then_some((rtt_ms * 1000, rtt_ms * 1500));
        (stats, quantiles)
    }

    /// Feeds `count` equal periods; returns every change said.
    fn feed(
        window: &mut Window,
        count: usize,
        sent: u32,
        received: u32,
        rtt_ms: u32,
    ) -> Vec<Option<Level>> {
        let (stats, quantiles) = period(sent, received, rtt_ms);
        (0..count)
            .filter_map(|_| window.end_period(&stats, quantiles))
            .map(|change| change.map(|degradation| degradation.level))
            .collect()
    }

    #[test]
    fn a_healthy_target_says_nothing() {
        let mut window = Window::new(thresholds(), 10_000);
        assert!(feed(&mut window, 100, 10, 10, 20).is_empty());
        assert!(
            feed(&mut window, 100, 10, 9, 140).is_empty(),
            "10 %, 140 ms"
        );
    }

    #[test]
    fn nothing_is_said_before_a_whole_window() {
        let mut window = Window::new(thresholds(), 10_000);
        assert!(feed(&mut window, 5, 10, 2, 20).is_empty());
        assert_eq!(feed(&mut window, 1, 10, 2, 20), vec![Some(Level::Critical)]);
    }

    #[test]
    fn loss_and_rtt_each_raise_their_level_with_the_figures() {
        let mut lossy = Window::new(thresholds(), 10_000);
        assert_eq!(feed(&mut lossy, 6, 10, 7, 20), vec![Some(Level::Warning)]);
        assert_eq!(lossy.current.map(|d| d.loss_permille), Some(300));
        assert_eq!(lossy.current.and_then(|d| d.rtt_us), Some(20_000));
        let mut slow = Window::new(thresholds(), 10_000);
        assert_eq!(feed(&mut slow, 6, 10, 10, 300), vec![Some(Level::Warning)]);
        assert_eq!(slow.current.map(|d| d.loss_permille), Some(0));
        let mut very_slow = Window::new(thresholds(), 10_000);
        assert_eq!(
            feed(&mut very_slow, 6, 10, 10, 800),
            vec![Some(Level::Critical)]
        );
    }

    #[test]
    fn a_level_is_raised_at_once_and_lowered_after_the_clear_window() {
        let mut window = Window::new(thresholds(), 10_000);
        assert_eq!(feed(&mut window, 6, 10, 7, 20), vec![Some(Level::Warning)]);
        // Worse: critical as soon as the window's loss crosses 50 %.
        let raised = feed(&mut window, 6, 10, 1, 20);
        assert_eq!(raised, vec![Some(Level::Critical)]);
        // Healthy again: the window's loss falls under 20 % after a few
        // periods, then it must stay under for the 3-period clear window.
        let mut said = Vec::new();
        let mut periods = 0;
        while said.is_empty() {
            said = feed(&mut window, 1, 10, 10, 20);
            periods += 1;
        }
        // Periods 1-2 still critical (the window's loss 75 %, 60 %), 3-4
        // a warning (45 %, 30 %), 5 healthy (15 %): three below critical.
        assert_eq!(said, vec![None], "lowered to what the window says now");
        assert_eq!(periods, 5);
    }

    #[test]
    fn a_flicker_under_the_threshold_does_not_clear() {
        let mut window = Window::new(thresholds(), 10_000);
        assert_eq!(feed(&mut window, 6, 10, 7, 20), vec![Some(Level::Warning)]);
        for _ in 0..20 {
            // 2 periods under, then back over: never 3 in a row under.
            assert!(feed(&mut window, 2, 10, 9, 20).is_empty());
            assert!(feed(&mut window, 1, 10, 0, 20).is_empty());
        }
    }

    #[test]
    fn the_window_median_weighs_periods_by_their_replies() {
        let mut window = Window::new(thresholds(), 10_000);
        let (slow, slow_q) = period(10, 1, 900);
        let (fast, fast_q) = period(10, 10, 20);
        for _ in 0..3 {
            window.end_period(&slow, slow_q);
            window.end_period(&fast, fast_q);
        }
        // 3 replies at 900 ms against 30 at 20 ms: the median is 20 ms,
        // and 27 of 60 probes lost (45 %) is a warning.
        assert_eq!(window.current.map(|d| d.level), Some(Level::Warning));
        assert_eq!(window.current.and_then(|d| d.rtt_us), Some(20_000));
    }

    #[test]
    fn the_ninetieth_percentile_when_asked() {
        let mut window = Window::new(
            Thresholds {
                rtt_figure: RttFigure::P90,
                ..thresholds()
            },
            10_000,
        );
        // Median 120 ms, 90th percentile 180 ms.
        assert_eq!(
            feed(&mut window, 6, 10, 10, 120),
            vec![Some(Level::Warning)]
        );
    }

    #[test]
    fn a_long_window_folds_periods_into_few_slots() {
        let hour = Thresholds {
            window_ms: 3_600_000,
            ..thresholds()
        };
        let mut window = Window::new(hour, 10_000);
        assert_eq!(window.slots.len(), MOST_SLOTS);
        assert!(feed(&mut window, 359, 10, 7, 20).is_empty());
        assert_eq!(feed(&mut window, 1, 10, 7, 20), vec![Some(Level::Warning)]);
        let bytes = std::mem::size_of::<Slot>() * MOST_SLOTS + std::mem::size_of::<Window>();
        assert!(bytes <= 512, "{bytes} bytes");
    }

    #[test]
    fn forgetting_starts_a_whole_window_again() {
        let mut window = Window::new(thresholds(), 10_000);
        assert_eq!(feed(&mut window, 6, 10, 7, 20), vec![Some(Level::Warning)]);
        window.forget();
        assert!(feed(&mut window, 5, 10, 7, 20).is_empty());
        assert_eq!(feed(&mut window, 1, 10, 7, 20), vec![Some(Level::Warning)]);
    }

    #[test]
    fn an_assumed_level_clears_when_the_window_is_healthy() {
        let mut window = Window::new(thresholds(), 10_000);
        window.assume(Level::Warning);
        assert_eq!(feed(&mut window, 9, 10, 10, 20), vec![None]);
    }
}
