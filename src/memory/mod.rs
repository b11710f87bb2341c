//! [`InMemory`]: the one-process backend.
//!
//! Keys live in a fixed set of shards, each a `parking_lot` mutex around a
//! hash table, so threads contend only when their keys share a shard. A key is
//! hashed once, and that hash both picks the shard and probes its table.
//! Idle keys are swept as the store is used, with no background task.

mod shard;

use std::borrow::Cow;
use std::cell::RefCell;

use async_trait::async_trait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use self::shard::{Occasion, Shard, Swept, hash_key};
#[cfg(feature = "acquire")]
use crate::acquire::{GiveBack, Lines, Permit, TooLong, Try, wait_for_slot};
use crate::algorithm::sealed::Step;
use crate::algorithm::{Algorithm, Parts, check_cost, select};
use crate::clock::{Clock, MonotonicClock, micros};
use crate::observe::Observer;
use crate::{Breakdown, Decision, RateLimiter, Result};

/// A keyed rate limiter in this process's memory.
///
/// Exact under contention: each decision holds its key's shard lock from
/// reading the state to writing it. Memory stays bounded by the keys that are
/// still limited: a key whose allowance is back to full is swept as the store
/// is used (see [`cleanup`](Self::cleanup)).
///
/// ```
/// use tollgate::{InMemory, Rate, TokenBucket};
///
/// let limiter = InMemory::new(TokenBucket::new(2, Rate::per_second(1))?);
/// assert!(limiter.check_sync("user:42").is_allowed());
/// assert!(limiter.check_sync("user:42").is_allowed());
/// let denied = limiter.check_sync("user:42");
/// assert!(!denied.is_allowed());
/// assert!(denied.retry_after().unwrap() <= std::time::Duration::from_secs(1));
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug)]
pub struct InMemory<A: Algorithm, C: Clock = MonotonicClock> {
    algorithm: A,
    clock: C,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard<A::State>]>,
    shard_mask: u64,
    // Each shard's own sweep also sweeps the shard under this cursor, so idle
    // keys in shards nobody touches any more are reclaimed too.
    next_shard_to_sweep: AtomicUsize,
    // Waiters for the algorithms that reserve nothing ahead, one line per key.
    #[cfg(feature = "acquire")]
    lines: Lines,
    observer: Observer,
}

impl<A: Algorithm> InMemory<A> {
    /// A limiter on the default, monotonic clock.
    pub fn new(algorithm: A) -> Self {
        Self::with_clock(algorithm, MonotonicClock::new())
    }
}

impl<A: Algorithm, C: Clock> InMemory<A, C> {
    /// A limiter on `clock`, such as a [`ManualClock`](crate::ManualClock) in tests.
    pub fn with_clock(algorithm: A, clock: C) -> Self {
        let shards = shard_count();
        let observer = Observer::new(Cow::Borrowed(algorithm.name()));
        Self {
            algorithm,
            clock,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            shard_mask: shards as u64 - 1,
            next_shard_to_sweep: AtomicUsize::new(0),
            #[cfg(feature = "acquire")]
            lines: Lines::default(),
            observer,
        }
    }

    /// Names the limiter `name`, for logs and metrics (the `limiter` field of
    /// its `trace` events and label of its metrics; see
    /// docs/observability.md). The default is the algorithm's
    /// [`name`](Algorithm::name), such as `"token_bucket"`. Give each
    /// limiter of a process its own.
    ///
    /// ```
    /// use tollgate::{InMemory, Rate, TokenBucket};
    ///
    /// let limiter = InMemory::new(TokenBucket::new(10, Rate::per_second(5))?).named("api");
    /// assert_eq!(limiter.name(), "api");
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    #[must_use]
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.observer = Observer::new(name.into());
        self
    }

    /// The limiter's name in logs and metrics: see [`named`](Self::named).
    pub fn name(&self) -> &str {
        self.observer.name()
    }

    /// The algorithm this limiter runs.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// [`RateLimiter::check`] without the async wrapper: the hot path. It
    /// allocates only to remember a key it has not seen, and cannot fail:
    /// every algorithm admits a cost of 1.
    pub fn check_sync(&self, key: &str) -> Decision {
        self.observer.observe(key, 1, || self.decide_in(self.algorithm.resolve(key), key, 1, None))
    }

    /// [`RateLimiter::check_n`] without the async wrapper.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) when `cost` is more
    /// than the algorithm (for [`Plans`](crate::Plans), the key's plan) can
    /// ever admit at once.
    #[inline]
    pub fn check_n_sync(&self, key: &str, cost: u64) -> Result<Decision> {
        let configuration = self.algorithm.resolve(key);
        check_cost(&self.algorithm, configuration, cost)?;
        Ok(self.observer.observe(key, cost, || self.decide_in(configuration, key, cost, None)))
    }

    /// [`RateLimiter::check_detailed`] without the async wrapper: the
    /// decision in `plan` (or the key's), with each limit's own.
    ///
    /// # Errors
    ///
    /// As [`check_n_sync`](Self::check_n_sync), and
    /// [`Error::UnknownPlan`](crate::Error::UnknownPlan) for a plan the
    /// algorithm does not have.
    pub fn check_detailed_sync(&self, key: &str, cost: u64, plan: Option<&str>) -> Result<Breakdown> {
        let configuration = select(&self.algorithm, key, plan)?;
        check_cost(&self.algorithm, configuration, cost)?;
        Ok(self.observer.observe(key, cost, || self.detailed_in(configuration, key, cost)))
    }

    /// The decision of configuration `configuration` (0 but for plans) for
    /// a cost already checked against its limit, with each limit's own.
    pub(crate) fn detailed_in(&self, configuration: usize, key: &str, cost: u64) -> Breakdown {
        let described = self.algorithm.configuration(configuration);
        let parts = RefCell::new(Vec::with_capacity(described.parts.len()));
        let decision = self.decide_in(configuration, key, cost, Some(&parts));
        Breakdown::new(decision, &described, &parts.into_inner())
    }

    /// Decides a cost already checked against configuration
    /// `configuration`'s limit, pushing each limit's decision to `parts`.
    #[inline]
    pub(crate) fn decide_in(
        &self,
        configuration: usize,
        key: &str,
        cost: u64,
        parts: Option<&RefCell<Vec<Decision>>>,
    ) -> Decision {
        if configuration == 0 && parts.is_none() {
            self.decide(&self.algorithm, key, cost)
        } else {
            self.decide(&Chosen { algorithm: &self.algorithm, configuration, parts }, key, cost)
        }
    }

    /// Decides with `step`: the algorithm, or it in a chosen configuration.
    #[inline]
    fn decide<S: Step<State = A::State>>(&self, step: &S, key: &str, cost: u64) -> Decision {
        self.decide_with(step, key, cost, |state, now_us| (step.step(state, now_us, cost), ())).0
    }

    /// [`RateLimiter::reserve`] without the async wrapper: reserves `cost`
    /// for `key` at the earliest slot at most `max_wait` away, without
    /// waiting for it.
    ///
    /// # Errors
    ///
    /// As [`check_n_sync`](Self::check_n_sync).
    pub fn reserve_sync(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        let observation = self.observer.start(key, cost);
        let max_wait_us = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        self.reserve_us(key, cost, max_wait_us).map(|decision| observation.answered(decision))
    }

    /// As [`reserve_sync`](Self::reserve_sync), with the wait in µs.
    pub(crate) fn reserve_us(&self, key: &str, cost: u64, max_wait_us: u64) -> Result<Decision> {
        check_cost(&self.algorithm, self.algorithm.resolve(key), cost)?;
        Ok(self.reserve_checked(key, cost, max_wait_us).0)
    }

    /// Reserves a cost already checked against the key's limit; returns the
    /// decision, the time it was made at (µs since the epoch) and, if it
    /// reserved a slot ahead, the state it left (what gives it back). An
    /// algorithm that reserves nothing ahead (a window, a log, a composite)
    /// reserves as a check decides; a key in a plan other than the first
    /// is checked in its plan.
    fn reserve_checked(&self, key: &str, cost: u64, max_wait_us: u64) -> (Decision, u64, Option<A::State>) {
        let configuration = self.algorithm.resolve(key);
        if configuration != 0 {
            let chosen = Chosen { algorithm: &self.algorithm, configuration, parts: None };
            let (decision, now_us) =
                self.decide_with(&chosen, key, cost, |state, now_us| (chosen.step(state, now_us, cost), now_us));
            return (decision, now_us, None);
        }
        let (decision, (now_us, written)) = self.decide_with(&self.algorithm, key, cost, |state, _| {
            // Read under the key's lock, so that reservations of one key read
            // the clock in the order they decide: none is held back at a
            // time another thread wrote, and each slot is its time plus its wait.
            let now_us = micros(self.clock.now());
            let decision = self.algorithm.reserve(state, now_us, cost, max_wait_us);
            let ahead = decision.is_allowed() && !decision.wait().is_zero() && cost > 0;
            (decision, (now_us, ahead.then(|| state.clone())))
        });
        (decision, now_us, written)
    }

    /// Runs `decide` on `key`'s state at the clock's time, under its shard's
    /// lock; `step` is what sweeps the shard if a sweep is due.
    #[inline]
    fn decide_with<S: Step<State = A::State>, R>(
        &self,
        step: &S,
        key: &str,
        cost: u64,
        decide: impl FnOnce(&mut A::State, u64) -> (Decision, R),
    ) -> (Decision, R) {
        let hash = hash_key(&self.hasher, key.as_bytes());
        let shard = self.shard(hash);
        let now_us = micros(self.clock.now());
        let (decision, extra, swept) =
            shard.decide(step, &self.hasher, hash, key, now_us, cost, |state| decide(state, now_us));
        if swept == Swept::Yes {
            self.sweep_another_shard(now_us);
        }
        (decision, extra)
    }

    /// Forgets `key`: its next request starts from a full allowance.
    pub fn reset_sync(&self, key: &str) {
        let hash = hash_key(&self.hasher, key.as_bytes());
        self.shard(hash).remove(hash, key);
    }

    /// The number of keys held, including idle ones not yet swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key whose allowance is back to full, and gives back the
    /// memory they held; returns how many were forgotten.
    ///
    /// Never needed for correctness or to bound memory: each shard sweeps
    /// itself after a number of operations proportional to its size, and
    /// then one other shard in turn, so any use of the store reclaims idle
    /// keys everywhere. Call it to reclaim memory at once, for instance after
    /// a traffic spike.
    ///
    /// With feature `metrics`, it also sets the gauge of keys held,
    /// `tollgate_memory_keys` (which the store's own sweeps set too).
    pub fn cleanup(&self) -> usize {
        let now_us = micros(self.clock.now());
        let forgotten =
            self.shards.iter().map(|shard| shard.sweep(&self.algorithm, &self.hasher, now_us, Occasion::Cleanup)).sum();
        self.observer.keys_held(|| self.len());
        forgotten
    }

    #[cold]
    fn sweep_another_shard(&self, now_us: u64) {
        let next = self.next_shard_to_sweep.fetch_add(1, Ordering::Relaxed) & self.shard_mask as usize;
        self.shards[next].sweep(&self.algorithm, &self.hasher, now_us, Occasion::Neighbour);
        // As often as sweeps (about once per 1024 checks of a shard), at one
        // uncontended lock per shard: the cost of the sweep's own order.
        self.observer.keys_held(|| self.len());
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<A::State> {
        // The table picks buckets from the hash's top bits (see `bucket_pair`);
        // the shard takes the low ones, so the two stay independent.
        &self.shards[(hash & self.shard_mask) as usize]
    }
}

#[async_trait]
impl<A: Algorithm, C: Clock> RateLimiter for InMemory<A, C> {
    // Not left to the default, which would box a second future for `check_n`.
    async fn check(&self, key: &str) -> Result<Decision> {
        Ok(self.check_sync(key))
    }

    async fn check_n(&self, key: &str, cost: u64) -> Result<Decision> {
        self.check_n_sync(key, cost)
    }

    async fn check_detailed(&self, key: &str, cost: u64, plan: Option<&str>) -> Result<Breakdown> {
        self.check_detailed_sync(key, cost, plan)
    }

    fn check_now(&self, key: &str, cost: u64) -> Option<Result<Decision>> {
        let only = self.algorithm.configuration(0);
        let plain = self.algorithm.configurations() == 1 && only.plan.is_none() && matches!(only.parts, Parts::One(_));
        plain.then(|| self.check_n_sync(key, cost))
    }

    fn check_detailed_now(&self, key: &str, cost: u64, plan: Option<&str>) -> Option<Result<Breakdown>> {
        Some(self.check_detailed_sync(key, cost, plan))
    }

    async fn reserve(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        self.reserve_sync(key, cost, max_wait)
    }

    /// Reserves at once (the token and leaky buckets take their slot in
    /// the order of the calls, under the key's lock), then sleeps on one
    /// timer until the slot. The fixed window, the sliding log, the sliding
    /// window, composites and plans wait in a line per key instead: see
    /// [`RateLimiter::acquire_within`].
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) only.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for its slot gives the slot back
    /// if its reservation is still the newest for the key (the state is
    /// exactly as it left it): then the meter is exactly as if it had never
    /// been made, and the next caller gets that slot. Otherwise the slot
    /// goes unused.
    #[cfg(feature = "acquire")]
    async fn acquire_within(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Result<Permit, TooLong>> {
        let configuration = self.algorithm.resolve(key);
        check_cost(&self.algorithm, configuration, cost)?;
        let reach_us = if configuration == 0 { self.algorithm.reach_us() } else { 0 };
        let line = (reach_us == 0).then_some((&self.lines, key));
        wait_for_slot(max_wait, reach_us, line, |accept_us| {
            let observation = self.observer.start(key, cost);
            let (decision, at_us, written) = self.reserve_checked(key, cost, accept_us);
            let decision = observation.answered(decision);
            let unused = written.map(|written| Unreserve { limiter: self, key, cost, written });
            std::future::ready(Ok(Try::from_decision(&decision, at_us, reach_us, unused)))
        })
        .await
    }

    async fn reset(&self, key: &str) -> Result<()> {
        self.reset_sync(key);
        Ok(())
    }
}

/// A slot reserved in memory and not used: given back if it is still the
/// newest for its key.
#[cfg(feature = "acquire")]
struct Unreserve<'a, A: Algorithm, C: Clock> {
    limiter: &'a InMemory<A, C>,
    key: &'a str,
    cost: u64,
    written: A::State,
}

#[cfg(feature = "acquire")]
impl<A: Algorithm, C: Clock> GiveBack for Unreserve<'_, A, C> {
    fn give_back(self) {
        let hash = hash_key(&self.limiter.hasher, self.key.as_bytes());
        let algorithm = &self.limiter.algorithm;
        self.limiter.shard(hash).update(hash, self.key, |state| {
            let _ = algorithm.give_back(state, &self.written, self.cost);
        });
    }
}

/// An algorithm in one configuration (a plan), passing each limit's
/// decision on: what a shard steps when a request is decided in anything but
/// the algorithm's default configuration, or in detail.
struct Chosen<'a, A> {
    algorithm: &'a A,
    configuration: usize,
    parts: Option<&'a RefCell<Vec<Decision>>>,
}

impl<A: Step> Step for Chosen<'_, A> {
    type State = A::State;

    fn step(&self, state: &mut A::State, now_us: u64, cost: u64) -> Decision {
        let mut parts = self.parts.map(RefCell::borrow_mut);
        self.algorithm.step_in(self.configuration, state, now_us, cost, parts.as_deref_mut())
    }

    fn expires_at(&self, state: &A::State) -> u64 {
        self.algorithm.expires_at(state)
    }
}

/// Enough shards that two cores rarely meet on one, and that a sweep
/// holds one lock over a small part of the keys.
fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 16).clamp(64, 1024).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::shard::MIN_OPERATIONS_BETWEEN_SWEEPS;
    use super::*;
    use crate::{FixedWindow, ManualClock, Rate, SlidingLog, TokenBucket};

    fn table_capacity<A: Algorithm, C: Clock>(limiter: &InMemory<A, C>) -> usize {
        limiter.shards.iter().map(Shard::capacity).sum()
    }

    #[test]
    fn a_million_idle_keys_are_reclaimed_by_use_alone_and_memory_comes_back() {
        let clock = ManualClock::new();
        let limiter = InMemory::with_clock(FixedWindow::new(Rate::per_second(10)).unwrap(), clock.clone());
        let empty_capacity = table_capacity(&limiter);
        let mut key = String::new();
        let mut check = |prefix: &str, n: u32| {
            for i in 0..n {
                key.clear();
                std::fmt::Write::write_fmt(&mut key, format_args!("{prefix}{i}")).unwrap();
                assert!(limiter.check_sync(&key).is_allowed());
            }
        };
        check("first:", 1_000_000);
        assert_eq!(limiter.len(), 1_000_000);
        let full_capacity = table_capacity(&limiter);

        // The first million go idle; a second million arrive. Each shard sweeps
        // itself as it is used, so the store never holds both.
        clock.advance(Duration::from_secs(1));
        check("second:", 1_000_000);
        assert!(limiter.len() < 1_200_000, "idle keys were not swept: {}", limiter.len());
        assert!(table_capacity(&limiter) <= full_capacity * 2);

        // All idle: an explicit cleanup gives the memory back.
        clock.advance(Duration::from_secs(1));
        assert!(limiter.cleanup() > 0);
        assert!(limiter.is_empty());
        assert!(table_capacity(&limiter) <= empty_capacity + 16 * limiter.shards.len());
    }

    /// Keys that an inline or arena copy could confuse: empty, NUL bytes,
    /// one a prefix of another, the 15/16-byte edge of inline storage, and
    /// long keys, among many ordinary ones, so that tables grow, move keys
    /// between buckets, shrink and compact their arena.
    fn awkward_keys() -> Vec<String> {
        let mut keys: Vec<String> = ["", "\0", "\0\0", "a", "a\0", "\0a", "é", "fifteen bytes!!", "sixteen bytes!!!"]
            .iter()
            .map(|key| key.to_string())
            .collect();
        keys.extend((0..40).map(|n| format!("{}{n}", "k".repeat(n))));
        keys.push("x".repeat(10 * 1024));
        keys.push(format!("{}y", "x".repeat(10 * 1024)));
        keys.extend((0..3_000).map(|n| format!("user:{n}")));
        keys
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Check { key: usize, cost: u64 },
        Advance { us: u64 },
        Reset { key: usize },
        Cleanup,
    }

    fn operations(keys: usize) -> impl Strategy<Value = Vec<Operation>> {
        // Low indexes (the awkward keys) come up often, so they meet again.
        let key = prop_oneof![0..60_usize, 0..keys];
        let operation = prop_oneof![
            20 => (key.clone(), 0..=2_u64).prop_map(|(key, cost)| Operation::Check { key, cost }),
            3 => prop_oneof![0..1_000_u64, 0..3_000_000_u64].prop_map(|us| Operation::Advance { us }),
            1 => key.prop_map(|key| Operation::Reset { key }),
            1 => Just(Operation::Cleanup),
        ];
        prop::collection::vec(operation, 1..4_000)
    }

    /// Runs `operations` on the store and on a map of states stepped one key
    /// at a time, which never forgets a key: every decision must be the same,
    /// since a forgotten key reads as new only once its state does.
    fn matches_a_map_of_states<A: Algorithm>(algorithm: A, operations: &[Operation]) {
        let keys = awkward_keys();
        let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
        let limiter = InMemory::with_clock(algorithm.clone(), clock.clone());
        let mut model: HashMap<&str, A::State> = HashMap::new();
        for operation in operations {
            let now_us = micros(clock.now());
            match *operation {
                Operation::Check { key, cost } => {
                    let expected = algorithm.step(model.entry(&keys[key]).or_default(), now_us, cost);
                    assert_eq!(limiter.check_n_sync(&keys[key], cost).unwrap(), expected, "key {key}");
                }
                Operation::Advance { us } => clock.advance(Duration::from_micros(us)),
                Operation::Reset { key } => {
                    model.remove(&*keys[key]);
                    limiter.reset_sync(&keys[key]);
                }
                Operation::Cleanup => {
                    limiter.cleanup();
                    model.retain(|_, state| algorithm.expires_at(state) > now_us);
                    assert_eq!(limiter.len(), model.len());
                }
            }
            assert!(limiter.len() <= model.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn a_token_bucket_store_decides_as_each_keys_state_alone_would(operations in operations(3_000)) {
            matches_a_map_of_states(TokenBucket::new(2, Rate::per_second(3)).unwrap(), &operations);
        }

        #[test]
        fn a_fixed_window_store_decides_as_each_keys_state_alone_would(operations in operations(3_000)) {
            matches_a_map_of_states(FixedWindow::new(Rate::per_second(2)).unwrap(), &operations);
        }

        #[test]
        fn a_sliding_log_store_decides_as_each_keys_state_alone_would(operations in operations(3_000)) {
            matches_a_map_of_states(SlidingLog::new(Rate::per_second(2)).unwrap(), &operations);
        }
    }

    #[test]
    fn a_shard_with_one_busy_key_still_sweeps_its_idle_neighbours() {
        let clock = ManualClock::new();
        let limiter = InMemory::with_clock(TokenBucket::new(1, Rate::per_second(1_000)).unwrap(), clock.clone());
        for i in 0..10_000 {
            let _ = limiter.check_sync(&format!("idle:{i}"));
        }
        clock.advance(Duration::from_secs(1));
        // Other shards' keys go too: each sweep of the busy shard sweeps one more.
        for _ in 0..(limiter.shards.len() + 1) * MIN_OPERATIONS_BETWEEN_SWEEPS {
            let _ = limiter.check_sync("busy");
        }
        assert_eq!(limiter.len(), 1);
    }
}
