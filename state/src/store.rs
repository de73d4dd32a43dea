//! The narrow interface the logic is written against. It must stay small: every method here
//! has to be implemented, with the same behaviour, by every store.

use std::sync::Arc;

use crate::{Cf, StateError, WriteBatch};

/// Key-value pairs from a scan, in ascending key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered key-value store with column families and atomic batch writes.
///
/// Keys compare as unsigned bytes. Reads see every completed `write`.
pub trait Store: Send + Sync {
    /// The value stored under `key`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Entries whose key starts with `prefix`, in ascending key order, at most `limit`.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan_prefix_from(cf, prefix, prefix, limit)
    }

    /// Entries with key >= `start`, ascending, at most `limit` (used to drain an outbox in order).
    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError>;

    /// Entries whose key starts with `prefix` and is >= `start`, ascending, at most `limit`.
    /// Starting past the front of a prefix skips what was deleted there, which a RocksDB
    /// iterator would otherwise step over one deletion marker at a time.
    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError>;

    /// Applies every operation of the batch atomically (all or nothing).
    fn write(&self, batch: &WriteBatch) -> Result<(), StateError>;
}

/// Calls `visit` on every entry of `cf` under `prefix` (the whole family for an empty prefix),
/// in key order, until it returns false. Reads `chunk` entries at a time, so that a long range
/// is never held in memory at once.
pub fn visit_prefix(
    store: &dyn Store,
    cf: Cf,
    prefix: &[u8],
    chunk: usize,
    mut visit: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StateError> {
    assert!(chunk > 0, "a scan chunk holds at least one entry");
    let mut start = prefix.to_vec();
    loop {
        let rows = store.scan_prefix_from(cf, prefix, &start, chunk)?;
        for (key, value) in &rows {
            if !visit(key, value) {
                return Ok(());
            }
        }
        let Some((last, _)) = rows.last().filter(|_| rows.len() == chunk) else { return Ok(()) };
        // The smallest key after `last`.
        start = last.clone();
        start.push(0);
    }
}

/// A shared store is a store, so wrappers such as `FailingStore<Arc<MemStore>>` leave the caller
/// a handle on the inner store.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(cf, key)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        (**self).scan_from(cf, start, limit)
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        (**self).scan_prefix_from(cf, prefix, start, limit)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        (**self).write(batch)
    }
}

/// A borrowed store is a store, so a wrapper can sit over a `&dyn Store` it does not own.
impl<S: Store + ?Sized> Store for &S {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(cf, key)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        (**self).scan_from(cf, start, limit)
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        (**self).scan_prefix_from(cf, prefix, start, limit)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        (**self).write(batch)
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when no such
/// key exists (the prefix is empty or all 0xFF), in which case the range is unbounded above.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_carries_over_trailing_ff() {
        // Proves the upper bound of a prefix range skips trailing 0xFF bytes and is unbounded
        // when every byte is 0xFF.
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
