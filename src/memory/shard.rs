//! One shard of the in-memory store: a locked hash table that sweeps itself.
//!
//! The table is a bucketed cuckoo hash table. A key may live in either of two
//! buckets of four slots, both named by its hash, so a lookup reads at most
//! two buckets and nothing else: a slot holds the key itself (up to 15 bytes)
//! beside its state, and there are no control bytes elsewhere to read first.
//! A longer key lives in the shard's byte arena and its slot holds where, and
//! 56 bits of its hash to compare before the bytes.
//!
//! Two choices of four slots stay cheap to insert into up to 97% full, so the
//! table can run between 75% and 90% full and grow a fifth at a time, where a
//! power-of-two table runs between 44% and 88%: the memory a key costs is its
//! slot divided by how full the table is. A key that finds no place (keys
//! sharing a whole hash, or very bad luck) goes to a small stash searched
//! after the buckets, so the table never grows for want of a place.

use std::fmt;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use crate::Decision;
use crate::algorithm::{Algorithm, sealed::Step};

/// Sweeps no more often than this many operations, so that a shard with few
/// keys does not sweep on every call.
pub(super) const MIN_OPERATIONS_BETWEEN_SWEEPS: usize = 1024;

/// Slots per bucket: with two buckets per key, four slots each let a table
/// fill to about 97% before inserting needs more than a few moves.
const SLOTS: usize = 4;

/// An insert that would fill more of the slots than this grows the table.
const MOST_FULL: Share = Share(9, 10);

/// How full a table is rebuilt: growing from [`MOST_FULL`] adds a fifth.
const FULL_AFTER_REBUILD: Share = Share(3, 4);

/// The fewest buckets a table that holds anything has, so that a small table
/// does not rebuild on every few inserts.
const FEWEST_BUCKETS: usize = 8;

/// How many keys an insert may move to make room before the table grows.
const MOST_MOVES: usize = 64;

/// A share `numerator / denominator`.
#[derive(Debug, Clone, Copy)]
struct Share(usize, usize);

/// The hash a key is stored under; also picks its shard.
#[inline]
pub(super) fn hash_key(hasher: &impl BuildHasher, key: &[u8]) -> u64 {
    hasher.hash_one(key)
}

/// A lock around a table of keys. Aligned to 128 bytes so that two shards
/// never share a cache line (or the pair the prefetcher fetches together).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Shard<S> {
    table: Mutex<Table<S>>,
}

/// Whether a decision also swept its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swept {
    Yes,
    No,
}

/// Why a shard is swept, which says how much memory the sweep gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Occasion {
    /// The shard's own sweep, due after as many operations as it held keys.
    /// It shrinks the table only when it is far larger than both the keys
    /// left and the keys created since the last such sweep, so that it does
    /// not shrink a table that traffic will fill again before the next.
    Due,
    /// On behalf of another shard's sweep, so that shards nobody uses any
    /// more are reclaimed too: it shrinks a table nobody has used since its
    /// last sweep, and only removes the keys of any other.
    Neighbour,
    /// An explicit cleanup: down to what the keys left need.
    Cleanup,
}

impl<S> Shard<S> {
    pub(super) fn len(&self) -> usize {
        self.table.lock().len
    }

    /// How many keys the table has room for: what it holds in memory.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.table.lock().slots()
    }
}

impl<S: Default> Shard<S> {
    pub(super) fn remove(&self, hash: u64, key: &str) {
        let mut table = self.table.lock();
        if let Some(at) = table.find(hash, key.as_bytes()) {
            table.clear(at);
        }
    }

    /// Runs `decide` on `key`'s state (a new one for a key not held), and
    /// keeps the key if it admitted a non-zero `cost`; sweeps the shard with
    /// `algorithm` when a sweep is due.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide<A, R>(
        &self,
        algorithm: &A,
        hasher: &impl BuildHasher,
        hash: u64,
        key: &str,
        now_us: u64,
        cost: u64,
        decide: impl FnOnce(&mut S) -> (Decision, R),
    ) -> (Decision, R, Swept)
    where
        A: Step<State = S>,
    {
        let key = key.as_bytes();
        let mut table = self.table.lock();
        table.operations_until_sweep -= 1;
        let swept = if table.operations_until_sweep == 0 {
            table.sweep(algorithm, hasher, now_us, Occasion::Due);
            Swept::Yes
        } else {
            Swept::No
        };
        // One call of `decide`, so that the compiler writes the step in
        // place: called from two places, a bucket's step was made a function
        // of its own, and a hot key's check took half as long again.
        let found = table.find(hash, key);
        let mut new = S::default();
        let state = match found {
            Some(at) => table.state_mut(at),
            None => &mut new,
        };
        let (decision, extra) = decide(state);
        if found.is_none() && decision.is_allowed() && cost > 0 {
            table.insert(hasher, hash, key, new);
        }
        (decision, extra, swept)
    }

    /// Runs `update` on `key`'s state, if the key is held.
    #[cfg(feature = "acquire")]
    pub(super) fn update(&self, hash: u64, key: &str, update: impl FnOnce(&mut S)) {
        let mut table = self.table.lock();
        if let Some(at) = table.find(hash, key.as_bytes()) {
            update(table.state_mut(at));
        }
    }

    pub(super) fn sweep<A>(&self, algorithm: &A, hasher: &impl BuildHasher, now_us: u64, occasion: Occasion) -> usize
    where
        A: Algorithm + Step<State = S>,
    {
        self.table.lock().sweep(algorithm, hasher, now_us, occasion)
    }
}

/// A key as its slot holds it: two words, compared as one.
///
/// The top byte of the second word says what the rest is: a key of up to 15
/// bytes held inline (the byte is its length, the key fills the bytes before
/// it, zero-padded), a longer key held in the arena (the first word is its
/// offset there, the second the top 56 bits of its hash), or no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredKey([u64; 2]);

/// The longest key held inline: 15 bytes and its length fill the two words.
const LONGEST_INLINE: usize = 15;
const TAG_LONG: u8 = 0x80;
const TAG_EMPTY: u8 = 0xff;

impl StoredKey {
    const EMPTY: Self = Self([0, (TAG_EMPTY as u64) << 56]);

    #[inline]
    fn tag(self) -> u8 {
        (self.0[1] >> 56) as u8
    }

    fn is_empty(self) -> bool {
        self.tag() == TAG_EMPTY
    }

    /// A key of at most [`LONGEST_INLINE`] bytes, held inline.
    ///
    /// Built from loads of the key, overlapping where it is short, rather
    /// than by copying it into a zeroed buffer and reading that back: the
    /// words read back would span several stores, which the CPU cannot
    /// forward, and that stall was a sixth of a check on a hot key.
    #[inline]
    fn inline(key: &[u8]) -> Self {
        let len = key.len();
        let (low, high) = if len >= 8 {
            let first = u64::from_le_bytes(key[..8].try_into().unwrap());
            // The last eight bytes, shifted down past those `first` holds.
            let last = u64::from_le_bytes(key[len - 8..].try_into().unwrap());
            (first, last.checked_shr(8 * (16 - len) as u32).unwrap_or(0))
        } else if len >= 4 {
            let first = u32::from_le_bytes(key[..4].try_into().unwrap());
            let last = u32::from_le_bytes(key[len - 4..].try_into().unwrap());
            (u64::from(first) | u64::from(last) << (8 * (len - 4)), 0)
        } else if len > 0 {
            // The first, middle and last bytes: all of them, some twice.
            let byte = |at: usize| u64::from(key[at]) << (8 * at);
            (byte(0) | byte(len / 2) | byte(len - 1), 0)
        } else {
            (0, 0)
        };
        Self([low, high | (len as u64) << 56])
    }

    /// The second word of a long key with this hash: what a lookup compares
    /// before reading the arena.
    #[inline]
    fn long_tag_word(hash: u64) -> u64 {
        (hash >> 8) | (u64::from(TAG_LONG) << 56)
    }

    /// The bytes of an inline key.
    fn inline_bytes(self) -> ([u8; 16], usize) {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.0[0].to_le_bytes());
        bytes[8..].copy_from_slice(&self.0[1].to_le_bytes());
        (bytes, usize::from(self.tag()))
    }
}

#[derive(Debug)]
struct Slot<S> {
    key: StoredKey,
    state: S,
}

impl<S: Default> Slot<S> {
    fn empty() -> Self {
        Self { key: StoredKey::EMPTY, state: S::default() }
    }
}

/// Aligned to a cache line, so that a bucket of 16-byte states is two whole
/// lines and a lookup reads at most four.
#[derive(Debug)]
#[repr(align(64))]
struct Bucket<S> {
    slots: [Slot<S>; SLOTS],
}

impl<S: Default> Bucket<S> {
    fn empty() -> Self {
        Self { slots: std::array::from_fn(|_| Slot::empty()) }
    }
}

impl<S> Bucket<S> {
    #[inline]
    fn vacancy(&self) -> Option<usize> {
        self.slots.iter().position(|slot| slot.key.is_empty())
    }
}

/// Keys longer than [`LONGEST_INLINE`], each stored as its length (LEB128:
/// one byte below 128) and its bytes, one after another, so that remembering
/// one allocates nothing most of the time. Forgotten keys stay until a sweep
/// compacts.
#[derive(Debug, Default)]
struct Arena {
    bytes: Vec<u8>,
    /// Bytes of forgotten keys.
    dead: usize,
}

impl Arena {
    fn push(&mut self, key: &[u8]) -> u64 {
        let offset = self.bytes.len();
        // Grown by a quarter rather than doubled, since its slack is memory
        // every long key pays for.
        let needed = 10 + key.len();
        if self.bytes.capacity() - offset < needed {
            self.bytes.reserve_exact(needed.max(self.bytes.capacity() / 4));
        }
        let mut length = key.len() as u64;
        while length >= 0x80 {
            self.bytes.push(length as u8 | 0x80);
            length >>= 7;
        }
        self.bytes.push(length as u8);
        self.bytes.extend_from_slice(key);
        offset as u64
    }

    /// The key at `offset`, and the bytes it takes, its length's included.
    #[inline]
    fn entry(&self, offset: u64) -> (&[u8], usize) {
        let mut at = offset as usize;
        let (mut length, mut shift) = (0_usize, 0);
        loop {
            let byte = self.bytes[at];
            at += 1;
            length |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        (&self.bytes[at..at + length], at + length - offset as usize)
    }

    #[inline]
    fn get(&self, offset: u64) -> &[u8] {
        self.entry(offset).0
    }

    fn forget(&mut self, offset: u64) {
        self.dead += self.entry(offset).1;
    }

    fn live(&self) -> usize {
        self.bytes.len() - self.dead
    }
}

/// Where a key is.
#[derive(Debug, Clone, Copy)]
enum At {
    /// In a bucket's slot.
    Slot(usize, usize),
    /// In the stash, at this index.
    Stash(usize),
}

struct Table<S> {
    buckets: Vec<Bucket<S>>,
    /// The keys that found no place in their two buckets: almost always
    /// none, since the table grows long before it is full. Keys that share
    /// a whole hash beyond what two buckets hold end up here, so that they
    /// cost a longer search, as in any hash table, and never a larger table.
    stash: Vec<Slot<S>>,
    len: usize,
    arena: Arena,
    // Counts down to the next sweep; reset to the table's size by each sweep,
    // so sweeping costs O(1) per operation amortized.
    operations_until_sweep: usize,
    /// `operations_until_sweep` right after the last sweep of any kind: while
    /// it has not moved, nobody has used the shard since.
    operations_at_last_sweep: usize,
    /// Keys created since the last sweep that was [`Occasion::Due`].
    inserted_since_sweep: usize,
    /// Picks which key an insert moves (xorshift; never zero).
    random: u64,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            stash: Vec::new(),
            len: 0,
            arena: Arena::default(),
            operations_until_sweep: MIN_OPERATIONS_BETWEEN_SWEEPS,
            operations_at_last_sweep: MIN_OPERATIONS_BETWEEN_SWEEPS,
            inserted_since_sweep: 0,
            random: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

// Not derived: the slots of a large table are not worth printing.
impl<S> fmt::Debug for Table<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("slots", &self.slots())
            .field("stashed", &self.stash.len())
            .field("arena_bytes", &self.arena.bytes.len())
            .finish_non_exhaustive()
    }
}

/// The two buckets of a hash among `buckets`: each a multiply and a shift
/// (Lemire's reduction), so that any number of buckets works. The first
/// takes the hash's top bits; the second the top bits of the hash times an
/// odd constant, which depend on all of its bits.
#[inline]
fn bucket_pair(hash: u64, buckets: usize) -> [usize; 2] {
    let scale = |bits: u64| ((u128::from(bits) * buckets as u128) >> 64) as usize;
    [scale(hash), scale(hash.wrapping_mul(0x9e37_79b9_7f4a_7c15))]
}

/// Buckets for `keys` at [`FULL_AFTER_REBUILD`]; none for no key.
fn buckets_for(keys: usize) -> usize {
    if keys == 0 {
        return 0;
    }
    let Share(numerator, denominator) = FULL_AFTER_REBUILD;
    (keys * denominator).div_ceil(numerator * SLOTS).max(FEWEST_BUCKETS)
}

impl<S> Table<S> {
    fn slots(&self) -> usize {
        self.buckets.len() * SLOTS
    }

    // Always in place: a call costs a hot key's check about 20 instructions,
    // and the compiler did not inline it into the buckets' larger checks.
    #[inline(always)]
    fn find(&self, hash: u64, key: &[u8]) -> Option<At> {
        if key.len() <= LONGEST_INLINE {
            let wanted = StoredKey::inline(key);
            self.find_by(hash, |stored| stored == wanted)
        } else {
            let tag_word = StoredKey::long_tag_word(hash);
            self.find_by(hash, |stored| stored.0[1] == tag_word && self.arena.get(stored.0[0]) == key)
        }
    }

    #[inline]
    fn find_by(&self, hash: u64, is_key: impl Fn(StoredKey) -> bool) -> Option<At> {
        if !self.buckets.is_empty() {
            for bucket in bucket_pair(hash, self.buckets.len()) {
                for (slot, stored) in self.buckets[bucket].slots.iter().enumerate() {
                    if is_key(stored.key) {
                        return Some(At::Slot(bucket, slot));
                    }
                }
            }
        }
        if self.stash.is_empty() {
            return None;
        }
        self.stash.iter().position(|stashed| is_key(stashed.key)).map(At::Stash)
    }

    #[inline]
    fn state_mut(&mut self, at: At) -> &mut S {
        match at {
            At::Slot(bucket, slot) => &mut self.buckets[bucket].slots[slot].state,
            At::Stash(index) => &mut self.stash[index].state,
        }
    }

    fn hash_of(&self, hasher: &impl BuildHasher, key: StoredKey) -> u64 {
        if key.tag() == TAG_LONG {
            hash_key(hasher, self.arena.get(key.0[0]))
        } else {
            let (bytes, len) = key.inline_bytes();
            hash_key(hasher, &bytes[..len])
        }
    }

    fn next_random(&mut self) -> usize {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random as usize
    }
}

/// Every slot that holds a key, the stash's included.
fn held<'a, S>(buckets: &'a mut [Bucket<S>], stash: &'a mut [Slot<S>]) -> impl Iterator<Item = &'a mut Slot<S>> {
    let slots = buckets.iter_mut().flat_map(|bucket| &mut bucket.slots);
    slots.chain(stash).filter(|slot| !slot.key.is_empty())
}

impl<S: Default> Table<S> {
    /// Remembers a key that [`find`](Self::find) did not find.
    fn insert(&mut self, hasher: &impl BuildHasher, hash: u64, key: &[u8], state: S) {
        let Share(numerator, denominator) = MOST_FULL;
        if (self.len + 1) * denominator > self.slots() * numerator {
            let buckets = self.buckets.len();
            self.rebuild(hasher, buckets_for(self.len + 1).max(buckets + buckets / 5 + 1));
        }
        let key = if key.len() <= LONGEST_INLINE {
            StoredKey::inline(key)
        } else {
            StoredKey([self.arena.push(key), StoredKey::long_tag_word(hash)])
        };
        self.len += 1;
        self.inserted_since_sweep += 1;
        if let Err(homeless) = self.place(hasher, hash, Slot { key, state }) {
            self.stash.push(homeless);
        }
    }

    /// Puts `slot` in one of its buckets, moving other keys to their other
    /// bucket to make room; or gives back the key left without a place.
    fn place(&mut self, hasher: &impl BuildHasher, hash: u64, slot: Slot<S>) -> Result<(), Slot<S>> {
        let buckets = self.buckets.len();
        if buckets == 0 {
            return Err(slot);
        }
        let pair = bucket_pair(hash, buckets);
        for bucket in pair {
            if let Some(vacancy) = self.buckets[bucket].vacancy() {
                self.buckets[bucket].slots[vacancy] = slot;
                return Ok(());
            }
        }
        // Both full: a random walk, each step moving one key of the current
        // bucket to its other bucket.
        let mut homeless = slot;
        let mut bucket = pair[self.next_random() & 1];
        for _ in 0..MOST_MOVES {
            let victim = self.next_random() % SLOTS;
            std::mem::swap(&mut homeless, &mut self.buckets[bucket].slots[victim]);
            let [first, second] = bucket_pair(self.hash_of(hasher, homeless.key), buckets);
            bucket = if first == bucket { second } else { first };
            if let Some(vacancy) = self.buckets[bucket].vacancy() {
                self.buckets[bucket].slots[vacancy] = homeless;
                return Ok(());
            }
        }
        Err(homeless)
    }

    /// Moves every key into a table of `buckets` buckets (at least one per
    /// four keys), stashing those that find no place.
    fn rebuild(&mut self, hasher: &impl BuildHasher, buckets: usize) {
        let old = std::mem::replace(&mut self.buckets, (0..buckets).map(|_| Bucket::empty()).collect());
        let stashed = std::mem::take(&mut self.stash);
        let keys = old.into_iter().flat_map(|bucket| bucket.slots).chain(stashed);
        for slot in keys.filter(|slot| !slot.key.is_empty()) {
            let hash = self.hash_of(hasher, slot.key);
            if let Err(homeless) = self.place(hasher, hash, slot) {
                self.stash.push(homeless);
            }
        }
    }

    fn clear(&mut self, at: At) {
        let slot = match at {
            At::Slot(bucket, slot) => std::mem::replace(&mut self.buckets[bucket].slots[slot], Slot::empty()),
            At::Stash(index) => self.stash.swap_remove(index),
        };
        if slot.key.tag() == TAG_LONG {
            self.arena.forget(slot.key.0[0]);
        }
        self.len -= 1;
    }

    /// Forgets the keys that read as new at `now_us`, and gives memory back
    /// as the `occasion` allows; returns how many keys it forgot.
    fn sweep<A>(&mut self, algorithm: &A, hasher: &impl BuildHasher, now_us: u64, occasion: Occasion) -> usize
    where
        A: Step<State = S>,
    {
        let before = self.len;
        let Self { buckets, stash, arena, len, .. } = self;
        for slot in held(buckets, stash) {
            if algorithm.expires_at(&slot.state) <= now_us {
                if slot.key.tag() == TAG_LONG {
                    arena.forget(slot.key.0[0]);
                }
                *slot = Slot::empty();
                *len -= 1;
            }
        }
        self.stash.retain(|slot| !slot.key.is_empty());
        let untouched = self.operations_until_sweep == self.operations_at_last_sweep;
        // Rebuilt for `keep` keys when the table is over `slack` times larger.
        let shrink = match occasion {
            Occasion::Due => Some((self.len.max(self.inserted_since_sweep), 4)),
            Occasion::Neighbour if !untouched => None,
            Occasion::Neighbour | Occasion::Cleanup => Some((self.len, 2)),
        };
        match shrink {
            Some((keep, slack)) if self.buckets.len() > slack * buckets_for(keep) => {
                self.rebuild(hasher, buckets_for(keep));
            }
            // Keys forgotten may have left room for the stashed ones.
            _ => {
                for slot in std::mem::take(&mut self.stash) {
                    let hash = self.hash_of(hasher, slot.key);
                    if let Err(homeless) = self.place(hasher, hash, slot) {
                        self.stash.push(homeless);
                    }
                }
            }
        }
        if self.arena.dead > self.arena.live() {
            self.compact_arena();
        }
        if occasion == Occasion::Due {
            self.inserted_since_sweep = 0;
            self.operations_until_sweep = self.len.max(MIN_OPERATIONS_BETWEEN_SWEEPS);
        }
        self.operations_at_last_sweep = self.operations_until_sweep;
        before - self.len
    }

    /// Copies the long keys still held into a new arena of just their size.
    fn compact_arena(&mut self) {
        let mut compacted = Arena { bytes: Vec::with_capacity(self.arena.live()), dead: 0 };
        for slot in held(&mut self.buckets, &mut self.stash) {
            if slot.key.tag() == TAG_LONG {
                slot.key.0[0] = compacted.push(self.arena.get(slot.key.0[0]));
            }
        }
        self.arena = compacted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rate, TokenBucket};

    #[test]
    fn an_inline_key_keeps_its_bytes_and_length_so_a_shorter_or_padded_key_differs() {
        for key in [&b""[..], b"\0", b"a", b"a\0", b"user:000042", b"fifteen bytes!!"] {
            let stored = StoredKey::inline(key);
            let (bytes, len) = stored.inline_bytes();
            assert_eq!(&bytes[..len], key);
            assert!(!stored.is_empty());
            assert_ne!(stored.tag(), TAG_LONG);
        }
        // Each length against the plain construction: the bytes, zero-padded,
        // and the length in the last byte.
        let source: Vec<u8> = (1..=15).collect();
        for len in 0..=LONGEST_INLINE {
            let mut bytes = [0; 16];
            bytes[..len].copy_from_slice(&source[..len]);
            bytes[15] = len as u8;
            let words = [
                u64::from_le_bytes(bytes[..8].try_into().unwrap()),
                u64::from_le_bytes(bytes[8..].try_into().unwrap()),
            ];
            assert_eq!(StoredKey::inline(&source[..len]), StoredKey(words), "{len} bytes");
        }
        assert_ne!(StoredKey::inline(b""), StoredKey::inline(b"\0"));
        assert_ne!(StoredKey::inline(b"a"), StoredKey::inline(b"a\0"));
    }

    #[test]
    fn a_long_key_reads_back_from_the_arena_and_forgetting_it_counts_its_bytes() {
        let mut arena = Arena::default();
        // Lengths on either side of one, two and three length bytes.
        let lengths = [16, 127, 128, 16_383, 16_384, 3_000_000];
        let offsets: Vec<u64> = lengths.iter().map(|&length| arena.push(&vec![length as u8; length])).collect();
        for (&offset, &length) in offsets.iter().zip(&lengths) {
            assert_eq!(arena.get(offset), vec![length as u8; length]);
        }
        let length_bytes = [1, 1, 2, 2, 3, 4];
        let total: usize = lengths.iter().zip(length_bytes).map(|(length, bytes)| length + bytes).sum();
        assert_eq!(arena.live(), total);
        arena.forget(offsets[1]);
        arena.forget(offsets[4]);
        assert_eq!(arena.live(), total - (127 + 1) - (16_384 + 3));
    }

    #[test]
    fn keys_with_the_same_hash_are_still_different_keys() {
        let hasher = foldhash::fast::RandomState::default();
        let long = "l".repeat(100);
        for (first, second) in [("a", "b"), ("a", "a\0"), (long.as_str(), &*format!("{long}!")), ("", "\0")] {
            let mut table = Table::<u64>::default();
            let hash = 42;
            table.insert(&hasher, hash, first.as_bytes(), 1);
            assert!(table.find(hash, second.as_bytes()).is_none(), "{second:?} found as {first:?}");
            table.insert(&hasher, hash, second.as_bytes(), 2);
            for (key, state) in [(first, 1), (second, 2)] {
                let at = table.find(hash, key.as_bytes()).unwrap();
                assert_eq!(*table.state_mut(at), state);
            }
        }
    }

    /// Hashes every key to 42.
    struct OneHash;

    impl BuildHasher for OneHash {
        type Hasher = FortyTwo;

        fn build_hasher(&self) -> FortyTwo {
            FortyTwo
        }
    }

    struct FortyTwo;

    impl std::hash::Hasher for FortyTwo {
        fn finish(&self) -> u64 {
            42
        }

        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn keys_that_share_a_whole_hash_cost_a_longer_search_not_a_larger_table() {
        let algorithm = TokenBucket::new(1, Rate::per_second(1)).unwrap();
        let shard = Shard::<<TokenBucket as Step>::State>::default();
        let keys: Vec<String> = (0..300).map(|n| if n % 3 == 0 { format!("{n:>20}") } else { n.to_string() }).collect();
        let now_us = 1_700_000_000_000_000;
        for round in 0..2 {
            for key in &keys {
                let hash = hash_key(&OneHash, key.as_bytes());
                let (decision, (), _) = shard
                    .decide(&algorithm, &OneHash, hash, key, now_us, 1, |state| (algorithm.step(state, now_us, 1), ()));
                assert_eq!(decision.is_allowed(), round == 0, "{key:?} in round {round}");
            }
        }
        assert_eq!(shard.len(), keys.len());
        assert!(shard.capacity() <= 2 * keys.len(), "{} slots for {} keys", shard.capacity(), keys.len());
        // Forgetting some, wherever they are, leaves the others as they were.
        for key in keys.iter().step_by(7) {
            shard.remove(hash_key(&OneHash, key.as_bytes()), key);
        }
        for (n, key) in keys.iter().enumerate() {
            let (decision, (), _) =
                shard.decide(&algorithm, &OneHash, 42, key, now_us, 1, |state| (algorithm.step(state, now_us, 1), ()));
            assert_eq!(decision.is_allowed(), n % 7 == 0, "{key:?}");
        }
        assert_eq!(shard.len(), keys.len());
        assert_eq!(shard.sweep(&algorithm, &OneHash, now_us + 1_000_000, Occasion::Cleanup), keys.len());
        assert_eq!((shard.len(), shard.capacity()), (0, 0));
    }

    #[test]
    fn rebuilt_tables_run_between_three_quarters_and_nine_tenths_full() {
        let mut table = Table::<u64>::default();
        let hasher = foldhash::fast::RandomState::default();
        let mut loads = Vec::new();
        for n in 0..20_000_u32 {
            let key = n.to_string();
            let hash = hash_key(&hasher, key.as_bytes());
            assert!(table.find(hash, key.as_bytes()).is_none());
            table.insert(&hasher, hash, key.as_bytes(), u64::from(n));
            if n >= 1_000 {
                loads.push(table.len as f64 / table.slots() as f64);
            }
        }
        for n in 0..20_000_u32 {
            let key = n.to_string();
            let at = table.find(hash_key(&hasher, key.as_bytes()), key.as_bytes()).expect("every key is found");
            assert_eq!(*table.state_mut(at), u64::from(n));
        }
        let (least, most) =
            loads.iter().fold((1.0_f64, 0.0_f64), |(least, most), &load| (least.min(load), most.max(load)));
        assert!(least >= 0.74 && most <= 0.9, "loads from {least} to {most}");
    }
}
