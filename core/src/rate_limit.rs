//! Token buckets for per-user rate limits. Integer arithmetic only, so a run is reproducible.

use crate::time::Millis;

/// A bucket of `burst` tokens refilled at `rate` tokens per `period_ms`.
///
/// Tokens are counted in units of `1 / period_ms` so refills need no division.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    units: u64,
    capacity: u64,
    cost: u64,
    refill_per_ms: u64,
    at: Millis,
}

impl TokenBucket {
    /// A full bucket as of `now`.
    pub fn new(rate: u32, period_ms: u64, burst: u32, now: Millis) -> Self {
        let period_ms = period_ms.max(1);
        let capacity = u64::from(burst.max(1)) * period_ms;
        TokenBucket { units: capacity, capacity, cost: period_ms, refill_per_ms: u64::from(rate), at: now }
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.since(self.at);
        self.units = self.units.saturating_add(elapsed.saturating_mul(self.refill_per_ms)).min(self.capacity);
        self.at = self.at.max(now);
    }

    /// Takes one token, or says in how many milliseconds one will be there.
    pub fn take(&mut self, now: Millis) -> Result<(), u64> {
        self.refill(now);
        if self.units >= self.cost {
            self.units -= self.cost;
            return Ok(());
        }
        if self.refill_per_ms == 0 {
            return Err(u64::MAX);
        }
        Err((self.cost - self.units).div_ceil(self.refill_per_ms))
    }

    /// Gives back a token taken for work that was then refused.
    pub fn give_back(&mut self) {
        self.units = (self.units + self.cost).min(self.capacity);
    }

    /// Whether the bucket is full as of `now`, so forgetting it changes nothing.
    pub fn is_full(&mut self, now: Millis) -> bool {
        self.refill(now);
        self.units == self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(20, 1000, 40, Millis(0));
        for _ in 0..40 {
            assert_eq!(b.take(Millis(0)), Ok(()));
        }
        assert_eq!(b.take(Millis(0)), Err(50));
        assert_eq!(b.take(Millis(49)), Err(1));
        assert_eq!(b.take(Millis(50)), Ok(()));
        assert_eq!(b.take(Millis(50)), Err(50));
        assert!(!b.is_full(Millis(50)));
        assert!(b.is_full(Millis(2050)));
    }

    #[test]
    fn per_minute_rate_refills_one_per_second() {
        let mut b = TokenBucket::new(60, 60_000, 60, Millis(0));
        for _ in 0..60 {
            b.take(Millis(0)).unwrap();
        }
        assert_eq!(b.take(Millis(0)), Err(1000));
        assert_eq!(b.take(Millis(1000)), Ok(()));
    }

    #[test]
    fn given_back_token_is_usable() {
        let mut b = TokenBucket::new(1, 1000, 1, Millis(0));
        b.take(Millis(0)).unwrap();
        b.give_back();
        assert_eq!(b.take(Millis(0)), Ok(()));
    }
}
