//! [`Rate`]: an amount per period.

use std::time::Duration;

use crate::error::{Result, invalid};

/// The largest integer every backend computes exactly: Redis runs Lua with
/// doubles, which hold integers exactly up to 2^53. Every scaled quantity an
/// algorithm stores is checked against it at construction.
pub(crate) const MAX_EXACT: u64 = 1 << 53;

/// An amount per period, such as 10 per second.
///
/// Building a `Rate` never fails; an algorithm checks it when it is
/// constructed, so the hot path cannot fail on configuration.
///
/// ```
/// use std::time::Duration;
/// use tollgate::Rate;
///
/// assert_eq!(Rate::per_minute(60), Rate::new(60, Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    amount: u64,
    period: Duration,
}

impl Rate {
    /// `amount` per `period`.
    pub const fn new(amount: u64, period: Duration) -> Self {
        Self { amount, period }
    }

    /// `amount` per second.
    pub const fn per_second(amount: u64) -> Self {
        Self::new(amount, Duration::from_secs(1))
    }

    /// `amount` per minute.
    pub const fn per_minute(amount: u64) -> Self {
        Self::new(amount, Duration::from_secs(60))
    }

    /// `amount` per hour.
    pub const fn per_hour(amount: u64) -> Self {
        Self::new(amount, Duration::from_secs(3600))
    }

    /// `amount` per day (24 hours).
    pub const fn per_day(amount: u64) -> Self {
        Self::new(amount, Duration::from_secs(86_400))
    }

    /// How many per period.
    pub const fn amount(&self) -> u64 {
        self.amount
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The rate in whole units: `(amount, period in microseconds)`, or why it
    /// cannot be used.
    pub(crate) fn to_micros(self) -> Result<(u64, u64)> {
        if self.amount == 0 {
            return Err(invalid("the rate's amount must be at least 1"));
        }
        if self.amount > MAX_EXACT {
            return Err(invalid(format!("the rate's amount must be at most 2^53, not {}", self.amount)));
        }
        if !self.period.subsec_nanos().is_multiple_of(1_000) {
            return Err(invalid(format!(
                "the rate's period must be a whole number of microseconds, not {:?}",
                self.period
            )));
        }
        let period_us = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        if period_us == 0 {
            return Err(invalid("the rate's period must be at least one microsecond"));
        }
        if period_us > MAX_EXACT {
            return Err(invalid(format!("the rate's period must be at most 2^53 microseconds, not {:?}", self.period)));
        }
        Ok((self.amount, period_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_say_what_they_mean() {
        assert_eq!(Rate::per_second(5).to_micros().unwrap(), (5, 1_000_000));
        assert_eq!(Rate::per_minute(5).to_micros().unwrap(), (5, 60_000_000));
        assert_eq!(Rate::per_hour(5).to_micros().unwrap(), (5, 3_600_000_000));
        assert_eq!(Rate::per_day(5).to_micros().unwrap(), (5, 86_400_000_000));
    }

    #[test]
    fn unusable_rates_are_rejected_with_a_reason() {
        let cases = [
            (Rate::per_second(0), "amount must be at least 1"),
            (Rate::new(1, Duration::ZERO), "at least one microsecond"),
            (Rate::new(1, Duration::from_nanos(1_500)), "whole number of microseconds"),
            (Rate::new(MAX_EXACT + 1, Duration::from_secs(1)), "amount must be at most"),
            (Rate::new(1, Duration::from_secs(u64::MAX)), "period must be at most"),
        ];
        for (rate, reason) in cases {
            let error = rate.to_micros().unwrap_err().to_string();
            assert!(error.contains(reason), "{rate:?}: {error}");
        }
    }
}
