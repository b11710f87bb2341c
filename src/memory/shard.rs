//! One shard of the in-memory store: a locked hash table that sweeps itself.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::Decision;
use crate::algorithm::{Algorithm, sealed::Step};

/// Sweeps no more often than this many operations, so that a shard with few
/// keys does not sweep on every call.
pub(super) const MIN_OPERATIONS_BETWEEN_SWEEPS: usize = 1024;

/// A lock around a table of keys. Aligned to 128 bytes so that two shards
/// never share a cache line (or the pair the prefetcher fetches together).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Shard<S> {
    table: Mutex<Table<S>>,
}

#[derive(Debug)]
struct Table<S> {
    entries: HashTable<Entry<S>>,
    // Counts down to the next sweep; reset to the table's size by each sweep,
    // so sweeping costs O(1) per operation amortized.
    operations_until_sweep: usize,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Self { entries: HashTable::new(), operations_until_sweep: MIN_OPERATIONS_BETWEEN_SWEEPS }
    }
}

/// Whether a decision also swept its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swept {
    Yes,
    No,
}

#[derive(Debug)]
struct Entry<S> {
    key: Box<str>,
    state: S,
}

impl<S> Shard<S> {
    pub(super) fn len(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// How many entries the table has room for: what it holds in memory.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.table.lock().entries.capacity()
    }

    pub(super) fn remove(&self, hash: u64, key: &str) {
        let mut table = self.table.lock();
        if let Ok(entry) = table.entries.find_entry(hash, |entry| &*entry.key == key) {
            entry.remove();
        }
    }
}

impl<S: Default> Shard<S> {
    /// Runs `decide` on `key`'s state (a new one for a key not held), and
    /// keeps the key if it admitted a non-zero `cost`; sweeps the shard when
    /// it is due.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide<A, R>(
        &self,
        algorithm: &A,
        hasher: &foldhash::fast::RandomState,
        hash: u64,
        key: &str,
        now_us: u64,
        cost: u64,
        decide: impl FnOnce(&mut S) -> (Decision, R),
    ) -> (Decision, R, Swept)
    where
        A: Algorithm + Step<State = S>,
    {
        let mut table = self.table.lock();
        table.operations_until_sweep -= 1;
        let swept = if table.operations_until_sweep == 0 {
            table.sweep(algorithm, hasher, now_us);
            Swept::Yes
        } else {
            Swept::No
        };
        if let Some(entry) = table.entries.find_mut(hash, |entry| &*entry.key == key) {
            let (decision, extra) = decide(&mut entry.state);
            return (decision, extra, swept);
        }
        let mut state = S::default();
        let (decision, extra) = decide(&mut state);
        if decision.is_allowed() && cost > 0 {
            let entry = Entry { key: key.into(), state };
            table.entries.insert_unique(hash, entry, |entry| hasher.hash_one(&*entry.key));
        }
        (decision, extra, swept)
    }

    /// Runs `update` on `key`'s state, if the key is held.
    #[cfg(feature = "acquire")]
    pub(super) fn update(&self, hash: u64, key: &str, update: impl FnOnce(&mut S)) {
        let mut table = self.table.lock();
        if let Some(entry) = table.entries.find_mut(hash, |entry| &*entry.key == key) {
            update(&mut entry.state);
        }
    }

    pub(super) fn sweep<A>(&self, algorithm: &A, hasher: &foldhash::fast::RandomState, now_us: u64) -> usize
    where
        A: Algorithm + Step<State = S>,
    {
        self.table.lock().sweep(algorithm, hasher, now_us)
    }
}

impl<S> Table<S> {
    /// Forgets the keys that read as new at `now_us`, and shrinks the table
    /// when most of it is empty, so memory comes back after a spike.
    fn sweep<A>(&mut self, algorithm: &A, hasher: &foldhash::fast::RandomState, now_us: u64) -> usize
    where
        A: Algorithm + Step<State = S>,
    {
        let before = self.entries.len();
        self.entries.retain(|entry| algorithm.expires_at(&entry.state) > now_us);
        let after = self.entries.len();
        if self.entries.capacity() > 4 * after.max(16) {
            self.entries.shrink_to(2 * after, |entry| hasher.hash_one(&*entry.key));
        }
        self.operations_until_sweep = after.max(MIN_OPERATIONS_BETWEEN_SWEEPS);
        before - after
    }
}
