//! An experiment, not a second store: RocksDB opened like `tally_state::RocksStore` plus the
//! read-side options the profile asks for (bloom filters, index and filter blocks cached and
//! pinned for L0, a memtable bloom), so `tally-bench apply --tuned` can show what they would
//! change before anyone touches `state/`. Only `get` and `write` differ in substance; scans
//! behave as in `RocksStore`.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    ReadOptions, WriteBufferManager, WriteOptions, DB,
};
use tally_state::{Cf, Entries, Op, StateError, Store, WriteBatch};

pub struct TunedRocks {
    db: DB,
    write_options: WriteOptions,
}

fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError {
    move |source| StateError::Rocks { op, source }
}

impl TunedRocks {
    pub fn open(path: &Path, cache_bytes: usize, write_buffer_bytes: usize, sync: bool) -> Result<Self, StateError> {
        let cache = Cache::new_lru_cache(cache_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(write_buffer_bytes, false, cache.clone());
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // The changes: a 10-bit-per-key bloom filter answers most misses without a data block,
        // and filter and index blocks live in the (bounded) cache, L0's pinned.
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(DBCompressionType::Lz4);
        cf_opts.set_memtable_whole_key_filtering(true);
        cf_opts.set_memtable_prefix_bloom_ratio(0.1);
        cf_opts.set_level_compaction_dynamic_level_bytes(true);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&write_buffers);
        let names = Cf::ALL.iter().map(|cf| cf.name().to_owned()).chain(std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned()));
        let descriptors: Vec<_> = names.map(|name| ColumnFamilyDescriptor::new(name, cf_opts.clone())).collect();
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(rocks("open"))?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        Ok(TunedRocks { db, write_options })
    }

    fn handle(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(cf.name()).ok_or(StateError::MissingColumnFamily { name: cf.name() })
    }

    fn scan(&self, cf: Cf, start: &[u8], end: Option<Vec<u8>>, limit: usize) -> Result<Entries, StateError> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = end {
            read_options.set_iterate_upper_bound(end);
        }
        self.db
            .iterator_cf_opt(self.handle(cf)?, read_options, IteratorMode::From(start, Direction::Forward))
            .take(limit)
            .map(|entry| entry.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(rocks("scan")))
            .collect()
    }
}

/// The smallest key above every key with `prefix` (as `tally_state`'s private helper).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store for TunedRocks {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get_cf(self.handle(cf)?, key).map_err(rocks("get"))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan(cf, prefix, prefix_end(prefix), limit)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan(cf, start, None, limit)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in batch {
            match op {
                Op::Put { cf, key, value } => rocks_batch.put_cf(self.handle(cf)?, key, value),
                Op::Delete { cf, key } => rocks_batch.delete_cf(self.handle(cf)?, key),
            }
        }
        self.db.write_opt(rocks_batch, &self.write_options).map_err(rocks("write"))
    }
}
