//! Every partition's state read as one: what the HTTP API, the Alertmanager pusher, the state
//! gauges and `tally inspect` read, so that they answer for every store whichever partition
//! holds it. A store's keys live in one partition only; keys that every partition has (its
//! position, its outbox counter) are read from the first one that has them, and mean nothing
//! across partitions.

use std::sync::{Arc, PoisonError, RwLock};

use tally_state::{Cf, Entries, StateError, Store, WriteBatch};

/// A read-only store over the partitions' stores. The partitions an instance runs can change
/// while it reads (several instances share them): [`UnionStore::replace`].
pub struct UnionStore {
    parts: RwLock<Vec<Arc<dyn Store>>>,
    /// The partition numbers of `parts`, when the caller says them ([`UnionStore::replace_indexed`]).
    indices: RwLock<Vec<u32>>,
}

impl UnionStore {
    pub fn new(parts: Vec<Arc<dyn Store>>) -> UnionStore {
        UnionStore { parts: RwLock::new(parts), indices: RwLock::new(Vec::new()) }
    }

    /// Reads `parts` from now on.
    pub fn replace(&self, parts: Vec<Arc<dyn Store>>) {
        *self.parts.write().unwrap_or_else(PoisonError::into_inner) = parts;
    }

    /// Reads `parts`, each with its partition number, from now on.
    pub fn replace_indexed(&self, parts: Vec<(u32, Arc<dyn Store>)>) {
        let (indices, stores): (Vec<u32>, Vec<Arc<dyn Store>>) = parts.into_iter().unzip();
        // Indices first, stores after: a reader that sees an index also reads its store.
        *self.indices.write().unwrap_or_else(PoisonError::into_inner) = Vec::new();
        self.replace(stores);
        *self.indices.write().unwrap_or_else(PoisonError::into_inner) = indices;
    }

    /// The partitions read now, as the last [`UnionStore::replace_indexed`] said.
    pub fn indices(&self) -> Vec<u32> {
        self.indices.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The partitions read now (a read in progress keeps the ones it started with).
    fn parts(&self) -> Vec<Arc<dyn Store>> {
        self.parts.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The one store itself when there is one partition, so that reads cost what they cost before.
    pub fn over(parts: Vec<Arc<dyn Store>>) -> Arc<dyn Store> {
        match <[Arc<dyn Store>; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => Arc::new(UnionStore::new(parts)),
        }
    }

    /// Merges each partition's first `limit` entries into the first `limit` of all, in key order.
    fn merged(
        &self,
        limit: usize,
        scan: impl Fn(&dyn Store) -> Result<Entries, StateError>,
    ) -> Result<Entries, StateError> {
        let mut all = Vec::new();
        for part in &self.parts() {
            all.extend(scan(part.as_ref())?);
        }
        // Stable: equal keys (present in several partitions) keep the partitions' order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }
}

impl Store for UnionStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        for part in &self.parts() {
            if let Some(value) = part.get(cf, key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.merged(limit, |part| part.scan_from(cf, start, limit))
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.merged(limit, |part| part.scan_prefix_from(cf, prefix, start, limit))
    }

    fn write(&self, _batch: &WriteBatch) -> Result<(), StateError> {
        let source = std::io::Error::new(std::io::ErrorKind::Unsupported, "each partition writes its own state");
        Err(StateError::Io { op: "write to the partitions read as one", path: Default::default(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_state::MemStore;

    fn store(entries: &[(&str, &str)]) -> Arc<dyn Store> {
        let store = MemStore::new();
        let mut batch = WriteBatch::default();
        for (key, value) in entries {
            batch.put(Cf::Aggregates, key.as_bytes().to_vec(), value.as_bytes().to_vec());
        }
        store.write(&batch).unwrap();
        Arc::new(store)
    }

    fn keys(entries: &Entries) -> Vec<String> {
        entries.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect()
    }

    // Proves reads over several partitions see each key where it is, scans merge in key order up
    // to the limit, and writes are refused.
    #[test]
    fn reads_every_partition_as_one() {
        let union = UnionStore::new(vec![
            store(&[("a/1", "x"), ("b/3", "y"), ("position", "10")]),
            store(&[("a/2", "z"), ("b/1", "w"), ("position", "20")]),
            store(&[]),
        ]);
        assert_eq!(union.get(Cf::Aggregates, b"b/1").unwrap().as_deref(), Some(&b"w"[..]));
        assert_eq!(union.get(Cf::Aggregates, b"c").unwrap(), None);
        assert_eq!(
            union.get(Cf::Aggregates, b"position").unwrap().as_deref(),
            Some(&b"10"[..]),
            "the first partition's"
        );
        let scanned = union.scan_prefix(Cf::Aggregates, b"a/", 10).unwrap();
        assert_eq!(keys(&scanned), ["a/1", "a/2"]);
        let first_two = union.scan_from(Cf::Aggregates, b"a/2", 2).unwrap();
        assert_eq!(keys(&first_two), ["a/2", "b/1"]);
        let from = union.scan_prefix_from(Cf::Aggregates, b"b/", b"b/2", 10).unwrap();
        assert_eq!(keys(&from), ["b/3"]);
        assert!(union.write(&WriteBatch::default()).is_err());
    }
}
