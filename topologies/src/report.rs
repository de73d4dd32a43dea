//! The day's reconciliation as the HTTP API and `tally inspect` show it (docs/http-api.md).
//!
//! Built from state alone, so it answers the same offline as online. Decimals leave as strings.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tally_state::{Cf, Store};

use crate::aggregates::{SkuDay, StoreDay};
use crate::clock::{self, StoreClock};
use crate::codec;
use crate::drift::DriftAlert;
use crate::error::TopologyError;
use crate::keys;

/// Store-days are bounded (one per store and day), skus per store-day too (a store's
/// assortment); this cap only guards against a runaway scan.
const SKUS_PER_DAY_MAX: usize = 1_000_000;

/// The reconciliation of one store-day, or `None` when tally has never seen it.
pub fn day_report(store: &dyn Store, store_id: &str, day: NaiveDate) -> Result<Option<Value>, TopologyError> {
    let Some(bytes) = store.get(Cf::Aggregates, &keys::store_day(store_id, day))? else {
        return Ok(None);
    };
    let totals: StoreDay = decode(&bytes, "store-day totals")?;
    let skus = store.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(store_id, day), SKUS_PER_DAY_MAX)?;
    let mut sku_rows = Vec::with_capacity(skus.len());
    for (key, value) in skus {
        let sku = keys::parse_sku_day_sku(&key).unwrap_or_default();
        let figures: SkuDay = decode(&value, "sku-day totals")?;
        sku_rows.push((sku, figures));
    }
    Ok(Some(render(store_id, day, &totals, &sku_rows)))
}

/// Every (store, business_day) that state holds, in key order.
pub fn store_days(store: &dyn Store, limit: usize) -> Result<Vec<(String, NaiveDate)>, TopologyError> {
    let rows = store.scan_prefix(Cf::Aggregates, &keys::all_store_days_prefix(), limit)?;
    Ok(rows.iter().filter_map(|(key, _)| keys::parse_store_day(key)).collect())
}

/// The stored totals of one store-day.
pub fn store_day_totals(store: &dyn Store, store_id: &str, day: NaiveDate) -> Result<Option<StoreDay>, TopologyError> {
    match store.get(Cf::Aggregates, &keys::store_day(store_id, day))? {
        Some(bytes) => Ok(Some(decode(&bytes, "store-day totals")?)),
        None => Ok(None),
    }
}

fn render(store_id: &str, day: NaiveDate, totals: &StoreDay, skus: &[(String, SkuDay)]) -> Value {
    let tenders: Vec<Value> =
        totals.tenders.iter().map(|(kind, amount)| json!({"type": kind, "amount": text(*amount)})).collect();
    let sku_rows: Vec<Value> = skus
        .iter()
        .filter(|(_, f)| f.sold_units != Decimal::ZERO || f.returned_units != Decimal::ZERO || !f.net.is_zero())
        .map(|(sku, f)| {
            json!({
                "sku": sku,
                "sold_units": text(f.sold_units),
                "returned_units": text(f.returned_units),
                "restocked_units": text(f.restocked_units),
                "gross": text(f.gross),
                "discount": text(f.discount),
                "net": text(f.net),
                "tax": text(f.tax),
            })
        })
        .collect();
    let drift_rows: Vec<Value> = skus
        .iter()
        .filter(|(_, f)| !f.drift_units().is_zero())
        .map(|(sku, f)| {
            let mut row = json!({
                "sku": sku,
                "expected_units": f.expected_units().normalize().to_string(),
                "recorded_units": f.recorded_units().normalize().to_string(),
                "drift_units": f.drift_units().normalize().to_string(),
                "state": f.alert.phase.as_str(),
            });
            if let Some(by_source) = crate::report_orders::expected_by_source(f) {
                row["expected_units_by_source"] = by_source;
            }
            row
        })
        .collect();
    let by_reason: Map<String, Value> =
        totals.inventory.iter().map(|(reason, units)| (reason.as_str().to_string(), text(*units).into())).collect();
    let mut report = json!({
        "store": store_id,
        "business_day": day.format("%Y-%m-%d").to_string(),
        "currency": totals.currency,
        "pos": {
            "transactions": totals.transactions,
            "lines": totals.lines,
            "gross": text(totals.gross),
            "discount": text(totals.discount),
            "net": text(totals.net),
            "tax": text(totals.tax),
            "tenders": tenders,
            "skus": sku_rows,
        },
        "inventory": {"by_reason": by_reason},
        "day_close": totals.day_close.as_ref().map(|close| day_close(close, &totals.tenders)),
        "drift": drift_rows,
        "postings": {
            "sent": totals.posting.seq,
            "last_seq": totals.posting.seq,
            "final": totals.posting.final_sent,
        },
        "audit": totals.finalized.then(|| crate::postings::audit(totals)),
        "duplicates": totals.duplicates,
        "conflicts": totals.conflicts,
    });
    if let Some(orders) = crate::report_orders::orders(totals, skus) {
        report["orders"] = orders;
    }
    report
}

/// The POS's own totals, with the tenders over/short when its day close listed tenders (the
/// field is absent otherwise, so such answers stay as they were).
fn day_close(close: &crate::model::DayClose, computed: &BTreeMap<String, Decimal>) -> Value {
    let mut out = json!({
        "id": close.id,
        "transaction_count": close.transaction_count,
        "net_sales": text(close.net_sales),
        "tax": text(close.tax),
    });
    let over_short = crate::tenders_audit::over_short(close, computed);
    if !over_short.is_empty() {
        // Strings and lists: serializing them to a JSON value cannot fail.
        out["tenders_over_short"] = serde_json::to_value(over_short).expect("a list of strings serializes");
    }
    out
}

/// Decimals leave as strings, with the scale their arithmetic gave them ("59.97", "3").
pub fn text(amount: Decimal) -> String {
    amount.to_string()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, TopologyError> {
    codec::decode(bytes).map_err(|source| TopologyError::Corrupt { what, source })
}

/// The latest revision of each alert, optionally only those in `state` (e.g. "firing").
pub fn alerts(store: &dyn Store, state: Option<&str>, limit: usize) -> Result<Vec<DriftAlert>, TopologyError> {
    let mut alerts = Vec::new();
    let mut corrupt = None;
    for_each_under(store, &crate::outputs::alerts_prefix(), |_, bytes| {
        let alert = match serde_json::from_slice::<DriftAlert>(bytes) {
            Ok(alert) => alert,
            Err(err) => {
                corrupt = Some(err);
                return false;
            }
        };
        if state.is_none_or(|wanted| alert.state == wanted) {
            alerts.push(alert);
        }
        alerts.len() < limit
    })?;
    match corrupt {
        Some(err) => Err(TopologyError::CorruptJson { what: "drift alert", source: err }),
        None => Ok(alerts),
    }
}

/// Entries read per scan by [`for_each_under`].
const SCAN_CHUNK: usize = 4096;

/// Calls `visit` on every aggregate under `prefix`, [`SCAN_CHUNK`] at a time: a state with tens
/// of thousands of alerts, each a JSON body of a kilobyte or more, is not held in memory at
/// once (the gauge recount runs every few seconds).
fn for_each_under(
    store: &dyn Store,
    prefix: &[u8],
    visit: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), TopologyError> {
    Ok(tally_state::visit_prefix(store, Cf::Aggregates, prefix, SCAN_CHUNK, visit)?)
}

/// An alert read only for its `state`: the rest is skipped, not built into a tree.
#[derive(serde::Deserialize)]
struct AlertStateOnly<'a> {
    #[serde(borrow)]
    state: Option<&'a str>,
}

/// Drift keys per (store, state) for the gauge: pending from its index, the others from the
/// latest revision of each alert.
pub fn drift_key_counts(
    store: &dyn Store,
) -> Result<std::collections::BTreeMap<(String, &'static str), u64>, TopologyError> {
    let mut counts = std::collections::BTreeMap::new();
    for_each_under(store, &crate::outputs::pending_prefix(), |key, _| {
        if let Some(id) = crate::outputs::store_of_index_key(key) {
            *counts.entry((id, "pending")).or_default() += 1;
        }
        true
    })?;
    for_each_under(store, &crate::outputs::alerts_prefix(), |key, bytes| {
        let (Some(id), Ok(alert)) =
            (crate::outputs::store_of_index_key(key), serde_json::from_slice::<AlertStateOnly>(bytes))
        else {
            return true;
        };
        let state = match alert.state {
            Some("firing") => "firing",
            Some("resolved") => "resolved",
            Some("final") => "final",
            _ => return true,
        };
        *counts.entry((id, state)).or_default() += 1;
        true
    })?;
    Ok(counts)
}

/// Final postings overdue per store, for the gauge: the store-days not finalized whose
/// finalization (their day-close plus `erp.close_grace`, or the end of the day plus
/// `erp.max_open`, in event time) came due by `cutoff` without firing, because the store's
/// watermark lags. Every store with a clock is listed, 0 when none is overdue. Reads the store
/// clocks (one per store), each store's timers due by `cutoff` (none while its watermark keeps
/// up) and the totals of the days those name.
pub fn final_postings_overdue(
    store: &dyn Store,
    cutoff: DateTime<Utc>,
) -> Result<BTreeMap<String, u64>, TopologyError> {
    let mut clocks = Vec::new();
    let mut corrupt = None;
    for_each_under(store, &clock::all_clocks_prefix(), |key, bytes| {
        match (clock::parse_clock_key(key), codec::decode::<StoreClock>(bytes)) {
            (Some(id), Ok(store_clock)) => clocks.push((id, store_clock)),
            (_, Err(source)) => corrupt = Some(source),
            (None, Ok(_)) => {}
        }
        corrupt.is_none()
    })?;
    if let Some(source) = corrupt {
        return Err(TopologyError::Corrupt { what: "store clock", source });
    }
    let mut overdue = BTreeMap::new();
    for (id, store_clock) in clocks {
        let mut n = 0;
        for day in clock::finalize_days_due_by(store, &id, &store_clock, cutoff)? {
            if store_day_totals(store, &id, day)?.is_some_and(|totals| !totals.finalized) {
                n += 1;
            }
        }
        overdue.insert(id, n);
    }
    Ok(overdue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::Phase;
    use crate::outputs;
    use tally_state::{MemStore, Overlay};

    fn alert(state: &str) -> DriftAlert {
        serde_json::from_value(json!({
            "type": "drift.alert", "id": "drift/0042/2026-11-27/x", "revision": 1, "state": state,
            "severity": "warning", "store": "0042", "sku": "x", "business_day": "2026-11-27",
            "expected_units": "2", "recorded_units": "0", "drift_units": "2", "drift_value": "9.98",
            "drift_ratio": "1", "over_since": null, "evaluated_at": "2026-11-27T10:00:00-05:00",
            "unmatched": []
        }))
        .expect("a complete alert")
    }

    // Proves an alert stored by an earlier version (its fields written by a JSON map, in
    // alphabetical order) reads back and is written again byte for byte.
    #[test]
    fn alerts_keep_their_bytes() {
        let earlier = serde_json::to_vec(&serde_json::to_value(alert("firing")).unwrap()).unwrap();
        let typed: DriftAlert = serde_json::from_slice(&earlier).unwrap();
        assert_eq!(serde_json::to_vec(&typed).unwrap(), earlier);
    }

    // Proves a final posting counts as overdue only for a day not finalized whose finalization
    // (day-close plus close_grace, or end of day plus max_open) is due by the cutoff but not
    // reached by the store's watermark, once per day, and that every store is listed.
    #[test]
    fn final_postings_overdue_counts_unfinalized_days_past_their_deadline() {
        use crate::test_support::{day_close_at, sale_at, Harness};
        let mut h = Harness::new();
        // L: one sale on the 27th, then silence; its day finalizes at 29T06:00 (max_open 30h).
        h.record(&sale_at("L", "L-1", "2026-11-27T12:00:00Z", "A", "1", "1.00"));
        // C: a day-close at 20:00; finalization due 20:10, the watermark stays at 20:00.
        h.record(&sale_at("C", "C-1", "2026-11-27T12:00:00Z", "A", "1", "1.00"));
        h.record(&day_close_at("C", "2026-11-27", "2026-11-27T20:00:00Z", 1, "1.00", "0"));
        // F: finalized after its day-close; its max_open timer (29T06:00) is still stored.
        h.record(&sale_at("F", "F-1", "2026-11-27T12:00:00Z", "A", "1", "1.00"));
        h.record(&day_close_at("F", "2026-11-27", "2026-11-27T22:00:00Z", 1, "1.00", "0"));
        h.record(&sale_at("F", "F-2", "2026-11-27T23:00:00Z", "A", "1", "1.00"));
        // K: keeps up; a sale on the 29th at 07:00 fires the 27th's finalization.
        h.record(&sale_at("K", "K-1", "2026-11-27T12:00:00Z", "A", "1", "1.00"));
        h.record(&sale_at("K", "K-2", "2026-11-29T07:00:00Z", "A", "1", "1.00"));
        let day27 = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert!(h.store_day_of("F", day27).unwrap().finalized);
        assert!(h.store_day_of("K", day27).unwrap().finalized);
        assert!(!h.store_day_of("L", day27).unwrap().finalized);

        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let counts = |cutoff: &str| -> Vec<(String, u64)> {
            final_postings_overdue(&h.store, at(cutoff)).unwrap().into_iter().collect()
        };
        let expect = |pairs: [(&str, u64); 4]| -> Vec<(String, u64)> {
            pairs.iter().map(|(store, n)| (store.to_string(), *n)).collect()
        };
        assert_eq!(counts("2026-11-27T20:09:00Z"), expect([("C", 0), ("F", 0), ("K", 0), ("L", 0)]));
        assert_eq!(counts("2026-11-27T21:00:00Z"), expect([("C", 1), ("F", 0), ("K", 0), ("L", 0)]));
        assert_eq!(counts("2026-11-29T12:00:00Z"), expect([("C", 1), ("F", 0), ("K", 0), ("L", 1)]));
    }

    // Proves the counts and the alert list read every entry when they span several scan
    // chunks, and that the list stops at its limit.
    #[test]
    fn counts_and_lists_read_past_a_scan_chunk() {
        let store = MemStore::new();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let firing = SCAN_CHUNK + 3;
        let mut txn = Overlay::new(&store);
        for i in 0..firing {
            outputs::remember_alert(&mut txn, "0042", day, &format!("sku-{i:05}"), &alert("firing"));
        }
        outputs::remember_alert(&mut txn, "0042", day, "resolved-one", &alert("resolved"));
        for i in 0..2 * SCAN_CHUNK {
            outputs::index_pending(&mut txn, "0007", day, &format!("sku-{i:05}"), Phase::Ok, Phase::Pending);
        }
        store.write(&txn.into_batch()).unwrap();

        let counts = drift_key_counts(&store).unwrap();
        assert_eq!(counts.get(&("0042".to_string(), "firing")), Some(&(firing as u64)));
        assert_eq!(counts.get(&("0042".to_string(), "resolved")), Some(&1));
        assert_eq!(counts.get(&("0007".to_string(), "pending")), Some(&(2 * SCAN_CHUNK as u64)));
        assert_eq!(alerts(&store, Some("resolved"), usize::MAX).unwrap().len(), 1);
        assert_eq!(alerts(&store, Some("firing"), usize::MAX).unwrap().len(), firing);
        assert_eq!(alerts(&store, None, 10).unwrap().len(), 10);
    }
}
