//! The algorithms: plain validated configuration and a pure step function,
//! with no I/O and no clock of their own.
//!
//! Each `step` takes the key's state, the time in integer microseconds and a
//! cost, and returns the [`Decision`], updating the state only when it admits
//! a cost. A backend keeps the state and supplies the time. The Lua scripts
//! in `lua/` compute the same decisions from the same numbers (the token and
//! leaky buckets and the fixed window line for line; the sliding log over a
//! sorted set, see its script), and the tests hold every backend to them.
//!
//! The list of algorithms is written once, in [`algorithms!`] below: it
//! declares each module and the [`Limit`] enum that backends storing state
//! elsewhere (Redis) dispatch on.

mod meter;

pub(crate) use meter::Meter;

use std::fmt;

use crate::{Error, Result};

/// One of tollgate's algorithms: [`FixedWindow`], [`SlidingLog`],
/// [`TokenBucket`] or [`LeakyBucket`].
///
/// Sealed: every backend, Redis included, must implement each algorithm
/// exactly, so the set is closed.
pub trait Algorithm: sealed::Step + Clone + fmt::Debug + Send + Sync + 'static {
    /// The most this algorithm admits at once: what [`Decision::limit`](crate::Decision::limit)
    /// reports, and the largest cost a request may ask for (a larger one is
    /// [`Error::CostTooHigh`]). For a window or a log, its amount; for a
    /// token bucket, its capacity; for a leaky bucket, its capacity plus the
    /// one request departing now.
    fn limit(&self) -> u64;

    /// The algorithm's name, such as `"token_bucket"`: for logs and metrics.
    fn name(&self) -> &'static str;
}

pub(crate) mod sealed {
    use std::fmt;

    use crate::Decision;

    /// The pure step function behind an [`Algorithm`](super::Algorithm),
    /// whose `limit` bounds `cost`.
    pub trait Step {
        /// One key's state. `Default` is a key never seen, or idle long enough
        /// to be as good as new.
        type State: Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static;

        /// Decides a request of `cost` (at most `limit`) at `now_us`,
        /// microseconds since the Unix epoch. Leaves `state` untouched unless
        /// the cost is admitted and is not zero.
        fn step(&self, state: &mut Self::State, now_us: u64, cost: u64) -> Decision;

        /// The time (µs since the epoch) from which `state` reads exactly like
        /// `State::default()`, so it can be forgotten.
        fn expires_at(&self, state: &Self::State) -> u64;

        /// `state`, written by `written_by` (another configuration of this
        /// algorithm: a deploy that changed it, or another plan), as this
        /// configuration reads it. Most states mean the same under any
        /// configuration (a window's start and count, a log's times); the
        /// buckets' debt is in units of their period and is converted.
        fn adopt(&self, state: Self::State, written_by: &Self) -> Self::State {
            let _ = written_by;
            state
        }

        /// This algorithm as an entry of the registry, for backends that run
        /// its step elsewhere.
        fn as_limit(&self) -> super::Limit;

        /// How far ahead (µs) [`reserve`](Self::reserve) can promise a slot
        /// for any cost: zero for an algorithm that reserves nothing ahead,
        /// which a waiter gets by trying again when its `retry_after` says.
        fn reach_us(&self) -> u64 {
            0
        }

        /// Reserves `cost` at `now_us` for the earliest slot at most
        /// `max_wait_us` away (and at most a reach ahead): allowed, with
        /// [`Decision::wait`] the time until the slot; or denied, changing
        /// nothing, with `retry_after` the time it would have had to wait.
        /// What a check of the same state sees afterwards counts the slot as
        /// taken. The default reserves nothing ahead: it is the step.
        fn reserve(&self, state: &mut Self::State, now_us: u64, cost: u64, max_wait_us: u64) -> Decision {
            let _ = max_wait_us;
            self.step(state, now_us, cost)
        }

        /// Takes back a reservation of `cost` that left the state as
        /// `written`, if that can be done exactly (it is still the newest);
        /// returns whether it did. The default gives nothing back.
        fn give_back(&self, state: &mut Self::State, written: &Self::State, cost: u64) -> bool {
            let _ = (state, written, cost);
            false
        }
    }
}

/// Declares the algorithms, once: each one's module and type, and the
/// [`Limit`] enum with a variant (and a `From`) for each.
macro_rules! algorithms {
    ($($module:ident::$algorithm:ident),* $(,)?) => {
        $(
            pub(crate) mod $module;
            pub use $module::$algorithm;
        )*

        /// Any one of the algorithms, as a value: what a backend that runs
        /// the steps elsewhere (the Redis backend's Lua) dispatches on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Limit {
            $(
                #[doc = concat!("A [`", stringify!($algorithm), "`].")]
                $algorithm($algorithm),
            )*
        }

        $(
            impl From<$algorithm> for Limit {
                fn from(algorithm: $algorithm) -> Self {
                    Self::$algorithm(algorithm)
                }
            }
        )*

        impl Limit {
            /// As [`Algorithm::limit`].
            pub fn limit(&self) -> u64 {
                match self {
                    $(Self::$algorithm(algorithm) => Algorithm::limit(algorithm),)*
                }
            }

            /// As [`Algorithm::name`].
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$algorithm(algorithm) => Algorithm::name(algorithm),)*
                }
            }
        }
    };
}

algorithms!(fixed_window::FixedWindow, sliding_log::SlidingLog, token_bucket::TokenBucket, leaky_bucket::LeakyBucket,);

/// Rejects a cost that could never be admitted, so that a client is not told
/// to retry forever.
pub(crate) fn check_cost<A: Algorithm>(algorithm: &A, cost: u64) -> Result<()> {
    let max = Algorithm::limit(algorithm);
    if cost > max { Err(Error::CostTooHigh { cost, max }) } else { Ok(()) }
}

/// `ceil(numerator / denominator)` for a non-zero denominator.
#[inline]
pub(crate) const fn div_ceil(numerator: u64, denominator: u64) -> u64 {
    numerator.div_ceil(denominator)
}
