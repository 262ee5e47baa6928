//! One probed target: its schedule, the probe in flight, the UP/DOWN state
//! machine with hysteresis, and statistics for the current report period.
//! Fixed size, no heap: the engine holds one per target in a `Vec`.

use std::net::IpAddr;

use super::Nanos;
use crate::confirm::{LossEstimate, misses_to_confirm};

/// What the engine believes about a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not decided yet (just added, no reply and fewer than `down_after`
    /// misses).
    Unknown,
    /// Answers echo requests.
    Up,
    /// Missed enough consecutive probes by timeout that a live link at
    /// its measured loss would not have (at least `down_after`; see
    /// `confirm`).
    Down,
    /// Missed `down_after` consecutive probes, the last ones by an ICMP
    /// error quoting the probe.
    Unreachable,
}

/// How a probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No valid reply before the timeout.
    Timeout,
    /// An ICMP destination-unreachable or time-exceeded quoted the probe.
    IcmpError,
}

impl Miss {
    fn status(self) -> Status {
        match self {
            Miss::Timeout => Status::Down,
            Miss::IcmpError => Status::Unreachable,
        }
    }
}

/// What answers for a target's liveness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Check {
    /// An ICMP echo reply.
    #[default]
    Icmp,
    /// A TCP SYN/ACK from `port`, or an RST where `rst_alive` (see
    /// [`crate::tcp`]).
    Tcp {
        /// The port probed.
        port: u16,
        /// An RST (the port closed, the host there) means alive.
        rst_alive: bool,
    },
    /// Either: each probe is an echo request and a SYN, and the first
    /// answer counts (Checkmk's smart ping).
    IcmpOrTcp {
        /// The port probed.
        port: u16,
        /// An RST means alive.
        rst_alive: bool,
    },
}

/// How to probe a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Where to send probes.
    pub address: IpAddr,
    /// What answers for it.
    pub check: Check,
    /// The address its TCP probes leave from (their checksum covers it):
    /// the caller's route lookup; `None` for an ICMP check.
    pub source: Option<IpAddr>,
    /// Time between probes while the target answers, ms (≥ 1).
    pub interval_ms: u32,
    /// Wait for a reply this long before counting a miss, ms (≥ 1).
    pub timeout_ms: u32,
    /// Consecutive misses before DOWN/UNREACHABLE (≥ 1) on a clean link;
    /// a lossy one needs more timeouts for DOWN (see `confirm`).
    pub down_after: u8,
    /// Consecutive replies before a DOWN target is UP again (≥ 1).
    pub up_after: u8,
}

impl TargetSpec {
    /// Default probe interval (spec: 1 s).
    pub const DEFAULT_INTERVAL_MS: u32 = 1000;
    /// Default reply timeout (spec: 500 ms).
    pub const DEFAULT_TIMEOUT_MS: u32 = 500;
    /// Default misses before DOWN.
    pub const DEFAULT_DOWN_AFTER: u8 = 3;
    /// Default replies before UP again.
    pub const DEFAULT_UP_AFTER: u8 = 2;

    /// `address` with the default interval, timeout and thresholds.
    pub fn with_defaults(address: IpAddr) -> Self {
        Self {
            address,
            check: Check::Icmp,
            source: None,
            interval_ms: Self::DEFAULT_INTERVAL_MS,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            down_after: Self::DEFAULT_DOWN_AFTER,
            up_after: Self::DEFAULT_UP_AFTER,
        }
    }
}

/// The pending event of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    /// Nothing scheduled (removed, or finished its probe count).
    Nothing,
    /// Waiting in the ready queue or the wheel to be sent.
    Probe,
    /// Waiting for the reply to the probe in flight.
    Timeout,
}

/// Statistics of one report period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodStats {
    /// Probes sent.
    pub sent: u32,
    /// Valid, timely replies.
    pub received: u32,
    /// Smallest RTT, µs (0 if nothing received).
    pub rtt_min_us: u32,
    /// Largest RTT, µs.
    pub rtt_max_us: u32,
    /// Sum of RTTs, µs.
    pub rtt_sum_us: u64,
    /// Sum of |RTT − previous RTT| over consecutive replies, µs.
    pub jitter_sum_us: u64,
}

/// A period's RTT median and 90th percentile, µs, exact (nearest rank),
/// handed out with its statistics; `None` without replies or without a
/// report period (see `quantiles`). Kept apart from [`PeriodStats`], which
/// every target carries.
pub type RttQuantiles = Option<(u32, u32)>;

impl PeriodStats {
    /// Mean RTT, µs (0 if nothing received).
    pub fn rtt_avg_us(&self) -> u32 {
        if self.received == 0 {
            return 0;
        }
        u32::try_from(self.rtt_sum_us / u64::from(self.received)).unwrap_or(u32::MAX)
    }

    /// Mean absolute difference of consecutive RTTs, µs.
    pub fn jitter_us(&self) -> u32 {
        if self.received < 2 {
            return 0;
        }
        u32::try_from(self.jitter_sum_us / u64::from(self.received - 1)).unwrap_or(u32::MAX)
    }

    fn record_rtt(&mut self, rtt_us: u32, previous_us: Option<u32>) {
        if self.received == 0 || rtt_us < self.rtt_min_us {
            self.rtt_min_us = rtt_us;
        }
        self.rtt_max_us = self.rtt_max_us.max(rtt_us);
        self.rtt_sum_us += u64::from(rtt_us);
        if let (Some(previous), true) = (previous_us, self.received > 0) {
            self.jitter_sum_us += u64::from(rtt_us.abs_diff(previous));
        }
        self.received += 1;
    }
}

/// Everything the engine keeps per target.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub spec: TargetSpec,
    /// Controller's device id (or the CLI's input position).
    pub id: u64,
    /// Offset of this target's probes within its interval, ns.
    pub phase_ns: u64,
    /// When the pending event is due.
    pub event_at: Nanos,
    /// Changes whenever the target is rescheduled; see the wheel.
    pub token: u16,
    /// Changes whenever the slot is reused for another target.
    pub epoch: u16,
    pub pending: Pending,
    /// Sequence number of the last probe sent.
    pub seq: u16,
    /// Bit k set: probe `seq - k` was answered (duplicates and late
    /// replies are told apart with it).
    pub answered: u16,
    /// When the last probe was sent.
    pub sent_at: Nanos,
    /// Probes left to send (count mode); `u32::MAX` = unlimited.
    pub probes_left: u32,
    pub status: Status,
    /// Its slot is free (`Engine::remove_target`).
    pub removed: bool,
    consecutive_misses: u8,
    consecutive_replies: u8,
    last_miss: Option<Miss>,
    same_kind_misses: u8,
    /// Its loss while it answers, for how many timeouts confirm DOWN.
    loss: LossEstimate,
    /// It answered since it went down or unreachable: its misses are loss
    /// again.
    answered_while_down: bool,
    /// RTT of the last valid reply, µs.
    pub last_rtt_us: Option<u32>,
    pub stats: PeriodStats,
}

impl Target {
    pub fn new(spec: TargetSpec, id: u64, phase_ns: u64, epoch: u16, probes_left: u32) -> Self {
        Self {
            spec,
            id,
            phase_ns,
            event_at: 0,
            token: 0,
            epoch,
            pending: Pending::Nothing,
            seq: 0,
            answered: 0,
            sent_at: 0,
            probes_left,
            status: Status::Unknown,
            removed: false,
            consecutive_misses: 0,
            consecutive_replies: 0,
            last_miss: None,
            same_kind_misses: 0,
            loss: LossEstimate::default(),
            answered_while_down: false,
            last_rtt_us: None,
            stats: PeriodStats::default(),
        }
    }

    pub fn interval_ns(&self) -> u64 {
        u64::from(self.spec.interval_ms) * 1_000_000
    }

    pub fn timeout_ns(&self) -> u64 {
        u64::from(self.spec.timeout_ms) * 1_000_000
    }

    /// The first point of this target's probe grid after `now`, its phase
    /// rounded down to a send slot `slot_ns` wide.
    pub fn next_grid_point(&self, now: Nanos, slot_ns: Nanos) -> Nanos {
        let interval = self.interval_ns();
        let phase = self.phase_ns / slot_ns * slot_ns;
        if now < phase {
            return phase;
        }
        let periods = (now - phase) / interval + 1;
        phase + periods * interval
    }

    /// Records that a probe was sent now.
    pub fn record_sent(&mut self, now: Nanos) {
        self.seq = self.seq.wrapping_add(1);
        self.answered <<= 1;
        self.sent_at = now;
        self.probes_left = self.probes_left.saturating_sub(1);
        self.stats.sent += 1;
    }

    /// True if probe `seq` is the last one sent or one of the 15 before.
    pub fn answered_bit(&self, seq: u16) -> Option<u16> {
        let age = self.seq.wrapping_sub(seq);
        (age < 16).then(|| 1 << age)
    }

    /// A valid, timely reply to the probe in flight. Returns the new status
    /// if it changed.
    pub fn record_reply(&mut self, rtt_us: u32) -> Option<Status> {
        self.answered |= 1;
        self.stats.record_rtt(rtt_us, self.last_rtt_us);
        self.last_rtt_us = Some(rtt_us);
        // A run of misses a reply ended was loss on a live link, unless
        // it is the outage a down target's first reply ends.
        if matches!(self.status, Status::Up | Status::Unknown) || self.answered_while_down {
            self.loss.reply_after(self.consecutive_misses);
        } else {
            self.loss.reply_after(0);
            self.answered_while_down = true;
        }
        self.consecutive_misses = 0;
        self.same_kind_misses = 0;
        self.last_miss = None;
        match self.status {
            Status::Up => None,
            // A target's first reply settles it at once.
            Status::Unknown => self.change(Status::Up),
            Status::Down | Status::Unreachable => {
                self.consecutive_replies = self.consecutive_replies.saturating_add(1);
                (self.consecutive_replies >= self.spec.up_after).then(|| self.change(Status::Up))?
            }
        }
    }

    /// The probe in flight failed. Returns the new status if it changed.
    pub fn record_miss(&mut self, miss: Miss) -> Option<Status> {
        self.consecutive_replies = 0;
        self.consecutive_misses = self.consecutive_misses.saturating_add(1);
        if self.last_miss == Some(miss) {
            self.same_kind_misses = self.same_kind_misses.saturating_add(1);
        } else {
            self.last_miss = Some(miss);
            self.same_kind_misses = 1;
        }
        let down_after = self.spec.down_after;
        // An ICMP error is the network saying so; timeouts a lossy link
        // also gives need more of them.
        let to_confirm = match miss {
            Miss::IcmpError => down_after,
            Miss::Timeout => self.misses_to_confirm(),
        };
        match self.status {
            Status::Up | Status::Unknown if self.consecutive_misses >= to_confirm => {
                self.change(miss.status())
            }
            // Already not up: switch between DOWN and UNREACHABLE only when
            // the new kind of failure is as confirmed as a DOWN would be.
            Status::Down | Status::Unreachable
                if self.status != miss.status() && self.same_kind_misses >= down_after =>
            {
                self.change(miss.status())
            }
            _ => None,
        }
    }

    /// The consecutive timeouts that confirm DOWN now, from the loss
    /// measured while it answered.
    pub fn misses_to_confirm(&self) -> u8 {
        misses_to_confirm(
            self.spec.down_after,
            self.loss.upper(),
            self.spec.interval_ms,
        )
    }

    /// True while the state machine is counting towards a change, when the
    /// engine re-probes at once instead of waiting for the next interval.
    pub fn confirming(&self) -> bool {
        match self.status {
            Status::Up | Status::Unknown => self.consecutive_misses > 0,
            Status::Down | Status::Unreachable => self.consecutive_replies > 0,
        }
    }

    fn change(&mut self, status: Status) -> Option<Status> {
        self.status = status;
        self.answered_while_down = false;
        self.consecutive_misses = 0;
        self.consecutive_replies = 0;
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn target(down_after: u8, up_after: u8) -> Target {
        let spec = TargetSpec {
            down_after,
            up_after,
            ..TargetSpec::with_defaults("127.0.0.1".parse().expect("address"))
        };
        Target::new(spec, 0, 0, 0, u32::MAX)
    }

    #[test]
    fn per_target_memory_is_small() {
        // 128 before the TCP check's port and source address.
        let bytes = std::mem::size_of::<Target>();
        assert!(bytes <= 160, "Target is {bytes} bytes");
    }

    #[test]
    fn statistics_follow_the_replies() {
        let mut t = target(3, 2);
        for rtt in [100, 300, 200] {
            t.record_sent(0);
            t.record_reply(rtt);
        }
        t.record_sent(0);
        assert_eq!(t.stats.sent, 4);
        assert_eq!(t.stats.received, 3);
        assert_eq!(
            (t.stats.rtt_min_us, t.stats.rtt_avg_us(), t.stats.rtt_max_us),
            (100, 200, 300)
        );
        assert_eq!(t.stats.jitter_us(), 150, "(|300-100| + |200-300|) / 2");
    }

    /// Probes `t` through `pattern` (true = lost) `rounds` times; each lost
    /// probe is a timeout.
    fn probe(t: &mut Target, pattern: &[bool], rounds: usize) {
        for _ in 0..rounds {
            for &lost in pattern {
                if lost {
                    t.record_miss(Miss::Timeout);
                } else {
                    t.record_reply(100);
                }
            }
        }
    }

    /// 30 % loss, never more than one in a row.
    const THIRTY_PERCENT: [bool; 10] = [
        true, false, false, true, false, false, true, false, false, false,
    ];

    #[test]
    fn a_lossy_link_needs_more_timeouts_than_a_clean_one() {
        let mut t = target(3, 2);
        probe(&mut t, &THIRTY_PERCENT, 100);
        assert_eq!(t.status, Status::Up);
        let needed = t.misses_to_confirm();
        assert!(needed >= 13, "{needed}");
        for _ in 1..needed {
            assert_eq!(t.record_miss(Miss::Timeout), None);
        }
        assert_eq!(t.record_miss(Miss::Timeout), Some(Status::Down));
    }

    #[test]
    fn an_icmp_error_is_believed_after_down_after_even_on_a_lossy_link() {
        let mut t = target(3, 2);
        probe(&mut t, &THIRTY_PERCENT, 100);
        t.record_miss(Miss::IcmpError);
        t.record_miss(Miss::IcmpError);
        assert_eq!(t.record_miss(Miss::IcmpError), Some(Status::Unreachable));
    }

    #[test]
    fn an_outage_is_not_loss() {
        let mut t = target(3, 2);
        probe(&mut t, &[false], 100);
        for _ in 0..5 {
            probe(&mut t, &[true, true], 1);
            assert_eq!(t.record_miss(Miss::Timeout), Some(Status::Down));
            probe(&mut t, &[true], 20); // still dead
            probe(&mut t, &[false], 2);
            assert_eq!(t.status, Status::Up);
            assert_eq!(t.misses_to_confirm(), 3, "a clean link, as before");
        }
    }

    #[test]
    fn a_target_that_answers_while_down_is_measured_again() {
        let mut t = target(3, 2);
        // Never answered yet: three misses make it DOWN.
        probe(&mut t, &[true, true, true], 1);
        assert_eq!(t.status, Status::Down);
        // It answers, loses half, and comes up: those misses were loss.
        probe(&mut t, &[false, true, false, true, true, false, true], 1);
        probe(&mut t, &[false, false], 1);
        assert_eq!(t.status, Status::Up);
        assert!(t.misses_to_confirm() > 10, "{}", t.misses_to_confirm());
    }

    /// A simulated week of a live target (1 s interval) at random loss, a
    /// fixed seed: how often it goes DOWN. The module `confirm` expects
    /// under 0.41 a month at 30 % and 0.14 a week at 50 %.
    fn false_downs_in_a_week(loss: f64, seed: u64) -> u32 {
        let mut t = target(3, 2);
        let mut state = seed;
        let mut downs = 0;
        for _ in 0..7 * 24 * 3600 {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let draw =
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            let changed = if draw < loss {
                t.record_miss(Miss::Timeout)
            } else {
                t.record_reply(100)
            };
            if changed == Some(Status::Down) {
                downs += 1;
            }
        }
        downs
    }

    #[test]
    fn a_week_at_thirty_and_fifty_percent_loss_is_not_paged() {
        assert_eq!(false_downs_in_a_week(0.3, 0x5eed_0001), 0);
        assert_eq!(false_downs_in_a_week(0.5, 0x5eed_0002), 0);
    }

    #[derive(Clone, Copy, Debug)]
    enum Outcome {
        Reply,
        Timeout,
        Error,
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Reply),
            Just(Outcome::Timeout),
            Just(Outcome::Error)
        ]
    }

    proptest! {
        /// Whatever happens, a change to DOWN/UNREACHABLE follows at least
        /// `down_after` consecutive misses, and a change from DOWN back to
        /// UP follows `up_after` consecutive replies.
        #[test]
        fn hysteresis_holds(
            down_after in 1u8..6,
            up_after in 1u8..6,
            outcomes in prop::collection::vec(outcome(), 0..200),
        ) {
            let mut t = target(down_after, up_after);
            let mut misses_run = 0usize;
            let mut replies_run = 0usize;
            for outcome in outcomes {
                let before = t.status;
                let change = match outcome {
                    Outcome::Reply => { misses_run = 0; replies_run += 1; t.record_reply(100) }
                    Outcome::Timeout => { replies_run = 0; misses_run += 1; t.record_miss(Miss::Timeout) }
                    Outcome::Error => { replies_run = 0; misses_run += 1; t.record_miss(Miss::IcmpError) }
                };
                if let Some(status) = change {
                    prop_assert_ne!(status, before);
                    match status {
                        Status::Down | Status::Unreachable =>
                            prop_assert!(misses_run >= usize::from(down_after)),
                        Status::Up if before != Status::Unknown =>
                            prop_assert!(replies_run >= usize::from(up_after)),
                        _ => {}
                    }
                }
                prop_assert_eq!(t.status, change.unwrap_or(before));
            }
        }
    }
}
