//! Where each retail record lives in the store: column family and binary key.
//!
//! Keys are built with `tally_state::key`, whose encoding preserves order, so the records of one
//! store-day are one contiguous range (`sku_day_prefix`). The first component of an aggregate
//! key is a tag that keeps record kinds apart inside the `aggregates` column family; every tag
//! is here, so that two kinds never share one.

use chrono::NaiveDate;
use tally_state::key::{KeyReader, KeyWriter};

use crate::pack::Digits;

const TAG_STORE_DAY: u8 = 1;
const TAG_SKU_DAY: u8 = 2;
const TAG_PRICE: u8 = 3;
/// A store's clock (`clock`).
pub(crate) const TAG_CLOCK: u8 = 4;
const TAG_REFERENCE: u8 = 5;
/// The registry of store-days with changes not yet posted (`postings`).
const TAG_DIRTY: u8 = 7;
/// The latest alert revision of a drift key (`outputs`).
pub(crate) const TAG_ALERT_LATEST: u8 = 8;
/// Drift keys pending or firing (`outputs`).
pub(crate) const TAG_PENDING: u8 = 9;
/// What belongs to a store-day, for pruning it (`retention`).
pub(crate) const TAG_DAY_INDEX: u8 = 10;
/// Codes that no SKU alias mapped, per store-day (`unmapped`).
pub(crate) const TAG_UNMAPPED: u8 = 11;
/// Dead-lettered copies of a record, by (id, store, stream sequence) (`lineage`).
pub(crate) const TAG_REJECTED: u8 = 20;
/// The `unmatched` ids of each alert revision (`lineage`).
pub(crate) const TAG_ALERT_REVISION: u8 = 21;
/// The input position each ERP posting covers (`lineage`).
pub(crate) const TAG_POSTING_COVER: u8 = 22;
/// Inventory adjustment lines per store, period, sku and reason: total and posted (`adjustments`).
pub(crate) const TAG_ADJ_LINE: u8 = 32;
/// (store, period)s with inventory adjustments not yet posted (`adjustments`).
pub(crate) const TAG_ADJ_DIRTY: u8 = 33;
/// Where each store's adjustment postings of one period stand (`adjustments`).
pub(crate) const TAG_ADJ_BOOK: u8 = 34;

/// `Meta` keys.
pub const META_POSITION: &[u8] = b"position";
pub const META_OUTBOX_NEXT: &[u8] = b"outbox_next";
/// Counts the times the aggregates were rewritten outside a batch (by `reconcile`), so that a
/// working set kept from before is not trusted after (`working_set`).
pub const META_GENERATION: &[u8] = b"generation";

/// Writes the day as the text `YYYY-MM-DD`, from a buffer on the stack (`pack::Digits`): chrono's
/// `format` re-parses its pattern on every call, and this runs for several keys of every record.
fn day_component(key: &mut KeyWriter, day: NaiveDate) -> &mut KeyWriter {
    let mut text = Digits::default();
    if text.date(&day) {
        return key.str(text.as_str());
    }
    use chrono::Datelike;
    key.str(&format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day()))
}

/// (store, business_day) → `StoreDay`.
pub fn store_day(store: &str, day: NaiveDate) -> Vec<u8> {
    day_component(KeyWriter::new().tag(TAG_STORE_DAY).str(store), day).finish()
}

/// Every `StoreDay` of one store, in day order.
pub fn store_days_prefix(store: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_STORE_DAY).str(store).finish()
}

/// Every `StoreDay` of every store.
pub fn all_store_days_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_STORE_DAY).finish()
}

/// Reads (store, business_day) back from a `store_day` key.
pub fn parse_store_day(key: &[u8]) -> Option<(String, NaiveDate)> {
    let mut reader = KeyReader::new(key);
    if reader.tag().ok()? != TAG_STORE_DAY {
        return None;
    }
    let store = reader.str().ok()?;
    let day = NaiveDate::parse_from_str(&reader.str().ok()?, "%Y-%m-%d").ok()?;
    Some((store, day))
}

/// (store, business_day, sku) → `SkuDay`.
pub fn sku_day(store: &str, day: NaiveDate, sku: &str) -> Vec<u8> {
    day_component(KeyWriter::new().tag(TAG_SKU_DAY).str(store), day).str(sku).finish()
}

/// Every `SkuDay` of one store-day, in sku order.
pub fn sku_day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    day_component(KeyWriter::new().tag(TAG_SKU_DAY).str(store), day).finish()
}

/// Reads the sku back from a `sku_day` key.
pub fn parse_sku_day_sku(key: &[u8]) -> Option<String> {
    let mut reader = KeyReader::new(key);
    if reader.tag().ok()? != TAG_SKU_DAY {
        return None;
    }
    reader.str().ok()?;
    reader.str().ok()?;
    reader.str().ok()
}

/// (store, sku) → the latest unit price seen, across days.
pub fn price(store: &str, sku: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_PRICE).str(store).str(sku).finish()
}

/// (store, POS transaction id, sku) → present once an inventory movement of that sku
/// referenced the transaction (`ref`).
pub fn reference(store: &str, transaction_id: &str, sku: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_REFERENCE).str(store).str(transaction_id).str(sku).finish()
}

/// Every reference to one transaction, whatever the sku.
pub fn references_prefix(store: &str, transaction_id: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_REFERENCE).str(store).str(transaction_id).finish()
}

/// `Dedupe`: (store, record id) → `Seen`.
pub fn seen(store: &str, id: &str) -> Vec<u8> {
    KeyWriter::new().str(store).str(id).finish()
}

/// `Voids`: (store, voided transaction id) → the id of the void that arrived first.
pub fn pending_void(store: &str, voided_id: &str) -> Vec<u8> {
    KeyWriter::new().str(store).str(voided_id).finish()
}

/// `Outbox`: a global, gapless sequence, so draining in key order keeps every store in order.
pub fn outbox(seq: u64) -> Vec<u8> {
    KeyWriter::new().u64(seq).finish()
}

pub fn dirty_key(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_DIRTY).str(store).str(&day.to_string()).finish()
}

pub fn dirty_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_DIRTY).finish()
}

/// Reads (store, day) back from a dirty-registry key.
pub fn parse_dirty_key(key: &[u8]) -> Option<(String, NaiveDate)> {
    let mut reader = tally_state::KeyReader::new(key);
    if reader.tag().ok()? != TAG_DIRTY {
        return None;
    }
    let store = reader.str().ok()?;
    let day = NaiveDate::parse_from_str(&reader.str().ok()?, "%Y-%m-%d").ok()?;
    Some((store, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the day component is the same `YYYY-MM-DD` text that keys always held, so keys
    // written by earlier versions are found, for four-digit years and beyond them.
    #[test]
    fn the_day_component_is_the_iso_date_text() {
        for (y, m, d) in
            [(2026, 11, 27), (1, 1, 1), (0, 12, 31), (999, 9, 9), (9999, 12, 31), (10000, 1, 1), (-1, 6, 15)]
        {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let expected = KeyWriter::new().str(&format!("{:04}-{:02}-{:02}", y, m, d)).finish();
            assert_eq!(day_component(&mut KeyWriter::new(), day).finish(), expected, "{y}-{m}-{d}");
        }
    }

    // Proves a store-day's sku records are exactly the keys under its prefix, and no other day's.
    #[test]
    fn sku_days_of_one_day_share_a_prefix_that_excludes_other_days() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let next = day.succ_opt().unwrap();
        let prefix = sku_day_prefix("0042", day);
        assert!(sku_day("0042", day, "100234").starts_with(&prefix));
        assert!(!sku_day("0042", next, "100234").starts_with(&prefix));
        assert!(!sku_day("00421", day, "100234").starts_with(&prefix));
        assert_eq!(parse_sku_day_sku(&sku_day("0042", day, "10/0")), Some("10/0".into()));
    }

    // Proves store-day keys read back to the store and day they were built from.
    #[test]
    fn store_day_keys_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert_eq!(parse_store_day(&store_day("S-1", day)), Some(("S-1".to_string(), day)));
        assert_eq!(parse_store_day(&sku_day("S-1", day, "x")), None);
    }
}
