//! What comes back: a validated ICMP packet (an echo reply or an error
//! quoting a probe) applied to the probe in flight it names; a TCP
//! answer's own matching is in `tcp`.

use crate::packet::{ProbeFields, Verdict};
use crate::target::{Miss, Pending};
use crate::{Cause, Engine, Nanos};

impl Engine {
    /// Applies a validated packet received at `received_at` (engine time of
    /// the kernel's receive timestamp); `now` is the current engine time.
    pub fn handle_verdict(&mut self, verdict: Verdict, received_at: Nanos, now: Nanos) {
        match verdict {
            Verdict::Reply(fields) => self.handle_reply(fields, received_at, now),
            Verdict::Error {
                probe,
                kind,
                reporter,
                ..
            } => {
                if self.in_flight(&probe) {
                    self.counters.icmp_errors += 1;
                    let cause = Cause::IcmpError { kind, reporter };
                    self.conclude_probe(probe.index, Err(Miss::IcmpError), cause, now);
                } else {
                    self.counters.icmp_errors_late += 1;
                }
            }
        }
    }

    fn handle_reply(&mut self, fields: ProbeFields, received_at: Nanos, now: Nanos) {
        let Some(target) = self.targets.get(fields.index as usize) else {
            self.counters.replies_invalid += 1;
            return;
        };
        if target.epoch != fields.epoch || target.answered_bit(fields.seq).is_none() {
            self.counters.replies_invalid += 1;
            return;
        }
        if self.in_flight(&fields) {
            self.answer_in_flight(fields.index, received_at, now);
            return;
        }
        let bit = target.answered_bit(fields.seq).unwrap_or(0);
        if target.answered & bit != 0 {
            self.counters.replies_duplicate += 1;
        } else {
            self.counters.replies_late += 1;
        }
    }

    /// Concludes slot `index`'s probe in flight with an answer received at
    /// `received_at`, unless it came after the timeout (then the timeout
    /// records the miss).
    pub(crate) fn answer_in_flight(&mut self, index: u32, received_at: Nanos, now: Nanos) {
        let target = &self.targets[index as usize];
        let rtt_ns = received_at.saturating_sub(target.sent_at);
        if rtt_ns > target.timeout_ns() {
            self.counters.replies_late += 1;
            return;
        }
        self.counters.replies_matched += 1;
        let rtt_us = u32::try_from(rtt_ns.div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        self.longest_rtt_us = self.longest_rtt_us.max(rtt_us);
        self.conclude_probe(index, Ok(rtt_us), Cause::Replies, now);
    }

    /// True if `probe` is the probe in flight of its (live) target.
    fn in_flight(&self, probe: &ProbeFields) -> bool {
        self.targets
            .get(probe.index as usize)
            .is_some_and(|target| {
                target.pending == Pending::Timeout
                    && target.epoch == probe.epoch
                    && target.seq == probe.seq
                    && target.sent_at == probe.sent_ns
            })
    }
}
