//! Flood control: a token bucket of input lines per client (docs/protocol.md,
//! "Keeping the server healthy"). Lines over the budget wait; they are never dropped.

pub use crate::config::FloodPolicy;
use std::time::{Duration, Instant};

/// The longest fake lag one command can run up: a client in debt waits at most this
/// many seconds of tokens before its next line is read.
pub const MAX_DEBT_SECONDS: f64 = 60.0;

/// One client's bucket. 12 bytes: it lives in every connection.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(policy: FloodPolicy, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: policy.burst as f32,
            refilled_at: now,
        }
    }

    /// The tokens left (as of the last refill), for a live upgrade's handover.
    pub fn tokens(&self) -> f32 {
        self.tokens
    }

    /// This bucket holding `tokens` instead (a handed-over client's).
    pub fn with_tokens(self, tokens: f32) -> TokenBucket {
        TokenBucket { tokens, ..self }
    }

    fn refill(&mut self, policy: FloodPolicy, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens as f64 + elapsed * policy.lines_per_second)
            .min(policy.burst.max(1) as f64) as f32;
        self.refilled_at = now;
    }

    /// Takes one line's token if there is one.
    pub fn try_take(&mut self, policy: FloodPolicy, now: Instant) -> bool {
        if !policy.enabled() {
            return true;
        }
        self.refill(policy, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token is there (without taking it).
    pub fn has_token(&mut self, policy: FloodPolicy, now: Instant) -> bool {
        self.refill(policy, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket has refilled to its burst: nothing to remember about it.
    pub fn is_full(&mut self, policy: FloodPolicy, now: Instant) -> bool {
        self.refill(policy, now);
        self.tokens >= policy.burst.max(1) as f32
    }

    /// Takes `cost` more tokens for work a line caused beyond being read (fake lag).
    /// The bucket may go into debt, down to [`MAX_DEBT_SECONDS`] worth of tokens;
    /// lines wait until it is paid back.
    pub fn charge(&mut self, policy: FloodPolicy, cost: f32, now: Instant) {
        if !policy.enabled() {
            return;
        }
        self.refill(policy, now);
        let floor = -(policy.lines_per_second * MAX_DEBT_SECONDS) as f32;
        self.tokens = (self.tokens - cost).max(floor);
    }

    /// When the next token will be there, for scheduling a throttled client.
    pub fn next_token_at(&self, policy: FloodPolicy) -> Instant {
        let missing = (1.0 - self.tokens as f64).max(0.0);
        self.refilled_at + Duration::from_secs_f64(missing / policy.lines_per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FloodPolicy = FloodPolicy {
        burst: 3,
        lines_per_second: 2.0,
    };

    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(POLICY, start);
        assert!((0..3).all(|_| bucket.try_take(POLICY, start)));
        assert!(!bucket.try_take(POLICY, start));
        let later = bucket.next_token_at(POLICY);
        assert_eq!(later - start, Duration::from_millis(500));
        assert!(bucket.try_take(POLICY, later));
        assert!(!bucket.try_take(POLICY, later));
    }

    #[test]
    fn a_quiet_client_refills_only_up_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(POLICY, start);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(
            (0..10)
                .filter(|_| bucket.try_take(POLICY, much_later))
                .count(),
            3
        );
    }

    #[test]
    fn expensive_work_puts_the_bucket_in_bounded_debt() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(POLICY, start);
        bucket.charge(POLICY, 1_000.0, start);
        assert!(!bucket.try_take(POLICY, start));
        let floor = POLICY.lines_per_second * MAX_DEBT_SECONDS;
        let paid_back = start + Duration::from_secs_f64((floor + 1.0) / POLICY.lines_per_second);
        assert!(!bucket.try_take(POLICY, paid_back - Duration::from_millis(10)));
        assert!(bucket.try_take(POLICY, paid_back), "the debt is capped");
    }

    #[test]
    fn rate_zero_means_unlimited() {
        let off = FloodPolicy {
            burst: 1,
            lines_per_second: 0.0,
        };
        let now = Instant::now();
        let mut bucket = TokenBucket::new(off, now);
        assert!((0..10_000).all(|_| bucket.try_take(off, now)));
    }
}
