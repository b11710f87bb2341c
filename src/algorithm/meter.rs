//! The meter that the token and leaky buckets share.

use super::div_ceil;

/// State shared by the token and leaky buckets, which are the same meter
/// read two ways (the generic cell rate algorithm).
///
/// `debt` is how far the bucket is from empty (leaky) or full (token), in
/// units of `1 / amount` microseconds: one request adds `period_us` units and
/// each microsecond drains `amount`, so a rate like 3 per second is carried
/// exactly, with no fraction of a token ever rounded away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meter {
    pub(crate) debt: u64,
    pub(crate) updated_us: u64,
}

/// What [`Meter::charge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// The debt went from `before` (drained to now) to `after`.
    Admitted { before: u64, after: u64 },
    /// The debt (`before`, drained to now) would have passed the full mark;
    /// the cost fits after `retry_after_us` more of draining.
    Denied { before: u64, retry_after_us: u64 },
}

impl Meter {
    /// Drains the meter to `now_us` at `amount` units per µs and adds `added`
    /// units if the debt stays within `full`. The meter is written only when a
    /// non-zero `added` is admitted: a denial and a peek change nothing.
    #[inline]
    pub(crate) fn charge(&mut self, now_us: u64, amount: u64, added: u64, full: u64) -> Charge {
        let (before, now_us) = self.drained(now_us, amount);
        let after = before + added;
        if after > full {
            return Charge::Denied { before, retry_after_us: div_ceil(after - full, amount) };
        }
        if added > 0 {
            *self = Meter { debt: after, updated_us: now_us };
        }
        Charge::Admitted { before, after }
    }

    /// The debt left at `now_us`, and `now_us` clamped so that a clock that
    /// went back never refunds anything.
    #[inline]
    fn drained(&self, now_us: u64, amount: u64) -> (u64, u64) {
        let now_us = now_us.max(self.updated_us);
        let drained = (now_us - self.updated_us).saturating_mul(amount);
        (self.debt.saturating_sub(drained), now_us)
    }

    /// When the debt will have drained to zero.
    #[inline]
    pub(crate) fn empty_at(&self, amount: u64) -> u64 {
        self.updated_us.saturating_add(div_ceil(self.debt, amount))
    }

    /// This meter, written by a configuration whose unit (a token, or a
    /// slot) was `written_period_us` units of debt, as a configuration with
    /// units of `period_us` and a full mark of `full` reads it: the usage
    /// carries over as whole units, a unit partly drained counting as used,
    /// and never more than `full`. So a deploy that changes a bucket neither
    /// refills its keys nor locks them out for longer than the new
    /// configuration itself could.
    pub(crate) fn carried_over(self, written_period_us: u64, period_us: u64, full: u64) -> Meter {
        let debt = if written_period_us == period_us {
            self.debt.min(full)
        } else {
            div_ceil(self.debt, written_period_us).min(full / period_us) * period_us
        };
        Meter { debt, updated_us: self.updated_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_carries_over_as_whole_units_rounded_up_and_capped_at_full() {
        let meter = Meter { debt: 2_500, updated_us: 7 };
        // Same unit: kept as is, or cut to the new full mark.
        assert_eq!(meter.carried_over(1_000, 1_000, 10_000), meter);
        assert_eq!(meter.carried_over(1_000, 1_000, 2_000).debt, 2_000);
        // 2.5 units of 1 000 are 3 units of 10.
        assert_eq!(meter.carried_over(1_000, 10, 1_000), Meter { debt: 30, updated_us: 7 });
        // At most a full bucket of 2 units.
        assert_eq!(meter.carried_over(1_000, 10, 20).debt, 20);
        assert_eq!(Meter::default().carried_over(3, 5, 10), Meter::default());
    }
}
