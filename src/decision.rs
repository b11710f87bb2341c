//! [`Decision`]: what a limiter says about one request.

use std::time::Duration;

use crate::error::{Result, invalid};

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
    /// An admitted request, for a backend or a wrapper of your own (a cache,
    /// a test double): `remaining` of `limit` are left after it, the
    /// allowance is full again after `reset_after`, and the request should
    /// be held for `wait` before it is passed on (zero but for traffic
    /// shaping, as the leaky bucket does).
    ///
    /// Durations are kept in whole microseconds, rounded up.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::Decision;
    ///
    /// let decision = Decision::allow(10, 9, Duration::from_secs(6), Duration::ZERO)?;
    /// assert!(decision.is_allowed());
    /// assert_eq!(decision.remaining(), 9);
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero
    /// `limit` or a `remaining` above it.
    pub fn allow(limit: u64, remaining: u64, reset_after: Duration, wait: Duration) -> Result<Self> {
        check_counts(limit, remaining)?;
        Ok(Self::allowed(limit, remaining, micros_up(reset_after), micros_up(wait)))
    }

    /// A denied request, for a backend or a wrapper of your own: `remaining`
    /// of `limit` are left (fewer than the request asked for), the same
    /// request would pass after `retry_after`, and the allowance is full
    /// again after `reset_after`.
    ///
    /// Durations are kept in whole microseconds, rounded up; a zero
    /// `retry_after` becomes one microsecond, since a client told to retry
    /// after nothing would spin.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero
    /// `limit` or a `remaining` above it.
    pub fn deny(limit: u64, remaining: u64, retry_after: Duration, reset_after: Duration) -> Result<Self> {
        check_counts(limit, remaining)?;
        Ok(Self::denied(limit, remaining, micros_up(retry_after), micros_up(reset_after)))
    }

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

fn check_counts(limit: u64, remaining: u64) -> Result<()> {
    if limit == 0 {
        return Err(invalid("a decision's limit must be at least 1"));
    }
    if remaining > limit {
        return Err(invalid(format!("a decision's remaining ({remaining}) cannot exceed its limit ({limit})")));
    }
    Ok(())
}

/// Whole microseconds, rounded up (and at most `u64::MAX`).
fn micros_up(duration: Duration) -> u64 {
    let micros = duration.as_nanos().div_ceil(1_000);
    u64::try_from(micros).unwrap_or(u64::MAX)
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
    fn the_public_constructors_check_their_counts_and_round_durations_up() {
        let allowed = Decision::allow(10, 10, Duration::from_nanos(1), Duration::from_nanos(1_001)).unwrap();
        assert_eq!((allowed.reset_after(), allowed.wait()), (Duration::from_micros(1), Duration::from_micros(2)));
        let denied = Decision::deny(10, 0, Duration::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(denied.retry_after(), Some(Duration::from_micros(1)));
        assert!(Decision::allow(10, 11, Duration::ZERO, Duration::ZERO).is_err());
        assert!(Decision::deny(0, 0, Duration::ZERO, Duration::ZERO).is_err());
        assert_eq!(
            Decision::deny(1, 0, Duration::MAX, Duration::ZERO).unwrap().retry_after(),
            Some(Duration::from_micros(u64::MAX))
        );
    }

    #[test]
    fn an_allowed_request_has_no_retry_after() {
        let decision = Decision::allowed(10, 9, 100, 0);
        assert!(decision.is_allowed());
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.reset_after(), Duration::from_micros(100));
    }
}
