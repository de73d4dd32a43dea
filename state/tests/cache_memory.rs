//! What the value cache's byte budget costs in heap: `state.value_cache_bytes` is the memory
//! an operator gives it, so the bytes it holds must be about what it charges itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use tally_state::{CachedStore, Cf, MemStore, Store, WriteBatch};

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BUDGET: usize = 8 << 20;
/// Key and value sizes like the aggregates': a 30-byte key, a 150-byte value.
const KEY_LEN: usize = 30;
const VALUE_LEN: usize = 150;
/// Enough writes to fill the budget three times over, so that eviction (and the eviction
/// policy's ghost entries) is part of what is measured.
const ENTRIES: u32 = (3 * BUDGET / (KEY_LEN + VALUE_LEN)) as u32;

fn key(i: u32) -> Vec<u8> {
    let mut key = vec![b'k'; KEY_LEN];
    key[KEY_LEN - 4..].copy_from_slice(&i.to_be_bytes());
    key
}

/// Writes every entry, a batch of 500 at a time, as commits do.
fn fill(store: &dyn Store) {
    for start in (0..ENTRIES).step_by(500) {
        let mut batch = WriteBatch::new();
        for i in start..(start + 500).min(ENTRIES) {
            batch.put(Cf::Aggregates, key(i), vec![7u8; VALUE_LEN]);
        }
        store.write(&batch).unwrap();
    }
}

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

// Proves the heap a full cache holds (measured as the heap of a cached store minus that of the
// same store uncached) is within 15 % of the bytes it charges itself, and that it does hold
// most of its budget, so the bound is not met by caching nothing.
#[test]
fn a_full_cache_holds_about_its_budget_in_heap() {
    let before = live();
    let plain = MemStore::new();
    fill(&plain);
    let store_alone = live() - before;
    drop(plain);

    let before = live();
    let cached = CachedStore::new(MemStore::new(), BUDGET);
    fill(&cached);
    let cache_heap = live() - before - store_alone;
    let charged = cached.cached_bytes() as i64;

    println!(
        "budget {BUDGET}, charged {charged}, heap {cache_heap} ({:.2} of charged)",
        cache_heap as f64 / charged as f64
    );
    assert!(charged > (BUDGET as i64) * 3 / 4, "the cache charges itself only {charged} of {BUDGET} bytes");
    assert!(charged <= BUDGET as i64);
    assert!(
        cache_heap <= charged + charged * 15 / 100,
        "the cache holds {cache_heap} bytes of heap but charges itself {charged}"
    );
}
