//! Fixed window: a counter per window of `period`, windows aligned to the epoch.

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
}

/// The window a key last admitted in, and what it admitted there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub(crate) index: u64,
    pub(crate) count: u64,
}

impl Step for FixedWindow {
    type State = Window;

    fn limit(&self) -> u64 {
        self.amount
    }

    fn max_cost(&self) -> u64 {
        self.amount
    }

    #[inline]
    fn step(&self, window: &mut Window, now_us: u64, cost: u64) -> Decision {
        // A clock that went back stays in the newest window seen: no second allowance.
        let index = (now_us / self.period_us).max(window.index);
        let count = if index == window.index { window.count } else { 0 };
        let until_next_window = index.saturating_add(1).saturating_mul(self.period_us).saturating_sub(now_us);
        let reset_after = |count: u64| if count == 0 { 0 } else { until_next_window };

        if count + cost > self.amount {
            return Decision::denied(self.amount, self.amount - count, until_next_window, reset_after(count));
        }
        if cost > 0 {
            *window = Window { index, count: count + cost };
        }
        let count = count + cost;
        Decision::allowed(self.amount, self.amount - count, reset_after(count), 0)
    }

    fn expires_at(&self, window: &Window) -> u64 {
        if window.count == 0 { 0 } else { window.index.saturating_add(1).saturating_mul(self.period_us) }
    }

    #[cfg(feature = "redis")]
    fn lua(&self) -> (&'static redis::Script, Vec<u64>) {
        (crate::redis_backend::scripts::fixed_window(), vec![self.amount, self.period_us])
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
    fn the_state_expires_when_its_window_ends() {
        let limiter = three_per_second();
        let mut window = Window::default();
        assert_eq!(limiter.expires_at(&window), 0);
        let _ = limiter.step(&mut window, 2 * SECOND + 1, 1);
        assert_eq!(limiter.expires_at(&window), 3 * SECOND);
    }
}
