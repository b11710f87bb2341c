//! Sliding log: the time of every admitted request within the last period.

use std::collections::VecDeque;

use super::Algorithm;
use super::sealed::Step;
use crate::{Decision, Rate, Result, error::invalid};

/// Exact: in any interval `[t, t + period)`, at most `amount` are admitted.
///
/// It keeps the time and cost of each admitted request for one `period`, so
/// memory is O(requests admitted in a period), at most O(`amount`) per key:
/// 16 bytes a request in memory, one sorted-set entry a request in Redis.
/// Choose it when the limit must hold in every window, not only in aligned
/// ones, and `amount` is modest; for large amounts, the
/// [`TokenBucket`](crate::TokenBucket) limits in constant memory.
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
                "a sliding log keeps an entry per admitted request, so its amount must be at most {}, not {amount}; \
                 a token bucket limits large amounts in constant memory",
                Self::MAX_AMOUNT
            )));
        }
        Ok(Self { amount, period_us })
    }

    /// The rate: the amount in any interval of the period.
    pub fn rate(&self) -> Rate {
        Rate::new(self.amount, std::time::Duration::from_micros(self.period_us))
    }

    fn in_window(&self, at_us: u64, now_us: u64) -> bool {
        at_us.saturating_add(self.period_us) > now_us
    }
}

/// How many entries that have left the window one write forgets at most:
/// `REMOVED_PER_WRITE` in `lua/sliding_log.lua`.
pub(crate) const FORGOTTEN_PER_WRITE: usize = 64;

/// The admitted requests still in the window (and perhaps a few older ones),
/// oldest first: each one's time and the running total of cost up to and
/// including it, so that the cost in any stretch of the log is one
/// subtraction and finding where it passes a mark is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    /// The running total before the first entry.
    base: u64,
    /// (admitted at, running total), in order of both.
    entries: VecDeque<(u64, u64)>,
}

impl Log {
    fn total(&self) -> u64 {
        self.entries.back().map_or(self.base, |&(_, total)| total)
    }

    /// The running total just before entry `index`.
    fn total_before(&self, index: usize) -> u64 {
        if index == 0 { self.base } else { self.entries[index - 1].1 }
    }
}

impl Algorithm for SlidingLog {
    fn limit(&self) -> u64 {
        self.amount
    }

    fn name(&self) -> &'static str {
        "sliding_log"
    }
}

impl Step for SlidingLog {
    type State = Log;

    fn step(&self, log: &mut Log, now_us: u64, cost: u64) -> Decision {
        let newest = log.entries.back().map(|&(at, _)| at);
        // A clock that went back is held at the newest entry, which keeps the log sorted.
        let now_us = newest.map_or(now_us, |newest| now_us.max(newest));
        let first_live = log.entries.partition_point(|&(at, _)| !self.in_window(at, now_us));
        let before_live = log.total_before(first_live);
        // Cost admitted at times in (now - period, now]; more than the amount
        // only if a configuration with a larger amount wrote the log.
        let count = (log.total() - before_live).min(self.amount);
        let until_empty =
            |newest: Option<u64>| newest.map_or(0, |at| at.saturating_add(self.period_us).saturating_sub(now_us));

        if cost > self.amount - count {
            // The request fits once enough of the oldest live requests have left
            // the window to free `excess`: at the first whose running total gets there.
            let excess = (log.total() - before_live) + cost - self.amount;
            let freeing = log.entries.partition_point(|&(_, total)| total < before_live + excess);
            let retry_after = log.entries[freeing].0.saturating_add(self.period_us) - now_us;
            return Decision::denied(self.amount, self.amount - count, retry_after, until_empty(newest));
        }
        if cost == 0 {
            return Decision::allowed(self.amount, self.amount - count, until_empty(newest), 0);
        }
        // Forgets at most a few of the entries that have left the window, as
        // the script does (so that no call does unbounded work): both keep the
        // same log, and a configuration with a longer period reads the same.
        let forgotten = first_live.min(FORGOTTEN_PER_WRITE);
        log.base = log.total_before(forgotten);
        log.entries.drain(..forgotten);
        let total = log.total() + cost;
        match log.entries.back_mut() {
            // Requests of the same microsecond share one entry.
            Some((at, newest_total)) if *at == now_us => *newest_total = total,
            _ => log.entries.push_back((now_us, total)),
        }
        Decision::allowed(self.amount, self.amount - count - cost, self.period_us, 0)
    }

    fn expires_at(&self, log: &Log) -> u64 {
        log.entries.back().map_or(0, |&(newest, _)| newest.saturating_add(self.period_us))
    }
}

#[cfg(test)]
impl SlidingLog {
    /// An everyday configuration, for tests that need one of each algorithm.
    pub(crate) fn example() -> Self {
        Self::new(Rate::per_second(10)).unwrap()
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
        let mut log = Log::default();
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
        let mut log = Log::default();
        let _ = limiter.step(&mut log, 999 * MS, 2);
        assert!(!limiter.step(&mut log, 1000 * MS, 1).is_allowed());
    }

    #[test]
    fn a_cost_waits_for_as_many_entries_as_it_needs() {
        let limiter = SlidingLog::new(Rate::per_second(3)).unwrap();
        let mut log = Log::default();
        let _ = limiter.step(&mut log, 0, 1);
        let _ = limiter.step(&mut log, 100 * MS, 1);
        let _ = limiter.step(&mut log, 200 * MS, 1);
        let denied = limiter.step(&mut log, 300 * MS, 2);
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(800)));
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing() {
        let limiter = two_per_second();
        let mut log = Log::default();
        let _ = limiter.step(&mut log, 0, 2);
        let before = log.clone();
        assert!(!limiter.step(&mut log, 10, 1).is_allowed());
        assert_eq!(limiter.step(&mut log, 2_000_000, 0).remaining(), 2);
        assert_eq!(log, before);
    }

    #[test]
    fn the_log_never_holds_more_entries_than_the_amount_and_one_per_request() {
        let limiter = two_per_second();
        let mut log = Log::default();
        for at in 0..100 {
            let _ = limiter.step(&mut log, at * 300 * MS, 1);
            assert!(log.entries.len() <= 2);
        }
        let hundred = SlidingLog::new(Rate::per_second(100)).unwrap();
        let mut log = Log::default();
        assert!(hundred.step(&mut log, 0, 60).is_allowed());
        assert!(hundred.step(&mut log, 1, 40).is_allowed());
        assert_eq!(log.entries.len(), 2, "a request of any cost is one entry");
    }

    #[test]
    fn a_log_written_with_a_larger_amount_leaves_nothing_never_a_wrapped_number() {
        let mut log = Log::default();
        let _ = SlidingLog::new(Rate::per_second(10)).unwrap().step(&mut log, 0, 8);
        let denied = two_per_second().step(&mut log, 500 * MS, 1);
        assert_eq!((denied.is_allowed(), denied.remaining()), (false, 0));
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
    }
}
