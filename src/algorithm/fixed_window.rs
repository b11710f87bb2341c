//! Fixed window: a counter per window of `period`, windows aligned to the epoch.

use super::Algorithm;
use super::sealed::Step;
use crate::rate::MAX_EXACT;
use crate::{Decision, Rate, Result, error::invalid};

/// At most `amount` per window of `period`, windows aligned to multiples of
/// `period` since the Unix epoch, so every process agrees where a window
/// starts.
///
/// The cheapest algorithm: 16 bytes of state per key. The price is the
/// boundary: a client can spend one window's amount at its end and the next
/// window's at the start, so up to twice `amount` can pass within one
/// `period`. Use [`SlidingLog`](crate::SlidingLog) when that matters.
///
/// ```
/// use tollgate::{FixedWindow, Rate};
///
/// let hundred_a_minute = FixedWindow::new(Rate::per_minute(100))?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    pub(crate) amount: u64,
    pub(crate) period_us: u64,
}

impl FixedWindow {
    /// At most `rate.amount()` per window of `rate.period()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero amount
    /// or period, a period that is not whole microseconds, or numbers above
    /// 2^53 (the limit of exact arithmetic in Redis's Lua).
    pub fn new(rate: Rate) -> Result<Self> {
        let (amount, period_us) = rate.to_micros()?;
        debug_assert!(amount <= MAX_EXACT && period_us <= MAX_EXACT);
        if period_us > MAX_EXACT / 2 {
            return Err(invalid("the fixed window's period must be at most 2^52 microseconds"));
        }
        Ok(Self { amount, period_us })
    }

    /// The rate: the amount per window and the window.
    pub fn rate(&self) -> Rate {
        Rate::new(self.amount, std::time::Duration::from_micros(self.period_us))
    }
}

/// The window a key last admitted in, by its start (µs since the epoch), and
/// what it admitted there.
///
/// The start, not the window's index, so that a configuration with another
/// period reads it sensibly: usage counts in the reader's current window only
/// if it was recorded there (see [`FixedWindow`]'s step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub(crate) start_us: u64,
    pub(crate) count: u64,
}

impl Algorithm for FixedWindow {
    fn limit(&self) -> u64 {
        self.amount
    }

    fn name(&self) -> &'static str {
        "fixed_window"
    }
}

impl Step for FixedWindow {
    type State = Window;

    #[inline]
    fn step(&self, window: &mut Window, now_us: u64, cost: u64) -> Decision {
        // A clock that went back is held at the newest window seen: no second allowance.
        let now_us = now_us.max(window.start_us);
        let start_us = now_us - now_us % self.period_us;
        // What was counted from this window's start on is this window's. A
        // window written by another configuration may have started later (a
        // shorter period) and its count may pass this amount (a lower one).
        let count = if window.start_us >= start_us { window.count.min(self.amount) } else { 0 };
        let until_next_window = self.period_us - (now_us - start_us);
        let reset_after = |count: u64| if count == 0 { 0 } else { until_next_window };

        if cost > self.amount - count {
            return Decision::denied(self.amount, self.amount - count, until_next_window, reset_after(count));
        }
        if cost > 0 {
            *window = Window { start_us, count: count + cost };
        }
        let count = count + cost;
        Decision::allowed(self.amount, self.amount - count, reset_after(count), 0)
    }

    fn expires_at(&self, window: &Window) -> u64 {
        if window.count == 0 { 0 } else { window.start_us.saturating_add(self.period_us) }
    }
}

#[cfg(test)]
impl FixedWindow {
    /// An everyday configuration, for tests that need one of each algorithm.
    pub(crate) fn example() -> Self {
        Self::new(Rate::per_second(10)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: u64 = 1_000_000;

    fn three_per_second() -> FixedWindow {
        FixedWindow::new(Rate::per_second(3)).unwrap()
    }

    #[test]
    fn admits_the_amount_then_denies_until_the_next_aligned_window() {
        let limiter = three_per_second();
        let mut window = Window::default();
        let start = 10 * SECOND + 250_000;
        for remaining in [2, 1, 0] {
            let decision = limiter.step(&mut window, start, 1);
            assert!(decision.is_allowed());
            assert_eq!(decision.remaining(), remaining);
            assert_eq!(decision.reset_after(), Duration::from_millis(750));
        }
        let denied = limiter.step(&mut window, start + 500_000, 1);
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(250)));
        assert!(limiter.step(&mut window, 11 * SECOND, 1).is_allowed());
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing() {
        let limiter = three_per_second();
        let mut window = Window::default();
        let _ = limiter.step(&mut window, 0, 3);
        let before = window;
        assert!(!limiter.step(&mut window, 1, 1).is_allowed());
        let peek = limiter.step(&mut window, 2, 0);
        assert!(peek.is_allowed());
        assert_eq!(peek.remaining(), 0);
        assert_eq!(window, before);
    }

    #[test]
    fn a_clock_that_goes_back_gets_no_second_window() {
        let limiter = three_per_second();
        let mut window = Window::default();
        let _ = limiter.step(&mut window, 5 * SECOND, 3);
        assert!(!limiter.step(&mut window, 4 * SECOND, 1).is_allowed());
    }

    #[test]
    fn a_partial_cost_that_does_not_fit_is_denied_and_reports_what_is_left() {
        let limiter = three_per_second();
        let mut window = Window::default();
        let _ = limiter.step(&mut window, 0, 2);
        let denied = limiter.step(&mut window, 0, 2);
        assert!(!denied.is_allowed());
        assert_eq!(denied.remaining(), 1);
    }

    #[test]
    fn a_window_written_with_another_period_counts_only_if_it_began_in_this_window() {
        let per_hour = FixedWindow::new(Rate::per_hour(10)).unwrap();
        let hour = 3_600 * SECOND;
        // Five in a one-second window that began 10 s into the hour: all in this hour.
        let mut window = Window { start_us: 10 * SECOND, count: 5 };
        let decision = per_hour.step(&mut window, 11 * SECOND, 0);
        assert_eq!((decision.remaining(), decision.reset_after()), (5, Duration::from_secs(3_589)));
        // A window of an hour, read by a one-second window later in that hour: not this second's.
        let per_second = three_per_second();
        let mut window = Window { start_us: hour, count: 3 };
        assert_eq!(per_second.step(&mut window, hour + 5 * SECOND, 0).remaining(), 3);
        // A count above a lowered amount leaves nothing, never a wrapped number.
        let mut window = Window { start_us: hour, count: 100 };
        let denied = per_second.step(&mut window, hour + 1, 1);
        assert_eq!((denied.is_allowed(), denied.remaining()), (false, 0));
        assert_eq!(denied.retry_after(), Some(Duration::from_micros(SECOND - 1)));
    }

    #[test]
    fn the_state_expires_when_its_window_ends() {
        let limiter = three_per_second();
        let mut window = Window::default();
        assert_eq!(limiter.expires_at(&window), 0);
        let _ = limiter.step(&mut window, 2 * SECOND + 1, 1);
        assert_eq!(limiter.expires_at(&window), 3 * SECOND);
    }
}
