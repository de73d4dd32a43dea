//! [`MemStore`]: the store in memory, for unit tests and simulations. It must behave exactly like
//! `RocksStore` as far as the [`Store`] trait can tell; the shared contract tests check that.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use crate::store::prefix_end;
use crate::{Cf, Entries, Op, StateError, Store, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An ordered map per column family, each behind its own lock.
#[derive(Debug, Default)]
pub struct MemStore {
    maps: [Mutex<Map>; Cf::ALL.len()],
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries in one column family; for tests that check nothing leaked.
    pub fn len(&self, cf: Cf) -> usize {
        self.lock(cf).len()
    }

    /// True when no column family holds an entry.
    pub fn is_empty(&self) -> bool {
        Cf::ALL.iter().all(|&cf| self.lock(cf).is_empty())
    }

    fn lock(&self, cf: Cf) -> MutexGuard<'_, Map> {
        // A poisoned lock means a thread panicked while holding it, which none of the short
        // critical sections below can do short of a bug; crash loudly rather than serve state
        // that may be half written.
        self.maps[cf.index()].lock().expect("MemStore lock poisoned by a panic in another thread")
    }
}

fn collect(range: impl Iterator<Item = (Vec<u8>, Vec<u8>)>, limit: usize) -> Entries {
    range.take(limit).collect()
}

impl Store for MemStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.lock(cf).get(key).cloned())
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        let map = self.lock(cf);
        let lower = start.max(prefix);
        let end = prefix_end(prefix);
        if end.as_deref().is_some_and(|end| lower >= end) {
            // Past the prefix: `range` would panic on a start beyond its end.
            return Ok(Entries::new());
        }
        let upper = match end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let range = map
            .range::<[u8], _>((Bound::Included(lower), upper.as_ref().map(Vec::as_slice)))
            .map(|(k, v)| (k.clone(), v.clone()));
        Ok(collect(range, limit))
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        let map = self.lock(cf);
        let range =
            map.range::<[u8], _>((Bound::Included(start), Bound::Unbounded)).map(|(k, v)| (k.clone(), v.clone()));
        Ok(collect(range, limit))
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        // Take every lock, always in `Cf::ALL` order so two writers cannot deadlock, and hold
        // them all while applying: a reader sees each family either before or after the batch.
        let mut maps: Vec<MutexGuard<'_, Map>> = Cf::ALL.iter().map(|&cf| self.lock(cf)).collect();
        for op in batch.ops() {
            match op {
                Op::Put { cf, key, value } => {
                    maps[cf.index()].insert(key.clone(), value.clone());
                }
                Op::Delete { cf, key } => {
                    maps[cf.index()].remove(key);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_op_on_same_key_wins() {
        // Proves that within one batch the last operation on a key decides its value.
        let store = MemStore::new();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Meta, b"k".as_slice(), b"1".as_slice());
        batch.delete(Cf::Meta, b"k".as_slice());
        batch.put(Cf::Meta, b"k".as_slice(), b"2".as_slice());
        batch.put(Cf::Meta, b"gone".as_slice(), b"x".as_slice());
        batch.delete(Cf::Meta, b"gone".as_slice());
        store.write(&batch).unwrap();
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(Cf::Meta, b"gone").unwrap(), None);
        assert_eq!(store.len(Cf::Meta), 1);
    }

    #[test]
    fn families_are_separate_key_spaces() {
        // Proves the same key in two column families holds two independent values.
        let store = MemStore::new();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Aggregates, b"k".as_slice(), b"a".as_slice());
        batch.put(Cf::Outbox, b"k".as_slice(), b"o".as_slice());
        store.write(&batch).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"k").unwrap(), Some(b"a".to_vec()));
        assert_eq!(store.get(Cf::Outbox, b"k").unwrap(), Some(b"o".to_vec()));
        assert_eq!(store.get(Cf::Dedupe, b"k").unwrap(), None);
        assert!(!store.is_empty());
    }
}
