//! [`CachedStore`]: a bounded cache of recently read and written values in front of a store.
//!
//! The processor is the only writer of its state, and it reads the same few hundred thousand
//! keys over and over (a store's day totals on every record, a popular sku's day, the dedupe
//! entry of a sale its inventory movement refers to). A RocksDB get walks the memtable skip
//! list, which holds every version of a hot key since the last flush, and then the block
//! cache; answering hot keys from memory takes most of that off every message.
//!
//! The cache holds only values that exist (misses are not remembered: the keys that miss are
//! mostly new ids, read once). Scans go to the store. Every write goes through
//! [`CachedStore::write`], which updates the cache once the store has the batch, so a read
//! never sees a value the store does not hold.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use quick_cache::{unsync, Equivalent, Weighter};

use crate::{Cf, Entries, Op, StateError, Store, WriteBatch};

/// Bytes charged per entry beyond its key and value: the cache's own bookkeeping, a slot of
/// its slab, half a slot more for the ghost entries its eviction policy keeps, and its hash
/// table's index. Measured by `tests/cache_memory.rs`: 117–147 bytes per entry, as the slab
/// grows by doubling. It was 64, while an entry (its key then a `Vec` in a struct) cost 147
/// in the same measurement: the default 64 MiB budget held about 90 MiB of RSS.
const ENTRY_OVERHEAD: u64 = 144;

/// A cached key: its family's index, then the key, in one allocation (a `Vec` in a struct
/// took 32 bytes of every slab slot before the key's own bytes).
#[derive(Clone, PartialEq, Eq)]
struct CacheKey(Box<[u8]>);

impl CacheKey {
    fn new(cf: u8, key: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(key.len() + 1);
        bytes.push(cf);
        bytes.extend_from_slice(key);
        CacheKey(bytes.into_boxed_slice())
    }
}

/// Hashed as the family's index, then the key's bytes: the same sequence as [`Lookup`].
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.0[0]);
        state.write(&self.0[1..]);
    }
}

/// A borrowed [`CacheKey`], so a lookup does not copy the key.
struct Lookup<'a> {
    cf: u8,
    key: &'a [u8],
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.cf);
        state.write(self.key);
    }
}

impl Equivalent<CacheKey> for Lookup<'_> {
    fn equivalent(&self, other: &CacheKey) -> bool {
        other.0[0] == self.cf && &other.0[1..] == self.key
    }
}

/// A cached value, exactly as long as it is.
type Value = Box<[u8]>;

#[derive(Clone)]
struct ByBytes;

impl Weighter<CacheKey, Value> for ByBytes {
    fn weight(&self, key: &CacheKey, value: &Value) -> u64 {
        (key.0.len() + value.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// The hash of the shards and of each shard's table: keys are hashed twice per get and per
/// written value, and std's SipHash was 3 % of a commit's cache update. foldhash is seeded
/// per instance like std's, so keys chosen by the input do not pick the buckets.
type KeyHasher = foldhash::fast::RandomState;

struct Shard {
    values: unsync::Cache<CacheKey, Value, ByBytes, KeyHasher>,
    /// Counts writes to this shard. A reader that fetched a value from the store before a
    /// write landed must not put it into the cache after that write updated it.
    generation: u64,
}

/// Each shard holds at least this much; a small cache has fewer shards.
const SHARD_BYTES_MIN: usize = 1 << 20;
const SHARDS_MAX: usize = 64;

/// A store with a bounded cache of values in front of it. Families that are only scanned
/// (the outbox, timers) are not cached.
///
/// The cache is split into shards by key hash, each with its own lock. With one cache behind
/// one lock, a commit's update of a few hundred values now and then held that lock for
/// 50–170 ms (measured; most took well under 1 ms, and the pause is probably the cache's hash
/// table being rebuilt), and every read waited (e2e (c): publish→commit p99 150 ms at half
/// load). A shard holds a sixty-fourth of the entries, and the commit thread takes one
/// shard's lock per value.
pub struct CachedStore<S> {
    inner: S,
    shards: Vec<Mutex<Shard>>,
    hasher: KeyHasher,
}

fn is_cached(cf: Cf) -> bool {
    matches!(cf, Cf::Aggregates | Cf::Dedupe | Cf::Voids | Cf::Meta)
}

impl<S: Store> CachedStore<S> {
    /// Caches up to about `capacity_bytes` of keys and values; 0 turns the cache off.
    pub fn new(inner: S, capacity_bytes: usize) -> Self {
        let count = if capacity_bytes == 0 { 0 } else { (capacity_bytes / SHARD_BYTES_MIN).clamp(1, SHARDS_MAX) };
        let shard_bytes = capacity_bytes / count.max(1);
        let shards = (0..count)
            .map(|_| {
                let estimated_items = (shard_bytes / 512).max(16);
                Mutex::new(Shard {
                    values: unsync::Cache::with(
                        estimated_items,
                        shard_bytes as u64,
                        ByBytes,
                        KeyHasher::default(),
                        Default::default(),
                    ),
                    generation: 0,
                })
            })
            .collect();
        Self { inner, shards, hasher: Default::default() }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Bytes the cache holds now (keys, values and per-entry overhead).
    pub fn cached_bytes(&self) -> u64 {
        self.shards.iter().map(|shard| lock(shard).values.weight()).sum()
    }

    /// The shard of a key of a cached family; `None` when the cache is off.
    fn shard(&self, lookup: &Lookup<'_>) -> Option<&Mutex<Shard>> {
        if self.shards.is_empty() {
            return None;
        }
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, lookup);
        Some(&self.shards[(hash % self.shards.len() as u64) as usize])
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // The cache holds no invariant a panicking reader could break halfway: use it as it is.
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S: Store> Store for CachedStore<S> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let lookup = Lookup { cf: cf.index() as u8, key };
        // An uncached family, or the cache off: straight to the store, without hashing the key.
        let Some(shard) = is_cached(cf).then(|| self.shard(&lookup)).flatten() else {
            return self.inner.get(cf, key);
        };
        let generation = {
            let guard = lock(shard);
            if let Some(value) = guard.values.get(&lookup) {
                return Ok(Some(value.to_vec()));
            }
            guard.generation
        };
        let value = self.inner.get(cf, key)?;
        if let Some(value) = &value {
            let mut guard = lock(shard);
            if guard.generation == generation {
                guard.values.insert(CacheKey::new(lookup.cf, key), Value::from(value.as_slice()));
            }
        }
        Ok(value)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.inner.scan_from(cf, start, limit)
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.inner.scan_prefix_from(cf, prefix, start, limit)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        if self.shards.is_empty() {
            return self.inner.write(batch);
        }
        let result = self.inner.write(batch);
        for op in batch.ops().filter(|op| is_cached(op.cf())) {
            let lookup = Lookup { cf: op.cf().index() as u8, key: op.key() };
            let Some(shard) = self.shard(&lookup) else { break };
            let mut guard = lock(shard);
            guard.generation += 1;
            match (op, &result) {
                // An empty value is a marker (an index entry, a reference seen): markers are
                // found by scans, which read the store, or read at most once, yet they were a
                // third (30 %) of what commits put into the cache.
                (Op::Put { key, value, .. }, Ok(())) if !value.is_empty() => {
                    guard.values.insert(CacheKey::new(lookup.cf, key), Value::from(value.as_slice()));
                }
                // A failed write may still have reached the disk (an fsync error after the
                // write): forget the key so the next read asks the store. A marker not cached
                // must not leave an older value of its key behind either.
                _ => {
                    guard.values.remove(&lookup);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailingStore, MemStore};
    use std::sync::Arc;

    fn put(cf: Cf, key: &[u8], value: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(cf, key, value);
        batch
    }

    #[test]
    fn reads_what_was_written_last_through_it() {
        // Proves a cached key reads its newest value after a put and reads as missing after a
        // delete, and that the store behind it holds the same.
        let inner = Arc::new(MemStore::new());
        let store = CachedStore::new(Arc::clone(&inner), 1 << 20);
        store.write(&put(Cf::Aggregates, b"k", b"1")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"1".to_vec()));
        store.write(&put(Cf::Aggregates, b"k", b"2")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"2".to_vec()));
        let mut delete = WriteBatch::new();
        delete.delete(Cf::Aggregates, b"k".as_slice());
        store.write(&delete).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), None);
        assert_eq!(inner.get(Cf::Aggregates, b"k").unwrap(), None);
    }

    #[test]
    fn answers_hits_from_memory() {
        // Proves a value read once is answered from the cache afterwards: a value planted in
        // the store behind the cache's back is not seen, which is why every write must go
        // through the cache.
        let inner = Arc::new(MemStore::new());
        inner.write(&put(Cf::Dedupe, b"id", b"old")).unwrap();
        let store = CachedStore::new(Arc::clone(&inner), 1 << 20);
        assert_eq!(store.get(Cf::Dedupe, b"id").unwrap(), Some(b"old".to_vec()));
        inner.write(&put(Cf::Dedupe, b"id", b"behind")).unwrap();
        assert_eq!(store.get(Cf::Dedupe, b"id").unwrap(), Some(b"old".to_vec()));
        assert!(store.cached_bytes() > 0);
    }

    #[test]
    fn families_are_separate_and_scans_see_the_store() {
        // Proves the same key in two families is cached apart, and scans read the store.
        let store = CachedStore::new(MemStore::new(), 1 << 20);
        store.write(&put(Cf::Aggregates, b"k", b"agg")).unwrap();
        store.write(&put(Cf::Meta, b"k", b"meta")).unwrap();
        store.write(&put(Cf::Outbox, b"k", b"out")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"agg".to_vec()));
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), Some(b"meta".to_vec()));
        assert_eq!(store.get(Cf::Outbox, b"k").unwrap(), Some(b"out".to_vec()));
        assert_eq!(store.scan_prefix(Cf::Outbox, b"", 10).unwrap(), vec![(b"k".to_vec(), b"out".to_vec())]);
    }

    #[test]
    fn a_failed_write_leaves_reads_on_the_store() {
        // Proves a write the store refused changes nothing a reader sees: the key is read from
        // the store again, which still holds the old value.
        let store = CachedStore::new(FailingStore::new(MemStore::new()).fail_write_number(2), 1 << 20);
        store.write(&put(Cf::Aggregates, b"k", b"1")).unwrap();
        assert!(store.write(&put(Cf::Aggregates, b"k", b"2")).is_err());
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn stays_within_its_budget() {
        // Proves the cache evicts to stay near its byte budget while every value stays readable.
        let store = CachedStore::new(MemStore::new(), 64 << 10);
        for i in 0u32..2_000 {
            store.write(&put(Cf::Aggregates, &i.to_be_bytes(), &[7; 200])).unwrap();
        }
        assert!(store.cached_bytes() <= 64 << 10, "{} bytes cached", store.cached_bytes());
        for i in 0u32..2_000 {
            assert_eq!(store.get(Cf::Aggregates, &i.to_be_bytes()).unwrap(), Some(vec![7; 200]));
        }
    }

    #[test]
    fn an_empty_value_replaces_a_cached_one() {
        // Proves that an empty value, which commits do not cache, still hides the key's older
        // cached value: the next read answers it from the store.
        let store = CachedStore::new(MemStore::new(), 1 << 20);
        store.write(&put(Cf::Aggregates, b"k", b"1")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"1".to_vec()));
        store.write(&put(Cf::Aggregates, b"k", b"")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(Vec::new()));
    }

    #[test]
    fn zero_capacity_passes_through() {
        // Proves a cache of 0 bytes holds nothing and reads every value from the store.
        let inner = Arc::new(MemStore::new());
        let store = CachedStore::new(Arc::clone(&inner), 0);
        store.write(&put(Cf::Aggregates, b"k", b"1")).unwrap();
        inner.write(&put(Cf::Aggregates, b"k", b"2")).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.cached_bytes(), 0);
    }

    #[test]
    fn a_sharded_cache_reads_back_every_write_within_its_budget() {
        // Proves that a cache split into shards answers every key from the shard it was
        // written to, newest value first, and that the shards together keep to the budget.
        let budget = 4 * SHARD_BYTES_MIN;
        let store = CachedStore::new(MemStore::new(), budget);
        assert_eq!(store.shards.len(), 4);
        for round in 0u8..2 {
            let mut batch = WriteBatch::new();
            for i in 0u32..20_000 {
                batch.put(Cf::Aggregates, i.to_be_bytes().as_slice(), [round; 300].as_slice());
            }
            store.write(&batch).unwrap();
        }
        assert!(store.cached_bytes() <= budget as u64, "{} bytes cached", store.cached_bytes());
        assert!(store.cached_bytes() > 0);
        for i in 0u32..20_000 {
            assert_eq!(store.get(Cf::Aggregates, &i.to_be_bytes()).unwrap(), Some(vec![1; 300]));
        }
    }
}
