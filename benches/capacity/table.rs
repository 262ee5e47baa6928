//! The tables the harness prints: every tool measured the same way
//! (whole process, spawn to exit), trials interleaved, each figure as its
//! median with the spread (min–max) beside it.

use std::fmt::Write as _;
use std::time::Duration;

/// One run of one tool.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Spawn to exit.
    pub wall: Duration,
    /// The process's user + system CPU.
    pub cpu: Duration,
    /// The rate the tool reports about itself (probes/s), if it does.
    pub reported_rate: Option<f64>,
    /// Replies matched, % of probes sent.
    pub matched_percent: f64,
    /// Replies the kernel dropped, when the tool can tell.
    pub rx_drops: Option<u64>,
}

/// Median and range of one figure over the trials.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// None without values. The median of an even count is the mean of
    /// the two middle values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let (first, last) = (*values.first()?, *values.last()?);
        let middle = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[middle]
        } else {
            f64::midpoint(values[middle - 1], values[middle])
        };
        Some(Self {
            median,
            min: first,
            max: last,
        })
    }

    /// `0.532 (0.511–0.570)`.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            self.median, self.min, self.max
        )
    }
}

/// Every tool's trials, in the order the tools were first measured.
#[derive(Debug, Default)]
pub struct Trials {
    rows: Vec<(String, Vec<Trial>)>,
}

impl Trials {
    pub fn record(&mut self, tool: &str, trial: Trial) {
        match self.rows.iter_mut().find(|(name, _)| name == tool) {
            Some((_, trials)) => trials.push(trial),
            None => self.rows.push((tool.to_owned(), vec![trial])),
        }
    }

    fn of(&self, tool: &str) -> &[Trial] {
        self.rows
            .iter()
            .find(|(name, _)| name == tool)
            .map_or(&[], |(_, trials)| trials)
    }

    /// Median (and spread) wall clock of `tool`, seconds.
    pub fn wall(&self, tool: &str) -> Option<Spread> {
        Spread::of(self.of(tool).iter().map(|trial| trial.wall.as_secs_f64()))
    }

    /// `slower`'s wall clock over `faster`'s: the ratio of the medians,
    /// and the spread of the per-trial ratios (trial n of one against
    /// trial n of the other, which ran next to it).
    pub fn wall_ratio(&self, slower: &str, faster: &str) -> Option<(f64, Spread)> {
        let ratio = self.wall(slower)?.median / self.wall(faster)?.median;
        let per_trial = self
            .of(slower)
            .iter()
            .zip(self.of(faster))
            .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64());
        Some((ratio, Spread::of(per_trial)?))
    }

    /// The markdown table: one row per tool.
    pub fn render(&self) -> String {
        let mut table = String::from(
            "| tool | trials | wall s, median (min–max) | CPU s (user+sys) | self-reported rate, probes/s | replies matched | rx drops |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for (tool, trials) in &self.rows {
            let spread = |figure: fn(&Trial) -> Option<f64>, decimals| {
                Spread::of(trials.iter().filter_map(figure))
                    .map_or_else(|| "n/a".to_owned(), |spread| spread.show(decimals))
            };
            let drops = trials
                .iter()
                .filter_map(|trial| trial.rx_drops)
                .max()
                .map_or_else(|| "n/a".to_owned(), |drops| drops.to_string());
            let _ = writeln!(
                table,
                "| {tool} | {} | {} | {} | {} | {} % | {drops} |",
                trials.len(),
                spread(|trial| Some(trial.wall.as_secs_f64()), 3),
                spread(|trial| Some(trial.cpu.as_secs_f64()), 3),
                spread(|trial| trial.reported_rate, 0),
                spread(|trial| Some(trial.matched_percent), 3),
            );
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(wall_ms: u64, rate: Option<f64>) -> Trial {
        Trial {
            wall: Duration::from_millis(wall_ms),
            cpu: Duration::from_millis(wall_ms / 2),
            reported_rate: rate,
            matched_percent: 100.0,
            rx_drops: rate.map(|_| 0),
        }
    }

    #[test]
    fn spreads_give_median_min_and_max() {
        let spread = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
        assert_eq!(
            Spread::of([4.0, 1.0, 2.0, 3.0]).expect("values").median,
            2.5
        );
        assert_eq!(Spread::of([]), None);
        assert_eq!(spread.show(1), "2.0 (1.0–3.0)");
    }

    #[test]
    fn ratios_are_of_medians_with_per_trial_spread() {
        let mut trials = Trials::default();
        for (ward, fping) in [(500, 1000), (400, 1200), (600, 900)] {
            trials.record("ward", trial(ward, Some(1e5)));
            trials.record("fping", trial(fping, None));
        }
        let (ratio, spread) = trials.wall_ratio("fping", "ward").expect("both measured");
        assert!((ratio - 2.0).abs() < 1e-9, "{ratio}");
        assert!((spread.min - 1.5).abs() < 1e-9 && (spread.max - 3.0).abs() < 1e-9);
        assert_eq!(trials.wall_ratio("fping", "zmap"), None);
    }

    #[test]
    fn the_table_has_one_row_per_tool_in_first_measured_order() {
        let mut trials = Trials::default();
        trials.record("ward", trial(500, Some(123_456.0)));
        trials.record("fping", trial(1000, None));
        trials.record("ward", trial(700, Some(100_000.0)));
        let table = trials.render();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[2],
            "| ward | 2 | 0.600 (0.500–0.700) | 0.300 (0.250–0.350) | 111728 (100000–123456) | 100.000 (100.000–100.000) % | 0 |"
        );
        assert_eq!(
            lines[3],
            "| fping | 1 | 1.000 (1.000–1.000) | 0.500 (0.500–0.500) | n/a | 100.000 (100.000–100.000) % | n/a |"
        );
    }
}
