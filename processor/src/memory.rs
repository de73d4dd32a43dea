//! Process-wide memory settings that keep tally's RSS within its budget.

/// Limits the C library's malloc to two arenas.
///
/// Rust code allocates with mimalloc, but RocksDB allocates with the C library's malloc: the
/// block cache, memtables, and compaction buffers. glibc gives each thread that allocates its
/// own arena, up to eight per core, and the blocks freed in one arena are not reused by another.
/// With RocksDB's flush and compaction threads this kept about 50 MiB more resident at 10 M keys:
/// e2e with 2 M messages, 9.7–9.8 M keys, gave a peak RSS of 585 → 538 MiB and 542 → 493 MiB at
/// the end, with (b)'s rate unchanged (14 993 and 14 825 msg/s).
///
/// To be called at the start of `main`, before RocksDB runs (and so before logging is set up:
/// the caller reports a refusal). Returns whether the limit is in place; other C libraries have
/// no such setting and return false.
pub fn limit_malloc_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Resident set size of this process, from /proc/self/status (Linux).
pub fn resident_bytes() -> Option<u64> {
    status_bytes(std::path::Path::new("/proc/self/status"), "VmRSS:")
}

/// A `Vm…` line (`field` with its colon) of a `/proc/<pid>/status` file, in bytes.
pub fn status_bytes(path: &std::path::Path, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How often `tally_memory_bytes` is refreshed: a few property reads and one small file read.
pub const MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets `tally_memory_bytes{part}` every [`MEMORY_EVERY`] until shutdown: the process's RSS and
/// the parts of it that settings bound (RocksDB's block cache and memtables, its index and
/// filter blocks, the value cache) or that grow with the keys (the key filter), so that an operator sees which budget the memory is in.
pub async fn memory_loop(
    caches: Vec<std::sync::Arc<tally_state::CachedStore<std::sync::Arc<tally_state::RocksStore>>>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Some(rss) = resident_bytes() {
            crate::telemetry::memory("rss", rss);
        }
        match rocks_memory(&caches) {
            Ok(rocks) => {
                crate::telemetry::memory("block_cache", rocks.block_cache);
                crate::telemetry::memory("memtables", rocks.memtables);
                crate::telemetry::memory("index_and_filters", rocks.table_readers);
                crate::telemetry::memory("key_filter", rocks.key_filter);
            }
            Err(err) => tracing::warn!(error = %err, "Reading RocksDB's memory use failed."),
        }
        let value_caches = caches.iter().map(|cache| cache.cached_bytes()).sum();
        crate::telemetry::memory("value_cache", value_caches);
        tokio::select! {
            _ = tokio::time::sleep(MEMORY_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// RocksDB's memory over every partition's database: they share one block cache (each reports
/// the whole of it), and each has its own memtables and table readers.
fn rocks_memory(
    caches: &[std::sync::Arc<tally_state::CachedStore<std::sync::Arc<tally_state::RocksStore>>>],
) -> Result<tally_state::RocksMemory, tally_state::StateError> {
    let mut total = tally_state::RocksMemory::default();
    for cache in caches {
        let one = cache.inner().memory()?;
        total.block_cache = one.block_cache;
        total.memtables += one.memtables;
        total.table_readers += one.table_readers;
        total.keys += one.keys;
        total.key_filter += one.key_filter;
    }
    Ok(total)
}
