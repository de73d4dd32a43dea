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

/// Hashed with foldhash (seeded per process), not SipHash: every record looks several values
/// up, and SipHash was 2 % of applying a sale.
type Map<K, V> = foldhash::HashMap<K, V>;

/// Where the set was left: the store it reads through, the position its last batch set and
/// the state's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub store: usize,
    pub position: u64,
    pub generation: u64,
}

/// The values of one store. Kept by store so that a lookup borrows the record's store and sku
/// instead of building a key of owned strings.
#[derive(Debug, Default)]
struct StoreValues {
    days: Map<NaiveDate, StoreDay>,
    /// By day, so that a day's sku-days are dropped together.
    sku_days: Map<NaiveDate, Map<String, SkuDay>>,
    /// `None`: the store has no price for the sku yet.
    prices: Map<String, Option<LatestPrice>>,
    clock: Option<StoreClock>,
}

impl StoreValues {
    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.sku_days.is_empty() && self.prices.is_empty() && self.clock.is_none()
    }
}

/// How many values of each kind the set holds, against its bounds.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    store_days: usize,
    sku_days: usize,
    prices: usize,
    clocks: usize,
}

#[derive(Debug)]
pub struct WorkingSet {
    /// The bounds: [`SKU_DAYS_MAX`] and [`OTHERS_MAX`], or a share of them.
    sku_days_max: usize,
    others_max: usize,
    stores: Map<String, StoreValues>,
    counts: Counts,
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
            stores: Map::default(),
            counts: Counts::default(),
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
        self.stores.clear();
        self.counts = Counts::default();
    }

    fn store(&mut self, store: &str) -> &mut StoreValues {
        if !self.stores.contains_key(store) {
            self.stores.insert(store.to_string(), StoreValues::default());
        }
        self.stores.get_mut(store).expect("inserted above")
    }

    /// Empties one kind of value in every store: the set reached its bound for that kind. A
    /// store left with nothing is dropped, so that the stores kept stay bounded too.
    fn empty_kind(&mut self, empty: impl Fn(&mut StoreValues)) {
        self.stores.retain(|_, values| {
            empty(values);
            !values.is_empty()
        });
    }

    /// Takes a store-day out of the set, for a step that will put it back when it writes it.
    pub fn take_store_day(&mut self, store: &str, day: NaiveDate) -> Option<StoreDay> {
        let taken = self.stores.get_mut(store)?.days.remove(&day);
        self.counts.store_days -= usize::from(taken.is_some());
        taken
    }

    pub fn put_store_day(&mut self, store: &str, day: NaiveDate, totals: StoreDay) {
        if self.counts.store_days >= self.others_max {
            self.empty_kind(|values| values.days.clear());
            self.counts.store_days = 0;
        }
        if self.store(store).days.insert(day, totals).is_none() {
            self.counts.store_days += 1;
        }
    }

    pub fn take_sku_day(&mut self, store: &str, day: NaiveDate, sku: &str) -> Option<SkuDay> {
        let taken = self.stores.get_mut(store)?.sku_days.get_mut(&day)?.remove(sku);
        self.counts.sku_days -= usize::from(taken.is_some());
        taken
    }

    pub fn has_sku_day(&self, store: &str, day: NaiveDate, sku: &str) -> bool {
        self.stores.get(store).and_then(|values| values.sku_days.get(&day)).is_some_and(|skus| skus.contains_key(sku))
    }

    pub fn put_sku_day(&mut self, store: &str, day: NaiveDate, sku: String, totals: SkuDay) {
        if self.counts.sku_days >= self.sku_days_max {
            self.empty_kind(|values| values.sku_days.clear());
            self.counts.sku_days = 0;
        }
        if self.store(store).sku_days.entry(day).or_default().insert(sku, totals).is_none() {
            self.counts.sku_days += 1;
        }
    }

    /// The latest price of a sku as the state holds it, when the set knows it: `Some(None)`
    /// when the store has none.
    pub fn price(&self, store: &str, sku: &str) -> Option<&Option<LatestPrice>> {
        self.stores.get(store)?.prices.get(sku)
    }

    pub fn put_price(&mut self, store: &str, sku: &str, price: Option<LatestPrice>) {
        if self.counts.prices >= self.others_max {
            self.empty_kind(|values| values.prices.clear());
            self.counts.prices = 0;
        }
        let prices = &mut self.store(store).prices;
        match prices.get_mut(sku) {
            Some(kept) => *kept = price,
            None => {
                prices.insert(sku.to_string(), price);
                self.counts.prices += 1;
            }
        }
    }

    pub fn clock(&self, store: &str) -> Option<&StoreClock> {
        self.stores.get(store)?.clock.as_ref()
    }

    pub fn put_clock(&mut self, store: &str, clock: StoreClock) {
        if self.counts.clocks >= self.others_max {
            self.empty_kind(|values| values.clock = None);
            self.counts.clocks = 0;
        }
        if self.store(store).clock.replace(clock).is_none() {
            self.counts.clocks += 1;
        }
    }

    /// Drops a store-day and its sku-days: something other than a record's step rewrote them.
    pub fn forget_store_day(&mut self, store: &str, day: NaiveDate) {
        let Some(values) = self.stores.get_mut(store) else { return };
        self.counts.store_days -= usize::from(values.days.remove(&day).is_some());
        if let Some(skus) = values.sku_days.remove(&day) {
            self.counts.sku_days -= skus.len();
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
        assert_eq!(set.counts.sku_days, 1);
    }

    // Proves the set stays within its bound.
    #[test]
    fn the_set_is_bounded() {
        let mut set = WorkingSet::default();
        for i in 0..SKU_DAYS_MAX + 10 {
            set.put_sku_day("S", day(), format!("{i}"), SkuDay::default());
            assert!(set.counts.sku_days <= SKU_DAYS_MAX);
        }
        assert_eq!(set.counts.sku_days, 10);
    }

    // Proves a kind that reaches its bound is emptied alone, in every store, and that a store
    // left with nothing is dropped.
    #[test]
    fn a_kind_at_its_bound_is_emptied_alone() {
        let mut set = WorkingSet::with_share(OTHERS_MAX / 4);
        assert_eq!(set.others_max, 4);
        set.put_store_day("S", day(), StoreDay::default());
        for i in 0..4 {
            set.put_price(&format!("P{i}"), "A", None);
        }
        set.put_price("S", "A", None);
        assert_eq!(set.counts.prices, 1);
        assert!(set.price("P0", "A").is_none() && set.price("S", "A").is_some());
        assert!(set.take_store_day("S", day()).is_some(), "store-days are not emptied with prices");
        assert_eq!(set.stores.len(), 1, "the stores that held only a price are dropped");
    }

    // Proves a share of the set holds its share of the bound: 16 partitions' sets together
    // hold no more sku-days than one whole set.
    #[test]
    fn a_share_of_the_set_holds_its_share_of_the_bound() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut set = WorkingSet::with_share(16);
        for i in 0..SKU_DAYS_MAX {
            set.put_sku_day("0042", day, format!("sku-{i}"), SkuDay::default());
            assert!(set.counts.sku_days <= SKU_DAYS_MAX / 16);
        }
        assert_eq!(WorkingSet::default().sku_days_max, SKU_DAYS_MAX);
    }
}
