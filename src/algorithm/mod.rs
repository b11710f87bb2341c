//! The four algorithms: plain validated configuration and a pure step
//! function, with no I/O and no clock of their own.
//!
//! Each `step` takes the key's state, the time in integer microseconds and a
//! cost, and returns the [`Decision`], updating the state only when it admits
//! a cost. A backend keeps the state and supplies the time; the Lua scripts in
//! `lua/` mirror these functions line for line, and the tests hold every
//! backend to them.

mod fixed_window;
mod leaky_bucket;
mod sliding_log;
mod token_bucket;

pub use fixed_window::FixedWindow;
pub use leaky_bucket::LeakyBucket;
pub use sliding_log::SlidingLog;
pub use token_bucket::TokenBucket;

use std::fmt;

use crate::{Error, Result};

/// One of tollgate's algorithms: [`FixedWindow`], [`SlidingLog`],
/// [`TokenBucket`] or [`LeakyBucket`].
///
/// Sealed: every backend, Redis included, must implement each algorithm
/// exactly, so the set is closed.
pub trait Algorithm: sealed::Step + Clone + fmt::Debug + Send + Sync + 'static {}

impl<A: sealed::Step + Clone + fmt::Debug + Send + Sync + 'static> Algorithm for A {}

pub(crate) mod sealed {
    use std::fmt;

    use crate::Decision;

    /// The pure step function behind an [`Algorithm`](super::Algorithm).
    pub trait Step {
        /// One key's state. `Default` is a key never seen, or idle long enough
        /// to be as good as new.
        type State: Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static;

        /// What `Decision::limit` reports.
        fn limit(&self) -> u64;

        /// The largest cost that can ever be admitted at once.
        fn max_cost(&self) -> u64;

        /// Decides a request of `cost` (at most `max_cost`) at `now_us`,
        /// microseconds since the Unix epoch. Leaves `state` untouched unless
        /// the cost is admitted and is not zero.
        fn step(&self, state: &mut Self::State, now_us: u64, cost: u64) -> Decision;

        /// The time (µs since the epoch) from which `state` reads exactly like
        /// `State::default()`, so it can be forgotten.
        fn expires_at(&self, state: &Self::State) -> u64;

        /// The Lua script that mirrors `step` on Redis, and the configuration
        /// it reads from `ARGV[3]` on (see its header comment).
        #[cfg(feature = "redis")]
        fn lua(&self) -> (&'static redis::Script, Vec<u64>);
    }
}

/// Rejects a cost that could never be admitted, so that a client is not told
/// to retry forever.
pub(crate) fn check_cost<A: Algorithm>(algorithm: &A, cost: u64) -> Result<()> {
    let max = algorithm.max_cost();
    if cost > max { Err(Error::CostTooHigh { cost, max }) } else { Ok(()) }
}

/// `ceil(numerator / denominator)` for a non-zero denominator.
#[inline]
pub(crate) const fn div_ceil(numerator: u64, denominator: u64) -> u64 {
    numerator.div_ceil(denominator)
}

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
}
