//! Flap detection, free of I/O. A device whose outage began or ended more
//! than [`FlapPolicy::changes`] times within [`FlapPolicy::window_ms`] is
//! flapping: the change that makes it so queues one `flapping`
//! notification instead of its `firing` or `resolved`, the changes after it
//! queue none, and once it has been stable for the window one `settled`
//! notification says how it ended (the store's settling job). Every change is
//! still recorded and its alert opened or resolved.

use super::Unreadable;

/// When a device counts as flapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlapPolicy {
    /// More outage starts and ends than this within the window is flapping.
    pub changes: u32,
    /// The window, ms; also how long a flapping device must be stable.
    pub window_ms: i64,
}

impl Default for FlapPolicy {
    /// 5 changes within 10 minutes.
    fn default() -> Self {
        Self {
            changes: 5,
            window_ms: 600_000,
        }
    }
}

/// A device's flap state, as stored with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flap {
    /// It is flapping now.
    pub flapping: bool,
    /// When its latest flapping episode began, Unix ms.
    pub started_at_ms: Option<i64>,
    /// Its latest outage starts and ends (Unix ms, oldest first): at most
    /// `changes + 1`, all within the window of the newest.
    pub recent_ms: Vec<i64>,
}

/// What an alert write queues on every channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `firing` for an alert opened, `resolved` for one resolved.
    Change,
    /// `flapping`: this change made the device flapping.
    Flapping,
    /// Nothing: the device is flapping, and its settled status goes out
    /// once it is stable.
    Withheld,
}

impl Notice {
    /// The notification kind queued, `usual` for [`Notice::Change`].
    pub fn kind(self, usual: &'static str) -> Option<&'static str> {
        match self {
            Notice::Change => Some(usual),
            Notice::Flapping => Some("flapping"),
            Notice::Withheld => None,
        }
    }
}

impl Flap {
    /// Reads the stored columns (`recent_changes` is a JSON array).
    pub fn stored(
        flapping: bool,
        started_at_ms: Option<i64>,
        recent_changes: &str,
    ) -> Result<Self, Unreadable> {
        let recent_ms = serde_json::from_str(recent_changes).map_err(|error| {
            Unreadable(format!(
                "devices.recent_changes is not a JSON array of times: {error}"
            ))
        })?;
        Ok(Self {
            flapping,
            started_at_ms,
            recent_ms,
        })
    }

    /// `recent_ms` as stored.
    pub fn recent_changes(&self) -> String {
        serde_json::Value::from(self.recent_ms.clone()).to_string()
    }

    /// Counts an outage start or end at `at_ms` and says what its alert
    /// write queues.
    pub fn record(&mut self, at_ms: i64, policy: &FlapPolicy) -> Notice {
        let position = self.recent_ms.partition_point(|&at| at <= at_ms);
        self.recent_ms.insert(position, at_ms);
        let newest = self.recent_ms.last().copied().unwrap_or(at_ms);
        self.recent_ms.retain(|&at| newest - at < policy.window_ms);
        let kept = usize::try_from(policy.changes)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if self.recent_ms.len() > kept {
            self.recent_ms.drain(..self.recent_ms.len() - kept);
        }
        if self.flapping {
            Notice::Withheld
        } else if self.recent_ms.len() >= kept {
            self.flapping = true;
            self.started_at_ms = Some(at_ms);
            Notice::Flapping
        } else {
            Notice::Change
        }
    }

    /// A flapping device that has had no change for the window by `now_ms`.
    pub fn settled(&self, policy: &FlapPolicy, now_ms: i64) -> bool {
        self.flapping
            && self
                .recent_ms
                .last()
                .is_none_or(|&last| now_ms - last >= policy.window_ms)
    }

    /// Ends the flapping episode (its start is kept) and forgets the
    /// changes counted.
    pub fn settle(&mut self) {
        self.flapping = false;
        self.recent_ms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FlapPolicy = FlapPolicy {
        changes: 5,
        window_ms: 10_000,
    };

    #[test]
    fn the_change_after_the_limit_within_the_window_is_flapping_and_later_ones_are_withheld() {
        let mut flap = Flap::default();
        let notices: Vec<Notice> = (0..8).map(|n| flap.record(n * 1_000, &POLICY)).collect();
        assert_eq!(notices[..5], [Notice::Change; 5]);
        assert_eq!(notices[5], Notice::Flapping);
        assert_eq!(notices[6..], [Notice::Withheld; 2]);
        assert!(flap.flapping);
        assert_eq!(flap.started_at_ms, Some(5_000));
        assert_eq!(flap.recent_ms.len(), 6, "at most changes + 1 kept");
    }

    #[test]
    fn changes_spread_wider_than_the_window_never_flap() {
        let mut flap = Flap::default();
        for n in 0..50 {
            assert_eq!(
                flap.record(n * 2_500, &POLICY),
                Notice::Change,
                "change {n}"
            );
        }
        assert!(!flap.flapping);
        assert_eq!(flap.recent_ms.len(), 4, "only the window's changes kept");
    }

    #[test]
    fn a_flapping_device_settles_after_a_window_without_change() {
        let mut flap = Flap::default();
        for n in 0..6 {
            flap.record(n * 100, &POLICY);
        }
        assert!(!flap.settled(&POLICY, 500 + 9_999));
        assert!(flap.settled(&POLICY, 500 + 10_000));
        flap.settle();
        assert!(!flap.flapping && flap.recent_ms.is_empty());
        assert_eq!(flap.started_at_ms, Some(500));
        assert_eq!(flap.record(20_000, &POLICY), Notice::Change);
    }

    #[test]
    fn a_late_change_is_counted_in_time_order() {
        let mut flap = Flap::default();
        flap.record(3_000, &POLICY);
        flap.record(1_000, &POLICY);
        assert_eq!(flap.recent_ms, [1_000, 3_000]);
    }

    #[test]
    fn stored_times_round_trip_and_garbage_is_named() {
        let mut flap = Flap::default();
        flap.record(7, &POLICY);
        let again = Flap::stored(false, None, &flap.recent_changes()).expect("parses");
        assert_eq!(again, flap);
        let error = Flap::stored(false, None, "[1,").expect_err("garbage");
        assert!(error.to_string().contains("recent_changes"), "{error}");
    }
}
