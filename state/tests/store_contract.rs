//! The behaviour every `Store` must share. Each case runs against `MemStore` and, with the
//! `rocksdb` feature, against a `RocksStore` in a temporary directory, so the fast in-memory
//! store used by unit tests cannot drift from the real one; and each again behind a
//! `CachedStore`.

use tally_state::{Cf, Entries, FailingStore, KeyWriter, Overlay, StateError, Store, WriteBatch};

fn put_all(store: &dyn Store, cf: Cf, keys: &[&[u8]]) {
    let mut batch = WriteBatch::new();
    for key in keys {
        batch.put(cf, *key, [b"v".as_slice(), key].concat());
    }
    store.write(&batch).unwrap();
}

fn keys(entries: Entries) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(key, _)| key).collect()
}

fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|key| key.to_vec()).collect()
}

mod cases {
    use super::*;

    pub fn put_get_delete(store: &dyn Store) {
        // Proves a put is read back, a missing key reads as None, and a delete removes the key.
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), None);
        put_all(store, Cf::Meta, &[b"k"]);
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), Some(b"vk".to_vec()));
        let mut batch = WriteBatch::new();
        batch.delete(Cf::Meta, b"k".as_slice());
        batch.delete(Cf::Meta, b"never-there".as_slice());
        store.write(&batch).unwrap();
        assert_eq!(store.get(Cf::Meta, b"k").unwrap(), None);
    }

    pub fn later_op_on_same_key_wins(store: &dyn Store) {
        // Proves the last operation on a key within one batch decides what is stored.
        let mut batch = WriteBatch::new();
        batch.put(Cf::Aggregates, b"a".as_slice(), b"1".as_slice());
        batch.delete(Cf::Aggregates, b"a".as_slice());
        batch.put(Cf::Aggregates, b"a".as_slice(), b"2".as_slice());
        batch.put(Cf::Aggregates, b"b".as_slice(), b"1".as_slice());
        batch.delete(Cf::Aggregates, b"b".as_slice());
        store.write(&batch).unwrap();
        assert_eq!(store.get(Cf::Aggregates, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(Cf::Aggregates, b"b").unwrap(), None);
    }

    pub fn empty_batch_changes_nothing(store: &dyn Store) {
        // Proves an empty batch is accepted and leaves stored data alone.
        put_all(store, Cf::Timers, &[b"t"]);
        store.write(&WriteBatch::new()).unwrap();
        assert_eq!(keys(store.scan_from(Cf::Timers, b"", usize::MAX).unwrap()), owned(&[b"t"]));
    }

    pub fn families_are_separate(store: &dyn Store) {
        // Proves a key written in one column family is invisible in every other.
        put_all(store, Cf::Voids, &[b"x1", b"x2"]);
        for cf in Cf::ALL {
            let expected = if cf == Cf::Voids { 2 } else { 0 };
            assert_eq!(store.scan_prefix(cf, b"x", usize::MAX).unwrap().len(), expected, "{cf}");
            assert_eq!(store.get(cf, b"x1").unwrap().is_some(), cf == Cf::Voids, "{cf}");
        }
    }

    pub fn scan_prefix_stops_at_prefix_boundary(store: &dyn Store) {
        // Proves prefix [1,2] returns its keys in order and not [1], [1,3] or [0,9].
        put_all(store, Cf::Aggregates, &[&[0, 9], &[1], &[1, 2, 0xFF], &[1, 2], &[1, 2, 0], &[1, 3]]);
        let got = store.scan_prefix(Cf::Aggregates, &[1, 2], usize::MAX).unwrap();
        assert_eq!(got[0], (vec![1, 2], vec![b'v', 1, 2]));
        assert_eq!(keys(got), owned(&[&[1, 2], &[1, 2, 0], &[1, 2, 0xFF]]));
    }

    pub fn scan_prefix_ending_in_ff(store: &dyn Store) {
        // Proves prefixes whose last bytes are 0xFF neither miss keys nor spill into the next
        // prefix, including an all-0xFF prefix that has no upper bound.
        put_all(
            store,
            Cf::Dedupe,
            &[
                &[1, 0xFE, 9],
                &[1, 0xFF],
                &[1, 0xFF, 0],
                &[1, 0xFF, 0xFF, 5],
                &[2],
                &[2, 0],
                &[0xFF, 0xFE],
                &[0xFF, 0xFF],
                &[0xFF, 0xFF, 1],
            ],
        );
        let got = store.scan_prefix(Cf::Dedupe, &[1, 0xFF], usize::MAX).unwrap();
        assert_eq!(keys(got), owned(&[&[1, 0xFF], &[1, 0xFF, 0], &[1, 0xFF, 0xFF, 5]]));
        let got = store.scan_prefix(Cf::Dedupe, &[0xFF, 0xFF], usize::MAX).unwrap();
        assert_eq!(keys(got), owned(&[&[0xFF, 0xFF], &[0xFF, 0xFF, 1]]));
    }

    pub fn scan_prefix_empty_prefix_and_limit(store: &dyn Store) {
        // Proves the empty prefix scans the whole family and the limit keeps the smallest keys.
        put_all(store, Cf::Meta, &[b"c", b"a", b"b"]);
        assert_eq!(keys(store.scan_prefix(Cf::Meta, b"", usize::MAX).unwrap()), owned(&[b"a", b"b", b"c"]));
        assert_eq!(keys(store.scan_prefix(Cf::Meta, b"", 2).unwrap()), owned(&[b"a", b"b"]));
        assert!(store.scan_prefix(Cf::Meta, b"", 0).unwrap().is_empty());
        assert!(store.scan_prefix(Cf::Meta, b"z", 10).unwrap().is_empty());
    }

    pub fn scan_prefix_finds_a_store_day(store: &dyn Store) {
        // Proves a prefix built from the leading key components selects exactly that store-day,
        // in hour order, even when another store's name extends this one's.
        let key = |store_id: &str, day: i64, hour: u64| KeyWriter::new().str(store_id).i64(day).u64(hour).finish();
        let mut batch = WriteBatch::new();
        for (store_id, day, hour) in [("s1", 20, 3), ("s1", 20, 1), ("s1", 21, 0), ("s1", 19, 9), ("s10", 20, 2)] {
            batch.put(Cf::Aggregates, key(store_id, day, hour), vec![hour as u8]);
        }
        store.write(&batch).unwrap();
        let prefix = KeyWriter::new().str("s1").i64(20).finish();
        let got = store.scan_prefix(Cf::Aggregates, &prefix, usize::MAX).unwrap();
        assert_eq!(keys(got), vec![key("s1", 20, 1), key("s1", 20, 3)]);
    }

    pub fn scan_prefix_from_starts_inside_the_prefix(store: &dyn Store) {
        // Proves a prefix scan from a start key returns only keys of the prefix at or after the
        // start, in order, up to the limit; a start before the prefix means the whole prefix and
        // one past it means nothing.
        put_all(store, Cf::Timers, &[b"a9", b"p1", b"p2", b"p3", b"q1"]);
        let from = |start: &[u8], limit| keys(store.scan_prefix_from(Cf::Timers, b"p", start, limit).unwrap());
        assert_eq!(from(b"p2", 10), owned(&[b"p2", b"p3"]));
        assert_eq!(from(b"p15", 1), owned(&[b"p2"]));
        assert_eq!(from(b"a", 10), owned(&[b"p1", b"p2", b"p3"]));
        assert_eq!(from(b"q", 10), Vec::<Vec<u8>>::new());
        assert_eq!(from(b"p4", 10), Vec::<Vec<u8>>::new());
    }

    pub fn scan_from_drains_in_order(store: &dyn Store) {
        // Proves scan_from starts at the first key >= start, ascends, and honours the limit, as
        // draining an outbox page by page needs.
        let seq = |n: u64| KeyWriter::new().u64(n).finish();
        let mut batch = WriteBatch::new();
        for n in [5, 1, 3, 2, 4] {
            batch.put(Cf::Outbox, seq(n), vec![n as u8]);
        }
        store.write(&batch).unwrap();
        let page = store.scan_from(Cf::Outbox, &seq(2), 2).unwrap();
        assert_eq!(page, vec![(seq(2), vec![2]), (seq(3), vec![3])]);
        let after = [seq(3), vec![0]].concat();
        assert_eq!(keys(store.scan_from(Cf::Outbox, &after, 10).unwrap()), vec![seq(4), seq(5)]);
        assert!(store.scan_from(Cf::Outbox, &seq(6), 10).unwrap().is_empty());
        assert!(store.scan_from(Cf::Outbox, &seq(1), 0).unwrap().is_empty());
    }

    pub fn readers_never_see_half_a_batch(store: &dyn Store) {
        // Proves a write is atomic to concurrent readers: two keys always written together in
        // one batch are never read with different values.
        let rounds = 200u32;
        let read_pair = || {
            let entries = store.scan_prefix(Cf::Meta, b"", usize::MAX).unwrap();
            match entries.as_slice() {
                [] => None,
                [(_, a), (_, b)] => {
                    assert_eq!(a, b, "a reader saw one key of a batch without the other");
                    Some(u32::from_be_bytes(a.as_slice().try_into().unwrap()))
                }
                _ => panic!("unexpected entries {entries:?}"),
            }
        };
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for round in 0..rounds {
                    let mut batch = WriteBatch::new();
                    batch.put(Cf::Meta, b"a".as_slice(), round.to_be_bytes());
                    batch.put(Cf::Meta, b"b".as_slice(), round.to_be_bytes());
                    store.write(&batch).unwrap();
                }
            });
            while !writer.is_finished() {
                read_pair();
            }
        });
        assert_eq!(read_pair(), Some(rounds - 1));
    }

    pub fn overlay_commit_lands_as_read(store: &dyn Store) {
        // Proves what an overlay reads before commit is what the store holds after it.
        put_all(store, Cf::Voids, &[b"p1", b"p2", b"p3"]);
        let mut tx = Overlay::new(store);
        tx.delete(Cf::Voids, b"p2".as_slice());
        tx.put(Cf::Voids, b"p4".as_slice(), b"new".as_slice());
        tx.put(Cf::Meta, b"seq".as_slice(), 42u64.to_be_bytes());
        let before = tx.scan_prefix(Cf::Voids, b"p", usize::MAX).unwrap();
        assert_eq!(keys(before.clone()), owned(&[b"p1", b"p3", b"p4"]));
        assert_eq!(store.get(Cf::Voids, b"p4").unwrap(), None, "overlay wrote early");
        store.write(&tx.into_batch()).unwrap();
        assert_eq!(store.scan_prefix(Cf::Voids, b"p", usize::MAX).unwrap(), before);
        assert_eq!(store.get(Cf::Meta, b"seq").unwrap(), Some(42u64.to_be_bytes().to_vec()));
    }

    pub fn failed_write_applies_nothing(store: &dyn Store) {
        // Proves an injected write failure over this store leaves none of the batch behind.
        put_all(store, Cf::Outbox, &[b"kept"]);
        let failing = FailingStore::new(store).fail_write_number(1);
        let mut batch = WriteBatch::new();
        batch.put(Cf::Outbox, b"lost".as_slice(), b"x".as_slice());
        batch.delete(Cf::Outbox, b"kept".as_slice());
        batch.put(Cf::Meta, b"seq".as_slice(), b"9".as_slice());
        let err = failing.write(&batch).unwrap_err();
        assert!(matches!(err, StateError::Injected { .. }), "{err:?}");
        assert_eq!(keys(store.scan_from(Cf::Outbox, b"", usize::MAX).unwrap()), owned(&[b"kept"]));
        assert_eq!(store.get(Cf::Meta, b"seq").unwrap(), None);
    }
}

/// Generates one test per case for a store built by `$open`, which returns the store and a guard
/// that must outlive it.
macro_rules! contract_tests {
    ($module:ident, $open:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $case() {
                    // Runs the shared case of the same name, which says what it proves.
                    let (store, _guard) = $open;
                    cases::$case(&store);
                    // The store closes before its guard, a temporary directory, is removed.
                    drop(store);
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($module:ident, $open:expr) => {
        contract_tests!(
            $module,
            $open,
            [
                put_get_delete,
                later_op_on_same_key_wins,
                empty_batch_changes_nothing,
                families_are_separate,
                scan_prefix_stops_at_prefix_boundary,
                scan_prefix_ending_in_ff,
                scan_prefix_empty_prefix_and_limit,
                scan_prefix_finds_a_store_day,
                scan_from_drains_in_order,
                scan_prefix_from_starts_inside_the_prefix,
                readers_never_see_half_a_batch,
                overlay_commit_lands_as_read,
                failed_write_applies_nothing,
            ]
        );
    };
}

all_cases!(mem, (tally_state::MemStore::new(), ()));

#[cfg(feature = "rocksdb")]
all_cases!(rocks, {
    let dir = tempfile::tempdir().unwrap();
    let store = tally_state::RocksStore::open(dir.path(), &tally_state::RocksOptions::default()).unwrap();
    (store, dir)
});

// The cache in front of a store must not change what any reader sees.
all_cases!(cached_mem, (tally_state::CachedStore::new(tally_state::MemStore::new(), 1 << 20), ()));

#[cfg(feature = "rocksdb")]
all_cases!(cached_rocks, {
    let dir = tempfile::tempdir().unwrap();
    let store = tally_state::RocksStore::open(dir.path(), &tally_state::RocksOptions::default()).unwrap();
    (tally_state::CachedStore::new(store, 1 << 20), dir)
});
