//! Unit tests of the retail topology over the in-memory store.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use tally_state::{Cf, Store};

use crate::codec;
use crate::decode::RejectReason;
use crate::test_support::Harness;
use crate::topology::Outcome;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn sale(id: &str, seq: u64, sku: &str, qty: &str, price: &str) -> serde_json::Value {
    json!({"type": "pos.transaction", "id": id, "store": "0042", "register": "R01", "seq": seq,
           "occurred_at": "2026-11-27T10:15:03-05:00", "business_day": "2026-11-27",
           "lines": [{"line": 1, "sku": sku, "qty": qty, "unit_price": price, "tax": "0.50"}],
           "tenders": [{"type": "card", "amount": "10.00"}]})
}

fn void(id: &str, target: &str) -> serde_json::Value {
    json!({"type": "pos.transaction", "id": id, "store": "0042", "occurred_at": "2026-11-27T11:00:00-05:00",
           "business_day": "2026-11-27", "voids": target})
}

fn movement(id: &str, sku: &str, qty: &str, reason: &str) -> serde_json::Value {
    json!({"type": "inventory.movement", "id": id, "store": "0042", "occurred_at": "2026-11-27T10:20:00-05:00",
           "business_day": "2026-11-27", "reason": reason, "lines": [{"sku": sku, "qty": qty}]})
}

// Proves a sale updates store-day and sku-day totals exactly.
#[test]
fn sale_updates_totals() {
    let mut h = Harness::new();
    assert_eq!(h.pos(&sale("T1", 1, "A", "2", "19.99")), Outcome::Accepted);
    let day = h.store_day();
    assert_eq!((day.transactions, day.lines), (1, 1));
    assert_eq!(day.gross, dec("39.98"));
    assert_eq!(day.tax, dec("0.50"));
    assert_eq!(day.tenders["card"], dec("10.00"));
    assert_eq!(h.sku("A").sold_units, dec("2"));
    assert_eq!(h.sku("A").expected_units(), dec("2"));
}

// Proves a void after its transaction reverses every aggregate, but keeps the seq seen.
#[test]
fn void_after_transaction_reverses_it() {
    let mut h = Harness::new();
    h.pos(&sale("T1", 1, "A", "1", "5.00"));
    h.pos(&sale("T2", 2, "A", "2", "19.99"));
    let before_second = {
        let mut other = Harness::new();
        other.pos(&sale("T1", 1, "A", "1", "5.00"));
        other.store_day()
    };
    assert_eq!(h.pos(&void("V1", "T2")), Outcome::Accepted);
    let day = h.store_day();
    assert_eq!(
        (day.transactions, day.net, day.tax),
        (before_second.transactions, before_second.net, before_second.tax)
    );
    assert_eq!(day.tenders["card"], dec("10.00"));
    assert_eq!(h.sku("A").sold_units, dec("1"));
    assert_eq!(day.registers["R01"].0, vec![(1, 2)]);
}

// Proves a void that arrives first cancels its transaction when that arrives.
#[test]
fn void_before_transaction_cancels_it() {
    let mut h = Harness::new();
    assert_eq!(h.pos(&void("V1", "T1")), Outcome::Accepted);
    assert_eq!(h.pos(&sale("T1", 1, "A", "2", "19.99")), Outcome::Accepted);
    let day = h.store_day();
    assert_eq!((day.transactions, day.net), (0, Decimal::ZERO));
    assert_eq!(h.sku("A").sold_units, Decimal::ZERO);
    assert!(h.store.scan_from(Cf::Voids, &[], 10).unwrap().is_empty(), "the pending void is consumed");
}

// Proves a second void of the same transaction changes nothing.
#[test]
fn double_void_reverses_once() {
    let mut h = Harness::new();
    h.pos(&sale("T1", 1, "A", "2", "19.99"));
    h.pos(&void("V1", "T1"));
    h.pos(&void("V2", "T1"));
    assert_eq!(h.store_day().transactions, 0);
    assert_eq!(h.sku("A").sold_units, Decimal::ZERO);
}

// Proves the same id with the same content is a counted duplicate, even across encodings.
#[test]
fn duplicate_is_counted_and_skipped() {
    let mut h = Harness::new();
    h.pos(&sale("T1", 1, "A", "2", "19.99"));
    let same_in_msgpack = rmp_serde::to_vec_named(&sale("T1", 1, "A", "2.0", "19.990")).unwrap();
    assert_eq!(h.send("retail.pos.0042", &same_in_msgpack), Outcome::Duplicate);
    assert_eq!(h.store_day().transactions, 1);
    assert_eq!(h.store_day().duplicates, 1);
}

// Proves the same id with other content is a conflict: DLQ'd, counted, not applied.
#[test]
fn conflict_goes_to_dlq() {
    let mut h = Harness::new();
    h.pos(&sale("T1", 1, "A", "2", "19.99"));
    assert_eq!(h.pos(&sale("T1", 1, "A", "3", "19.99")), Outcome::Rejected(RejectReason::Conflict));
    assert_eq!(h.sku("A").sold_units, dec("2"));
    assert_eq!(h.store_day().conflicts, 1);
    let outbox = h.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].subject, "retail.dlq.conflict");
    assert_eq!(outbox[0].msg_id, "dlq/2");
}

// Proves a store-day is summed in one currency: a transaction in another currency is
// dead-lettered with reason `currency` and changes nothing, while other days, voids and
// transactions in the day's currency are accepted.
#[test]
fn a_transaction_in_another_currency_than_its_day_goes_to_dlq() {
    let mut h = Harness::new();
    let mut euro = sale("T2", 2, "A", "1", "5.00");
    euro["currency"] = json!("EUR");
    assert_eq!(h.pos(&sale("T1", 1, "A", "2", "19.99")), Outcome::Accepted);
    let before = (h.store_day(), h.sku("A"));
    assert_eq!(h.pos(&euro), Outcome::Rejected(RejectReason::Currency));
    assert_eq!((h.store_day(), h.sku("A")), before, "a rejected record changes no total");
    let dlq = h.outbox().into_iter().filter(|e| e.subject == "retail.dlq.currency").collect::<Vec<_>>();
    assert_eq!(dlq.len(), 1);
    let detail = dlq[0].headers.iter().find(|(n, _)| n == "Tally-Error-Detail").map(|(_, v)| v.as_str());
    assert!(detail.is_some_and(|d| d.contains("\"EUR\"") && d.contains("\"USD\"")), "{detail:?}");
    assert_eq!(h.pos(&euro), Outcome::Rejected(RejectReason::Currency), "a re-send is rejected again, not a duplicate");
    let mut usd = sale("T3", 3, "A", "1", "19.99");
    usd["currency"] = json!("USD");
    assert_eq!(h.pos(&usd), Outcome::Accepted);
    let mut next_day = euro.clone();
    next_day["id"] = json!("T4");
    next_day["business_day"] = json!("2026-11-28");
    assert_eq!(h.pos(&next_day), Outcome::Accepted, "another day may be in another currency");
    assert_eq!(h.store_day().transactions, 2);
}

// Proves a rejected message is enqueued verbatim with the contract's DLQ headers.
#[test]
fn rejection_is_enqueued_verbatim() {
    let mut h = Harness::new();
    let payload = b"{\"type\": \"pos.transaction\", \"id\": ";
    assert_eq!(h.send("retail.pos.0042", payload), Outcome::Rejected(RejectReason::Decode));
    let entry = &h.outbox()[0];
    assert_eq!(entry.payload, payload.to_vec());
    assert_eq!(entry.subject, "retail.dlq.decode");
    let header = |name: &str| entry.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(header("Tally-Error").as_deref(), Some("decode"));
    assert_eq!(header("Tally-Source-Subject").as_deref(), Some("retail.pos.0042"));
    assert_eq!(header("Tally-Source-Sequence").as_deref(), Some("1"));
    assert!(header("Tally-Error-Detail").is_some_and(|d| !d.is_empty()));
}

// Proves movements count per reason, and only sale/return ones towards recorded units.
#[test]
fn movements_count_by_reason() {
    let mut h = Harness::new();
    h.pos(&sale("T1", 1, "A", "3", "1.00"));
    h.inventory(&movement("M1", "A", "-2", "sale"));
    h.inventory(&movement("M2", "A", "-5", "shrink"));
    h.inventory(&movement("M3", "A", "100", "receipt"));
    let sku = h.sku("A");
    assert_eq!(sku.recorded_units(), dec("2"));
    assert_eq!(sku.drift_units(), dec("1"));
    assert_eq!(h.store_day().inventory.len(), 3);
}

// Proves a restocked return lowers expected units and an unrestocked one does not.
#[test]
fn returns_respect_restock() {
    let mut h = Harness::new();
    let mut ret = sale("R1", 1, "A", "-1", "5.00");
    ret["lines"][0]["restock"] = json!(false);
    h.pos(&ret);
    h.pos(&sale("R2", 2, "A", "-2", "5.00"));
    let sku = h.sku("A");
    assert_eq!((sku.returned_units, sku.restocked_units), (dec("3"), dec("2")));
    assert_eq!(sku.expected_units(), dec("-2"));
    assert_eq!(sku.net, dec("-15.00"));
}

proptest! {
    // Proves the totals do not depend on the order in which transactions and their voids arrive.
    #[test]
    fn totals_are_order_independent(order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle()) {
        let events: Vec<serde_json::Value> = vec![
            sale("T1", 1, "A", "2", "19.99"), sale("T2", 2, "B", "1", "5.00"), sale("T3", 3, "A", "-1", "19.99"),
            void("V1", "T1"), void("V2", "T9"), sale("T4", 4, "B", "3", "5.00"), void("V3", "T4"), void("V4", "T4"),
        ];
        let mut h = Harness::new();
        for i in order {
            h.pos(&events[i]);
        }
        let day = h.store_day();
        prop_assert_eq!(day.transactions, 2);
        prop_assert_eq!(day.net, dec("-14.99"));
        prop_assert_eq!(h.sku("A").sold_units, Decimal::ZERO);
        prop_assert_eq!(h.sku("B").sold_units, dec("1"));
    }
}

// Proves state written by earlier versions, whose values were MessagePack maps with field
// names, still decodes to the same values now that fields are written by position: every kind
// of stored value the topology writes for sales, voids, returns, movements and a day-close is
// re-encoded the old way and decoded again.
#[test]
fn values_with_named_fields_from_earlier_versions_still_decode() {
    use crate::aggregates::{self, LatestPrice, Seen, SkuDay, StoreDay};
    use crate::test_support::{day_close_at, movement_at, sale_at, void_at};

    fn same_when_named<T>(bytes: &[u8]) -> usize
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let value: T = codec::decode(bytes).unwrap();
        let named = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(codec::decode::<T>(&named).unwrap(), value);
        assert!(named.len() > bytes.len(), "by position is the smaller form");
        named.len()
    }

    let mut h = Harness::new();
    let at = "2026-11-27T10:00:00-05:00";
    h.record(&sale_at("0042", "T1", at, "SKU-1", "3", "2.50"));
    h.record(&sale_at("0042", "T2", at, "SKU-1", "-1", "2.50"));
    h.record(&sale_at("0042", "T3", at, "SKU-2", "1", "9.99"));
    h.record(&void_at("0042", "V3", "2026-11-27T10:05:00-05:00", "T3"));
    h.record(&movement_at("0042", "M1", at, "sale", Some("T1"), &[("SKU-1", "-2")]));
    h.record(&day_close_at("0042", "2026-11-27", "2026-11-27T22:00:00-05:00", 2, "5.00", "0.00"));
    h.tick_after(chrono::Duration::minutes(10));

    let store_day =
        h.store.get(Cf::Aggregates, &crate::keys::store_day("0042", crate::test_support::day())).unwrap().unwrap();
    same_when_named::<StoreDay>(&store_day);
    let sku_day = h
        .store
        .get(Cf::Aggregates, &crate::keys::sku_day("0042", crate::test_support::day(), "SKU-1"))
        .unwrap()
        .unwrap();
    same_when_named::<SkuDay>(&sku_day);
    let price = h.store.get(Cf::Aggregates, &crate::keys::price("0042", "SKU-1")).unwrap().unwrap();
    same_when_named::<LatestPrice>(&price);
    let clock = h.store.get(Cf::Aggregates, &crate::clock::clock_key("0042")).unwrap().unwrap();
    same_when_named::<crate::clock::StoreClock>(&clock);
    for id in ["T1", "T3"] {
        let seen = h.store.get(Cf::Dedupe, &crate::keys::seen("0042", id)).unwrap().unwrap();
        same_when_named::<Seen>(&seen);
        // The business day alone is read from both forms too, skipping the transaction.
        let named = rmp_serde::to_vec_named(&codec::decode::<Seen>(&seen).unwrap()).unwrap();
        for bytes in [&seen, &named] {
            assert_eq!(codec::decode::<aggregates::SeenDay>(bytes).unwrap().business_day, crate::test_support::day());
        }
    }
    assert!(h.sku("SKU-1").sold_units > Decimal::ZERO, "the sku-day holds what was recorded");
}
