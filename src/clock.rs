//! Where limiters get the time.
//!
//! A backend supplies `now`; algorithms only compute with it. Times are
//! durations since the Unix epoch, so that fixed windows line up in every
//! process.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time for a limiter.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The time now, as a duration since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The default clock: the system time read once, at creation, then moved on by
/// a monotonic clock, so it never goes backwards when the system clock is
/// stepped.
///
/// The monotonic clock is the CPU's time-stamp counter where it is invariant,
/// calibrated against the operating system's monotonic clock (the first clock
/// a process creates calibrates it, which takes up to 200 ms), and the
/// operating system's monotonic clock elsewhere: reading the counter costs a
/// fraction of a system call.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    anchor: quanta::Instant,
    anchor_since_epoch: Duration,
}

/// The process's calibrated counter, shared by every [`MonotonicClock`].
pub(crate) fn counter() -> &'static quanta::Clock {
    static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
    COUNTER.get_or_init(quanta::Clock::new)
}

impl MonotonicClock {
    /// A clock that starts at the current system time.
    pub fn new() -> Self {
        let anchor = counter().now();
        // A system clock set before 1970 is treated as 1970: time still moves on.
        let anchor_since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { anchor, anchor_since_epoch }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Duration {
        // Saturates at zero should the counter ever read earlier than the
        // anchor (counters of different cores a few ns apart).
        self.anchor_since_epoch + counter().now().duration_since(self.anchor)
    }
}

/// A clock that moves only when told to, for tests.
///
/// Clones share one time: advance any of them and all see it.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let seen_by_limiter = clock.clone();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(seen_by_limiter.now(), Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at the Unix epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock at `since_epoch`.
    pub fn starting_at(since_epoch: Duration) -> Self {
        let clock = Self::new();
        clock.set(since_epoch);
        clock
    }

    /// Moves the time forward by `by` (saturating at about the year 2554).
    pub fn advance(&self, by: Duration) {
        let by = saturating_nanos(by);
        let _ =
            self.nanos_since_epoch.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }

    /// Sets the time, forwards or backwards: limiters must cope with a clock
    /// that jumps back, so tests need one that can.
    pub fn set(&self, since_epoch: Duration) {
        self.nanos_since_epoch.store(saturating_nanos(since_epoch), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole microseconds since the epoch: the unit every algorithm works in.
#[inline]
pub(crate) fn micros(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_starts_near_system_time_and_never_goes_back() {
        let clock = MonotonicClock::new();
        let system = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let first = clock.now();
        assert!(first.abs_diff(system) < Duration::from_secs(1));
        let mut last = first;
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_clones_share_one_time() {
        let clock = ManualClock::starting_at(Duration::from_secs(10));
        let other = clock.clone();
        other.advance(Duration::from_micros(5));
        assert_eq!(clock.now(), Duration::from_secs(10) + Duration::from_micros(5));
        clock.set(Duration::from_secs(1));
        assert_eq!(other.now(), Duration::from_secs(1));
    }
}
