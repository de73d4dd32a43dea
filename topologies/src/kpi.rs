//! Business KPIs per store, read from state for the gauges of docs/http-api.md ("GET /metrics"):
//! POS sales that inventory has not reconciled, and the inventory variance, over the store-days
//! still open (not finalized). Read-only, like `report`: it never writes, and the processor calls
//! it every few seconds, off the input loop.
//!
//! What counts (docs/alerting.md, "Business KPIs"), per (store, business_day, sku) of an open
//! store-day, with `drift_units = expected − recorded` as in docs/wire-format.md ("Drift"):
//! - variance: `drift_units`, signed, summed; its value is each key's `drift_value` (at the latest
//!   unit price of the sku in the store, zero when none is known).
//! - unreconciled sales: a key's positive drift less the units of its sales that are still within
//!   the store's drift settle time (event time: `occurred_at + settle > watermark`) and that no
//!   inventory movement referenced yet; never below zero. Normal lag is therefore not counted,
//!   exactly as it does not fire alerts; thresholds are not applied (they decide paging, this
//!   measures). Valued at the latest unit price.
//!
//! Everything is computed in `Decimal`; the caller converts to f64 for Prometheus only at the end.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use tally_state::{Cf, Store};

use crate::aggregates::{LatestPrice, Seen, SkuDay, StoreDay};
use crate::clock::{self, StoreClock};
use crate::codec;
use crate::error::TopologyError;
use crate::keys;

/// Entries read per scan: store-days and sku-days are visited a chunk at a time, never held
/// all at once.
const SCAN_CHUNK: usize = 4096;

/// The KPIs of one store, over its open store-days. Units and values are exact; values are in
/// the currency of the store's prices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreKpis {
    pub unreconciled_units: Decimal,
    pub unreconciled_value: Decimal,
    pub variance_units: Decimal,
    pub variance_value: Decimal,
}

/// The KPIs of every store that has a store-day in state; a store whose days are all finalized
/// reads zero. `settle` gives a store's drift settle time (its thresholds' `settle`).
pub fn store_kpis(
    store: &dyn Store,
    settle: &dyn Fn(&str) -> Duration,
) -> Result<BTreeMap<String, StoreKpis>, TopologyError> {
    let mut out = BTreeMap::new();
    for (id, days) in open_days(store)? {
        let mut kpis = StoreKpis::default();
        if !days.is_empty() {
            let watermark =
                read::<StoreClock>(store, Cf::Aggregates, &clock::clock_key(&id), "store clock")?.map(|c| c.watermark);
            // A store without a clock has settled nothing yet: everything it sold is still lag.
            let settled_by = watermark.and_then(|w| w.checked_sub_signed(settle(&id)));
            let mut day_kpis = DayKpis { store, id: &id, settled_by, prices: HashMap::new(), kpis: &mut kpis };
            for day in days {
                day_kpis.add_day(day)?;
            }
        }
        out.insert(id, kpis);
    }
    Ok(out)
}

/// Every store with a store-day, and its days not finalized, in key order.
fn open_days(store: &dyn Store) -> Result<BTreeMap<String, Vec<NaiveDate>>, TopologyError> {
    let mut days: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
    let mut corrupt = None;
    tally_state::visit_prefix(store, Cf::Aggregates, &keys::all_store_days_prefix(), SCAN_CHUNK, |key, bytes| {
        let Some((id, day)) = keys::parse_store_day(key) else { return true };
        match codec::decode::<StoreDay>(bytes) {
            Ok(totals) => {
                let open = days.entry(id).or_default();
                if !totals.finalized {
                    open.push(day);
                }
                true
            }
            Err(source) => {
                corrupt = Some(source);
                false
            }
        }
    })?;
    match corrupt {
        Some(source) => Err(TopologyError::Corrupt { what: "store-day totals", source }),
        None => Ok(days),
    }
}

/// Adds one store's open days to its KPIs; caches the latest prices it reads.
struct DayKpis<'a> {
    store: &'a dyn Store,
    id: &'a str,
    /// Sales that occurred at or before this are past the settle time; `None`: none is.
    settled_by: Option<DateTime<Utc>>,
    prices: HashMap<String, Option<Decimal>>,
    kpis: &'a mut StoreKpis,
}

impl DayKpis<'_> {
    fn add_day(&mut self, day: NaiveDate) -> Result<(), TopologyError> {
        let mut rows = Vec::new();
        let mut result = Ok(());
        let prefix = keys::sku_day_prefix(self.id, day);
        tally_state::visit_prefix(self.store, Cf::Aggregates, &prefix, SCAN_CHUNK, |key, bytes| {
            match codec::decode::<SkuDay>(bytes) {
                // Only keys that drift matter; the others are skipped before any further read.
                Ok(sku) if sku.drift_units().is_zero() => {}
                Ok(sku) => rows.push((keys::parse_sku_day_sku(key).unwrap_or_default(), sku)),
                Err(source) => result = Err(TopologyError::Corrupt { what: "sku-day totals", source }),
            }
            result.is_ok()
        })?;
        result?;
        for (sku, figures) in rows {
            self.add_sku(&sku, &figures)?;
        }
        Ok(())
    }

    fn add_sku(&mut self, sku: &str, figures: &SkuDay) -> Result<(), TopologyError> {
        let price = self.price(sku)?;
        let drift = figures.drift_figures(price);
        self.kpis.variance_units += drift.drift_units;
        self.kpis.variance_value += drift.drift_value;
        if drift.drift_units > Decimal::ZERO {
            let units = (drift.drift_units - self.lagging_units(sku, figures)?).max(Decimal::ZERO);
            self.kpis.unreconciled_units += units;
            self.kpis.unreconciled_value += units * price.unwrap_or_default();
        }
        Ok(())
    }

    /// Units of this sku sold by the key's unreferenced transactions that are still within the
    /// settle time (the list is newest first, so they lead it).
    fn lagging_units(&self, sku: &str, figures: &SkuDay) -> Result<Decimal, TopologyError> {
        let mut units = Decimal::ZERO;
        for unmatched in figures.unmatched.iter().take_while(|u| self.settled_by.is_none_or(|by| u.at > by)) {
            let seen = read::<Seen>(self.store, Cf::Dedupe, &keys::seen(self.id, &unmatched.id), "dedupe entry")?;
            let sold = seen
                .filter(|seen| seen.voided_by.is_none())
                .and_then(|seen| seen.transaction)
                .map(|tx| tx.lines.iter().filter(|l| l.sku == sku && l.qty.is_sign_positive()).map(|l| l.qty).sum())
                .unwrap_or(Decimal::ZERO);
            // An order's units leaving the shelf lag like a sale's (docs/alerting.md, "Business KPIs").
            units += sold + unmatched.order_units.unwrap_or(Decimal::ZERO);
        }
        Ok(units)
    }

    fn price(&mut self, sku: &str) -> Result<Option<Decimal>, TopologyError> {
        if let Some(price) = self.prices.get(sku) {
            return Ok(*price);
        }
        let latest = read::<LatestPrice>(self.store, Cf::Aggregates, &keys::price(self.id, sku), "latest price")?;
        let price = latest.map(|p| p.unit_price);
        self.prices.insert(sku.to_string(), price);
        Ok(price)
    }
}

/// Reads and decodes one stored value.
fn read<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    cf: Cf,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, TopologyError> {
    match store.get(cf, key)? {
        Some(bytes) => codec::decode(&bytes).map(Some).map_err(|source| TopologyError::Corrupt { what, source }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{day_close_at, movement_at, sale_at, void_at, Harness};

    const S: &str = "0042";

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn kpis_of(h: &Harness) -> BTreeMap<String, StoreKpis> {
        store_kpis(&h.store, &|_| Duration::minutes(15)).unwrap()
    }

    fn expect(unreconciled: (&str, &str), variance: (&str, &str)) -> StoreKpis {
        StoreKpis {
            unreconciled_units: dec(unreconciled.0),
            unreconciled_value: dec(unreconciled.1),
            variance_units: dec(variance.0),
            variance_value: dec(variance.1),
        }
    }

    /// Store 0042 on 2026-11-27, watermark 11:00, settle 15 minutes (sales after 10:45 lag):
    /// A: 3 sold at 10:00 and 1 at 10:50 (latest price 3.00), nothing recorded: drift 4, 1 lagging;
    /// B: 2 sold, 2 recorded by reference: no drift;
    /// C: 5 sold at 10:10 (1.10), 1 recorded without reference: drift 4, none lagging;
    /// D: 1 sold (5.00), 3 recorded by reference: drift −2;
    /// E: 2 sold at 10:55 and voided: no drift; a receipt of A moves stock, not drift.
    fn traffic(h: &mut Harness) {
        h.record(&sale_at(S, "T1", "2026-11-27T10:00:00Z", "A", "3", "2.50"));
        h.record(&sale_at(S, "T2", "2026-11-27T10:05:00Z", "B", "2", "4.00"));
        h.record(&movement_at(S, "M2", "2026-11-27T10:06:00Z", "sale", Some("T2"), &[("B", "-2")]));
        h.record(&sale_at(S, "T3", "2026-11-27T10:10:00Z", "C", "5", "1.10"));
        h.record(&movement_at(S, "M3", "2026-11-27T10:12:00Z", "sale", None, &[("C", "-1")]));
        h.record(&sale_at(S, "T5", "2026-11-27T10:20:00Z", "D", "1", "5.00"));
        h.record(&movement_at(S, "M5", "2026-11-27T10:21:00Z", "sale", Some("T5"), &[("D", "-3")]));
        h.record(&sale_at(S, "T4", "2026-11-27T10:50:00Z", "A", "1", "3.00"));
        h.record(&sale_at(S, "T6", "2026-11-27T10:55:00Z", "E", "2", "1.00"));
        h.record(&void_at(S, "V6", "2026-11-27T10:56:00Z", "T6"));
        h.record(&movement_at(S, "R1", "2026-11-27T11:00:00Z", "receipt", None, &[("A", "100")]));
    }

    // Proves the KPIs of open store-days follow the module's definitions exactly: variance is
    // the net drift at the latest price, unreconciled sales leave out the units still within
    // the settle time and keys recorded in full or beyond, and a void cancels its sale.
    #[test]
    fn kpis_count_settled_unreferenced_units_and_net_drift() {
        let mut h = Harness::new();
        traffic(&mut h);
        let kpis = kpis_of(&h);
        // Unreconciled: A 4 − 1 lagging = 3 at 3.00, C 4 at 1.10. Variance: 4 + 4 − 2 units,
        // 4 × 3.00 + 4 × 1.10 − 2 × 5.00.
        assert_eq!(kpis[S], expect(("7", "13.40"), ("6", "6.40")));
        assert_eq!(kpis.len(), 1);

        // At 11:06 the 10:50 sale of A has settled too.
        h.record(&movement_at(S, "R2", "2026-11-27T11:06:00Z", "receipt", None, &[("Z", "1")]));
        assert_eq!(kpis_of(&h)[S], expect(("8", "16.40"), ("6", "6.40")));

        // The late decrement of T1 (by reference) reconciles 3 units of A.
        h.record(&movement_at(S, "M1", "2026-11-27T11:07:00Z", "sale", Some("T1"), &[("A", "-3")]));
        assert_eq!(kpis_of(&h)[S], expect(("5", "7.40"), ("3", "-2.60")));
    }

    // Proves order units lag like sales: a ship-from-store order within the settle time is left
    // out of the unreconciled units and counts once settled, a return to the store never lags,
    // and variance counts orders at once (order at 10:50, watermark 11:00 then 11:06).
    #[test]
    fn order_units_lag_like_sales() {
        use crate::test_support::order_at;
        let mut h = Harness::new();
        h.record(&sale_at(S, "T1", "2026-11-27T10:00:00Z", "A", "1", "2.00"));
        h.record(&movement_at(S, "M1", "2026-11-27T10:01:00Z", "sale", Some("T1"), &[("A", "-1")]));
        h.record(&order_at(S, "O1", "2026-11-27T10:50:00Z", "ship_from_store", &[("A", "2"), ("A", "1")]));
        h.record(&order_at(S, "O2", "2026-11-27T10:51:00Z", "returned_to_store", &[("B", "1")]));
        h.record(&movement_at(S, "R1", "2026-11-27T11:00:00Z", "receipt", None, &[("Z", "1")]));
        // A: drift 3, all of it O1's, lagging. B: drift −1 (expected back, not recorded).
        assert_eq!(kpis_of(&h)[S], expect(("0", "0"), ("2", "6.00")));
        h.record(&movement_at(S, "R2", "2026-11-27T11:06:00Z", "receipt", None, &[("Z", "1")]));
        assert_eq!(kpis_of(&h)[S], expect(("3", "6.00"), ("2", "6.00")));
    }

    // Proves a finalized store-day no longer counts while the store stays listed (reading 0),
    // and that another store's open day counts on its own.
    #[test]
    fn finalized_days_drop_out_and_stores_stay_apart() {
        let mut h = Harness::new();
        traffic(&mut h);
        h.record(&sale_at("0043", "U1", "2026-11-27T09:00:00Z", "A", "2", "9.99"));
        h.record(&sale_at("0043", "U2", "2026-11-27T10:00:00Z", "A", "1", "9.99"));
        let other = kpis_of(&h)["0043"].clone();
        assert_eq!(other, expect(("2", "19.98"), ("3", "29.97")), "0043's watermark is 10:00: that sale still lags");

        h.record(&day_close_at(S, "2026-11-27", "2026-11-27T21:00:00Z", 5, "0", "0"));
        // 11 minutes past the close (close_grace 10 minutes) on the next day: the 27th finalizes.
        h.record(&movement_at(S, "R9", "2026-11-28T21:11:00Z", "receipt", None, &[("A", "1")]));
        let day = crate::test_support::day();
        assert!(h.store_day_of(S, day).unwrap().finalized, "the 27th is final");
        let kpis = kpis_of(&h);
        assert_eq!(kpis[S], StoreKpis::default(), "only the 28th is open, without drift");
        assert_eq!(kpis["0043"], other);
    }
}
