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
