//! [`RocksStore`]: the durable store on RocksDB. It owns the database handle and its tuning and
//! must never interpret keys or values; one [`Cf`] maps to one RocksDB column family.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::properties;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode,
    Options, ReadOptions, WriteBufferManager, WriteOptions, DB,
};

use crate::key_filter::{KeyFilter, KeyFilterStats, FILTERED};
use crate::store::prefix_end;
use crate::{Cf, Entries, Op, StateError, Store, WriteBatch};

/// The smallest key filter made (80 KiB): a new state's first batches fill it.
const KEY_FILTER_MIN_KEYS: u64 = 1 << 16;
/// Keys the key filter's scan reads with one iterator, between two looks at whether it must stop.
const KEY_FILTER_SCAN_STEP: usize = 4096;

/// Memory and durability settings for [`RocksStore::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Block cache shared by every column family, in bytes. Default 128 MiB.
    pub cache_bytes: usize,
    /// Upper bound on the memtables of all column families together, in bytes; their memory is
    /// charged to the block cache so the two share one budget. Default 64 MiB.
    pub write_buffer_bytes: usize,
    /// Whether each `write` waits for the write-ahead log to reach the disk (fsync). Without it
    /// a power loss can drop the last writes, though a process crash cannot. Default true.
    pub sync: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self { cache_bytes: 128 << 20, write_buffer_bytes: 64 << 20, sync: true }
    }
}

/// RocksDB's memory by use, in bytes, and its estimate of the keys it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RocksMemory {
    /// Data blocks in the block cache.
    pub block_cache: u64,
    /// Memtables, active and immutable.
    pub memtables: u64,
    /// Index and filter blocks held with the open table files, outside the block cache.
    pub table_readers: u64,
    /// Keys of all families (RocksDB's estimate; overwritten keys may count more than once).
    pub keys: u64,
    /// The key filter's ([`KeyFilter`]): about 10 bits per key of the point-read families,
    /// twice that while it is rebuilt larger.
    pub key_filter: u64,
}

/// The memory that several databases in one process share: one block cache and one memtable
/// budget, so that a process holding one database per partition uses no more memory than one
/// holding a single database (docs/operations.md, "Partitions").
#[derive(Clone)]
pub struct RocksShared {
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// How many databases share them: each family's memtable and each database's log are
    /// sized to its share of the budget.
    databases: usize,
}

impl RocksShared {
    /// A cache of `opts.cache_bytes` and a memtable budget of `opts.write_buffer_bytes`, for one
    /// database.
    pub fn new(opts: &RocksOptions) -> Self {
        Self::for_databases(opts, 1)
    }

    /// [`RocksShared::new`] for `databases` databases (one per partition). An empty memtable
    /// still holds an arena block and a bloom filter in proportion to its size, so memtables
    /// sized for one database cost `databases` times their floor: at 16 partitions × 7
    /// families, 74 MiB before any data (docs/operations.md, "Partitions").
    pub fn for_databases(opts: &RocksOptions, databases: usize) -> Self {
        // Memtables get their own budget rather than a share of the block cache: charged to the
        // cache they crowd out the blocks that point lookups need once state holds millions of keys.
        let write_buffers = WriteBufferManager::new_write_buffer_manager(opts.write_buffer_bytes, false);
        RocksShared { cache: Cache::new_lru_cache(opts.cache_bytes), write_buffers, databases: databases.max(1) }
    }
}

/// A RocksDB database with one column family per [`Cf`].
pub struct RocksStore {
    db: Arc<DB>,
    write_options: WriteOptions,
    /// The keys of the point-read families, which answers most gets of absent keys
    /// ([`KeyFilter`]); `None` when opened read-only.
    filter: Option<Arc<KeyFilter>>,
    /// The thread that fills the filter by scanning the families, at open and at each rebuild.
    scanner: Option<JoinHandle<()>>,
}

fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError {
    move |source| StateError::Rocks { op, source }
}

impl RocksStore {
    /// Opens the database at `path` for reading and writing, creating it and any missing column
    /// family. Fails if another process has it open.
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self, StateError> {
        Self::open_shared(path, opts, &RocksShared::new(opts))
    }

    /// Opens the database at `path` as [`RocksStore::open`] does, with its block cache and
    /// memtable budget taken from `shared` (whose sizes then apply to all its databases
    /// together) instead of its own.
    pub fn open_shared(path: &Path, opts: &RocksOptions, shared: &RocksShared) -> Result<Self, StateError> {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&shared.cache);
        // Most reads are point lookups of keys that may not exist yet (a new dedupe id, a new
        // sku-day): a bloom filter answers those without reading data blocks. Index and filter
        // blocks stay with their open table files (bounded by `max_open_files`) instead of
        // competing with data blocks in the cache, where evicting them made every get re-read
        // them from disk at millions of keys.
        table.set_bloom_filter(10.0, false);
        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(DBCompressionType::Lz4);
        cf_opts.set_level_compaction_dynamic_level_bytes(true);
        // Half of all gets miss (a new dedupe id, a new sku-day, a reference not seen yet), and a
        // miss walked the whole memtable skip list, which holds every version of every hot key
        // since the last flush. A whole-key bloom filter on the memtable answers them at once.
        cf_opts.set_memtable_prefix_bloom_ratio(0.05);
        cf_opts.set_memtable_whole_key_filtering(true);
        // Each family's memtable is an eighth of the whole budget (8 MiB by default), not
        // RocksDB's 64 MiB: every write and every memtable miss walks a skip list holding all
        // versions since the last flush, and a smaller one is faster to walk (e2e: commit 12.6 →
        // 9.9 ms per batch, for twice the compaction CPU on the other core), and faster to replay.
        // With several databases sharing the budget, each gets its share.
        let share = opts.write_buffer_bytes / shared.databases;
        cf_opts.set_write_buffer_size((share / 8).max(1 << 20));

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&shared.write_buffers);
        // A write-ahead log file is kept until every family with data in it has flushed, and a
        // quiet family (meta, voids) flushes rarely: without a bound the logs grew to ~200 MiB
        // (4 × the families' memtables). Past this size the families holding the oldest log
        // are flushed, which also bounds what a restart replays.
        db_opts.set_max_total_wal_size(share.max(8 << 20) as u64);
        // Start-up time must not grow with state: open table files lazily and skip the
        // statistics pass over every file at open.
        db_opts.set_max_open_files(1024);
        db_opts.set_skip_stats_update_on_db_open(true);
        db_opts.set_max_background_jobs(2);
        // Compaction runs at the lowest CPU priority (nice 19), on the cores the input loop
        // leaves idle, instead of taking its turn from the apply and the commit: e2e (b) at
        // 1 M messages 15 630 → 16 834 msg/s, with compaction's CPU unchanged (20 s). Flushes
        // keep their priority, and a compaction that falls behind slows writes (RocksDB's L0
        // triggers), which frees the cores it needs. This is RocksDB's process-wide pool.
        let mut env = rocksdb::Env::new().map_err(rocks("create env"))?;
        env.lower_thread_pool_cpu_priority();
        db_opts.set_env(&env);

        // RocksDB refuses to open a database without naming every family it holds, so families
        // this version does not know (left by a newer one) are opened too, and left alone.
        // A new database lists no families and fails here; any other failure resurfaces in the
        // open below, with its cause.
        let existing = DB::list_cf(&Options::default(), path).unwrap_or_default();
        let unknown = existing.into_iter().filter(|name| !Cf::ALL.iter().any(|cf| cf.name() == name));
        let names = Cf::ALL
            .iter()
            .map(|cf| cf.name().to_owned())
            .chain(unknown)
            .chain(std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned()));
        let descriptors: Vec<_> = names.map(|name| ColumnFamilyDescriptor::new(name, cf_opts.clone())).collect();

        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(rocks("open"))?;
        Self::with_db(db, opts.sync)?.with_key_filter()
    }

    /// Opens the database at `path` for reading only, for offline inspection. Writes fail.
    pub fn open_read_only(path: &Path) -> Result<Self, StateError> {
        // RocksDB would create the directory of a mistyped path; an inspector must not.
        let current = path.join("CURRENT");
        std::fs::metadata(&current).map_err(|source| StateError::Io { op: "find database", path: current, source })?;
        let names = Cf::ALL.iter().map(|cf| cf.name());
        let db = DB::open_cf_for_read_only(&Options::default(), path, names, false).map_err(rocks("open read-only"))?;
        Self::with_db(db, false)
    }

    fn with_db(db: DB, sync: bool) -> Result<Self, StateError> {
        for cf in Cf::ALL {
            if db.cf_handle(cf.name()).is_none() {
                return Err(StateError::MissingColumnFamily { name: cf.name() });
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        Ok(Self { db: Arc::new(db), write_options, filter: None, scanner: None })
    }

    /// Starts the key filter, and the thread whose scan of the store completes it. Until then,
    /// and if the scan fails (logged), every get reads the store as it would without a filter.
    fn with_key_filter(mut self) -> Result<Self, StateError> {
        let filter = KeyFilter::new(self.estimate_filtered_keys()?, KEY_FILTER_MIN_KEYS);
        let (db, scanning) = (Arc::clone(&self.db), Arc::clone(&filter));
        let scanner = std::thread::Builder::new()
            .name("tally-key-filter".to_string())
            .spawn(move || {
                if let Err(err) = scanning.run_scans(|insert, stop| scan_keys(&db, insert, stop)) {
                    tracing::warn!(error = %err, "The key filter's scan failed; gets of absent keys read the store.");
                }
            })
            .map_err(|source| StateError::Io {
                op: "start the key filter",
                path: self.db.path().to_path_buf(),
                source,
            })?;
        self.filter = Some(filter);
        self.scanner = Some(scanner);
        Ok(self)
    }

    /// RocksDB's estimate of the keys in the filtered families (deletions not yet compacted
    /// away, and versions in the memtables, count too).
    fn estimate_filtered_keys(&self) -> Result<u64, StateError> {
        self.sum_property(&FILTERED, properties::ESTIMATE_NUM_KEYS)
    }

    /// What the key filter has done: gets answered without a read, scans, keys and memory.
    /// `None` for a store opened read-only.
    pub fn key_filter(&self) -> Option<KeyFilterStats> {
        self.filter.as_ref().map(|filter| filter.stats())
    }

    /// Writes a consistent copy of the database to `dir`, which must not exist yet; its parent
    /// is created if needed. The copy hard-links files where it can, so it is cheap.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StateError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StateError::Io {
                op: "create checkpoint parent",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        Checkpoint::new(self.db.as_ref())
            .and_then(|checkpoint| checkpoint.create_checkpoint(dir))
            .map_err(rocks("checkpoint"))
    }

    /// Bytes held by live SST files and memtables across all families. An estimate: RocksDB
    /// updates these properties in the background.
    pub fn approximate_size_bytes(&self) -> Result<u64, StateError> {
        let files = self.sum_property(&Cf::ALL, properties::LIVE_SST_FILES_SIZE)?;
        Ok(files + self.sum_property(&Cf::ALL, properties::CUR_SIZE_ALL_MEM_TABLES)?)
    }

    /// What RocksDB holds in memory now, and how many keys it holds (estimates).
    pub fn memory(&self) -> Result<RocksMemory, StateError> {
        // One cache serves every family, so one family's answer is the whole.
        let block_cache = self
            .db
            .property_int_value_cf(self.handle(Cf::Aggregates)?, properties::BLOCK_CACHE_USAGE)
            .map_err(rocks("read a property"))?;
        Ok(RocksMemory {
            block_cache: block_cache.unwrap_or(0),
            memtables: self.sum_property(&Cf::ALL, properties::CUR_SIZE_ALL_MEM_TABLES)?,
            table_readers: self.sum_property(&Cf::ALL, properties::ESTIMATE_TABLE_READERS_MEM)?,
            keys: self.sum_property(&Cf::ALL, properties::ESTIMATE_NUM_KEYS)?,
            key_filter: self.key_filter().map_or(0, |filter| filter.bytes),
        })
    }

    /// An integer property summed over `families`.
    fn sum_property(&self, families: &[Cf], property: &properties::PropName) -> Result<u64, StateError> {
        let mut total: u64 = 0;
        for &cf in families {
            let value = self.db.property_int_value_cf(self.handle(cf)?, property).map_err(rocks("read a property"))?;
            total = total.saturating_add(value.unwrap_or(0));
        }
        Ok(total)
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily, StateError> {
        self.db.cf_handle(cf.name()).ok_or(StateError::MissingColumnFamily { name: cf.name() })
    }

    /// Up to `limit` entries from `start` onwards, stopping before `end` when given.
    fn scan(&self, cf: Cf, start: &[u8], end: Option<Vec<u8>>, limit: usize) -> Result<Entries, StateError> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = end {
            read_options.set_iterate_upper_bound(end);
        }
        let mode = IteratorMode::From(start, Direction::Forward);
        self.db
            .iterator_cf_opt(self.handle(cf)?, read_options, mode)
            .take(limit)
            .map(|entry| entry.map(|(key, value)| (key.into_vec(), value.into_vec())).map_err(rocks("scan")))
            .collect()
    }
}

/// Puts every key of the filtered families into the key filter through `insert`; false when
/// `stop` ended it early.
///
/// It reads [`KEY_FILTER_SCAN_STEP`] keys per iterator: an iterator holds on to the memtables
/// and files it started with, and one held for a whole scan kept every memtable flushed
/// meanwhile in memory. A key there from the filter's making to the scan's end is in some
/// step's view; one written or rewritten meanwhile the write put in (see `key_filter`).
fn scan_keys(db: &DB, insert: &dyn Fn(Cf, &[u8]), stop: &AtomicBool) -> Result<bool, StateError> {
    for cf in FILTERED {
        let handle = db.cf_handle(cf.name()).ok_or(StateError::MissingColumnFamily { name: cf.name() })?;
        let mut from = Vec::new();
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            let mut read_options = ReadOptions::default();
            // A scan of everything: its blocks must not push the hot ones out of the cache.
            read_options.fill_cache(false);
            let mut keys = db.raw_iterator_cf_opt(handle, read_options);
            keys.seek(&from);
            let mut read = 0;
            while let Some(key) = keys.key() {
                insert(cf, key);
                read += 1;
                if read == KEY_FILTER_SCAN_STEP {
                    // The smallest key after this one.
                    from = key.to_vec();
                    from.push(0);
                    break;
                }
                keys.next();
            }
            keys.status().map_err(rocks("scan for the key filter"))?;
            if read < KEY_FILTER_SCAN_STEP {
                break;
            }
        }
    }
    Ok(true)
}

impl Drop for RocksStore {
    /// Stops the key filter's scan before the database closes: the scan holds the database, and
    /// a partition reopened at once must find it closed.
    fn drop(&mut self) {
        if let Some(filter) = &self.filter {
            filter.stop();
        }
        if let Some(scanner) = self.scanner.take() {
            let _ = scanner.join();
        }
    }
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if self.filter.as_ref().is_some_and(|filter| !filter.may_contain(cf, key)) {
            return Ok(None);
        }
        self.db.get_cf(self.handle(cf)?, key).map_err(rocks("get"))
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan(cf, start, None, limit)
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.scan(cf, start.max(prefix), prefix_end(prefix), limit)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        // Sized up front (each operation adds a tag, a family id and two lengths, at most 16
        // bytes, to its key and value), so that RocksDB's buffer is not grown by doubling.
        let bytes: usize = batch.ops().map(|op| op.key().len() + op.value().map_or(0, Vec::len) + 16).sum();
        let mut rocks_batch = rocksdb::WriteBatch::with_capacity_bytes(bytes);
        // Each family's handle looked up once per batch, not by name for every operation.
        let handles: Vec<&ColumnFamily> = Cf::ALL.into_iter().map(|cf| self.handle(cf)).collect::<Result<_, _>>()?;
        for op in batch.ops() {
            match op {
                Op::Put { cf, key, value } => rocks_batch.put_cf(handles[cf.index()], key, value),
                Op::Delete { cf, key } => rocks_batch.delete_cf(handles[cf.index()], key),
            }
        }
        // The filter holds the keys before the database does (see `key_filter`).
        let writing = self.filter.as_ref().map(|filter| (filter, filter.writing(batch)));
        let written = self.db.write_opt(rocks_batch, &self.write_options).map_err(rocks("write"));
        if let Some((filter, writing)) = writing {
            filter.written(writing, || self.estimate_filtered_keys().unwrap_or(0));
        }
        written
    }
}
