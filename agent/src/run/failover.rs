//! Which controller of a cluster to link to, and whether to wait first:
//! after a lost or refused link the agent moves straight on to the next
//! controller; only once every controller has been tried since the last
//! good link does it back off. Pure: the run loop asks, this decides.

/// The controllers' turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    count: usize,
    current: usize,
    /// Controllers lost or unreachable since the last link opened.
    misses: usize,
}

/// What to do after a miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Link to the next controller now.
    Now,
    /// Every controller was tried: wait (back off) first.
    Wait,
}

impl Failover {
    /// Turns over `count` controllers (at least one), starting with the
    /// first.
    pub fn new(count: usize) -> Self {
        Self {
            count: count.max(1),
            current: 0,
            misses: 0,
        }
    }

    /// The controller to link to (its index).
    pub fn current(&self) -> usize {
        self.current
    }

    /// A link to the current controller opened.
    pub fn linked(&mut self) {
        self.misses = 0;
    }

    /// The current controller was lost, refused the link or could not be
    /// reached: the next one is current now.
    pub fn missed(&mut self) -> Next {
        self.current = (self.current + 1) % self.count;
        self.misses += 1;
        if self.misses >= self.count {
            self.misses = 0;
            Next::Wait
        } else {
            Next::Now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_controller_is_followed_at_once_by_the_next_and_a_full_round_waits() {
        let mut failover = Failover::new(3);
        assert_eq!(failover.current(), 0);
        failover.linked();
        assert_eq!(failover.missed(), Next::Now, "lost A: B at once");
        assert_eq!(failover.current(), 1);
        assert_eq!(failover.missed(), Next::Now, "B unreachable: C at once");
        assert_eq!(failover.missed(), Next::Wait, "C too: every one tried");
        assert_eq!(failover.current(), 0, "then A again");
        assert_eq!(failover.missed(), Next::Now, "a new round");
        failover.linked();
        assert_eq!(failover.current(), 1);
        assert_eq!(failover.missed(), Next::Now);
    }

    #[test]
    fn one_controller_always_waits_before_linking_again() {
        let mut failover = Failover::new(1);
        assert_eq!(failover.missed(), Next::Wait);
        assert_eq!(failover.current(), 0);
        failover.linked();
        assert_eq!(failover.missed(), Next::Wait);
    }
}
