//! [`Overlay`]: a read-your-writes transaction over a store. The processor applies a whole input
//! batch through one overlay and commits it with a single `write`, so a batch lands entirely or
//! not at all. The overlay never writes to the store itself.

use std::collections::BTreeMap;

use crate::{Cf, Entries, StateError, Store, WriteBatch};

/// Pending writes over a store: reads see them first, then the store.
pub struct Overlay<'s> {
    store: &'s dyn Store,
    /// Per column family (indexed like `Cf::ALL`), `Some(value)` is a pending put, `None` a
    /// pending delete. One map per family lets a lookup borrow the key instead of copying it.
    pending: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; Cf::ALL.len()],
}

fn slot(cf: Cf) -> usize {
    // `Cf::ALL` lists every family once, so the position exists.
    Cf::ALL.iter().position(|c| *c == cf).expect("every Cf is in Cf::ALL")
}

impl<'s> Overlay<'s> {
    pub fn new(store: &'s dyn Store) -> Self {
        Self { store, pending: Default::default() }
    }

    /// The value under `key` as it will be after commit.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.pending[slot(cf)].get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.get(cf, key),
        }
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pending[slot(cf)].insert(key.into(), Some(value.into()));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.pending[slot(cf)].insert(key.into(), None);
    }

    /// Entries whose key starts with `prefix` as they will be after commit: pending puts
    /// included, pending deletes hidden, ascending key order, at most `limit`.
    pub fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Entries, StateError> {
        let pending: Vec<(&[u8], Option<&Vec<u8>>)> = self.pending[slot(cf)]
            .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_slice(), value.as_ref()))
            .collect();
        // Each pending delete can hide at most one stored entry, so reading that many extra
        // entries guarantees `limit` survivors whenever the store holds them. A stored key past
        // the last one read is then greater than `limit` survivors and cannot be in the answer.
        let deletes = pending.iter().filter(|(_, value)| value.is_none()).count();
        let stored = self.store.scan_prefix(cf, prefix, limit.saturating_add(deletes))?;

        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in pending {
            match value {
                Some(value) => merged.insert(key.to_vec(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Number of distinct keys with a pending put or delete.
    pub fn pending_len(&self) -> usize {
        self.pending.iter().map(BTreeMap::len).sum()
    }

    /// The pending writes as one batch, ordered by column family and key.
    pub fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for (cf, writes) in Cf::ALL.into_iter().zip(self.pending) {
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put(cf, key, value),
                    None => batch.delete(cf, key),
                }
            }
        }
        batch
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
        store.write(batch).unwrap();
        store
    }

    fn pairs(entries: &[(&[u8], &[u8])]) -> Entries {
        entries
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
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
        assert_eq!(
            got,
            pairs(&[(b"p1", b"s1"), (b"p2", b"n2"), (b"p5", b"n5")])
        );
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
        store.write(batch).unwrap();
        assert_eq!(
            store.scan_prefix(Cf::Outbox, b"", usize::MAX).unwrap(),
            expected
        );
        assert_eq!(store.get(Cf::Meta, b"seq").unwrap(), Some(b"7".to_vec()));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn small_key() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF)], 0..4)
        }

        proptest! {
            #[test]
            fn scan_equals_scan_after_commit(
                stored in proptest::collection::vec((small_key(), any::<u8>()), 0..12),
                ops in proptest::collection::vec((small_key(), proptest::option::of(any::<u8>())), 0..12),
                prefix in small_key(),
                limit in 0usize..8,
            ) {
                // Proves an overlay's scan shows exactly what the store shows once the overlay
                // is committed, for any stored keys, pending writes, prefix and limit.
                let store = MemStore::new();
                let mut batch = WriteBatch::new();
                for (key, value) in stored {
                    batch.put(Cf::Dedupe, key, vec![value]);
                }
                store.write(batch).unwrap();
                let mut tx = Overlay::new(&store);
                for (key, value) in ops {
                    match value {
                        Some(value) => tx.put(Cf::Dedupe, key, vec![value]),
                        None => tx.delete(Cf::Dedupe, key),
                    }
                }
                let seen = tx.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap();
                store.write(tx.into_batch()).unwrap();
                prop_assert_eq!(seen, store.scan_prefix(Cf::Dedupe, &prefix, limit).unwrap());
            }
        }
    }
}
