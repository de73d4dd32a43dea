//! [`FailingStore`]: wraps a store and fails chosen writes, for fault-injection tests. A failed
//! write applies nothing, exactly like a store that crashed before committing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Cf, Entries, StateError, Store, WriteBatch};

/// Passes reads through and fails the writes it is told to fail.
#[derive(Debug)]
pub struct FailingStore<S> {
    inner: S,
    /// 1-based number of the write to fail, counting every `write` call.
    fail_write_number: Option<u64>,
    /// While true, every write fails.
    fail_all: Arc<AtomicBool>,
    writes_attempted: AtomicU64,
}

impl<S: Store> FailingStore<S> {
    /// A wrapper that fails nothing until configured.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fail_write_number: None,
            fail_all: Arc::new(AtomicBool::new(false)),
            writes_attempted: AtomicU64::new(0),
        }
    }

    /// Fails the `n`th call to `write` (1-based, counting calls that failed for any reason).
    pub fn fail_write_number(mut self, n: u64) -> Self {
        assert!(n >= 1, "write numbers start at 1");
        self.fail_write_number = Some(n);
        self
    }

    /// The switch that, while true, fails every write. Flip it from the test to simulate a disk
    /// that goes away and comes back.
    pub fn fail_all_switch(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.fail_all)
    }

    /// How many times `write` has been called, failed or not.
    pub fn writes_attempted(&self) -> u64 {
        self.writes_attempted.load(Ordering::SeqCst)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Store> Store for FailingStore<S> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.get(cf, key)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.inner.scan_from(cf, start, limit)
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.inner.scan_prefix_from(cf, prefix, start, limit)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        let number = self.writes_attempted.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_write_number == Some(number) {
            return Err(StateError::Injected { what: format!("write number {number}") });
        }
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(StateError::Injected { what: format!("write number {number} while all writes fail") });
        }
        self.inner.write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    fn batch(key: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(Cf::Meta, key, b"v".as_slice());
        batch.put(Cf::Outbox, key, b"v".as_slice());
        batch
    }

    #[test]
    fn nth_write_fails_and_applies_nothing() {
        // Proves only the chosen write fails, with `Injected`, and none of its operations land.
        let store = FailingStore::new(MemStore::new()).fail_write_number(2);
        store.write(&batch(b"1")).unwrap();
        let err = store.write(&batch(b"2")).unwrap_err();
        assert!(matches!(err, StateError::Injected { .. }), "{err:?}");
        store.write(&batch(b"3")).unwrap();
        assert_eq!(store.get(Cf::Meta, b"2").unwrap(), None);
        assert_eq!(store.get(Cf::Outbox, b"2").unwrap(), None);
        assert_eq!(store.inner().len(Cf::Meta), 2);
        assert_eq!(store.writes_attempted(), 3);
    }

    #[test]
    fn switch_fails_every_write_until_flipped_back() {
        // Proves the shared switch fails all writes while on, applying nothing, and reads go on.
        let store = FailingStore::new(MemStore::new());
        let switch = store.fail_all_switch();
        store.write(&batch(b"a")).unwrap();
        switch.store(true, Ordering::SeqCst);
        for key in [b"b", b"c"] {
            let err = store.write(&batch(key)).unwrap_err();
            assert!(matches!(err, StateError::Injected { .. }), "{err:?}");
        }
        assert_eq!(store.get(Cf::Meta, b"a").unwrap(), Some(b"v".to_vec()));
        switch.store(false, Ordering::SeqCst);
        store.write(&batch(b"d")).unwrap();
        let keys: Vec<_> = store.scan_from(Cf::Meta, b"", usize::MAX).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"d".to_vec()]);
    }
}
