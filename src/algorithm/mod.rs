//! The algorithms: plain validated configuration and a pure step function,
//! with no I/O and no clock of their own.
//!
//! Each `step` takes the key's state, the time in integer microseconds and a
//! cost, and returns the [`Decision`](crate::Decision), updating the state
//! only when it admits a cost. A backend keeps the state and supplies the
//! time. The Lua scripts in `lua/` compute the same decisions from the same
//! numbers (the buckets and the windows line for line; the sliding log over a
//! sorted set, see its script), and the tests hold
//! every backend to them.
//!
//! The list of algorithms is written once, in [`algorithms!`] below: it
//! declares each module, re-exports each type (through `all`, which the
//! crate root re-exports), and the [`Limit`] enum that backends storing
//! state elsewhere (Redis) dispatch on. [`Composite`] (several limits on one key)
//! and [`Plans`] (limits chosen per key) are built of `Limit`s, and run the
//! same steps.

mod composite;
mod meter;
mod plans;

pub use composite::Composite;
pub(crate) use composite::Named;
// The Redis backend combines the decisions its script returns.
#[cfg(any(feature = "redis", test))]
pub(crate) use composite::combine;
pub(crate) use meter::Meter;
pub use plans::Plans;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Decision, Error, Rate, Result};

/// One of tollgate's algorithms (the types [`Limit`] has a variant of),
/// several of them on one key ([`Composite`]), or limits chosen per key
/// ([`Plans`]): what a backend runs.
///
/// Sealed: every backend, Redis included, must implement each algorithm
/// exactly, so the set is closed.
pub trait Algorithm: sealed::Step + sealed::Shape + Clone + fmt::Debug + Send + Sync + 'static {
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
        ///
        /// Admits `cost` exactly when `cost` is at most the `remaining` that a
        /// peek (`cost == 0`) reports at the same `now_us` and state: what
        /// [`Decision::remaining`] promises, and what a
        /// [`Composite`](super::Composite) relies on to decide all its limits
        /// before it writes any (a test holds every algorithm to it).
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

        /// [`step`](Self::step) in configuration `configuration` (a plan of
        /// [`Plans`](super::Plans); 0 for anything else), pushing each
        /// limit's own decision to `parts` when it is given: one for a plain
        /// algorithm, one per limit for a composite.
        fn step_in(
            &self,
            configuration: usize,
            state: &mut Self::State,
            now_us: u64,
            cost: u64,
            parts: Option<&mut Vec<Decision>>,
        ) -> Decision {
            let _ = configuration;
            let decision = self.step(state, now_us, cost);
            if let Some(parts) = parts {
                parts.push(decision);
            }
            decision
        }

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

    /// What an algorithm enforces, described for backends: the
    /// configurations it can decide in (one, or one per plan), and the
    /// limits of each as [`Limit`](super::Limit) values that a backend
    /// running the steps elsewhere (Redis's Lua) dispatches on.
    pub trait Shape {
        /// How many configurations there are: 1, or the number of plans.
        fn configurations(&self) -> usize {
            1
        }

        /// The configuration that decides for `key` when the caller names
        /// no plan: 0, or the plan a [`Plans`](super::Plans) resolver picks.
        fn resolve(&self, key: &str) -> usize {
            let _ = key;
            0
        }

        /// The configuration of the plan named `plan`, if there is one.
        fn plan_index(&self, plan: &str) -> Option<usize> {
            let _ = plan;
            None
        }

        /// The most configuration `index` admits at once: the largest cost
        /// it accepts.
        fn limit_in(&self, index: usize) -> u64;

        /// Configuration `index` (less than [`configurations`](Self::configurations)).
        fn configuration(&self, index: usize) -> super::Configuration<'_>;
    }
}

/// One configuration of an algorithm, as a backend sees it.
#[derive(Debug, Clone, Copy)]
pub struct Configuration<'a> {
    /// The plan's name, for [`Plans`].
    pub(crate) plan: Option<&'a Arc<str>>,
    /// The most it admits at once.
    pub(crate) limit: u64,
    pub(crate) parts: Parts<'a>,
}

/// The limits of one configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Parts<'a> {
    /// One algorithm, unnamed: its state is the user key's own.
    One(Limit),
    /// Named limits, all or nothing: a composite.
    Several(&'a [Named]),
}

impl Parts<'_> {
    /// How many limits.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Several(named) => named.len(),
        }
    }
}

/// Declares the algorithms, once: each one's module and type, the [`Limit`]
/// enum with a variant (and a `From`) for each, and what composites and
/// plans dispatch on: [`LimitState`], and each algorithm's [`Shape`](sealed::Shape).
macro_rules! algorithms {
    ($($module:ident::$algorithm:ident),* $(,)?) => {
        $(
            pub(crate) mod $module;
            pub(crate) use $module::$algorithm;
        )*

        /// Every algorithm's type, for the crate root to re-export.
        pub(crate) mod all {
            $(pub use super::$module::$algorithm;)*
        }

        /// Any one of the algorithms, as a value: a limit of a [`Composite`],
        /// and what a backend that runs the steps elsewhere (the Redis
        /// backend's Lua) dispatches on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Limit {
            $(
                #[doc = concat!("A [`", stringify!($algorithm), "`].")]
                $algorithm($algorithm),
            )*
        }

        /// The state of any one algorithm: a limit's part of a composite's state.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) enum LimitState {
            $(
                #[doc = concat!("A [`", stringify!($algorithm), "`]'s.")]
                $algorithm(<$algorithm as sealed::Step>::State),
            )*
        }

        $(
            impl From<$algorithm> for Limit {
                fn from(algorithm: $algorithm) -> Self {
                    Self::$algorithm(algorithm)
                }
            }

            impl sealed::Shape for $algorithm {
                fn limit_in(&self, _: usize) -> u64 {
                    Algorithm::limit(self)
                }

                fn configuration(&self, _: usize) -> Configuration<'_> {
                    let limit = Limit::$algorithm(*self);
                    Configuration { plan: None, limit: Algorithm::limit(self), parts: Parts::One(limit) }
                }
            }
        )*

        impl Limit {
            /// The [`name`](Self::name) of each algorithm, in the order
            /// they are declared: what the tests' own list of algorithms
            /// (which the crate cannot see) is checked against, so that an
            /// algorithm added here and forgotten there fails a test.
            #[doc(hidden)]
            pub const NAMES: &'static [&'static str] = &[$(stringify!($module)),*];

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

            /// The algorithm's rate: a window's or a log's amount per period,
            /// a bucket's refill or drain.
            pub fn rate(&self) -> Rate {
                match self {
                    $(Self::$algorithm(algorithm) => algorithm.rate(),)*
                }
            }

            /// The state of a key never seen.
            pub(crate) fn fresh_state(&self) -> LimitState {
                match self {
                    $(Self::$algorithm(_) => LimitState::$algorithm(Default::default()),)*
                }
            }

            /// [`Step::step`](sealed::Step::step) on `state`, which is this
            /// algorithm's (composites and plans keep each limit's state with
            /// the limit that wrote it; a state of another algorithm would be
            /// a bug, and is read as new).
            pub(crate) fn step_state(&self, state: &mut LimitState, now_us: u64, cost: u64) -> Decision {
                match (self, &mut *state) {
                    $((Self::$algorithm(algorithm), LimitState::$algorithm(state)) => {
                        sealed::Step::step(algorithm, state, now_us, cost)
                    })*
                    #[allow(unreachable_patterns)]
                    _ => {
                        *state = self.fresh_state();
                        self.step_state(state, now_us, cost)
                    }
                }
            }

            /// [`Step::expires_at`](sealed::Step::expires_at) of `state`.
            pub(crate) fn expires_at_state(&self, state: &LimitState) -> u64 {
                match (self, state) {
                    $((Self::$algorithm(algorithm), LimitState::$algorithm(state)) => {
                        sealed::Step::expires_at(algorithm, state)
                    })*
                    #[allow(unreachable_patterns)]
                    _ => 0,
                }
            }

            /// [`Step::adopt`](sealed::Step::adopt): `state`, written by
            /// `written_by`, as this limit reads it; new if `written_by` is
            /// another algorithm.
            pub(crate) fn adopt_state(&self, state: LimitState, written_by: &Limit) -> LimitState {
                match (self, state, written_by) {
                    $((Self::$algorithm(algorithm), LimitState::$algorithm(state), Self::$algorithm(writer)) => {
                        LimitState::$algorithm(sealed::Step::adopt(algorithm, state, writer))
                    })*
                    #[allow(unreachable_patterns)]
                    _ => self.fresh_state(),
                }
            }
        }
    };
}

algorithms!(
    fixed_window::FixedWindow,
    sliding_log::SlidingLog,
    token_bucket::TokenBucket,
    leaky_bucket::LeakyBucket,
    sliding_window::SlidingWindow,
);

impl Limit {
    /// The time in which the limit's whole allowance comes back: `limit`
    /// at its rate, rounded up to whole microseconds. For a window or a log,
    /// its period; for a token bucket, the time to refill from empty; for a
    /// leaky bucket, to drain a full queue. What a `RateLimit-Policy` header
    /// gives as the policy's window.
    pub fn window(&self) -> Duration {
        let rate = self.rate();
        let period_us = rate.period().as_micros();
        let micros = (u128::from(self.limit()) * period_us).div_ceil(u128::from(rate.amount().max(1)));
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// Rejects a cost that configuration `index` of `algorithm` could never
/// admit, so that a client is not told to retry forever.
pub(crate) fn check_cost<A: Algorithm>(algorithm: &A, index: usize, cost: u64) -> Result<()> {
    let max = sealed::Shape::limit_in(algorithm, index);
    if cost > max { Err(Error::CostTooHigh { cost, max }) } else { Ok(()) }
}

/// The configuration that decides for `key`: the plan the caller names, or
/// the one the algorithm picks.
pub(crate) fn select<A: Algorithm>(algorithm: &A, key: &str, plan: Option<&str>) -> Result<usize> {
    match plan {
        None => Ok(sealed::Shape::resolve(algorithm, key)),
        Some(plan) => {
            sealed::Shape::plan_index(algorithm, plan).ok_or_else(|| Error::UnknownPlan { plan: plan.to_owned() })
        }
    }
}

/// `ceil(numerator / denominator)` for a non-zero denominator.
#[inline]
pub(crate) const fn div_ceil(numerator: u64, denominator: u64) -> u64 {
    numerator.div_ceil(denominator)
}
