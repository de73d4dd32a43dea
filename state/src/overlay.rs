//! [`Overlay`]: a read-your-writes transaction over a store. The processor applies a whole input
//! batch through one overlay and commits it with a single `write`, so a batch lands entirely or
//! not at all. The overlay never writes to the store itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Cf, Entries, Op, StateError, Store, WriteBatch};

/// A key with its pending value (`None`: deleted), borrowed from a layer of writes.
type Entry<'w> = (&'w [u8], Option<&'w Vec<u8>>);

/// Puts (`Some`) and deletes (`None`) by column family (indexed like `Cf::ALL`) and key, while
/// a batch is applied. One map per family lets a lookup borrow the key instead of copying it.
#[derive(Default, Debug)]
struct Pending {
    by_cf: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; Cf::ALL.len()],
}

impl Pending {
    fn get(&self, cf: Cf, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        self.by_cf[cf.index()].get(key).map(Option::as_ref)
    }

    /// Pending writes under `prefix` from `start` on, ascending.
    fn under<'w>(&'w self, cf: Cf, prefix: &'w [u8], start: &'w [u8]) -> impl Iterator<Item = Entry<'w>> + 'w {
        self.by_cf[cf.index()]
            .range::<[u8], _>((std::ops::Bound::Included(start.max(prefix)), std::ops::Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_slice(), value.as_ref()))
    }

    fn len(&self) -> usize {
        self.by_cf.iter().map(BTreeMap::len).sum()
    }

    /// The writes as one batch, ordered by column family and key, each key once.
    fn seal(self) -> Writes {
        let mut batch = WriteBatch::with_capacity(self.len());
        let mut starts = [0; Cf::ALL.len() + 1];
        for (index, (cf, writes)) in Cf::ALL.into_iter().zip(self.by_cf).enumerate() {
            starts[index] = batch.len();
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put(cf, key, value),
                    None => batch.delete(cf, key),
                }
            }
        }
        starts[Cf::ALL.len()] = batch.len();
        Writes { batch, starts }
    }
}

/// An applied batch's writes, sealed: the one `WriteBatch` the store is given, sorted by
/// column family and key with each key once, so that a later overlay reads through it by
/// binary search while the store writes it. Nothing is copied between applying a batch and
/// handing it to the store.
#[derive(Debug)]
pub struct Writes {
    batch: WriteBatch,
    /// Where each family's operations start in `batch` (indexed like `Cf::ALL`), then its end.
    starts: [usize; Cf::ALL.len() + 1],
}

impl Writes {
    fn family(&self, cf: Cf) -> &[Op] {
        &self.batch.as_slice()[self.starts[cf.index()]..self.starts[cf.index() + 1]]
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        let ops = self.family(cf);
        ops.binary_search_by(|op| op.key().cmp(key)).ok().map(|index| ops[index].value())
    }

    /// The writes under `prefix` from `start` on, ascending.
    fn under<'w>(&'w self, cf: Cf, prefix: &'w [u8], start: &'w [u8]) -> impl Iterator<Item = Entry<'w>> + 'w {
        let ops = self.family(cf);
        let from = ops.partition_point(|op| op.key() < start.max(prefix));
        ops[from..].iter().take_while(move |op| op.key().starts_with(prefix)).map(|op| (op.key(), op.value()))
    }

    /// The writes as the store takes them: ordered by column family and key.
    pub fn batch(&self) -> &WriteBatch {
        &self.batch
    }
}

/// Pending writes over a store: reads see them first, then the writes of an earlier batch
/// still on their way to the store (if any), then the store.
pub struct Overlay<'s> {
    store: &'s dyn Store,
    /// An earlier batch's writes, handed to the store but perhaps not landed yet. Reading
    /// through them lets the next batch be applied while the earlier one commits.
    below: Option<Arc<Writes>>,
    pending: Pending,
}

impl<'s> Overlay<'s> {
    pub fn new(store: &'s dyn Store) -> Self {
        Self { store, below: None, pending: Pending::default() }
    }

    /// An overlay that reads `below` (an earlier batch's writes, committing meanwhile) as if
    /// it were already in the store.
    pub fn over_in_flight(store: &'s dyn Store, below: Arc<Writes>) -> Self {
        Self { store, below: Some(below), pending: Pending::default() }
    }

    /// Identifies the store this overlay reads through, for a cache above it that must not be
    /// carried over to another store.
    pub fn store_id(&self) -> usize {
        self.store as *const dyn Store as *const () as usize
    }

    /// The value under `key` as it will be after commit.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(pending) = self.pending.get(cf, key) {
            return Ok(pending.cloned());
        }
        if let Some(in_flight) = self.below.as_deref().and_then(|below| below.get(cf, key)) {
            return Ok(in_flight.cloned());
        }
        self.store.get(cf, key)
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pending.by_cf[cf.index()].insert(key.into(), Some(value.into()));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.pending.by_cf[cf.index()].insert(key.into(), None);
    }

    /// Entries whose key starts with `prefix` as they will be after commit: pending puts
    /// included, pending deletes hidden, ascending key order, at most `limit`.
    pub fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan_prefix_from(cf, prefix, prefix, limit)
    }

    /// `scan_prefix`, only for keys >= `start`.
    pub fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        // Lowest layer first, so that later writes replace earlier ones in the merge.
        let layers: [Vec<Entry<'_>>; 2] = [
            self.below.as_deref().map(|below| below.under(cf, prefix, start).collect()).unwrap_or_default(),
            self.pending.under(cf, prefix, start).collect(),
        ];
        // Each pending delete can hide at most one stored entry, so reading that many extra
        // entries guarantees `limit` survivors whenever the store holds them. A stored key past
        // the last one read is then greater than `limit` survivors and cannot be in the answer.
        let deletes = layers.iter().flatten().filter(|(_, value)| value.is_none()).count();
        let stored = self.store.scan_prefix_from(cf, prefix, start, limit.saturating_add(deletes))?;

        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in layers.into_iter().flatten() {
            match value {
                Some(value) => merged.insert(key.to_vec(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Number of distinct keys with a pending put or delete (not counting the layer below).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The pending writes as one batch, ordered by column family and key.
    pub fn into_batch(self) -> WriteBatch {
        self.pending.seal().batch
    }

    /// The pending writes, to be committed while a later overlay reads through them.
    pub fn into_writes(self) -> Writes {
        self.pending.seal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    fn store_with(entries: &[(Cf, &[u8], &[u8])]) -> MemStore {
        let store = MemStore::new();
        let mut batch = WriteBatch::new();
        for &(cf, key, value) in entries {
            batch.put(cf, key, value);
        }
        store.write(&batch).unwrap();
        store
    }

    fn pairs(entries: &[(&[u8], &[u8])]) -> Entries {
        entries.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn reads_its_own_writes_before_the_store() {
        // Proves `get` returns a pending put over the stored value and leaves the store as is.
        let store = store_with(&[(Cf::Meta, b"k", b"old")]);
        let mut tx = Overlay::new(&store);
        tx.put(Cf::Meta, b"k".as_slice(), b"new".as_slice());
        tx.put(Cf::Meta, b"fresh".as_slice(), b"1".as_slice());
        assert_eq!(tx.get(Cf::Meta, b"k").unwrap(), Some(b"new".to_vec()));
        assert_eq!(tx.get(Cf::Meta, b"fresh").unwrap(), Some(b"1".to_vec()));
        assert_eq!(tx.get(Cf::Aggregates, b"k").unwrap(), None);
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), Some(b"old".to_vec()));
    }

    #[test]
    fn pending_delete_hides_stored_value() {
        // Proves a pending delete makes a stored key read as missing, and a later put revives it.
        let store = store_with(&[(Cf::Voids, b"k", b"v")]);
        let mut tx = Overlay::new(&store);
        tx.delete(Cf::Voids, b"k".as_slice());
        assert_eq!(tx.get(Cf::Voids, b"k").unwrap(), None);
        tx.put(Cf::Voids, b"k".as_slice(), b"again".as_slice());
        assert_eq!(tx.get(Cf::Voids, b"k").unwrap(), Some(b"again".to_vec()));
        assert_eq!(tx.pending_len(), 1);
    }

    #[test]
    fn scan_merges_pending_with_store_in_order() {
        // Proves a scan shows new keys, hides deleted ones, prefers pending values, keeps key
        // order, and ignores pending writes outside the prefix or family.
        let store = store_with(&[
            (Cf::Aggregates, b"p1", b"s1"),
            (Cf::Aggregates, b"p3", b"s3"),
            (Cf::Aggregates, b"p5", b"s5"),
            (Cf::Aggregates, b"q1", b"sq"),
        ]);
        let mut tx = Overlay::new(&store);
        tx.put(Cf::Aggregates, b"p2".as_slice(), b"n2".as_slice());
        tx.delete(Cf::Aggregates, b"p3".as_slice());
        tx.put(Cf::Aggregates, b"p5".as_slice(), b"n5".as_slice());
        tx.put(Cf::Aggregates, b"q0".as_slice(), b"nq".as_slice());
        tx.put(Cf::Dedupe, b"p4".as_slice(), b"other".as_slice());
        let got = tx.scan_prefix(Cf::Aggregates, b"p", usize::MAX).unwrap();
        assert_eq!(got, pairs(&[(b"p1", b"s1"), (b"p2", b"n2"), (b"p5", b"n5")]));
    }

    #[test]
    fn scan_limit_counts_survivors_not_deleted_entries() {
        // Proves the limit is filled with visible entries even when the first stored ones are
        // deleted in the overlay, and that it cuts the merged result, not the stored one.
        let store = store_with(&[
            (Cf::Timers, b"t1", b"1"),
            (Cf::Timers, b"t2", b"2"),
            (Cf::Timers, b"t3", b"3"),
            (Cf::Timers, b"t4", b"4"),
            (Cf::Timers, b"t6", b"6"),
        ]);
        let mut tx = Overlay::new(&store);
        tx.delete(Cf::Timers, b"t1".as_slice());
        tx.delete(Cf::Timers, b"t2".as_slice());
        tx.delete(Cf::Timers, b"t9".as_slice());
        tx.put(Cf::Timers, b"t5".as_slice(), b"5".as_slice());
        let got = tx.scan_prefix(Cf::Timers, b"t", 3).unwrap();
        assert_eq!(got, pairs(&[(b"t3", b"3"), (b"t4", b"4"), (b"t5", b"5")]));
        assert!(tx.scan_prefix(Cf::Timers, b"t", 0).unwrap().is_empty());
    }

    #[test]
    fn into_batch_commits_everything_in_one_write() {
        // Proves the batch from an overlay, once written, leaves the store as the overlay read.
        let store = store_with(&[(Cf::Outbox, b"a", b"1"), (Cf::Outbox, b"b", b"2")]);
        let mut tx = Overlay::new(&store);
        tx.delete(Cf::Outbox, b"a".as_slice());
        tx.put(Cf::Outbox, b"c".as_slice(), b"3".as_slice());
        tx.put(Cf::Meta, b"seq".as_slice(), b"7".as_slice());
        let expected = tx.scan_prefix(Cf::Outbox, b"", usize::MAX).unwrap();
        let batch = tx.into_batch();
        assert_eq!(batch.len(), 3);
        store.write(&batch).unwrap();
        assert_eq!(store.scan_prefix(Cf::Outbox, b"", usize::MAX).unwrap(), expected);
        assert_eq!(store.get(Cf::Meta, b"seq").unwrap(), Some(b"7".to_vec()));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn small_key() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF)], 0..4)
        }

        fn store_holding(stored: Vec<(Vec<u8>, u8)>) -> MemStore {
            let store = MemStore::new();
            let mut batch = WriteBatch::new();
            for (key, value) in stored {
                batch.put(Cf::Dedupe, key, vec![value]);
            }
            store.write(&batch).unwrap();
            store
        }

        /// Puts (`Some`) and deletes (`None`) into the overlay, in order.
        fn apply(tx: &mut Overlay<'_>, ops: &[(Vec<u8>, Option<u8>)]) {
            for (key, value) in ops {
                match value {
                    Some(value) => tx.put(Cf::Dedupe, key.clone(), vec![*value]),
                    None => tx.delete(Cf::Dedupe, key.clone()),
                }
            }
        }

        proptest! {
            #[test]
            fn scan_equals_scan_after_commit(
                stored in proptest::collection::vec((small_key(), any::<u8>()), 0..12),
                ops in proptest::collection::vec((small_key(), proptest::option::of(any::<u8>())), 0..12),
                prefix in small_key(),
                start in small_key(),
                limit in 0usize..8,
            ) {
                // Proves an overlay's scan shows exactly what the store shows once the overlay
                // is committed, for any stored keys, pending writes, prefix, start and limit.
                let store = store_holding(stored);
                let mut tx = Overlay::new(&store);
                apply(&mut tx, &ops);
                let seen = tx.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap();
                let seen_from = tx.scan_prefix_from(Cf::Dedupe, &prefix, &start, limit).unwrap();
                store.write(&tx.into_batch()).unwrap();
                prop_assert_eq!(seen, store.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap());
                prop_assert_eq!(seen_from, store.scan_prefix_from(Cf::Dedupe, &prefix, &start, limit).unwrap());
            }

            #[test]
            fn reads_over_writes_in_flight_equal_reads_after_both_land(
                stored in proptest::collection::vec((small_key(), any::<u8>()), 0..12),
                earlier in proptest::collection::vec((small_key(), proptest::option::of(any::<u8>())), 0..12),
                later in proptest::collection::vec((small_key(), proptest::option::of(any::<u8>())), 0..12),
                prefix in small_key(),
                start in small_key(),
                limit in 0usize..8,
            ) {
                // Proves an overlay over an earlier batch still in flight reads (gets and scans)
                // exactly what the store holds once the earlier batch and then its own have
                // been written, for any keys, writes, prefix and limit.
                let store = store_holding(stored);
                let mut first = Overlay::new(&store);
                apply(&mut first, &earlier);
                let in_flight = Arc::new(first.into_writes());
                let mut second = Overlay::over_in_flight(&store, Arc::clone(&in_flight));
                apply(&mut second, &later);
                let seen = second.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap();
                let got = second.get(Cf::Dedupe, &prefix).unwrap();
                let seen_from = second.scan_prefix_from(Cf::Dedupe, &prefix, &start, limit).unwrap();
                store.write(in_flight.batch()).unwrap();
                store.write(&second.into_batch()).unwrap();
                prop_assert_eq!(seen, store.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap());
                prop_assert_eq!(seen_from, store.scan_prefix_from(Cf::Dedupe, &prefix, &start, limit).unwrap());
                prop_assert_eq!(got, store.get(Cf::Dedupe, &prefix).unwrap());
            }
        }
    }
}
