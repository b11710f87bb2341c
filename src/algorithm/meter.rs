//! The meter that the token and leaky buckets share.

use super::div_ceil;
use crate::rate::MAX_EXACT;

/// State shared by the token and leaky buckets, which are the same meter
/// read two ways (the generic cell rate algorithm).
///
/// `debt` is how far the bucket is from empty (leaky) or full (token), in
/// units of `1 / amount` microseconds: one request adds `period_us` units and
/// each microsecond drains `amount`, so a rate like 3 per second is carried
/// exactly, with no fraction of a token ever rounded away.
///
/// A check keeps the debt within the algorithm's full mark. A reservation
/// may take it past the mark: the part above is slots promised to waiters,
/// in order, and everything that reads the meter counts them as taken.
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
    /// The debt (`before`, drained to now) would have passed the mark.
    Denied { before: u64 },
}

impl Meter {
    /// Drains the meter to `now_us` at `amount` units per µs and adds `added`
    /// units if the debt stays within `most`. The meter is written only when a
    /// non-zero `added` is admitted: a denial and a peek change nothing, and
    /// a peek (`added == 0`) is always admitted, even when the meter is
    /// reserved past `most`.
    #[inline]
    pub(crate) fn charge(&mut self, now_us: u64, amount: u64, added: u64, most: u64) -> Charge {
        let (before, now_us) = self.drained(now_us, amount);
        let after = before + added;
        if added == 0 {
            return Charge::Admitted { before, after };
        }
        if after > most {
            return Charge::Denied { before };
        }
        *self = Meter { debt: after, updated_us: now_us };
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
    /// slot) was `written_period_us` units of debt and whose full mark was
    /// `written_full`, as a configuration with units of `period_us` and a
    /// full mark of `full` reads it.
    ///
    /// Usage carries over as whole units, a unit partly drained counting as
    /// used, and never more than `full`: so a deploy that changes a bucket
    /// neither refills its keys nor locks them out for longer than the new
    /// configuration itself could. But a meter reserved ahead (its debt past
    /// the writer's full mark) carries over whole: its slots are promised to
    /// waiters who will go when they come, and forgetting them would let
    /// more through than either configuration allows.
    pub(crate) fn carried_over(self, written_period_us: u64, written_full: u64, period_us: u64, full: u64) -> Meter {
        let reserved = self.debt > written_full;
        let debt = match (written_period_us == period_us, reserved) {
            (true, true) => self.debt,
            (true, false) => self.debt.min(full),
            (false, reserved) => {
                let most = if reserved { MAX_EXACT } else { full };
                div_ceil(self.debt, written_period_us).min(most / period_us) * period_us
            }
        };
        Meter { debt, updated_us: self.updated_us }
    }

    /// Takes back `added` units that a reservation wrote, if `written` (the
    /// meter as that reservation left it) is still what the meter holds:
    /// then the reservation is the newest, nothing was decided on top of
    /// it, and the meter becomes what it would have been without it (the
    /// token bucket's, to within the rounding of the slot to a whole µs,
    /// which the meter keeps: less than a µs of refill, never in favour of
    /// more). Otherwise later reservations were promised slots behind it, and
    /// giving it back could let two of them (or one and a newcomer) go too
    /// close together: the meter is left as it is.
    pub(crate) fn give_back(&mut self, written: &Meter, added: u64) -> bool {
        if self != written || self.debt < added {
            return false;
        }
        self.debt -= added;
        true
    }
}

/// The µs until `debt` has drained to `mark` at `amount` per µs, rounded up:
/// zero if it is there already.
#[inline]
pub(crate) fn until_below(debt: u64, mark: u64, amount: u64) -> u64 {
    // Most checks are below the mark: no division for them (a division is
    // most of a hot key's step).
    if debt <= mark { 0 } else { div_ceil(debt - mark, amount) }
}

/// The debt a reservation may take the meter to: `mark`, the debt at which
/// the slot is due, plus `max_wait_us` of draining, in whole µs and never
/// past 2^53 (so that Lua's doubles stay exact): a reservation is admitted
/// if its wait is at most `max_wait_us`, and at most the reach.
#[inline]
pub(crate) fn reservable(mark: u64, max_wait_us: u64, amount: u64) -> u64 {
    // A check waits for nothing: no division for it.
    if max_wait_us == 0 {
        return mark;
    }
    mark + max_wait_us.min((MAX_EXACT - mark) / amount) * amount
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_carries_over_as_whole_units_rounded_up_and_capped_at_full() {
        let meter = Meter { debt: 2_500, updated_us: 7 };
        // Same unit: kept as is, or cut to the new full mark.
        assert_eq!(meter.carried_over(1_000, 5_000, 1_000, 10_000), meter);
        assert_eq!(meter.carried_over(1_000, 5_000, 1_000, 2_000).debt, 2_000);
        // 2.5 units of 1 000 are 3 units of 10.
        assert_eq!(meter.carried_over(1_000, 5_000, 10, 1_000), Meter { debt: 30, updated_us: 7 });
        // At most a full bucket of 2 units.
        assert_eq!(meter.carried_over(1_000, 5_000, 10, 20).debt, 20);
        assert_eq!(Meter::default().carried_over(3, 3, 5, 10), Meter::default());
    }

    #[test]
    fn a_meter_reserved_ahead_carries_over_whole() {
        // Written with a full mark of 2 000: 500 units are promised to waiters.
        let meter = Meter { debt: 2_500, updated_us: 7 };
        assert_eq!(meter.carried_over(1_000, 2_000, 1_000, 1_000), meter);
        assert_eq!(meter.carried_over(1_000, 2_000, 10, 20), Meter { debt: 30, updated_us: 7 });
    }

    #[test]
    fn only_the_newest_reservation_is_given_back_and_then_exactly() {
        let before = Meter { debt: 1_000, updated_us: 5 };
        let mut meter = before;
        assert!(matches!(meter.charge(5, 1, 300, 5_000), Charge::Admitted { .. }));
        let first = meter;
        assert!(matches!(meter.charge(5, 1, 200, 5_000), Charge::Admitted { .. }));
        let second = meter;
        // The first is no longer the newest: giving it back would move the second's slot.
        assert!(!meter.give_back(&first, 300));
        assert!(meter.give_back(&second, 200));
        assert_eq!(meter, first);
        assert!(meter.give_back(&first, 300));
        assert_eq!(meter, before);
    }

    #[test]
    fn a_peek_is_admitted_even_when_the_meter_is_reserved_past_the_mark() {
        let mut meter = Meter { debt: 5_000, updated_us: 0 };
        assert_eq!(meter.charge(0, 1, 0, 1_000), Charge::Admitted { before: 5_000, after: 5_000 });
        assert_eq!(meter.charge(0, 1, 1, 1_000), Charge::Denied { before: 5_000 });
        assert_eq!(meter.debt, 5_000);
    }

    #[test]
    fn reservations_never_take_the_debt_past_2_53() {
        assert_eq!(reservable(10, u64::MAX, 3), 10 + (MAX_EXACT - 10) / 3 * 3);
        assert!(reservable(MAX_EXACT - 1, u64::MAX, 2) <= MAX_EXACT);
        assert_eq!(reservable(10, 4, 3), 22);
        assert_eq!(until_below(22, 10, 3), 4);
        assert_eq!(until_below(9, 10, 3), 0);
    }
}
