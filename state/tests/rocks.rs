//! What only the RocksDB store can show: durability across reopen, read-only inspection,
//! checkpoints, size estimates, and families it does not know.
#![cfg(feature = "rocksdb")]

use std::path::Path;

use tally_state::{Cf, RocksOptions, RocksStore, StateError, Store, WriteBatch};

fn open(path: &Path) -> RocksStore {
    RocksStore::open(path, &RocksOptions::default()).unwrap()
}

fn put(store: &dyn Store, cf: Cf, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(cf, key, value);
    store.write(&batch).unwrap();
}

#[test]
fn data_survives_reopen() {
    // Proves every family's committed writes, and deletes, are there after close and reopen.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut batch = WriteBatch::new();
    for cf in Cf::ALL {
        batch.put(cf, cf.name(), b"kept".as_slice());
        batch.put(cf, b"deleted".as_slice(), b"x".as_slice());
    }
    store.write(&batch).unwrap();
    let mut batch = WriteBatch::new();
    for cf in Cf::ALL {
        batch.delete(cf, b"deleted".as_slice());
    }
    store.write(&batch).unwrap();
    drop(store);

    let store = open(dir.path());
    for cf in Cf::ALL {
        assert_eq!(store.get(cf, cf.name().as_bytes()).unwrap(), Some(b"kept".to_vec()), "{cf}");
        assert_eq!(store.get(cf, b"deleted").unwrap(), None, "{cf}");
    }
}

#[test]
fn second_writer_is_refused() {
    // Proves two read-write opens of one database cannot coexist, and the error names the step.
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = RocksStore::open(dir.path(), &RocksOptions::default()).err().unwrap();
    assert!(matches!(err, StateError::Rocks { op: "open", .. }), "{err:?}");
}

#[test]
fn read_only_open_reads_and_refuses_writes() {
    // Proves an offline inspector sees committed data and cannot change it.
    let dir = tempfile::tempdir().unwrap();
    put(&open(dir.path()), Cf::Meta, b"seq", b"17");
    let reader = RocksStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.get(Cf::Meta, b"seq").unwrap(), Some(b"17".to_vec()));
    assert_eq!(reader.scan_prefix(Cf::Meta, b"", 10).unwrap().len(), 1);
    let mut batch = WriteBatch::new();
    batch.put(Cf::Meta, b"seq".as_slice(), b"18".as_slice());
    let err = reader.write(&batch).unwrap_err();
    assert!(matches!(err, StateError::Rocks { op: "write", .. }), "{err:?}");
}

#[test]
fn read_only_open_of_missing_database_fails() {
    // Proves inspecting a path with no database is an error, not an empty store.
    let dir = tempfile::tempdir().unwrap();
    let err = RocksStore::open_read_only(&dir.path().join("absent")).err().unwrap();
    assert!(matches!(err, StateError::Io { op: "find database", .. }), "{err:?}");
    assert!(!dir.path().join("absent").exists(), "inspection created a directory");
}

#[test]
fn checkpoint_is_a_frozen_openable_copy() {
    // Proves a checkpoint holds the data at the time it was taken and opens as a store.
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db"));
    put(&store, Cf::Aggregates, b"before", b"1");
    let copy = dir.path().join("backups").join("cp1");
    store.checkpoint(&copy).unwrap();
    put(&store, Cf::Aggregates, b"after", b"2");

    let restored = open(&copy);
    assert_eq!(restored.get(Cf::Aggregates, b"before").unwrap(), Some(b"1".to_vec()));
    assert_eq!(restored.get(Cf::Aggregates, b"after").unwrap(), None);
    let err = store.checkpoint(&copy).unwrap_err();
    assert!(matches!(err, StateError::Rocks { op: "checkpoint", .. }), "{err:?}");
}

#[test]
fn approximate_size_grows_with_data() {
    // Proves the size estimate counts written data (in memtables, then in SST files).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let empty = store.approximate_size_bytes().unwrap();
    let mut batch = WriteBatch::new();
    for n in 0u32..2_000 {
        batch.put(Cf::Dedupe, n.to_be_bytes(), vec![n as u8; 512]);
    }
    store.write(&batch).unwrap();
    let written = store.approximate_size_bytes().unwrap();
    assert!(written >= empty + 500_000, "empty {empty} bytes, written {written} bytes");
    // A checkpoint flushes the memtables, so the data now counts as SST files.
    store.checkpoint(&dir.path().join("cp")).unwrap();
    assert!(store.approximate_size_bytes().unwrap() > empty);
}

#[test]
fn memory_report_counts_keys_memtables_and_cached_blocks() {
    // Proves the memory report sees what was written (keys, memtable bytes), then the blocks
    // and table readers that reading it back from SST files brings into memory.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut batch = WriteBatch::new();
    for n in 0u32..2_000 {
        batch.put(Cf::Aggregates, n.to_be_bytes(), vec![n as u8; 512]);
    }
    store.write(&batch).unwrap();
    let written = store.memory().unwrap();
    assert!(written.keys >= 2_000, "{written:?}");
    assert!(written.memtables >= 1_000_000, "{written:?}");
    // A checkpoint flushes the memtables to table files; reads then go through the block cache.
    store.checkpoint(&dir.path().join("cp")).unwrap();
    for n in (0u32..2_000).step_by(7) {
        assert!(store.get(Cf::Aggregates, &n.to_be_bytes()).unwrap().is_some());
    }
    let read = store.memory().unwrap();
    assert!(read.block_cache > 0 && read.table_readers > 0, "{read:?}");
}

#[test]
fn unknown_family_does_not_block_open() {
    // Proves a database holding a family this version does not know still opens, and that
    // family's data is left intact.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let names = Cf::ALL.iter().map(|cf| cf.name()).chain(["future"]);
        let db = rocksdb::DB::open_cf(&opts, dir.path(), names).unwrap();
        db.put_cf(db.cf_handle("future").unwrap(), b"k", b"v").unwrap();
    }
    let store = open(dir.path());
    put(&store, Cf::Meta, b"seq", b"1");
    drop(store);
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        dir.path(),
        Cf::ALL.iter().map(|cf| cf.name()).chain(["future"]),
    )
    .unwrap();
    assert_eq!(db.get_cf(db.cf_handle("future").unwrap(), b"k").unwrap(), Some(b"v".to_vec()));
}

fn id(i: u32) -> Vec<u8> {
    format!("0042/T-{i:08}").into_bytes()
}

/// Writes ids `range` to the dedupe family, 10 000 per batch.
fn put_ids(store: &dyn Store, range: std::ops::Range<u32>) {
    for chunk in range.collect::<Vec<_>>().chunks(10_000) {
        let mut batch = WriteBatch::new();
        chunk.iter().for_each(|&i| batch.put(Cf::Dedupe, id(i), b"seen".as_slice()));
        store.write(&batch).unwrap();
    }
}

/// Waits until the key filter has completed `scans` scans.
fn wait_for_scans(store: &RocksStore, scans: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.key_filter().unwrap().scans < scans {
        assert!(std::time::Instant::now() < deadline, "{:?}", store.key_filter());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_key_filter_answers_absent_keys_and_never_hides_a_present_one() {
    // Proves the filter built at reopen holds what the state held and what was written while it
    // scanned, answers most absent keys without a read, and grows past its first size.
    let dir = tempfile::tempdir().unwrap();
    put_ids(&open(dir.path()), 0..100_000);

    let store = open(dir.path());
    put_ids(&store, 100_000..101_000);
    wait_for_scans(&store, 1);
    assert!((0..101_000).step_by(7).all(|i| store.get(Cf::Dedupe, &id(i)).unwrap().is_some()));
    let before = store.key_filter().unwrap();
    assert!((200_000..201_000).all(|i| store.get(Cf::Dedupe, &id(i)).unwrap().is_none()));
    let answered = store.key_filter().unwrap().answered - before.answered;
    assert!(answered >= 950, "{answered} of 1 000 absent keys answered by the filter");

    // Past its capacity (1.5 × the keys estimated at open) it is rebuilt twice the size.
    put_ids(&store, 300_000..500_000);
    wait_for_scans(&store, 2);
    let grown = store.key_filter().unwrap();
    assert!(grown.bytes > before.bytes, "{grown:?} after {before:?}");
    assert!((0..101_000).chain(300_000..500_000).step_by(11).all(|i| store.get(Cf::Dedupe, &id(i)).unwrap().is_some()));
    // Deleted keys: a false positive at worst, never a value.
    let mut batch = WriteBatch::new();
    batch.delete(Cf::Dedupe, id(5));
    store.write(&batch).unwrap();
    assert_eq!(store.get(Cf::Dedupe, &id(5)).unwrap(), None);
}

#[test]
fn a_store_closed_while_its_filter_scans_reopens_at_once() {
    // Proves dropping the store stops the scan and closes the database: reopening right after
    // (as a partition handed back does) is not refused for a lock still held.
    let dir = tempfile::tempdir().unwrap();
    put_ids(&open(dir.path()), 0..50_000);
    for _ in 0..5 {
        let store = open(dir.path());
        assert!(store.get(Cf::Dedupe, &id(49_999)).unwrap().is_some());
    }
}

#[test]
fn a_read_only_store_has_no_key_filter() {
    let dir = tempfile::tempdir().unwrap();
    put(&open(dir.path()), Cf::Dedupe, b"k", b"v");
    let store = RocksStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.key_filter(), None);
    assert_eq!(store.get(Cf::Dedupe, b"k").unwrap(), Some(b"v".to_vec()));
}
