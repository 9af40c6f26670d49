//! Per-shard rate limiting: token buckets for records and bytes at `RateLimit`% of a shard's
//! write limits, so the producer does not hammer a shard that would throttle it.

use std::time::Duration;

use tokio::time::Instant;

/// A shard accepts this many records per second.
pub const SHARD_RECORDS_PER_SECOND: f64 = 1_000.0;
/// A shard accepts this many bytes (data plus partition keys) per second.
pub const SHARD_BYTES_PER_SECOND: f64 = 1_048_576.0;

/// A token bucket holding at most one second of its rate, refilled continuously.
///
/// A request larger than the bucket is let through when the bucket is full and leaves it in debt,
/// so a record bigger than one second's allowance (possible when `RateLimit` < 100) still goes out.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` tokens per second.
    pub fn new(rate: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// How long until `amount` tokens can be taken; zero when they can be now.
    pub fn wait_for(&mut self, now: Instant, amount: f64) -> Duration {
        self.refill(now);
        let needed = amount.min(self.rate);
        if self.tokens >= needed {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((needed - self.tokens) / self.rate)
        }
    }

    /// Takes `amount` tokens; call only after [`TokenBucket::wait_for`] returned zero.
    pub fn take(&mut self, amount: f64) {
        self.tokens -= amount;
    }
}

/// The records and bytes buckets of one shard.
#[derive(Debug, Clone)]
pub struct ShardLimiter {
    records: TokenBucket,
    bytes: TokenBucket,
}

impl ShardLimiter {
    /// A limiter allowing `rate_limit_percent`% of the shard limits.
    pub fn new(rate_limit_percent: u32, now: Instant) -> Self {
        let fraction = f64::from(rate_limit_percent) / 100.0;
        ShardLimiter {
            records: TokenBucket::new(SHARD_RECORDS_PER_SECOND * fraction, now),
            bytes: TokenBucket::new(SHARD_BYTES_PER_SECOND * fraction, now),
        }
    }

    /// Takes one record of `bytes` bytes if both buckets allow it now; otherwise says how long
    /// until they would, and takes nothing.
    pub fn try_acquire(&mut self, now: Instant, bytes: usize) -> Result<(), Duration> {
        let wait = self
            .records
            .wait_for(now, 1.0)
            .max(self.bytes.wait_for(now, bytes as f64));
        if wait.is_zero() {
            self.records.take(1.0);
            self.bytes.take(bytes as f64);
            Ok(())
        } else {
            Err(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_limited_to_the_percentage_of_the_shard_limit() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(50, start);
        // A full bucket: one second's worth (500 records) at once.
        for _ in 0..500 {
            assert_eq!(limiter.try_acquire(start, 10), Ok(()));
        }
        let wait = limiter.try_acquire(start, 10).unwrap_err();
        assert!((wait.as_secs_f64() - 0.002).abs() < 1e-6, "{wait:?}");
        // 100 ms later, 50 more.
        let later = start + Duration::from_millis(100);
        let admitted = (0..100)
            .filter(|_| limiter.try_acquire(later, 10).is_ok())
            .count();
        assert_eq!(admitted, 50);
    }

    #[test]
    fn bytes_are_limited_and_a_refusal_takes_nothing() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(100, start);
        assert_eq!(limiter.try_acquire(start, 1_048_576), Ok(()));
        let wait = limiter.try_acquire(start, 524_288).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6);
        // The refused record took no record token: after 0.5 s it goes, and 999 records could too.
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.try_acquire(later, 524_288), Ok(()));
    }

    #[test]
    fn a_record_larger_than_the_bucket_passes_when_full_and_leaves_debt() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(10, start); // 104,857.6 bytes/s
        assert_eq!(limiter.try_acquire(start, 1_000_000), Ok(()));
        let wait = limiter.try_acquire(start, 1).unwrap_err();
        assert!(wait > Duration::from_secs(8), "{wait:?}");
    }
}
