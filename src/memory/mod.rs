//! [`InMemory`]: the one-process backend.
//!
//! Keys live in a fixed set of shards, each a `parking_lot` mutex around a
//! hash table, so threads contend only when their keys share a shard. A key is
//! hashed once, and that hash both picks the shard and probes its table.
//! Idle keys are swept as the store is used, with no background task.

mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use self::shard::{Shard, Swept};
#[cfg(feature = "acquire")]
use crate::acquire::{GiveBack, Lines, Permit, TooLong, Try, wait_for_slot};
use crate::algorithm::{Algorithm, check_cost};
use crate::clock::{Clock, MonotonicClock, micros};
use crate::{Decision, RateLimiter, Result};

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
    // Waiters for algorithms that reserve nothing ahead, one line per key.
    #[cfg(feature = "acquire")]
    lines: Lines,
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
        Self {
            algorithm,
            clock,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            shard_mask: shards as u64 - 1,
            next_shard_to_sweep: AtomicUsize::new(0),
            #[cfg(feature = "acquire")]
            lines: Lines::default(),
        }
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
        self.decide(key, 1)
    }

    /// [`RateLimiter::check_n`] without the async wrapper.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) when `cost` is more
    /// than the algorithm can ever admit at once.
    #[inline]
    pub fn check_n_sync(&self, key: &str, cost: u64) -> Result<Decision> {
        check_cost(&self.algorithm, cost)?;
        Ok(self.decide(key, cost))
    }

    /// [`RateLimiter::reserve`] without the async wrapper: reserves `cost`
    /// for `key` at the earliest slot at most `max_wait` away, without
    /// waiting for it.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) when `cost` is more
    /// than the algorithm can ever admit at once.
    pub fn reserve_sync(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        self.reserve_us(key, cost, u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX))
    }

    /// As [`reserve_sync`](Self::reserve_sync), with the wait in µs.
    pub(crate) fn reserve_us(&self, key: &str, cost: u64, max_wait_us: u64) -> Result<Decision> {
        check_cost(&self.algorithm, cost)?;
        Ok(self.reserve_checked(key, cost, max_wait_us).0)
    }

    /// Decides a cost already checked against the algorithm's maximum.
    #[inline]
    fn decide(&self, key: &str, cost: u64) -> Decision {
        self.decide_with(key, cost, |state, now_us| (self.algorithm.step(state, now_us, cost), ())).0
    }

    /// Reserves a cost already checked against the algorithm's maximum;
    /// returns the decision, the time it was made at (µs since the epoch)
    /// and, if it reserved a slot ahead, the state it left (what gives it
    /// back).
    fn reserve_checked(&self, key: &str, cost: u64, max_wait_us: u64) -> (Decision, u64, Option<A::State>) {
        let (decision, (now_us, written)) = self.decide_with(key, cost, |state, _| {
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

    /// Runs `decide` on `key`'s state at the clock's time, under its shard's lock.
    #[inline]
    fn decide_with<R>(
        &self,
        key: &str,
        cost: u64,
        decide: impl FnOnce(&mut A::State, u64) -> (Decision, R),
    ) -> (Decision, R) {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        let now_us = micros(self.clock.now());
        let (decision, extra, swept) =
            shard.decide(&self.algorithm, &self.hasher, hash, key, now_us, cost, |state| decide(state, now_us));
        if swept == Swept::Yes {
            self.sweep_another_shard(now_us);
        }
        (decision, extra)
    }

    /// Forgets `key`: its next request starts from a full allowance.
    pub fn reset_sync(&self, key: &str) {
        let hash = self.hasher.hash_one(key);
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
    pub fn cleanup(&self) -> usize {
        let now_us = micros(self.clock.now());
        self.shards.iter().map(|shard| shard.sweep(&self.algorithm, &self.hasher, now_us)).sum()
    }

    #[cold]
    fn sweep_another_shard(&self, now_us: u64) {
        let next = self.next_shard_to_sweep.fetch_add(1, Ordering::Relaxed) & self.shard_mask as usize;
        self.shards[next].sweep(&self.algorithm, &self.hasher, now_us);
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<A::State> {
        // The table uses the hash's low bits for buckets and its top seven for
        // tags; the shard takes bits from the middle so the three stay independent.
        &self.shards[((hash >> 32) & self.shard_mask) as usize]
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

    async fn reserve(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        self.reserve_sync(key, cost, max_wait)
    }

    /// Reserves at once (the token and leaky buckets take their slot in
    /// the order of the calls, under the key's lock), then sleeps on one
    /// timer until the slot. The fixed window and the sliding log wait in a
    /// line per key instead: see [`RateLimiter::acquire_within`].
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
        check_cost(&self.algorithm, cost)?;
        let reach_us = self.algorithm.reach_us();
        let line = (reach_us == 0).then_some((&self.lines, key));
        wait_for_slot(max_wait, reach_us, line, |accept_us| {
            let (decision, at_us, written) = self.reserve_checked(key, cost, accept_us);
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
        let hash = self.limiter.hasher.hash_one(self.key);
        let algorithm = &self.limiter.algorithm;
        self.limiter.shard(hash).update(hash, self.key, |state| {
            let _ = algorithm.give_back(state, &self.written, self.cost);
        });
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
    use std::time::Duration;

    use super::shard::MIN_OPERATIONS_BETWEEN_SWEEPS;
    use super::*;
    use crate::{FixedWindow, ManualClock, Rate, TokenBucket};

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
