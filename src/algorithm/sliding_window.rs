//! Sliding window: two fixed-window counts, the previous one weighted by how
//! much of it the sliding window still covers.

use super::Algorithm;
use super::sealed::Step;
use crate::rate::MAX_EXACT;
use crate::{Decision, Rate, Result, error::invalid};

/// About `amount` in any interval of `period`, in constant memory: the
/// sliding window *counter* (Cloudflare's, and Python `limits`' "sliding
/// window counter"), not the [`SlidingLog`](crate::SlidingLog).
///
/// Windows are aligned to multiples of `period` since the Unix epoch, as
/// the [`FixedWindow`](crate::FixedWindow)'s are. At `elapsed` µs into the
/// current window, the requests of the previous window are taken to have
/// been spread evenly across it, so the part still inside the sliding
/// window `(now - period, now]` counts: the *weighted count* is
///
/// ```text
/// previous × (period - elapsed) / period + current
/// ```
///
/// and a cost is admitted if and only if the weighted count plus the cost
/// is at most `amount`, compared exactly, in integers:
/// `previous × (period - elapsed) + (current + cost) × period ≤ amount × period`.
/// Nothing is rounded in the decision; `remaining` is rounded down (what
/// really fits now), `retry_after` up (the first whole microsecond at which
/// the same request fits, perhaps in the next window, where the current
/// count becomes the previous one).
///
/// 24 bytes of state per key, whatever the amount: choose it over the
/// sliding log for limits like 10 000 an hour. The price is that the even
/// spread is an assumption. In any aligned window it admits at most
/// `amount`, like the fixed window; in any interval of one period, at most
/// `2 × amount - ⌈2 × amount / period_µs⌉` (for a period of 2 µs or more),
/// just under twice the amount, and only when the previous window's
/// requests all came at its very end. The sliding log admits exactly
/// `amount` there. Traffic bunched at the start of a window makes it
/// stricter than the log instead. On real traffic the difference is small:
/// Cloudflare measured 0.003% of requests decided otherwise.
///
/// ```
/// use tollgate::{Rate, SlidingWindow};
///
/// let ten_thousand_an_hour = SlidingWindow::new(Rate::per_hour(10_000))?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    pub(crate) amount: u64,
    pub(crate) period_us: u64,
}

impl SlidingWindow {
    /// About `rate.amount()` in any interval of `rate.period()`, weighing the
    /// previous aligned window's count.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero amount
    /// or period, a period that is not whole microseconds, a period above
    /// 2^52 microseconds (waits reach two periods), or `amount × period` (in
    /// µs) above 2^53: the limit of exact arithmetic in Redis's Lua, where
    /// the step multiplies counts by spans of the period.
    pub fn new(rate: Rate) -> Result<Self> {
        let (amount, period_us) = rate.to_micros()?;
        if period_us > MAX_EXACT / 2 {
            return Err(invalid("the sliding window's period must be at most 2^52 microseconds"));
        }
        if amount.checked_mul(period_us).is_none_or(|product| product > MAX_EXACT) {
            return Err(invalid(format!(
                "the sliding window's amount × period must be at most 2^53 µs for exact arithmetic, \
                 not {amount} × {period_us} µs"
            )));
        }
        Ok(Self { amount, period_us })
    }

    /// The rate: the amount in (about) any interval of the period.
    pub fn rate(&self) -> Rate {
        Rate::new(self.amount, std::time::Duration::from_micros(self.period_us))
    }
}

/// The window a key last admitted in, by its start (µs since the epoch), what
/// it admitted there, and what it admitted in the window before.
///
/// A start, not a window index, for the same reason as the fixed window's: a
/// configuration with another period reads it sensibly (see
/// [`SlidingWindow`]'s step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub(crate) start_us: u64,
    pub(crate) current: u64,
    pub(crate) previous: u64,
}

impl Algorithm for SlidingWindow {
    fn limit(&self) -> u64 {
        self.amount
    }

    fn name(&self) -> &'static str {
        "sliding_window"
    }
}

impl Step for SlidingWindow {
    type State = Counts;

    #[inline]
    fn step(&self, counts: &mut Counts, now_us: u64, cost: u64) -> Decision {
        let (amount, period) = (self.amount, self.period_us);
        // A clock that went back is held at the newest window seen.
        let now_us = now_us.max(counts.start_us);
        let elapsed = now_us % period;
        let start_us = now_us - elapsed;
        // A count belongs to the reader's window in which it began to be
        // counted: the stored window's own count is this window's if it began
        // in it (a shorter period's window may begin after this one), the
        // previous window's if it began there. Counts above the amount (a
        // lower amount wrote them) are cut to it.
        let (previous, current) = if counts.start_us >= start_us {
            (counts.previous, counts.current)
        } else if counts.start_us.saturating_add(period) >= start_us {
            (counts.current, 0)
        } else {
            (0, 0)
        };
        let (previous, current) = (previous.min(amount), current.min(amount));
        // The previous window's part still inside the sliding window, in µs:
        // the weighted count, times the period, is previous × overlap + current × period.
        let overlap = period - elapsed;
        // What fits in whole units: (amount × period - the weighted count × period) / period, rounded down.
        let remaining = |current: u64| ((amount - current) * period).saturating_sub(previous * overlap) / period;
        // The weighted count is zero once this window (and, if it counted
        // anything, the next one) has ended.
        let reset_after = |current: u64| match (previous, current) {
            (0, 0) => 0,
            (_, 0) => overlap,
            _ => overlap + period,
        };
        // Both sides stay within amount × period: no product passes 2^53.
        let fits = cost <= amount - current && previous * overlap <= (amount - current - cost) * period;

        if cost > 0 && !fits {
            // It would fit but for the previous window (so `previous` > 0),
            // whose weight falls a µs at a time: it fits once the overlap is
            // down to the largest that leaves room, in this window if that is
            // at least one µs.
            let largest_overlap = (amount - current).checked_sub(cost).map(|room| room * period / previous);
            let retry_after = match largest_overlap {
                Some(largest_overlap) if largest_overlap >= 1 => overlap - largest_overlap,
                _ => until_it_fits_in_the_next_window(self, overlap, current, cost),
            };
            return Decision::denied(amount, remaining(current), retry_after, reset_after(current));
        }
        if cost > 0 {
            *counts = Counts { start_us, current: current + cost, previous };
        }
        let current = current + cost;
        Decision::allowed(amount, remaining(current), reset_after(current), 0)
    }

    fn expires_at(&self, counts: &Counts) -> u64 {
        match (counts.previous, counts.current) {
            (0, 0) => 0,
            (_, 0) => counts.start_us.saturating_add(self.period_us),
            _ => counts.start_us.saturating_add(2 * self.period_us),
        }
    }
}

/// The µs until a request of `cost` fits in the next window, where `current`
/// is the previous count: at the start of the window if `current` leaves
/// room for it, else once the overlap is down to the largest that does (at
/// most a whole window later, when nothing is left to weigh).
fn until_it_fits_in_the_next_window(window: &SlidingWindow, overlap: u64, current: u64, cost: u64) -> u64 {
    let period = window.period_us;
    if current == 0 {
        return overlap;
    }
    let largest_overlap = ((window.amount - cost) * period / current).min(period);
    overlap + (period - largest_overlap)
}

#[cfg(test)]
impl SlidingWindow {
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
    const SECOND: u64 = 1_000_000;

    /// Whether `cost` would be admitted at `now_us`, leaving `counts` as they are.
    fn passes(limiter: &SlidingWindow, mut counts: Counts, now_us: u64, cost: u64) -> bool {
        limiter.step(&mut counts, now_us, cost).is_allowed()
    }

    fn ten_per_second() -> SlidingWindow {
        SlidingWindow::new(Rate::per_second(10)).unwrap()
    }

    #[test]
    fn the_previous_window_counts_for_the_part_still_inside_the_sliding_window() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        assert!(limiter.step(&mut counts, 10 * SECOND + 500 * MS, 10).is_allowed());
        // A quarter into the next window, three quarters of the ten still count.
        let decision = limiter.step(&mut counts, 11 * SECOND + 250 * MS, 0);
        assert_eq!((decision.remaining(), decision.reset_after()), (2, Duration::from_millis(750)));
        let decision = limiter.step(&mut counts, 11 * SECOND + 250 * MS, 2);
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 0));
        // 7.5 + 2: half a unit is left, not a whole one, until the weight falls to 7.
        let denied = limiter.step(&mut counts, 11 * SECOND + 250 * MS, 1);
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(50)));
        assert_eq!(denied.reset_after(), Duration::from_millis(1_750));
        assert!(!limiter.step(&mut counts, 11 * SECOND + 300 * MS - 1, 1).is_allowed());
        assert!(limiter.step(&mut counts, 11 * SECOND + 300 * MS, 1).is_allowed());
    }

    #[test]
    fn a_wait_that_ends_in_the_next_window_counts_this_window_as_the_previous_one() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        let _ = limiter.step(&mut counts, 5 * SECOND + 900 * MS, 8);
        // Two fit now; four must wait until the eight weigh at most six: a quarter into the next window.
        let denied = limiter.step(&mut counts, 5 * SECOND + 900 * MS, 4);
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(100 + 250)));
        assert!(!passes(&limiter, counts, 6 * SECOND + 250 * MS - 1, 4));
        assert!(passes(&limiter, counts, 6 * SECOND + 250 * MS, 4));
        // The whole amount waits for the window after next, when nothing is left to weigh.
        let denied = limiter.step(&mut counts, 5 * SECOND + 900 * MS, 10);
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(1_100)));
        assert!(!passes(&limiter, counts, 7 * SECOND - 1, 10));
        assert!(limiter.step(&mut counts, 7 * SECOND, 10).is_allowed());
    }

    #[test]
    fn retry_after_is_rounded_up_to_the_first_microsecond_that_fits() {
        // Three a second: the weight of a previous request falls by 3 per 1 000 000 µs.
        let limiter = SlidingWindow::new(Rate::per_second(3)).unwrap();
        let mut counts = Counts::default();
        let _ = limiter.step(&mut counts, 0, 3);
        let denied = limiter.step(&mut counts, SECOND, 1);
        // 3 × (1 000 000 - e) ≤ 2 × 1 000 000 from e = 333 334 µs on.
        assert_eq!(denied.retry_after(), Some(Duration::from_micros(333_334)));
        assert!(!passes(&limiter, counts, SECOND + 333_333, 1));
        assert!(limiter.step(&mut counts, SECOND + 333_334, 1).is_allowed());
    }

    /// The bound the docs give: 2 × amount - ⌈2 × amount / period_µs⌉ in one
    /// period, reached by the whole amount at the last µs of a window and
    /// all that fits one µs before the next window ends.
    #[test]
    fn at_worst_it_admits_just_under_twice_the_amount_in_one_period() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        assert!(limiter.step(&mut counts, SECOND - 1, 10).is_allowed());
        let late = 2 * SECOND - 2;
        assert_eq!(limiter.step(&mut counts, late, 0).remaining(), 9);
        assert!(limiter.step(&mut counts, late, 9).is_allowed());
        // 19 = 2 × 10 - ⌈20 / 1 000 000⌉ in [SECOND - 1, 2 × SECOND - 1).
        assert!(!limiter.step(&mut counts, late, 1).is_allowed());
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        let _ = limiter.step(&mut counts, 0, 10);
        let before = counts;
        assert!(!limiter.step(&mut counts, 1, 1).is_allowed());
        let peek = limiter.step(&mut counts, 3 * SECOND, 0);
        assert_eq!((peek.is_allowed(), peek.remaining(), peek.reset_after()), (true, 10, Duration::ZERO));
        assert_eq!(counts, before);
    }

    #[test]
    fn a_clock_that_goes_back_gets_no_second_window() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        let _ = limiter.step(&mut counts, 5 * SECOND, 10);
        let denied = limiter.step(&mut counts, 4 * SECOND, 1);
        assert!(!denied.is_allowed());
        assert_eq!(denied.reset_after(), Duration::from_secs(2));
    }

    #[test]
    fn counts_written_with_another_configuration_count_where_they_began() {
        let per_hour = SlidingWindow::new(Rate::per_hour(100)).unwrap();
        let hour = 3_600 * SECOND;
        // A one-second window that began 10 s into this hour: its count is this hour's,
        // and the count before it is weighed as the previous hour's.
        let mut counts = Counts { start_us: hour + 10 * SECOND, current: 5, previous: 40 };
        let peek = per_hour.step(&mut counts, hour + 30 * 60 * SECOND, 0);
        assert_eq!(peek.remaining(), 100 - 20 - 5);
        // An hour's window read by a one-second window later in that hour: its
        // count began before this second and the one before, so it is gone.
        let per_second = ten_per_second();
        let mut counts = Counts { start_us: hour, current: 3, previous: 7 };
        assert_eq!(per_second.step(&mut counts, hour + 5 * SECOND, 0).remaining(), 10);
        // ... and read in the next second, it is the previous second's.
        let peek = per_second.step(&mut counts, hour + SECOND + 500 * MS, 0);
        assert_eq!(peek.remaining(), 10 - 2);
        // Counts above a lowered amount leave nothing, never a wrapped number,
        // and no wait longer than this configuration's own.
        let mut counts = Counts { start_us: hour, current: 1_000, previous: 1_000 };
        let denied = per_second.step(&mut counts, hour + 1, 1);
        assert_eq!((denied.is_allowed(), denied.remaining()), (false, 0));
        assert_eq!(denied.retry_after(), Some(Duration::from_micros(SECOND - 1 + 100 * MS)));
        assert_eq!(denied.reset_after(), Duration::from_micros(2 * SECOND - 1));
        assert!(per_second.step(&mut counts, hour, 0).is_allowed(), "a peek is always answered");
    }

    #[test]
    fn the_state_expires_when_the_weighted_count_is_zero_and_is_24_bytes() {
        let limiter = ten_per_second();
        let mut counts = Counts::default();
        assert_eq!(limiter.expires_at(&counts), 0);
        let _ = limiter.step(&mut counts, 2 * SECOND + 1, 1);
        assert_eq!(limiter.expires_at(&counts), 4 * SECOND);
        assert_eq!(std::mem::size_of::<Counts>(), 24);
    }

    #[test]
    fn configurations_too_large_for_exact_arithmetic_are_rejected() {
        let error = SlidingWindow::new(Rate::new(1 << 20, Duration::from_secs(1 << 14))).unwrap_err();
        assert!(error.to_string().contains("at most 2^53"), "{error}");
        let error = SlidingWindow::new(Rate::new(1, Duration::from_micros((1 << 52) + 1))).unwrap_err();
        assert!(error.to_string().contains("2^52"), "{error}");
        assert!(SlidingWindow::new(Rate::new(1 << 13, Duration::from_micros(1 << 40))).is_ok());
    }
}
