//! The local deny cache: a key that Redis has just denied is answered in
//! this process until its `retry_after` has passed, without a call.
//!
//! Exact, because nothing but a reset makes a key admit earlier: time only
//! frees capacity and traffic only takes it, so a request of the same or a
//! larger cost is denied at least until the denied one's retry moment. The
//! deadline is taken from the instant *before* the call was sent (which is
//! no later than the instant Redis decided at), so it is never later than
//! Redis's own retry moment; on Redis's time (not the client's), the wait
//! is also cut by about 0.1%, more than two clocks' rates differ. A composite's retry moment is its longest
//! denial's: the time the same request passes every limit.
//!
//! It never admits anything, so it can never admit more than the limit. Its
//! memory is bounded: at most `capacity` entries, spread over shards, each
//! pruned of expired entries when full; a denial that finds its shard full
//! of live entries is not cached.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::Decision;
use crate::clock::{Clock, MonotonicClock};

/// How many shards the entries are spread over: a power of two, so that a
/// hash picks one with a mask.
const SHARDS: usize = 16;

/// With Redis's clock, a wait is cut by one part in this many (about 977
/// ppm): more than the 500 ppm NTP slews a clock by, so that Redis's clock
/// running faster than ours never makes a deadline late.
const CLOCK_RATE_MARGIN: u64 = 1024;

/// Nanoseconds in a microsecond.
const NANOS_PER_MICRO: u64 = 1_000;

/// The denials of one limiter, by (configuration, user key).
pub(crate) struct DenyCache {
    /// The clock of a limiter without a client clock: monotonic, so that a
    /// deadline is never met early by a system clock stepped forward.
    monotonic: Option<MonotonicClock>,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// The most entries one shard holds.
    per_shard: usize,
    /// How many resets this process has made: a denial sent before one is
    /// not cached after it.
    resets: AtomicU64,
    /// How many checks were answered here instead of by Redis.
    saves: AtomicU64,
}

struct Shard {
    entries: HashTable<Entry>,
    /// No entry expires before this (ns): pruning before it finds nothing.
    earliest_deadline_ns: u64,
}

/// One denial Redis answered.
struct Entry {
    /// The configuration it was decided in.
    index: usize,
    key: Box<str>,
    /// The cost denied: this or more is denied until `deadline_ns`.
    cost: u64,
    /// The local instant the call was sent, in whole µs (as ns): no later
    /// than the instant Redis decided at.
    sent_ns: u64,
    /// `sent_ns` plus the denial's `retry_after`.
    deadline_ns: u64,
    /// Each limit's decision, as Redis answered it.
    parts: Box<[Decision]>,
}

/// A call about to be sent: the instant, and the resets made before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    /// The limiter's time now: its client clock's, or the monotonic clock's.
    pub(crate) at: Duration,
    resets: u64,
}

impl Sent {
    /// The instant, in whole µs, as ns: what a client-time script decides at.
    fn at_ns(&self) -> u64 {
        let micros = u64::try_from(self.at.as_micros()).unwrap_or(u64::MAX / NANOS_PER_MICRO);
        micros.saturating_mul(NANOS_PER_MICRO)
    }

    /// The instant in ns, unrounded: what a cached answer is measured from.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.at.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl DenyCache {
    /// A cache of at most `capacity` entries (at least one per shard), on
    /// the limiter's client clock if it has one, else on a monotonic clock.
    pub(crate) fn new(capacity: usize, has_client_clock: bool) -> Self {
        Self {
            monotonic: (!has_client_clock).then(MonotonicClock::new),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            resets: AtomicU64::new(0),
            saves: AtomicU64::new(0),
        }
    }

    /// Takes the instant now: `client_now` (the limiter's client clock, read
    /// once, and also sent to the script) or the monotonic clock. Read
    /// before the call is sent.
    pub(crate) fn start(&self, client_now: Option<Duration>) -> Sent {
        // The reset count is read first: a reset counted after it is seen by `record`.
        let resets = self.resets.load(Ordering::Acquire);
        let at = client_now.or_else(|| self.monotonic.map(|clock| clock.now())).unwrap_or_default();
        Sent { at, resets }
    }

    /// The denial a request of `cost` for `key` in configuration `index`
    /// would get from Redis now, if a cached one says so: each limit's
    /// decision, aged to `now`.
    pub(crate) fn answer(&self, now: &Sent, index: usize, key: &str, cost: u64) -> Option<Vec<Decision>> {
        let now_ns = now.now_ns();
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let Ok(entry) = shard.entries.find_entry(hash, |entry| entry.index == index && *entry.key == *key) else {
            return None;
        };
        // A clock set back before the denial: Redis may see another window.
        if now_ns >= entry.get().deadline_ns || now_ns < entry.get().sent_ns {
            entry.remove();
            return None;
        }
        if cost < entry.get().cost {
            return None;
        }
        let entry = entry.get();
        let parts = entry.parts.iter().map(|part| aged(part, entry.sent_ns, now_ns)).collect();
        drop(shard);
        self.saves.fetch_add(1, Ordering::Relaxed);
        Some(parts)
    }

    /// Records what Redis answered to the call `sent` for `key` in
    /// configuration `index`: a denial (`decision`, of its limits' `parts`)
    /// is cached, unless a reset came since the call was sent; an admission
    /// that took something forgets the key's denial in that configuration,
    /// whose remaining it made stale.
    pub(crate) fn record(
        &self,
        sent: &Sent,
        index: usize,
        key: &str,
        cost: u64,
        decision: &Decision,
        parts: &[Decision],
    ) {
        let hash = self.hasher.hash_one(key);
        let matches = |entry: &Entry| entry.index == index && *entry.key == *key;
        let Some(retry_after) = decision.retry_after() else {
            if cost > 0 {
                let mut shard = self.shard(hash).lock();
                if let Ok(entry) = shard.entries.find_entry(hash, matches) {
                    entry.remove();
                }
            }
            return;
        };
        let sent_ns = sent.at_ns();
        let retry_after_ns = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
        // Redis's own clock measured the wait: ours may run slower than it by what NTP slews (up to 500
        // ppm), so the wait is taken ~977 ppm short. On the client clock the script measured it: exact.
        let margin_ns = if self.monotonic.is_some() { retry_after_ns / CLOCK_RATE_MARGIN } else { 0 };
        let deadline_ns = sent_ns.saturating_add(retry_after_ns - margin_ns);
        let mut shard = self.shard(hash).lock();
        // Checked under the shard's lock, which `forget` takes after counting its reset.
        if self.resets.load(Ordering::Acquire) != sent.resets {
            return;
        }
        if let Some(entry) = shard.entries.find_mut(hash, matches) {
            *entry =
                Entry { key: std::mem::take(&mut entry.key), index, cost, sent_ns, deadline_ns, parts: parts.into() };
        } else {
            if shard.entries.len() >= self.per_shard && !shard.prune(sent.now_ns(), self.per_shard) {
                return;
            }
            let entry = Entry { index, key: key.into(), cost, sent_ns, deadline_ns, parts: parts.into() };
            let hasher = &self.hasher;
            let _ = shard.entries.insert_unique(hash, entry, |entry| hasher.hash_one(&*entry.key));
        }
        shard.earliest_deadline_ns = shard.earliest_deadline_ns.min(deadline_ns);
    }

    /// Forgets every denial of `key` (a reset), in each of the
    /// `configurations`; a denial sent before now is not cached after.
    pub(crate) fn forget(&self, key: &str, configurations: usize) {
        self.resets.fetch_add(1, Ordering::AcqRel);
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        for index in 0..configurations {
            if let Ok(entry) = shard.entries.find_entry(hash, |entry| entry.index == index && *entry.key == *key) {
                entry.remove();
            }
        }
    }

    /// How many checks were answered here instead of by Redis.
    pub(crate) fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }

    /// How many denials are held, expired ones not yet pruned included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().entries.len()).sum()
    }

    /// The most denials it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // The table takes the hash's low bits and its top seven: the shard takes bits in between.
        &self.shards[(hash >> 32) as usize % SHARDS]
    }
}

impl Shard {
    fn new() -> Self {
        Self { entries: HashTable::new(), earliest_deadline_ns: u64::MAX }
    }

    /// Drops the entries expired at `now_ns` (or sent after it: a clock set
    /// back), if any can have; whether fewer than `most` are left.
    fn prune(&mut self, now_ns: u64, most: usize) -> bool {
        if now_ns >= self.earliest_deadline_ns {
            self.entries.retain(|entry| now_ns < entry.deadline_ns && entry.sent_ns <= now_ns);
            self.earliest_deadline_ns = self.entries.iter().map(|entry| entry.deadline_ns).min().unwrap_or(u64::MAX);
        }
        self.entries.len() < most
    }
}

/// `part`, decided at `sent_ns`, as it stands at `now_ns`: its waits less
/// the time gone by (rounded up to whole µs), a denial whose own retry
/// moment has come reported as passing (with the remaining it had, no more
/// than it has now).
fn aged(part: &Decision, sent_ns: u64, now_ns: u64) -> Decision {
    let left_us = |after: Duration| {
        let at_ns = sent_ns.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
        at_ns.saturating_sub(now_ns).div_ceil(NANOS_PER_MICRO)
    };
    let reset_after_us = left_us(part.reset_after());
    match part.retry_after() {
        Some(retry_after) if left_us(retry_after) > 0 => {
            Decision::denied(part.limit(), part.remaining(), left_us(retry_after), reset_after_us)
        }
        Some(_) => Decision::allowed(part.limit(), part.remaining(), reset_after_us, 0),
        None => Decision::allowed(part.limit(), part.remaining(), reset_after_us, left_us(part.wait())),
    }
}

impl fmt::Debug for DenyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DenyCache")
            .field("capacity", &self.capacity())
            .field("saves", &self.saves())
            .field("monotonic", &self.monotonic.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn at(ns: u64) -> Sent {
        Sent { at: Duration::from_nanos(ns), resets: 0 }
    }

    /// A denial of `cost`, retry after `retry_after_us`, of a limit of 10.
    fn denial(retry_after_us: u64) -> Decision {
        Decision::denied(10, 2, retry_after_us, 2 * retry_after_us)
    }

    fn record(cache: &DenyCache, sent: &Sent, key: &str, cost: u64, decision: Decision) {
        cache.record(sent, 0, key, cost, &decision, &[decision]);
    }

    #[test]
    fn a_denial_answers_the_same_or_a_larger_cost_until_its_retry_moment_aged() {
        let cache = DenyCache::new(100, true);
        let sent = cache.start(Some(Duration::from_secs(100)));
        record(&cache, &sent, "k", 3, denial(1_000_000));
        assert_eq!(cache.answer(&at(100 * SECOND_NS), 0, "k", 3), Some(vec![denial(1_000_000)]));
        let later = at(100 * SECOND_NS + 250_000_500);
        // 749 999.5 µs left, rounded up; reset 1 749 999.5 µs, rounded up.
        assert_eq!(cache.answer(&later, 0, "k", 4), Some(vec![Decision::denied(10, 2, 750_000, 1_750_000)]));
        assert_eq!(cache.answer(&later, 0, "k", 2), None, "a smaller cost may pass");
        assert_eq!(cache.answer(&later, 1, "k", 3), None, "another configuration");
        assert_eq!(cache.saves(), 2);
        assert_eq!(cache.answer(&at(101 * SECOND_NS), 0, "k", 3), None, "its retry moment has come");
        assert_eq!(cache.len(), 0, "and it is gone");
    }

    #[test]
    fn the_deadline_counts_from_the_whole_microsecond_the_script_decided_at() {
        let cache = DenyCache::new(100, true);
        // A client clock at 100 s + 999 ns: the script is sent 100 s + 0 µs.
        let sent = cache.start(Some(Duration::from_nanos(100 * SECOND_NS + 999)));
        record(&cache, &sent, "k", 1, denial(5));
        assert!(cache.answer(&at(100 * SECOND_NS + 4_999), 0, "k", 1).is_some());
        assert_eq!(cache.answer(&at(100 * SECOND_NS + 5_000), 0, "k", 1), None);
    }

    #[test]
    fn on_redis_time_the_wait_is_cut_by_more_than_clock_rates_differ() {
        let cache = DenyCache::new(100, false);
        let sent = cache.start(None);
        record(&cache, &sent, "k", 1, denial(1_024_000_000));
        let sent_ns = sent.at_ns();
        let just_before = at(sent_ns + 1_023_000_000_000 - 1);
        assert!(cache.answer(&just_before, 0, "k", 1).is_some());
        assert_eq!(cache.answer(&at(sent_ns + 1_023_000_000_000), 0, "k", 1), None);
    }

    #[test]
    fn a_clock_set_back_before_the_denial_asks_redis() {
        let cache = DenyCache::new(100, true);
        record(&cache, &at(100 * SECOND_NS), "k", 1, denial(1_000_000));
        assert_eq!(cache.answer(&at(99 * SECOND_NS), 0, "k", 1), None);
    }

    #[test]
    fn a_composites_limit_whose_own_retry_moment_has_come_is_reported_passing() {
        let cache = DenyCache::new(100, true);
        let parts = [Decision::denied(5, 0, 1_000_000, 1_000_000), Decision::denied(100, 0, 60_000_000, 60_000_000)];
        let sent = at(100 * SECOND_NS);
        cache.record(&sent, 0, "k", 1, &crate::algorithm::combine(&parts, 5), &parts);
        let aged = cache.answer(&at(102 * SECOND_NS), 0, "k", 1).unwrap();
        assert_eq!(aged, [Decision::allowed(5, 0, 0, 0), Decision::denied(100, 0, 58_000_000, 58_000_000)]);
    }

    #[test]
    fn a_denial_sent_before_a_reset_is_not_cached_after_it() {
        let cache = DenyCache::new(100, true);
        let sent = cache.start(Some(Duration::from_secs(100)));
        cache.forget("k", 1);
        record(&cache, &sent, "k", 1, denial(1_000_000));
        assert_eq!(cache.len(), 0);
        let sent = cache.start(Some(Duration::from_secs(100)));
        record(&cache, &sent, "k", 1, denial(1_000_000));
        cache.forget("k", 1);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_admission_forgets_the_keys_denial_a_peek_does_not() {
        let cache = DenyCache::new(100, true);
        record(&cache, &at(100 * SECOND_NS), "k", 3, denial(1_000_000));
        let allowed = Decision::allowed(10, 2, 0, 0);
        cache.record(&at(100 * SECOND_NS), 0, "k", 0, &allowed, &[allowed]);
        assert_eq!(cache.len(), 1);
        cache.record(&at(100 * SECOND_NS), 0, "k", 1, &allowed, &[allowed]);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_prunes_expired_denials_and_otherwise_caches_nothing_more() {
        let cache = DenyCache::new(SHARDS, true);
        assert_eq!(cache.capacity(), SHARDS);
        let sent = at(100 * SECOND_NS);
        for n in 0..10 * SHARDS {
            record(&cache, &sent, &format!("k{n}"), 1, denial(1_000_000));
            assert!(cache.len() <= SHARDS);
        }
        let later = at(102 * SECOND_NS);
        for n in 0..10 * SHARDS {
            record(&cache, &later, &format!("new{n}"), 1, denial(1_000_000));
        }
        let kept = (0..10 * SHARDS).filter(|n| cache.answer(&later, 0, &format!("new{n}"), 1).is_some()).count();
        assert!(kept > 0 && kept <= SHARDS, "{kept}");
        assert_eq!((0..10 * SHARDS).filter(|n| cache.answer(&later, 0, &format!("k{n}"), 1).is_some()).count(), 0);
    }
}
