//! The working set: the typed values that records keep touching (store-days, sku-days, latest
//! prices, store clocks), kept decoded between records and between batches.
//!
//! Without it every record read each value it touched through the overlay (a copy of its
//! bytes out of the byte cache) and decoded it from MessagePack, only to encode it again at its
//! end; a busy sku or store was decoded again by the next record. Here a record takes the
//! value it needs out of the set and puts it back when it writes it, so a value is decoded once
//! while it stays in the set. Writes still go through to the overlay as bytes, every record, so
//! the overlay (what scans, reports and the commit see) is always whole; the set is only ever a
//! copy of what the overlay holds.
//!
//! That copy must never be stale:
//! - everything that writes these values other than a record's own step (finalizing a day, a
//!   settle timer, interim postings, pruning, the tick's idle clocks) drops what it changes
//!   from the set (`forget_*`);
//! - a batch that fails part-way loses the set with it (the batch owns it until it finishes);
//! - a batch over another store, or over a position other than the one the set was left at
//!   (a retried or re-applied batch, a restored state), or after the aggregates were rewritten
//!   outside any batch (`reconcile` counts those in the state's generation), starts with an
//!   empty set ([`WorkingSet::check`]).
//!
//! It is bounded: past [`SKU_DAYS_MAX`] sku-days (or [`OTHERS_MAX`] of another kind) it is
//! emptied and fills again with what records touch next.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::aggregates::{LatestPrice, SkuDay, StoreDay};
use crate::clock::StoreClock;

/// Sku-days kept at most (about 0.5 KiB each in memory, with their keys and the map's own
/// share). At 65 536 sku-days and as many of each other kind, tally's peak RSS at 10 M keys was
/// 543 MiB against 451 without a working set (bench/README.md, "Eighth round"): the bound is
/// what the set costs, so it is kept to what the busy keys of a few batches need.
pub const SKU_DAYS_MAX: usize = 16_384;
/// Store-days, prices and clocks kept at most, each.
pub const OTHERS_MAX: usize = 8_192;

/// Where the set was left: the store it reads through, the position its last batch set and
/// the state's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub store: usize,
    pub position: u64,
    pub generation: u64,
}

#[derive(Debug)]
pub struct WorkingSet {
    /// The bounds: [`SKU_DAYS_MAX`] and [`OTHERS_MAX`], or a share of them.
    sku_days_max: usize,
    others_max: usize,
    store_days: HashMap<(String, NaiveDate), StoreDay>,
    /// By store-day, so that a day's sku-days are dropped together.
    sku_days: HashMap<(String, NaiveDate), HashMap<String, SkuDay>>,
    sku_day_count: usize,
    /// `None`: the store has no price for the sku yet.
    prices: HashMap<(String, String), Option<LatestPrice>>,
    clocks: HashMap<String, StoreClock>,
    mark: Option<Mark>,
}

impl Default for WorkingSet {
    fn default() -> Self {
        WorkingSet::with_share(1)
    }
}

impl WorkingSet {
    /// A set bounded to `1 / parts` of the whole: each of a process's `parts` partitions keeps
    /// one, and together they hold no more than one set (docs/operations.md, "Partitions").
    pub fn with_share(parts: usize) -> Self {
        let parts = parts.max(1);
        WorkingSet {
            sku_days_max: (SKU_DAYS_MAX / parts).max(1),
            others_max: (OTHERS_MAX / parts).max(1),
            store_days: HashMap::new(),
            sku_days: HashMap::new(),
            sku_day_count: 0,
            prices: HashMap::new(),
            clocks: HashMap::new(),
            mark: None,
        }
    }

    /// Empties the set unless it was left by a batch that ended where this one starts.
    pub fn check(&mut self, at: Mark) {
        if self.mark != Some(at) {
            self.clear();
        }
        self.mark = None;
    }

    /// Records where the batch that holds the set ended, for the next one's [`Self::check`].
    pub fn leave(&mut self, at: Mark) {
        self.mark = Some(at);
    }

    pub fn clear(&mut self) {
        self.store_days.clear();
        self.sku_days.clear();
        self.sku_day_count = 0;
        self.prices.clear();
        self.clocks.clear();
    }

    /// Takes a store-day out of the set, for a step that will put it back when it writes it.
    pub fn take_store_day(&mut self, store: &str, day: NaiveDate) -> Option<StoreDay> {
        self.store_days.remove(&(store.to_string(), day))
    }

    pub fn put_store_day(&mut self, store: &str, day: NaiveDate, totals: StoreDay) {
        if self.store_days.len() >= self.others_max {
            self.store_days.clear();
        }
        self.store_days.insert((store.to_string(), day), totals);
    }

    pub fn take_sku_day(&mut self, store: &str, day: NaiveDate, sku: &str) -> Option<SkuDay> {
        let skus = self.sku_days.get_mut(&(store.to_string(), day))?;
        let taken = skus.remove(sku);
        self.sku_day_count -= usize::from(taken.is_some());
        taken
    }

    pub fn has_sku_day(&self, store: &str, day: NaiveDate, sku: &str) -> bool {
        self.sku_days.get(&(store.to_string(), day)).is_some_and(|skus| skus.contains_key(sku))
    }

    pub fn put_sku_day(&mut self, store: &str, day: NaiveDate, sku: String, totals: SkuDay) {
        if self.sku_day_count >= self.sku_days_max {
            self.sku_days.clear();
            self.sku_day_count = 0;
        }
        let skus = self.sku_days.entry((store.to_string(), day)).or_default();
        if skus.insert(sku, totals).is_none() {
            self.sku_day_count += 1;
        }
    }

    /// The latest price of a sku as the state holds it, when the set knows it: `Some(None)`
    /// when the store has none.
    pub fn price(&self, store: &str, sku: &str) -> Option<&Option<LatestPrice>> {
        self.prices.get(&(store.to_string(), sku.to_string()))
    }

    pub fn put_price(&mut self, store: &str, sku: &str, price: Option<LatestPrice>) {
        if self.prices.len() >= self.others_max {
            self.prices.clear();
        }
        self.prices.insert((store.to_string(), sku.to_string()), price);
    }

    pub fn clock(&self, store: &str) -> Option<&StoreClock> {
        self.clocks.get(store)
    }

    pub fn put_clock(&mut self, store: &str, clock: StoreClock) {
        if self.clocks.len() >= self.others_max {
            self.clocks.clear();
        }
        self.clocks.insert(store.to_string(), clock);
    }

    /// Drops a store-day and its sku-days: something other than a record's step rewrote them.
    pub fn forget_store_day(&mut self, store: &str, day: NaiveDate) {
        let key = (store.to_string(), day);
        self.store_days.remove(&key);
        if let Some(skus) = self.sku_days.remove(&key) {
            self.sku_day_count -= skus.len();
        }
    }

    pub fn forget_sku_day(&mut self, store: &str, day: NaiveDate, sku: &str) {
        self.take_sku_day(store, day, sku);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    // Proves the set survives only into a batch over the same store at the position it was
    // left at; any other batch starts empty.
    #[test]
    fn a_batch_elsewhere_starts_with_an_empty_set() {
        let mut set = WorkingSet::default();
        let left = Mark { store: 1, position: 10, generation: 0 };
        for (at, kept) in [
            (left, true),
            (Mark { store: 2, ..left }, false),
            (Mark { position: 11, ..left }, false),
            (Mark { generation: 1, ..left }, false),
        ] {
            set.put_store_day("S", day(), StoreDay::default());
            set.leave(left);
            set.check(at);
            assert_eq!(set.take_store_day("S", day()).is_some(), kept, "{at:?}");
        }
        set.put_store_day("S", day(), StoreDay::default());
        set.check(left);
        assert!(set.take_store_day("S", day()).is_none(), "a set never left by a batch is not trusted");
    }

    // Proves forgetting a store-day drops its sku-days too, and only its own.
    #[test]
    fn forgetting_a_store_day_drops_its_sku_days() {
        let mut set = WorkingSet::default();
        let next = day().succ_opt().unwrap();
        set.put_store_day("S", day(), StoreDay::default());
        set.put_sku_day("S", day(), "A".into(), SkuDay::default());
        set.put_sku_day("S", next, "A".into(), SkuDay::default());
        set.forget_store_day("S", day());
        assert!(set.take_store_day("S", day()).is_none());
        assert!(!set.has_sku_day("S", day(), "A"));
        assert!(set.has_sku_day("S", next, "A"));
        assert_eq!(set.sku_day_count, 1);
    }

    // Proves the set stays within its bound.
    #[test]
    fn the_set_is_bounded() {
        let mut set = WorkingSet::default();
        for i in 0..SKU_DAYS_MAX + 10 {
            set.put_sku_day("S", day(), format!("{i}"), SkuDay::default());
            assert!(set.sku_day_count <= SKU_DAYS_MAX);
        }
        assert_eq!(set.sku_day_count, 10);
    }

    // Proves a share of the set holds its share of the bound: 16 partitions' sets together
    // hold no more sku-days than one whole set.
    #[test]
    fn a_share_of_the_set_holds_its_share_of_the_bound() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut set = WorkingSet::with_share(16);
        for i in 0..SKU_DAYS_MAX {
            set.put_sku_day("0042", day, format!("sku-{i}"), SkuDay::default());
            assert!(set.sku_day_count <= SKU_DAYS_MAX / 16);
        }
        assert_eq!(WorkingSet::default().sku_days_max, SKU_DAYS_MAX);
    }
}
