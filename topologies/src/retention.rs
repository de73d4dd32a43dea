//! Retention: a finished business day is removed once its store's event time is past the end
//! of that day plus the retention period, so state stays bounded over months.
//!
//! What goes: the day's totals, its sku-days, its alert and posting bookkeeping, and the ids
//! that dedupe, void matching and lineage needed — found through a per-day index written with
//! them. What stays: store clocks and latest prices (one per store, one per store and sku).
//! A record for a pruned day that arrives afterwards is counted as new: the retention should
//! exceed how late anything is ever re-sent.

use chrono::NaiveDate;
use tally_state::key::{KeyReader, KeyWriter};
use tally_state::{Cf, Overlay};

use crate::error::TopologyError;
use crate::keys::{self, TAG_DAY_INDEX};

/// Keys deleted per scan round while pruning.
const PRUNE_SCAN: usize = 4096;

/// What an index entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// A `Dedupe` entry (store, id).
    Seen = 1,
    /// A `Voids` entry (store, voided id) still waiting for its transaction.
    PendingVoid = 2,
    /// A reference (store, transaction id) made by an inventory movement.
    Reference = 3,
    /// Dead-lettered copies of a record (store, id) (`lineage`).
    Rejected = 4,
}

fn day_index_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_DAY_INDEX).str(store).str(&day.to_string()).finish()
}

/// Records that `id` belongs to `day`, so that pruning the day finds it.
pub fn index(txn: &mut Overlay<'_>, store: &str, day: NaiveDate, kind: Indexed, id: &str) {
    let key = KeyWriter::new().tag(TAG_DAY_INDEX).str(store).str(&day.to_string()).tag(kind as u8).str(id).finish();
    txn.put(Cf::Aggregates, key, Vec::new());
}

/// Removes every record of one store-day.
pub fn prune_day(txn: &mut Overlay<'_>, store: &str, day: NaiveDate) -> Result<(), TopologyError> {
    txn.delete(Cf::Aggregates, keys::store_day(store, day));
    txn.delete(Cf::Aggregates, crate::keys::dirty_key(store, day));
    for prefix in [
        keys::sku_day_prefix(store, day),
        crate::outputs::alert_day_prefix(store, day),
        crate::outputs::pending_day_prefix(store, day),
        crate::unmapped::day_prefix(store, day),
        crate::lineage::alert_revisions_day_prefix(store, day),
        crate::lineage::posting_covers_day_prefix(store, day),
    ] {
        delete_prefix(txn, &prefix, |_| Ok(()))?;
    }
    let index_prefix = day_index_prefix(store, day);
    let mut referenced = Vec::new();
    let mut rejected = Vec::new();
    delete_prefix(txn, &index_prefix, |txn_and_key| {
        let (txn, key) = txn_and_key;
        let mut reader = KeyReader::new(&key[index_prefix.len()..]);
        let (Ok(kind), Ok(id)) = (reader.tag(), reader.str()) else {
            return Err(tally_state::StateError::Corrupt {
                cf: Cf::Aggregates,
                detail: format!("bad day index key {key:?}"),
            }
            .into());
        };
        match kind {
            k if k == Indexed::Seen as u8 => txn.delete(Cf::Dedupe, keys::seen(store, &id)),
            k if k == Indexed::PendingVoid as u8 => txn.delete(Cf::Voids, keys::pending_void(store, &id)),
            k if k == Indexed::Reference as u8 => referenced.push(id),
            k if k == Indexed::Rejected as u8 => rejected.push(id),
            _ => {}
        }
        Ok(())
    })?;
    for id in referenced {
        delete_prefix(txn, &keys::references_prefix(store, &id), |_| Ok(()))?;
    }
    for id in rejected {
        delete_prefix(txn, &crate::lineage::rejected_prefix(store, &id), |_| Ok(()))?;
    }
    Ok(())
}

/// Deletes every `Aggregates` key under `prefix`, calling `also` for each first.
fn delete_prefix(
    txn: &mut Overlay<'_>,
    prefix: &[u8],
    mut also: impl FnMut((&mut Overlay<'_>, &[u8])) -> Result<(), TopologyError>,
) -> Result<(), TopologyError> {
    loop {
        let rows = txn.scan_prefix(Cf::Aggregates, prefix, PRUNE_SCAN)?;
        for (key, _) in &rows {
            also((txn, key))?;
            txn.delete(Cf::Aggregates, key.clone());
        }
        if rows.len() < PRUNE_SCAN {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use serde_json::json;
    use tally_state::{Cf, MemStore, Overlay, Store};

    use crate::topology::{InputMessage, Retail, Tick, TopologyConfig};

    /// Keys held per column family.
    fn sizes(store: &MemStore) -> Vec<usize> {
        Cf::ALL.iter().map(|cf| store.len(*cf)).collect()
    }

    // Proves state stays flat over many days: after the retention period, each new day's
    // records are matched by a pruned old day's, in every column family.
    #[test]
    fn state_size_is_flat_over_many_days() {
        let config = TopologyConfig {
            retention: Duration::days(7),
            erp_interval: Duration::zero(),
            ..TopologyConfig::default()
        };
        let retail = Retail::new(config);
        let store = MemStore::default();
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut seq = 0;
        let mut sizes_by_day = Vec::new();
        for n in 0..60 {
            let day = first + Duration::days(n);
            let mut txn = Overlay::new(&store);
            for i in 0..20 {
                let at = Utc.from_utc_datetime(&day.and_hms_opt(9, 0, 0).unwrap()) + Duration::minutes(i * 20);
                let tx_id = format!("T-{day}-{i}");
                let sku = format!("SKU{}", i % 7);
                let sale = json!({"type": "pos.transaction", "id": tx_id, "store": "S1", "register": "R1", "seq": i + 1,
                    "occurred_at": at.to_rfc3339(), "lines": [{"sku": sku, "qty": "1", "unit_price": "2.50"}]});
                let movement = json!({"type": "inventory.movement", "id": format!("M-{day}-{i}"), "store": "S1",
                    "occurred_at": (at + Duration::minutes(5)).to_rfc3339(), "reason": "sale", "ref": tx_id,
                    "lines": [{"sku": sku, "qty": "-1"}]});
                for (subject, record) in [("retail.pos.S1", sale), ("retail.inventory.S1", movement)] {
                    seq += 1;
                    let payload = record.to_string();
                    let msg = InputMessage::new(subject, None, payload.as_bytes(), seq);
                    retail.apply_batch(&mut txn, &[msg], at, Tick::Skip).unwrap();
                }
            }
            let close = Utc.from_utc_datetime(&day.and_hms_opt(23, 0, 0).unwrap());
            retail.apply_batch(&mut txn, &[], close, Tick::Run).unwrap();
            store.write(&txn.into_batch()).unwrap();
            // The publisher would have drained the outbox by now.
            let outbox = store.scan_from(Cf::Outbox, &[], usize::MAX).unwrap();
            let mut drained = tally_state::WriteBatch::default();
            for (key, _) in outbox {
                drained.delete(Cf::Outbox, key);
            }
            store.write(&drained).unwrap();
            sizes_by_day.push(sizes(&store));
        }
        let (day20, day59) = (&sizes_by_day[20], &sizes_by_day[59]);
        assert!(day20.iter().sum::<usize>() > 100, "the simulation holds state: {day20:?}");
        for (cf, (early, late)) in Cf::ALL.iter().zip(day20.iter().zip(day59)) {
            assert!(late <= early, "{cf:?} grew from {early} keys on day 20 to {late} on day 59 ({sizes_by_day:?})");
        }
    }
}
