//! What an agent's clock says, turned into the controller's time.
//!
//! An agent dates each transition by its own wall clock. A branch box
//! without NTP, a clock stepped back, or two agents of a group whose clocks
//! differ would otherwise decide what is stale and what history says: a
//! report dated before the device's last one is ignored, so an agent whose
//! clock is an hour behind could not report a death for an hour. The
//! controller trusts its own clock, each link's order (the agent's
//! sequence), and the offset between the two clocks, measured as NTP's
//! clock filter does: every Hello and heartbeat carries the agent's time as
//! sent, the controller notes its own time as received, and the smallest
//! difference over the last few samples is the offset plus the least
//! network delay seen (a delay only ever adds to a sample).
//!
//! A report's time is the agent's plus the offset, never later than the
//! controller received it, and never earlier than the link's previous
//! report about the same device (a link's reports come in the order the
//! agent decided them): a clock stepped back between two heartbeats can
//! date a report too early by the step at most, and never makes the
//! agent's own later report about a device stale. An offset within
//! [`DEADBAND_MS`] (an agent kept by NTP, the network's delay) is not
//! applied: such an agent's times are kept as it gave them, so a
//! transition it states again (after a reconnect) carries exactly the time
//! it had, whatever each link measured.

/// Offsets this small are measurement, not a wrong clock.
pub const DEADBAND_MS: i64 = 1_000;

/// Samples the offset is the least of (heartbeats every 5 s: a clock
/// stepped back is followed within about 20 s; one stepped forward at
/// once).
const SAMPLES: usize = 4;

/// One agent link's clock: its offset and the last time it dated each
/// device's report.
#[derive(Clone, Debug, Default)]
pub struct LinkClock {
    /// The latest samples of `received − sent`, ms, newest last.
    samples: Vec<i64>,
    /// The last report time handed out per device, controller ms.
    last_dated_ms: std::collections::HashMap<i64, i64>,
}

impl LinkClock {
    /// A message the agent sent at `agent_ms` (its clock) arrived at
    /// `received_ms` (ours). Times of zero or less (an agent too old to
    /// send them) are not samples.
    pub fn sample(&mut self, agent_ms: i64, received_ms: i64) {
        if agent_ms <= 0 {
            return;
        }
        if self.samples.len() == SAMPLES {
            self.samples.remove(0);
        }
        self.samples.push(received_ms.saturating_sub(agent_ms));
    }

    /// How far the agent's clock is behind ours, ms (negative: ahead);
    /// `None` before the first sample.
    pub fn offset_ms(&self) -> Option<i64> {
        self.samples.iter().copied().min()
    }

    /// The controller's time for what the agent dated `agent_ms` about
    /// `device`, in a report received at `received_ms` (see the module).
    pub fn date(&mut self, device: i64, agent_ms: i64, received_ms: i64) -> i64 {
        let offset = self
            .offset_ms()
            .filter(|offset| offset.abs() > DEADBAND_MS)
            .unwrap_or(0);
        let previous = self.last_dated_ms.get(&device).copied();
        let dated = agent_ms
            .saturating_add(offset)
            .min(received_ms)
            .max(previous.unwrap_or(i64::MIN));
        self.last_dated_ms.insert(device, dated);
        dated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn an_agent_an_hour_behind_has_its_reports_dated_in_our_time() {
        let mut clock = LinkClock::default();
        let now = 1_800_000_000_000;
        // 20 ms on the way, the agent's clock an hour behind.
        clock.sample(now - HOUR - 20, now);
        assert_eq!(clock.offset_ms(), Some(HOUR + 20));
        // A probe the agent dated 300 ms before the report arrived.
        assert_eq!(
            clock.date(1, now + 5_000 - HOUR - 300, now + 5_000),
            now + 5_000 - 280
        );
    }

    #[test]
    fn the_least_delay_wins_and_a_report_is_never_dated_after_its_arrival() {
        let t = 1_800_000_000_000;
        let mut clock = LinkClock::default();
        for (sent, received) in [(1_000, 4_090), (6_000, 9_012), (11_000, 14_400)] {
            clock.sample(t + sent, t + received);
        }
        assert_eq!(clock.offset_ms(), Some(3_012));
        // An agent ahead of us can not date a report in our future.
        let mut ahead = LinkClock::default();
        ahead.sample(t + 20_000, t + 15_000);
        assert_eq!(ahead.date(1, t + 20_000, t + 15_000), t + 15_000);
    }

    #[test]
    fn an_agent_kept_by_ntp_keeps_its_times_and_a_restatement_its_old_one() {
        let t = 1_800_000_000_000;
        let mut clock = LinkClock::default();
        clock.sample(t, t + 35);
        assert_eq!(
            clock.date(1, t + 500, t + 600),
            t + 500,
            "within the deadband"
        );
        // A reconnect restates device 2's transition of long ago, after a
        // newer report about device 1: its own time stands.
        assert_eq!(clock.date(2, t - 600_000, t + 700), t - 600_000);
    }

    #[test]
    fn a_clock_stepped_back_never_makes_the_links_own_reports_stale() {
        let t = 1_800_000_000_000;
        let mut clock = LinkClock::default();
        clock.sample(t, t + 10);
        let before = clock.date(1, t + 500, t + 600);
        // The agent's clock goes back a minute; no heartbeat yet.
        let after = clock.date(1, t + 600 - 60_000, t + 700);
        assert!(after >= before, "{after} < {before}");
        // Heartbeats after the step: within SAMPLES the offset follows.
        for beat in 1..=4 {
            clock.sample(t + 600 - 60_000 + beat * 5_000, t + 700 + beat * 5_000 + 10);
        }
        assert_eq!(clock.offset_ms(), Some(60_110));
        assert_eq!(clock.date(1, t + 31_000 - 60_000, t + 31_200), t + 31_110);
    }

    #[test]
    fn no_sample_no_offset_and_zero_times_are_ignored() {
        let mut clock = LinkClock::default();
        clock.sample(0, 5_000);
        assert_eq!(clock.offset_ms(), None);
        assert_eq!(clock.date(1, 4_000, 5_000), 4_000);
    }
}
