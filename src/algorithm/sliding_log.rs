//! Sliding log: the time of every admitted request within the last period.

use std::collections::VecDeque;

use super::sealed::Step;
use crate::{Decision, Rate, Result, error::invalid};

/// Exact: in any interval `[t, t + period)`, at most `amount` are admitted.
///
/// It keeps the time of each admitted cost unit for one `period`, so memory is
/// O(`amount`) per key: up to `8 × amount` bytes in memory, and one sorted-set
/// entry per unit in Redis. Choose it when the limit must hold in every
/// window, not only in aligned ones, and `amount` is modest.
///
/// ```
/// use tollgate::{Rate, SlidingLog};
///
/// let ten_a_second_in_any_second = SlidingLog::new(Rate::per_second(10))?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLog {
    pub(crate) amount: u64,
    pub(crate) period_us: u64,
}

impl SlidingLog {
    /// The largest amount accepted: the log holds up to this many entries per key.
    pub const MAX_AMOUNT: u64 = 1 << 20;

    /// At most `rate.amount()` in any interval of `rate.period()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero amount
    /// or period, a period that is not whole microseconds, a period above
    /// 2^53 microseconds, or an amount above [`MAX_AMOUNT`](Self::MAX_AMOUNT).
    pub fn new(rate: Rate) -> Result<Self> {
        let (amount, period_us) = rate.to_micros()?;
        if amount > Self::MAX_AMOUNT {
            return Err(invalid(format!(
                "a sliding log keeps one entry per admitted unit, so its amount must be at most {}, not {amount}; \
                 a token bucket limits large amounts in constant memory",
                Self::MAX_AMOUNT
            )));
        }
        Ok(Self { amount, period_us })
    }

    fn in_window(&self, at_us: u64, now_us: u64) -> bool {
        at_us.saturating_add(self.period_us) > now_us
    }
}

/// When each admitted cost unit was admitted, oldest first.
pub(crate) type Log = VecDeque<u64>;

impl Step for SlidingLog {
    type State = Log;

    fn limit(&self) -> u64 {
        self.amount
    }

    fn max_cost(&self) -> u64 {
        self.amount
    }

    fn step(&self, log: &mut Log, now_us: u64, cost: u64) -> Decision {
        let newest = log.back().copied();
        // A clock that went back is held at the newest entry, which keeps the log sorted.
        let now_us = newest.map_or(now_us, |newest| now_us.max(newest));
        let first_live = log.partition_point(|&at| !self.in_window(at, now_us));
        let count = (log.len() - first_live) as u64;
        let until_empty =
            |newest: Option<u64>| newest.map_or(0, |at| at.saturating_add(self.period_us).saturating_sub(now_us));

        if count + cost > self.amount {
            // The request fits once the oldest `excess` live entries have left the window.
            let excess = count + cost - self.amount;
            let freeing = log[first_live + (excess - 1) as usize];
            let retry_after = freeing.saturating_add(self.period_us) - now_us;
            return Decision::denied(self.amount, self.amount - count, retry_after, until_empty(newest));
        }
        if cost == 0 {
            return Decision::allowed(self.amount, self.amount - count, until_empty(newest), 0);
        }
        log.drain(..first_live);
        log.extend(std::iter::repeat_n(now_us, cost as usize));
        Decision::allowed(self.amount, self.amount - count - cost, self.period_us, 0)
    }

    fn expires_at(&self, log: &Log) -> u64 {
        log.back().map_or(0, |newest| newest.saturating_add(self.period_us))
    }

    #[cfg(feature = "redis")]
    fn lua(&self) -> (&'static redis::Script, Vec<u64>) {
        (crate::redis_backend::scripts::sliding_log(), vec![self.amount, self.period_us])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000;

    fn two_per_second() -> SlidingLog {
        SlidingLog::new(Rate::per_second(2)).unwrap()
    }

    #[test]
    fn each_admission_frees_its_slot_exactly_one_period_later() {
        let limiter = two_per_second();
        let mut log = Log::new();
        assert!(limiter.step(&mut log, 0, 1).is_allowed());
        assert!(limiter.step(&mut log, 400 * MS, 1).is_allowed());
        let denied = limiter.step(&mut log, 900 * MS, 1);
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(denied.reset_after(), Duration::from_millis(500));
        assert!(!limiter.step(&mut log, 1000 * MS - 1, 1).is_allowed());
        assert!(limiter.step(&mut log, 1000 * MS, 1).is_allowed());
        assert!(!limiter.step(&mut log, 1000 * MS, 1).is_allowed());
    }

    #[test]
    fn no_boundary_burst_unlike_a_fixed_window() {
        let limiter = two_per_second();
        let mut log = Log::new();
        let _ = limiter.step(&mut log, 999 * MS, 2);
        assert!(!limiter.step(&mut log, 1000 * MS, 1).is_allowed());
    }

    #[test]
    fn a_cost_waits_for_as_many_entries_as_it_needs() {
        let limiter = SlidingLog::new(Rate::per_second(3)).unwrap();
        let mut log = Log::new();
        let _ = limiter.step(&mut log, 0, 1);
        let _ = limiter.step(&mut log, 100 * MS, 1);
        let _ = limiter.step(&mut log, 200 * MS, 1);
        let denied = limiter.step(&mut log, 300 * MS, 2);
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(800)));
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing() {
        let limiter = two_per_second();
        let mut log = Log::new();
        let _ = limiter.step(&mut log, 0, 2);
        let before = log.clone();
        assert!(!limiter.step(&mut log, 10, 1).is_allowed());
        assert_eq!(limiter.step(&mut log, 2_000_000, 0).remaining(), 2);
        assert_eq!(log, before);
    }

    #[test]
    fn the_log_never_holds_more_than_the_amount() {
        let limiter = two_per_second();
        let mut log = Log::new();
        for at in 0..100 {
            let _ = limiter.step(&mut log, at * 300 * MS, 1);
            assert!(log.len() <= 2);
        }
    }
}
