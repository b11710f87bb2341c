//! Token bucket: bursts up to a capacity, refilled continuously.

use super::Algorithm;
use super::sealed::Step;
use super::meter::{Charge, reservable, until_below};
use super::{Meter, div_ceil};
use crate::rate::MAX_EXACT;
use crate::{Decision, Rate, Result, error::invalid};

/// Bursts of up to `capacity` at once, refilled continuously at `rate`: no
/// stepwise refill, and fractions of a token are carried, never lost. A new
/// key starts full.
///
/// 16 bytes of state per key; the usual choice for APIs.
///
/// ```
/// use tollgate::{Rate, TokenBucket};
///
/// // Bursts of 100, then 10 a second on average.
/// let api = TokenBucket::new(100, Rate::per_second(10))?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    pub(crate) capacity: u64,
    pub(crate) amount: u64,
    pub(crate) period_us: u64,
}

impl TokenBucket {
    /// A bucket of `capacity` tokens, refilled at `rate`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero
    /// capacity, amount or period, a period that is not whole microseconds,
    /// or `capacity × period` (in µs) above 2^53, the limit of exact
    /// arithmetic in Redis's Lua.
    pub fn new(capacity: u64, rate: Rate) -> Result<Self> {
        let (amount, period_us) = rate.to_micros()?;
        if capacity == 0 {
            return Err(invalid("the token bucket's capacity must be at least 1"));
        }
        if capacity.checked_mul(period_us).is_none_or(|full| full > MAX_EXACT) {
            return Err(invalid(format!(
                "the token bucket's capacity × period must be at most 2^53 µs for exact arithmetic, \
                 not {capacity} × {period_us} µs"
            )));
        }
        Ok(Self { capacity, amount, period_us })
    }

    /// The rate: the refill.
    pub fn rate(&self) -> Rate {
        Rate::new(self.amount, std::time::Duration::from_micros(self.period_us))
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The debt of an empty bucket. A token is `period_us` units of debt.
    fn full_debt(&self) -> u64 {
        self.capacity * self.period_us
    }
}

impl Algorithm for TokenBucket {
    fn limit(&self) -> u64 {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "token_bucket"
    }
}

impl Step for TokenBucket {
    type State = Meter;

    /// A check is a reservation that may not wait: admitted only if the
    /// tokens are there now.
    #[inline]
    fn step(&self, meter: &mut Meter, now_us: u64, cost: u64) -> Decision {
        self.reserve(meter, now_us, cost, 0)
    }

    fn expires_at(&self, meter: &Meter) -> u64 {
        meter.empty_at(self.amount)
    }

    fn adopt(&self, meter: Meter, written_by: &Self) -> Meter {
        meter.carried_over(written_by.period_us, written_by.full_debt(), self.period_us, self.full_debt())
    }


    fn reach_us(&self) -> u64 {
        (MAX_EXACT - self.full_debt()) / self.amount
    }

    /// The debt may run past the full mark by `max_wait_us` of refill: the
    /// tokens are taken now, on credit, and the request goes when the
    /// bucket has refilled enough to have held them, `ceil((after - full) /
    /// amount)` µs from now. So grants go in the order they were reserved,
    /// and a check behind them waits for them all.
    // Always in place: left to itself, the compiler made it a call in some
    // callers, and a hot key's check took half as long again (memory/hot_key).
    #[inline(always)]
    fn reserve(&self, meter: &mut Meter, now_us: u64, cost: u64, max_wait_us: u64) -> Decision {
        let full = self.full_debt();
        let added = cost * self.period_us;
        // Reserved ahead, the debt is past full: no token is left, never a wrapped number.
        let tokens_left = |debt: u64| full.saturating_sub(debt) / self.period_us;
        let until_full = |debt: u64| div_ceil(debt, self.amount);
        match meter.charge(now_us, self.amount, added, reservable(full, max_wait_us, self.amount)) {
            Charge::Denied { before } => Decision::denied(
                self.capacity,
                tokens_left(before),
                until_below(before + added, full, self.amount),
                until_full(before),
            ),
            Charge::Admitted { before, after } => {
                // A peek waits for nothing.
                let wait = if cost == 0 { 0 } else { until_below(after, full, self.amount) };
                // The slot is rounded up to a whole µs: the meter records the
                // tokens as taken then, not in the fraction of a µs before, so
                // that the next slot is a whole token's refill after this one.
                let after = if wait == 0 { after } else { before.max(wait * self.amount) + added };
                if wait > 0 {
                    meter.debt = after;
                }
                Decision::allowed(self.capacity, tokens_left(after), until_full(after), wait)
            }
        }
    }

    fn give_back(&self, meter: &mut Meter, written: &Meter, cost: u64) -> bool {
        meter.give_back(written, cost * self.period_us)
    }
}

#[cfg(test)]
impl TokenBucket {
    /// An everyday configuration, for tests that need one of each algorithm.
    pub(crate) fn example() -> Self {
        Self::new(10, Rate::per_second(10)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn a_new_key_starts_full_and_refills_continuously() {
        let bucket = TokenBucket::new(3, Rate::per_second(10)).unwrap();
        let mut meter = Meter::default();
        let burst = bucket.step(&mut meter, 0, 3);
        assert_eq!((burst.is_allowed(), burst.remaining()), (true, 0));
        assert_eq!(burst.reset_after(), Duration::from_millis(300));
        let empty = bucket.step(&mut meter, 50 * MS, 1);
        assert_eq!(empty.retry_after(), Some(Duration::from_millis(50)));
        assert!(bucket.step(&mut meter, 100 * MS, 1).is_allowed());
    }

    #[test]
    fn fractions_of_a_token_are_carried_not_lost() {
        // 3 a second: a token every 333_333.3 µs. Rounding each refill to whole
        // microseconds would drift; carried exactly, 1 000 s refill exactly 3 000.
        let bucket = TokenBucket::new(5_000, Rate::per_second(3)).unwrap();
        let mut meter = Meter::default();
        assert!(bucket.step(&mut meter, 0, 5_000).is_allowed());
        let mut admitted = 0;
        for now in (1..=1_000_000).map(|ms| ms * MS) {
            if bucket.step(&mut meter, now, 1).is_allowed() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3_000);
    }

    #[test]
    fn retry_after_is_rounded_up_and_then_the_request_fits() {
        let bucket = TokenBucket::new(1, Rate::per_second(3)).unwrap();
        let mut meter = Meter::default();
        let _ = bucket.step(&mut meter, 0, 1);
        let denied = bucket.step(&mut meter, 0, 1);
        let wait = denied.retry_after().unwrap();
        assert_eq!(wait, Duration::from_micros(333_334));
        let micros = wait.as_micros() as u64;
        assert!(!bucket.step(&mut meter.clone(), micros - 1, 1).is_allowed());
        assert!(bucket.step(&mut meter, micros, 1).is_allowed());
    }

    #[test]
    fn a_denial_and_a_peek_change_nothing() {
        let bucket = TokenBucket::new(2, Rate::per_second(1)).unwrap();
        let mut meter = Meter::default();
        let _ = bucket.step(&mut meter, 0, 2);
        let before = meter;
        assert!(!bucket.step(&mut meter, 10, 1).is_allowed());
        assert_eq!(bucket.step(&mut meter, 1_000_000, 0).remaining(), 1);
        assert_eq!(meter, before);
    }

    #[test]
    fn a_clock_that_goes_back_refunds_nothing() {
        let bucket = TokenBucket::new(1, Rate::per_second(1)).unwrap();
        let mut meter = Meter::default();
        let _ = bucket.step(&mut meter, 10_000_000, 1);
        assert!(!bucket.step(&mut meter, 0, 1).is_allowed());
    }

    #[test]
    fn reservations_take_slots_in_order_a_token_apart_and_checks_wait_behind_them() {
        let bucket = TokenBucket::new(2, Rate::per_second(10)).unwrap();
        let mut meter = Meter::default();
        let waits: Vec<_> = (0..5).map(|_| bucket.reserve(&mut meter, 0, 1, u64::MAX).wait()).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(0), ms(0), ms(100), ms(200), ms(300)]);
        // The three reserved ahead are taken: a check waits for all of them, and nothing wraps.
        let check = bucket.step(&mut meter, 50 * MS, 1);
        assert_eq!((check.is_allowed(), check.remaining()), (false, 0));
        assert_eq!(check.retry_after(), Some(ms(350)));
        let peek = bucket.step(&mut meter, 50 * MS, 0);
        assert_eq!((peek.is_allowed(), peek.remaining(), peek.wait()), (true, 0, Duration::ZERO));
        assert_eq!(peek.reset_after(), ms(450));
    }

    #[test]
    fn a_slot_further_away_than_the_maximum_wait_is_not_reserved_and_nothing_changes() {
        let bucket = TokenBucket::new(1, Rate::per_second(10)).unwrap();
        let mut meter = Meter::default();
        let _ = bucket.reserve(&mut meter, 0, 1, 0);
        let before = meter;
        let too_far = bucket.reserve(&mut meter, 0, 1, 99_999);
        assert_eq!((too_far.is_allowed(), too_far.retry_after()), (false, Some(Duration::from_millis(100))));
        assert_eq!(meter, before);
        assert_eq!(bucket.reserve(&mut meter, 0, 1, 100_000).wait(), Duration::from_millis(100));
    }

    #[test]
    fn the_reach_keeps_every_debt_within_exact_arithmetic() {
        let bucket = TokenBucket::new(1 << 20, Rate::new(1 << 30, Duration::from_secs(1))).unwrap();
        let mut meter = Meter::default();
        for _ in 0..100_000 {
            let _ = bucket.reserve(&mut meter, 0, 1 << 20, u64::MAX);
            assert!(meter.debt <= MAX_EXACT);
        }
        let beyond = bucket.reserve(&mut meter, 0, 1 << 20, u64::MAX);
        assert!(!beyond.is_allowed());
        assert!(beyond.retry_after().unwrap().as_micros() as u64 > bucket.reach_us());
    }

    proptest::proptest! {
        /// Placed at their slots, the reservations are requests that plain
        /// checks would have admitted: a bucket that reserves keeps the
        /// promise of one that does not.
        #[test]
        fn grants_at_their_slots_are_what_checks_admit(
            capacity in 1..6_u64,
            amount in 1..6_u64,
            period_us in 1..2_000_000_u64,
            requests in proptest::collection::vec((0..400_000_u64, 1..6_u64, 0..3_000_000_u64), 1..60),
        ) {
            let bucket = TokenBucket::new(capacity, Rate::new(amount, Duration::from_micros(period_us))).unwrap();
            let (mut reserving, mut replaying) = (Meter::default(), Meter::default());
            let mut now = 0;
            for (gap, cost, max_wait) in requests {
                now += gap;
                let cost = cost.min(capacity);
                let reserved = bucket.reserve(&mut reserving, now, cost, max_wait);
                if reserved.is_allowed() {
                    let slot = now + reserved.wait().as_micros() as u64;
                    proptest::prop_assert!(reserved.wait().as_micros() as u64 <= max_wait);
                    proptest::prop_assert!(bucket.step(&mut replaying, slot, cost).is_allowed(), "at {}", slot);
                }
            }
        }
    }

    #[test]
    fn configurations_too_large_for_exact_arithmetic_are_rejected() {
        let error = TokenBucket::new(u64::MAX, Rate::per_hour(1)).unwrap_err();
        assert!(error.to_string().contains("at most 2^53"), "{error}");
        assert!(TokenBucket::new(0, Rate::per_second(1)).is_err());
    }
}
