//! [`Decision`]: what a limiter says about one request.

use std::time::Duration;

/// The answer to one check: allowed or not, and the numbers a client needs
/// (for `Retry-After` and `RateLimit` headers).
///
/// Every algorithm and backend gives these fields the same meaning.
#[must_use = "a Decision says whether the request may proceed"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    allowed: bool,
    limit: u64,
    remaining: u64,
    // Integer microseconds, as every backend computes them.
    retry_after_us: u64,
    reset_after_us: u64,
    wait_us: u64,
}

impl Decision {
    pub(crate) const fn allowed(limit: u64, remaining: u64, reset_after_us: u64, wait_us: u64) -> Self {
        Self { allowed: true, limit, remaining, retry_after_us: 0, reset_after_us, wait_us }
    }

    /// `retry_after_us` is raised to one microsecond: a client told to retry
    /// after zero would spin.
    pub(crate) const fn denied(limit: u64, remaining: u64, retry_after_us: u64, reset_after_us: u64) -> Self {
        let retry_after_us = if retry_after_us == 0 { 1 } else { retry_after_us };
        Self { allowed: false, limit, remaining, retry_after_us, reset_after_us, wait_us: 0 }
    }

    /// Whether the request may proceed.
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The most requests (cost units) the limiter admits at once: the window's
    /// amount, or the bucket's capacity (for the leaky bucket, the queue's
    /// capacity plus the one request departing now).
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// How many more cost units would be admitted right now, after this
    /// decision.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// When denied: the earliest time after which the same request would be
    /// allowed, if nothing else is admitted meanwhile. Never zero. `None` when
    /// allowed.
    pub const fn retry_after(&self) -> Option<Duration> {
        if self.allowed { None } else { Some(Duration::from_micros(self.retry_after_us)) }
    }

    /// The time until the key is back to its full allowance (zero if it is
    /// full now).
    pub const fn reset_after(&self) -> Duration {
        Duration::from_micros(self.reset_after_us)
    }

    /// How long to hold an admitted request before passing it on: the leaky
    /// bucket's departure slot, or the slot a
    /// [`reserve`](crate::RateLimiter::reserve) took. Zero for the checks of
    /// other algorithms and for denials.
    pub const fn wait(&self) -> Duration {
        Duration::from_micros(self.wait_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_never_says_retry_after_zero() {
        let decision = Decision::denied(10, 0, 0, 0);
        assert_eq!(decision.retry_after(), Some(Duration::from_micros(1)));
    }

    #[test]
    fn an_allowed_request_has_no_retry_after() {
        let decision = Decision::allowed(10, 9, 100, 0);
        assert!(decision.is_allowed());
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.reset_after(), Duration::from_micros(100));
    }
}
