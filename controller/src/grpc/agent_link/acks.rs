//! The agent's acknowledgement, kept exact while reports finish out of
//! order.
//!
//! The `Ack` is cumulative: the agent drops from its spool every record up
//! to `acked_seq`. A link applies transitions at once but hands statistics
//! to the time-series writer in the background (a writer behind must not
//! hold a DOWN back), so a transition batch can be done before the
//! statistics batch sent ahead of it. The acknowledgement then waits:
//! it covers a sequence number only once it and every report before it
//! are done, so nothing not yet taken is ever acknowledged.

use std::collections::VecDeque;

use ward_proto::v1 as pb;

/// The reports received and not yet acknowledged, in stream order.
#[derive(Default)]
pub(super) struct AckQueue {
    waiting: VecDeque<Waiting>,
}

struct Waiting {
    seq: u64,
    done: bool,
    rejected: Vec<pb::RejectedEntry>,
}

/// What to acknowledge now: the sequence number up to which everything is
/// done, and the entries refused in the reports it covers.
#[derive(Debug, PartialEq)]
pub(super) struct DueAck {
    pub(super) seq: u64,
    pub(super) rejected: Vec<pb::RejectedEntry>,
}

impl AckQueue {
    /// Report `seq` was received and is being handled in the background.
    pub(super) fn started(&mut self, seq: u64) {
        self.waiting.push_back(Waiting {
            seq,
            done: false,
            rejected: Vec::new(),
        });
    }

    /// Report `seq` is done (received just now, or started earlier), with
    /// the entries of it refused; returns the acknowledgement now due, if
    /// any.
    pub(super) fn done(&mut self, seq: u64, rejected: Vec<pb::RejectedEntry>) -> Option<DueAck> {
        match self.waiting.iter_mut().find(|waiting| waiting.seq == seq) {
            Some(waiting) => {
                waiting.done = true;
                waiting.rejected = rejected;
            }
            None => self.waiting.push_back(Waiting {
                seq,
                done: true,
                rejected,
            }),
        }
        let mut due: Option<DueAck> = None;
        while self.waiting.front().is_some_and(|waiting| waiting.done) {
            let Some(waiting) = self.waiting.pop_front() else {
                break;
            };
            let ack = due.get_or_insert_with(|| DueAck {
                seq: waiting.seq,
                rejected: Vec::new(),
            });
            ack.seq = waiting.seq;
            ack.rejected.extend(waiting.rejected);
        }
        due
    }

    /// Reports received and not yet acknowledged.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(device_id: u64) -> pb::RejectedEntry {
        pb::RejectedEntry {
            device_id,
            reason: pb::RejectionReason::NotAssigned.into(),
        }
    }

    #[test]
    fn reports_done_in_order_are_acknowledged_each_at_once() {
        let mut acks = AckQueue::default();
        assert_eq!(
            acks.done(1, vec![refused(7)]),
            Some(DueAck {
                seq: 1,
                rejected: vec![refused(7)]
            })
        );
        assert_eq!(
            acks.done(2, Vec::new()),
            Some(DueAck {
                seq: 2,
                rejected: Vec::new()
            })
        );
        assert_eq!(acks.len(), 0);
    }

    #[test]
    fn a_report_done_behind_one_still_running_waits_for_it() {
        let mut acks = AckQueue::default();
        acks.started(1);
        assert_eq!(acks.done(2, vec![refused(8)]), None, "1 is not taken yet");
        assert_eq!(acks.done(3, Vec::new()), None);
        assert_eq!(acks.len(), 3);
        assert_eq!(
            acks.done(1, vec![refused(7)]),
            Some(DueAck {
                seq: 3,
                rejected: vec![refused(7), refused(8)]
            }),
            "one acknowledgement covers all three, with every refusal"
        );
        assert_eq!(acks.len(), 0);
    }

    #[test]
    fn the_acknowledgement_stops_at_the_first_report_still_running() {
        let mut acks = AckQueue::default();
        assert_eq!(acks.done(4, Vec::new()).map(|ack| ack.seq), Some(4));
        acks.started(5);
        assert_eq!(acks.done(6, Vec::new()), None);
        acks.started(7);
        assert_eq!(acks.done(5, Vec::new()).map(|ack| ack.seq), Some(6));
        assert_eq!(acks.done(8, Vec::new()), None, "7 still running");
        assert_eq!(acks.done(7, Vec::new()).map(|ack| ack.seq), Some(8));
    }
}
