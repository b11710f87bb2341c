//! Token bucket: bursts up to a capacity, refilled continuously.

use super::Algorithm;
use super::sealed::Step;
use super::meter::Charge;
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


    #[inline]
    fn step(&self, meter: &mut Meter, now_us: u64, cost: u64) -> Decision {
        let tokens_left = |debt: u64| (self.full_debt() - debt) / self.period_us;
        let until_full = |debt: u64| div_ceil(debt, self.amount);
        match meter.charge(now_us, self.amount, cost * self.period_us, self.full_debt()) {
            Charge::Denied { before, retry_after_us } => {
                Decision::denied(self.capacity, tokens_left(before), retry_after_us, until_full(before))
            }
            Charge::Admitted { after, .. } => {
                Decision::allowed(self.capacity, tokens_left(after), until_full(after), 0)
            }
        }
    }

    fn expires_at(&self, meter: &Meter) -> u64 {
        meter.empty_at(self.amount)
    }

    fn adopt(&self, meter: Meter, written_by: &Self) -> Meter {
        meter.carried_over(written_by.period_us, self.period_us, self.full_debt())
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
    fn configurations_too_large_for_exact_arithmetic_are_rejected() {
        let error = TokenBucket::new(u64::MAX, Rate::per_hour(1)).unwrap_err();
        assert!(error.to_string().contains("at most 2^53"), "{error}");
        assert!(TokenBucket::new(0, Rate::per_second(1)).is_err());
    }
}
