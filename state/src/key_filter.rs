//! [`KeyFilter`]: an in-memory filter of every key a store holds in its point-read families,
//! which answers "absent" for most keys that are, without a read.
//!
//! About half of all gets miss: a new record's dedupe id, a sale's pending void, the movement
//! that names a sale's lines, a new sku-day (bench/README.md, "Eleventh round"). Each such get
//! still took RocksDB's full path (its memtables, then every level's file bloom filter), about
//! 2 500 instructions with everything in memory and more once the state spans many files.
//!
//! The filter is a blocked Bloom filter (one 64-byte block per key, [`PROBES`] bits in it) at
//! [`BITS_PER_KEY`] bits per key: no false negatives, about 1 % false positives, which then take
//! the read they always took. It must hold every key of its families, so it is filled in two
//! ways, and answers only once both have covered the whole store:
//!
//! - every write puts its keys into it before the store applies the write;
//! - a scan of the families (`RocksStore`'s background thread) puts in every key that was
//!   there when it began.
//!
//! A filling filter exists before its scan begins, and no write is in flight while one is
//! made (the writes hold [`KeyFilter::writing`]): a key is either in the scan's view or was
//! written after the filter existed. A deleted key stays in the filter until it is rebuilt,
//! which costs only the read a false positive takes. When the keys put into the filter exceed
//! its capacity, it is rebuilt for twice the keys the store holds; the full one answers until
//! the new one is complete.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::{Op, WriteBatch};
use crate::cf::Cf;

/// The families whose keys the filter holds: those that are read by key and where keys are
/// often absent. The others are scanned (outbox, timers) or tiny (meta).
pub const FILTERED: [Cf; 3] = [Cf::Aggregates, Cf::Dedupe, Cf::Voids];

/// Bits per key at the filter's capacity, and bits set per key: about 1 % false positives.
const BITS_PER_KEY: u64 = 10;
const PROBES: u32 = 6;
/// Bits per block: a cache line.
const BLOCK_BITS: u64 = 512;

/// One filter of a fixed size. Bits are set atomically, so writes and the scan fill it side by
/// side while gets read it.
pub(crate) struct Bloom {
    blocks: Box<[[AtomicU64; 8]]>,
    /// Keys put in that set at least one new bit: the distinct keys, less the few whose bits
    /// were all set already.
    keys: AtomicU64,
    capacity: u64,
}

impl Bloom {
    pub(crate) fn with_capacity(capacity: u64) -> Self {
        let blocks = (capacity.max(1) * BITS_PER_KEY).div_ceil(BLOCK_BITS);
        let blocks = (0..blocks).map(|_| Default::default()).collect();
        Bloom { blocks, keys: AtomicU64::new(0), capacity }
    }

    /// Puts `key` of `cf` in the filter.
    pub(crate) fn insert(&self, cf: Cf, key: &[u8]) {
        let (block, bits) = self.probe(cf, key);
        let mut new = false;
        for (word, mask) in block.iter().zip(bits) {
            // Most puts rewrite a key already there: a load, and no atomic write, then.
            if word.load(Ordering::Relaxed) & mask != mask {
                word.fetch_or(mask, Ordering::Relaxed);
                new = true;
            }
        }
        if new {
            self.keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// False only when `key` of `cf` was never put in.
    pub(crate) fn may_contain(&self, cf: Cf, key: &[u8]) -> bool {
        let (block, bits) = self.probe(cf, key);
        block.iter().zip(bits).all(|(word, mask)| word.load(Ordering::Relaxed) & mask == mask)
    }

    /// The block of a key and the bits of each of its words that the key sets.
    fn probe(&self, cf: Cf, key: &[u8]) -> (&[AtomicU64; 8], [u64; 8]) {
        let hash = foldhash::quality::FixedState::with_seed(0x7a11).hash_one((cf.index() as u8, key));
        // The high bits pick the block (a multiply, not a division); the low bits, stirred,
        // pick PROBES bits in it, 9 bits each.
        let block = ((u128::from(hash) * self.blocks.len() as u128) >> 64) as usize;
        let mut stir = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (hash >> 29);
        let mut bits = [0u64; 8];
        for _ in 0..PROBES {
            let bit = (stir % BLOCK_BITS) as usize;
            bits[bit / 64] |= 1 << (bit % 64);
            stir /= BLOCK_BITS;
        }
        (&self.blocks[block], bits)
    }

    fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    fn is_full(&self) -> bool {
        self.keys() > self.capacity
    }

    fn bytes(&self) -> u64 {
        (self.blocks.len() * 64) as u64
    }
}

/// The filter answering gets, once complete, and the one being filled by a scan, if any.
#[derive(Default)]
struct Filters {
    answering: Option<Arc<Bloom>>,
    filling: Option<Arc<Bloom>>,
}

/// What the filter did, for the benchmarks and the memory gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFilterStats {
    /// Gets of a filtered family answered "absent" without a read.
    pub answered: u64,
    /// Gets that went to the store: no complete filter yet, or the key may be there.
    pub passed: u64,
    /// Scans completed (the first one, then one per rebuild).
    pub scans: u64,
    /// Keys in the answering filter.
    pub keys: u64,
    /// Memory of both filters.
    pub bytes: u64,
}

/// The filter of one store (see the module documentation).
pub struct KeyFilter {
    filters: RwLock<Filters>,
    /// Set when a filling filter waits for its scan; the scan thread waits on `wake`.
    pending_scan: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    /// The smallest capacity a filter is made with.
    min_keys: u64,
    /// The keys the last completed scan left in its filter (those scanned, and those written
    /// meanwhile).
    last_scan_keys: AtomicU64,
    answered: AtomicU64,
    passed: AtomicU64,
    scans: AtomicU64,
}

/// Held by a write from putting its keys in the filters until the store has applied it.
pub struct Writing<'f>(#[allow(dead_code)] RwLockReadGuard<'f, Filters>);

impl KeyFilter {
    /// A filter for a store estimated to hold `estimated_keys` in the filtered families, with
    /// its first scan pending: it answers nothing until [`KeyFilter::run_scans`] has run it.
    pub fn new(estimated_keys: u64, min_keys: u64) -> Arc<Self> {
        let capacity = (estimated_keys.saturating_mul(3) / 2).max(min_keys);
        let filters = Filters { answering: None, filling: Some(Arc::new(Bloom::with_capacity(capacity))) };
        Arc::new(KeyFilter {
            filters: RwLock::new(filters),
            pending_scan: Mutex::new(true),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            min_keys,
            last_scan_keys: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            scans: AtomicU64::new(0),
        })
    }

    /// False only when the store certainly does not hold `key` in `cf`.
    pub fn may_contain(&self, cf: Cf, key: &[u8]) -> bool {
        if !FILTERED.contains(&cf) {
            return true;
        }
        let filters = self.filters.read().unwrap_or_else(PoisonError::into_inner);
        let may = filters.answering.as_ref().is_none_or(|bloom| bloom.may_contain(cf, key));
        let counter = if may { &self.passed } else { &self.answered };
        counter.fetch_add(1, Ordering::Relaxed);
        may
    }

    /// Puts the keys `batch` writes in the filters; the store applies the batch while the
    /// returned guard is held, then calls [`KeyFilter::written`].
    pub fn writing(&self, batch: &WriteBatch) -> Writing<'_> {
        let filters = self.filters.read().unwrap_or_else(PoisonError::into_inner);
        for op in batch.ops() {
            if let Op::Put { cf, key, .. } = op {
                if FILTERED.contains(cf) {
                    for bloom in filters.answering.iter().chain(&filters.filling) {
                        bloom.insert(*cf, key);
                    }
                }
            }
        }
        Writing(filters)
    }

    /// After a write: when the answering filter holds more keys than it was made for, starts
    /// filling a new one for twice the keys the store holds now (`estimate_keys`, or what the
    /// last scan found if more). The full one answers until the new one is complete. Sized by
    /// what the store holds, not by what the full filter counted (which includes every key
    /// deleted since its scan), the filter stays in proportion to the state.
    pub fn written(&self, writing: Writing<'_>, estimate_keys: impl FnOnce() -> u64) {
        let full = writing.0.answering.as_ref().is_some_and(|bloom| bloom.is_full());
        let idle = writing.0.filling.is_none();
        drop(writing);
        if full && idle {
            let keys = estimate_keys().max(self.last_scan_keys.load(Ordering::Relaxed));
            let filters = self.filters.write().unwrap_or_else(PoisonError::into_inner);
            if filters.filling.is_none() {
                self.fill_anew(filters, keys);
            }
        }
    }

    /// Puts a new filter for twice `keys` in place to be filled, and wakes the scan thread for
    /// it. Taking the write lock of the filters, the caller waited for every write in flight to
    /// end (see the module docs).
    fn fill_anew(&self, mut filters: RwLockWriteGuard<'_, Filters>, keys: u64) {
        let capacity = keys.saturating_mul(2).max(self.min_keys);
        filters.filling = Some(Arc::new(Bloom::with_capacity(capacity)));
        drop(filters);
        *self.pending_scan.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// The scan thread's loop: waits for a filling filter, fills it with `scan` (which calls
    /// its first argument with every key of the filtered families and returns false when it
    /// stopped early), then lets it answer. Returns when stopped, or with the error of a scan
    /// that failed, leaving the filter as it was (answering as before, or not at all).
    pub fn run_scans<E>(
        &self,
        mut scan: impl FnMut(&dyn Fn(Cf, &[u8]), &AtomicBool) -> Result<bool, E>,
    ) -> Result<(), E> {
        loop {
            {
                let mut pending = self.pending_scan.lock().unwrap_or_else(PoisonError::into_inner);
                while !*pending && !self.stop.load(Ordering::Acquire) {
                    pending = self.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
                }
                if self.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                *pending = false;
            }
            let Some(filling) = self.filters.read().unwrap_or_else(PoisonError::into_inner).filling.clone() else {
                continue;
            };
            let started = std::time::Instant::now();
            let scanned = std::cell::Cell::new(0u64);
            let insert = |cf, key: &[u8]| {
                filling.insert(cf, key);
                scanned.set(scanned.get() + 1);
            };
            if !scan(&insert, &self.stop)? {
                return Ok(());
            }
            // The filter's own count misses keys whose bits were all set already, most of them
            // in a filter filled past its size: the scan's count is what the store holds.
            let keys = filling.keys().max(scanned.get());
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let mut filters = self.filters.write().unwrap_or_else(PoisonError::into_inner);
            filters.answering = filters.filling.take();
            // Writes during the scan may have filled it already. A write starts the next one
            // when it finds the filter full, but a store that is written no more would keep an
            // overfull filter (more false positives, each a read): start it here.
            let refill = filling.is_full();
            if refill {
                self.fill_anew(filters, keys);
            } else {
                drop(filters);
            }
            self.scans.fetch_add(1, Ordering::Relaxed);
            self.last_scan_keys.store(keys, Ordering::Relaxed);
            tracing::debug!(keys, bytes = filling.bytes(), elapsed_ms, refill, "the key filter is complete");
        }
    }

    /// Ends [`KeyFilter::run_scans`], at once or after the current scan's next step.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _pending = self.pending_scan.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    pub fn stats(&self) -> KeyFilterStats {
        let filters = self.filters.read().unwrap_or_else(PoisonError::into_inner);
        KeyFilterStats {
            answered: self.answered.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            keys: filters.answering.as_ref().map_or(0, |bloom| bloom.keys()),
            bytes: filters.answering.iter().chain(&filters.filling).map(|bloom| bloom.bytes()).sum(),
        }
    }
}

#[cfg(test)]
#[path = "key_filter_tests.rs"]
mod tests;
