//! Leaky bucket: a queue that drains at exactly the rate.

use super::Algorithm;
use super::sealed::Step;
use super::meter::{Charge, reservable, until_below};
use super::{Meter, div_ceil};
use crate::rate::MAX_EXACT;
use crate::{Decision, Rate, Result, error::invalid};

/// A queue that lets requests out at exactly `rate`, like nginx `limit_req`
/// with `burst=capacity`.
///
/// Each admitted request gets a departure slot `period / amount` after the
/// previous one, and [`Decision::wait`] says how long to hold it. A request
/// whose wait would be more than `capacity` slots is rejected, so up to
/// `capacity + 1` are admitted at once (one departs now, `capacity` wait),
/// and that is what [`Decision::limit`] reports. Its output never bursts.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{InMemory, LeakyBucket, ManualClock, Rate};
///
/// // Ten requests in the same instant (a real clock would move a little between them).
/// let limiter = InMemory::with_clock(LeakyBucket::new(5, Rate::per_second(10))?, ManualClock::new());
/// let waits: Vec<_> = (0..10)
///     .map(|_| limiter.check_sync("burst"))
///     .filter(|decision| decision.is_allowed())
///     .map(|decision| decision.wait().as_millis())
///     .collect();
/// assert_eq!(waits, [0, 100, 200, 300, 400, 500]);
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakyBucket {
    pub(crate) capacity: u64,
    pub(crate) amount: u64,
    pub(crate) period_us: u64,
}

impl LeakyBucket {
    /// A queue of `capacity` waiting requests, drained at `rate`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero
    /// capacity, amount or period, a period that is not whole microseconds,
    /// or `(capacity + 1) × period` (in µs) above 2^53, the limit of exact
    /// arithmetic in Redis's Lua.
    pub fn new(capacity: u64, rate: Rate) -> Result<Self> {
        let (amount, period_us) = rate.to_micros()?;
        if capacity == 0 {
            return Err(invalid("the leaky bucket's capacity must be at least 1"));
        }
        let full = capacity.checked_add(1).and_then(|slots| slots.checked_mul(period_us));
        if full.is_none_or(|full| full > MAX_EXACT) {
            return Err(invalid(format!(
                "the leaky bucket's (capacity + 1) × period must be at most 2^53 µs for exact arithmetic, \
                 not ({capacity} + 1) × {period_us} µs"
            )));
        }
        Ok(Self { capacity, amount, period_us })
    }

    /// The rate: the drain.
    pub fn rate(&self) -> Rate {
        Rate::new(self.amount, std::time::Duration::from_micros(self.period_us))
    }

    /// How many requests may wait (one more departs at once).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Requests admitted at once: the one departing now and those waiting.
    fn slots(&self) -> u64 {
        self.capacity + 1
    }

    /// The backlog of a full queue. A request is `period_us` units of backlog.
    fn full_backlog(&self) -> u64 {
        self.slots() * self.period_us
    }
}

impl Algorithm for LeakyBucket {
    fn limit(&self) -> u64 {
        self.slots()
    }

    fn name(&self) -> &'static str {
        "leaky_bucket"
    }
}

impl Step for LeakyBucket {
    type State = Meter;

    #[inline]
    fn step(&self, meter: &mut Meter, now_us: u64, cost: u64) -> Decision {
        // The backlog is the queue's length in time, in units of 1/amount µs:
        // a new request departs when it has drained.
        let full = self.full_backlog();
        let added = cost * self.period_us;
        match meter.charge(now_us, self.amount, added, full) {
            Charge::Denied { before } => Decision::denied(
                self.slots(),
                self.slots_left(before),
                until_below(before + added, full, self.amount),
                self.until_empty(before),
            ),
            Charge::Admitted { before, after } => {
                Decision::allowed(self.slots(), self.slots_left(after), self.until_empty(after), self.departs(before, cost))
            }
        }
    }

    fn expires_at(&self, meter: &Meter) -> u64 {
        meter.empty_at(self.amount)
    }

    fn adopt(&self, meter: Meter, written_by: &Self) -> Meter {
        meter.carried_over(written_by.period_us, written_by.full_backlog(), self.period_us, self.full_backlog())
    }


    fn reach_us(&self) -> u64 {
        (MAX_EXACT - self.full_backlog()) / self.amount
    }

    /// The slot is the request's departure, and the queue may grow past its
    /// capacity by whoever reserves: a request is reserved if the backlog
    /// ahead of it drains within `max_wait_us`. A check behind reservations
    /// that passed the capacity finds the queue full.
    // Always in place: left to itself, the compiler made it a call in some
    // callers, and a hot key's check took half as long again (memory/hot_key).
    #[inline(always)]
    fn reserve(&self, meter: &mut Meter, now_us: u64, cost: u64, max_wait_us: u64) -> Decision {
        let added = cost * self.period_us;
        match meter.charge(now_us, self.amount, added, reservable(added, max_wait_us, self.amount)) {
            Charge::Denied { before } => Decision::denied(
                self.slots(),
                self.slots_left(before),
                self.until_empty(before),
                self.until_empty(before),
            ),
            Charge::Admitted { before, after } => {
                Decision::allowed(self.slots(), self.slots_left(after), self.until_empty(after), self.departs(before, cost))
            }
        }
    }

    fn give_back(&self, meter: &mut Meter, written: &Meter, cost: u64) -> bool {
        meter.give_back(written, cost * self.period_us)
    }
}

impl LeakyBucket {
    /// Requests that would still be admitted behind a backlog: none, never a
    /// wrapped number, when reservations have queued past the capacity.
    fn slots_left(&self, backlog: u64) -> u64 {
        self.full_backlog().saturating_sub(backlog) / self.period_us
    }

    fn until_empty(&self, backlog: u64) -> u64 {
        div_ceil(backlog, self.amount)
    }

    /// When a request departs: once the backlog ahead of it has drained (a
    /// peek holds nobody).
    fn departs(&self, backlog_ahead: u64, cost: u64) -> u64 {
        if cost == 0 || backlog_ahead == 0 { 0 } else { self.until_empty(backlog_ahead) }
    }
}

#[cfg(test)]
impl LeakyBucket {
    /// An everyday configuration, for tests that need one of each algorithm.
    pub(crate) fn example() -> Self {
        Self::new(9, Rate::per_second(10)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn a_burst_of_ten_is_admitted_six_with_waits_a_slot_apart() {
        let bucket = LeakyBucket::new(5, Rate::per_second(10)).unwrap();
        let mut meter = Meter::default();
        let decisions: Vec<_> = (0..10).map(|_| bucket.step(&mut meter, 0, 1)).collect();
        let waits: Vec<_> = decisions.iter().filter(|d| d.is_allowed()).map(|d| d.wait()).collect();
        let expected: Vec<_> = (0..6).map(|slot| Duration::from_millis(100 * slot)).collect();
        assert_eq!(waits, expected);
        assert_eq!(decisions[6].retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(decisions[0].limit(), 6);
    }

    #[test]
    fn departures_stay_a_slot_apart_with_fractional_slots() {
        // 3 a second: a slot every 333_333.3 µs; departures never drift closer.
        let bucket = LeakyBucket::new(2, Rate::per_second(3)).unwrap();
        let mut meter = Meter::default();
        let mut departures = Vec::new();
        for now in (0..10_000 * MS).step_by(50 * MS as usize) {
            let decision = bucket.step(&mut meter, now, 1);
            if decision.is_allowed() {
                departures.push(now + decision.wait().as_micros() as u64);
            }
        }
        // Arrivals run to 9.95 s and a request may wait two slots: slots 0 to 31.
        assert_eq!(departures.len(), 32);
        for (n, departure) in departures.iter().enumerate() {
            assert_eq!(*departure, div_ceil(n as u64 * 1_000_000, 3), "departure {n}");
        }
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing_and_hold_nobody() {
        let bucket = LeakyBucket::new(1, Rate::per_second(1)).unwrap();
        let mut meter = Meter::default();
        let _ = bucket.step(&mut meter, 0, 2);
        let before = meter;
        let denied = bucket.step(&mut meter, 0, 1);
        assert_eq!(denied.wait(), Duration::ZERO);
        let peek = bucket.step(&mut meter, 0, 0);
        assert_eq!((peek.is_allowed(), peek.wait(), peek.remaining()), (true, Duration::ZERO, 0));
        assert_eq!(meter, before);
    }

    #[test]
    fn a_reservation_is_a_departure_slot_and_may_queue_past_the_capacity() {
        let bucket = LeakyBucket::new(1, Rate::per_second(10)).unwrap();
        let mut meter = Meter::default();
        let waits: Vec<_> = (0..4).map(|_| bucket.reserve(&mut meter, 0, 1, 300_000).wait()).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(0), ms(100), ms(200), ms(300)]);
        // Departing 400 ms from now is further than 300 ms: not reserved, nothing changes.
        let before = meter;
        let too_far = bucket.reserve(&mut meter, 0, 1, 300_000);
        assert_eq!((too_far.is_allowed(), too_far.retry_after()), (false, Some(ms(400))));
        assert_eq!(meter, before);
        // A check finds the queue of two full (none left, never a wrapped number) until
        // one slot of it is free: when the backlog is down to one request.
        let check = bucket.step(&mut meter, 0, 1);
        assert_eq!((check.is_allowed(), check.remaining(), check.retry_after()), (false, 0, Some(ms(300))));
        assert_eq!(bucket.step(&mut meter, 300 * MS, 1).wait(), ms(100));
    }

    #[test]
    fn configurations_too_large_for_exact_arithmetic_are_rejected() {
        assert!(LeakyBucket::new(u64::MAX, Rate::per_second(1)).is_err());
        assert!(LeakyBucket::new(0, Rate::per_second(1)).is_err());
    }
}
