//! A stable fingerprint of a record's content, for the idempotency rule of docs/wire-format.md, "POS transaction": the
//! same id with the same content is a duplicate, with other content a conflict.
//!
//! "Same content" is about values, not bytes: `"2.00"` and `2`, JSON and MessagePack, field
//! order and unknown fields all fingerprint alike. The hash is FNV-1a over the MessagePack form
//! of the normalized record; it is written here rather than taken from `std` because it is
//! stored, and `std`'s hashers may change between Rust releases.

use crate::model::{Event, PosLine, Tender};

pub fn fingerprint(event: &Event) -> u64 {
    let normalized = normalized(event);
    // Serializing plain data to memory cannot fail.
    let bytes = rmp_serde::to_vec(&normalized).expect("serializing an event to memory cannot fail");
    fnv1a(&bytes)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

fn normalized(event: &Event) -> Event {
    let mut event = event.clone();
    match &mut event {
        Event::Transaction(tx) => {
            tx.lines.iter_mut().for_each(normalize_line);
            tx.tenders.iter_mut().for_each(normalize_tender);
        }
        Event::Movement(movement) => {
            for line in &mut movement.lines {
                line.qty = line.qty.normalize();
            }
        }
        Event::DayClose(close) => {
            close.net_sales = close.net_sales.normalize();
            close.tax = close.tax.normalize();
            close.tenders.iter_mut().for_each(normalize_tender);
        }
    }
    event
}

fn normalize_line(line: &mut PosLine) {
    for amount in [&mut line.qty, &mut line.unit_price, &mut line.discount, &mut line.tax] {
        *amount = amount.normalize();
    }
}

fn normalize_tender(tender: &mut Tender) {
    tender.amount = tender.amount.normalize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, InventoryMovement, MovementLine, MovementReason};
    use chrono::{DateTime, NaiveDate};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn movement(qty: &str) -> Event {
        Event::Movement(InventoryMovement {
            id: "INV-1".into(),
            store: "0042".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-27T10:17:40-05:00").unwrap(),
            business_day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            reason: MovementReason::Sale,
            reference: None,
            lines: vec![MovementLine { sku: "100234".into(), qty: Decimal::from_str(qty).unwrap() }],
        })
    }

    // Proves equal values with different scales fingerprint alike and different values do not.
    #[test]
    fn fingerprint_compares_values_not_spelling() {
        assert_eq!(fingerprint(&movement("-2")), fingerprint(&movement("-2.00")));
        assert_ne!(fingerprint(&movement("-2")), fingerprint(&movement("-3")));
    }
}
