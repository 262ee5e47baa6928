//! Global rate limit: a token bucket refilled continuously from `now`.

use super::Nanos;

const NS_PER_S: u128 = 1_000_000_000;

/// Probes per second allowed, with a burst of one millisecond's worth
/// (at least one probe). `None` = unlimited.
#[derive(Debug)]
pub struct TokenBucket {
    rate: Option<u32>,
    /// Tokens in millionths, so slow rates refill smoothly.
    micro_tokens: u128,
    last_refill: Nanos,
}

impl TokenBucket {
    /// A full bucket for `rate` probes per second.
    pub fn new(rate: Option<u32>, now: Nanos) -> Self {
        let mut bucket = Self {
            rate,
            micro_tokens: 0,
            last_refill: now,
        };
        bucket.micro_tokens = bucket.capacity();
        bucket
    }

    /// Changes the rate at run time; the bucket keeps what it holds.
    pub fn set_rate(&mut self, rate: Option<u32>, now: Nanos) {
        self.refill(now);
        self.rate = rate;
        self.micro_tokens = self.micro_tokens.min(self.capacity());
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Nanos) -> bool {
        if self.rate.is_none() {
            return true;
        }
        self.refill(now);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (now, if unlimited or available).
    pub fn next_token_at(&self, now: Nanos) -> Nanos {
        match self.rate {
            None | Some(0) => now,
            Some(_) if self.micro_tokens >= 1_000_000 => now,
            Some(rate) => {
                let missing = 1_000_000 - self.micro_tokens;
                let wait = missing * NS_PER_S / (u128::from(rate) * 1_000_000);
                self.last_refill + u64::try_from(wait).unwrap_or(u64::MAX) + 1
            }
        }
    }

    fn capacity(&self) -> u128 {
        let per_ms = self.rate.map_or(1, |rate| (rate / 1000).max(1));
        u128::from(per_ms) * 1_000_000
    }

    fn refill(&mut self, now: Nanos) {
        let Some(rate) = self.rate else { return };
        let elapsed = u128::from(now.saturating_sub(self.last_refill));
        self.last_refill = now.max(self.last_refill);
        let added = elapsed * u128::from(rate) * 1_000_000 / NS_PER_S;
        self.micro_tokens = (self.micro_tokens + added).min(self.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_at_a_rate_yields_that_many_plus_the_burst() {
        let mut bucket = TokenBucket::new(Some(10_000), 0);
        let mut taken = 0u32;
        for step in 0..=1_000_000u64 {
            // Try every microsecond for one second.
            while bucket.try_take(step * 1000) {
                taken += 1;
            }
        }
        assert!(
            (10_000..=10_010).contains(&taken),
            "{taken} tokens in 1 s at 10k/s"
        );
    }

    #[test]
    fn slow_rates_refill_smoothly() {
        let mut bucket = TokenBucket::new(Some(2), 0);
        assert!(bucket.try_take(0));
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(499_000_000));
        assert!(bucket.try_take(500_000_000));
        assert_eq!(bucket.next_token_at(500_000_000), 1_000_000_001);
    }

    #[test]
    fn unlimited_never_refuses_and_rate_can_change() {
        let mut bucket = TokenBucket::new(None, 0);
        assert!((0..100_000).all(|_| bucket.try_take(0)));
        bucket.set_rate(Some(1000), 0);
        assert!(bucket.try_take(0));
        assert!(!bucket.try_take(0));
    }
}
