//! Example tests of `order.fulfillment` (docs/wire-format.md, "Order fulfillment"): the
//! documented example, its subject, the kinds, the units and the accepted spellings.

use super::tests::{both, ctx, dec, POS};
use super::*;
use crate::model::{Fulfillment, OrderFulfillment, OrderLine};
use chrono::{DateTime, NaiveDate};
use serde_json::json;

const ORDERS: &str = "retail.orders.0042";

/// The example of docs/wire-format.md, "Order fulfillment".
fn example() -> serde_json::Value {
    json!({"type": "order.fulfillment", "id": "WEB-778812", "store": "0042",
           "occurred_at": "2026-11-27T11:02:00-05:00", "business_day": "2026-11-27",
           "fulfillment": "ship_from_store",
           "lines": [{"sku": "100234", "qty": "1"}, {"sku": "100987", "qty": 2}]})
}

fn order(value: &serde_json::Value) -> OrderFulfillment {
    match both(ORDERS, value) {
        Ok(Event::Order(order)) => order,
        other => panic!("not an order: {other:?}"),
    }
}

fn reject(value: &serde_json::Value) -> Rejection {
    both(ORDERS, value).expect_err("refused")
}

// Proves the documented example decodes to exactly its fields, from JSON and MessagePack alike,
// and is read from the orders subject family.
#[test]
fn contract_order_example() {
    let (source, _) = decode(ORDERS, None, example().to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(source, Source::Orders);
    assert_eq!(
        order(&example()),
        OrderFulfillment {
            id: "WEB-778812".into(),
            store: "0042".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-27T11:02:00-05:00").unwrap(),
            business_day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            fulfillment: Fulfillment::ShipFromStore,
            lines: vec![
                OrderLine { sku: "100234".into(), qty: dec("1") },
                OrderLine { sku: "100987".into(), qty: dec("2") },
            ],
        }
    );
}

// Proves every documented kind is read, and an unknown one is refused as `schema` naming the known ones.
#[test]
fn fulfillment_kinds() {
    for kind in ["ship_from_store", "pickup_in_store", "returned_to_store"] {
        let mut doc = example();
        doc["fulfillment"] = json!(kind);
        assert_eq!(order(&doc).fulfillment.as_str(), kind);
    }
    let mut doc = example();
    doc["fulfillment"] = json!("drone_drop");
    let refused = reject(&doc);
    assert_eq!(refused.reason, RejectReason::Schema);
    assert!(refused.detail.contains("\"drone_drop\"") && refused.detail.contains("returned_to_store"), "{refused}");
    doc.as_object_mut().unwrap().remove("fulfillment");
    assert_eq!(reject(&doc).detail, "fulfillment: required field is missing");
}

// Proves a line's units are read without their sign (the kind gives the direction), and that
// zero and non-decimal units are refused.
#[test]
fn units_are_read_without_their_sign() {
    let mut negative = example();
    negative["lines"][1]["qty"] = json!("-2");
    assert_eq!(order(&negative), order(&example()), "-2 units are 2 units");
    for (qty, reason) in [
        (json!("0"), RejectReason::Schema),
        (json!("-0.00"), RejectReason::Schema),
        (json!("x"), RejectReason::Decimal),
    ] {
        let mut doc = example();
        doc["lines"][1]["qty"] = qty.clone();
        let refused = reject(&doc);
        assert_eq!(refused.reason, reason, "{qty}: {refused}");
        assert!(refused.detail.starts_with("lines[1].qty"), "{refused}");
    }
    let mut doc = example();
    doc["lines"] = json!([]);
    assert_eq!(reject(&doc).reason, RejectReason::Schema);
}

// Proves an order belongs on P.orders.<store> only, and other records not there.
#[test]
fn orders_have_their_own_subject() {
    assert_eq!(both(POS, &example()).unwrap_err().reason, RejectReason::Schema);
    let mut movement = example();
    movement["type"] = json!("inventory.movement");
    assert_eq!(reject(&movement).reason, RejectReason::Schema);
    let mut other_store = example();
    other_store["store"] = json!("0043");
    assert_eq!(reject(&other_store).reason, RejectReason::StoreMismatch);
}

// Proves `order_id` and `fulfillment_kind` / `kind` are read when the documented names are
// absent, decode to the same record, and are refused when two spellings disagree.
#[test]
fn other_spellings_of_id_and_kind() {
    let mut spelled = example();
    let fields = spelled.as_object_mut().unwrap();
    fields.remove("id");
    fields.remove("fulfillment");
    fields.insert("order_id".into(), json!("WEB-778812"));
    fields.insert("fulfillment_kind".into(), json!("ship_from_store"));
    assert_eq!(order(&spelled), order(&example()));
    let mut typed = example();
    typed.as_object_mut().unwrap().remove("fulfillment");
    typed["fulfillment_type"] = json!("ship_from_store");
    assert_eq!(order(&typed), order(&example()));
    let mut kind = spelled.clone();
    kind.as_object_mut().unwrap().remove("fulfillment_kind");
    kind["kind"] = json!("ship_from_store");
    assert_eq!(order(&kind), order(&example()));
    let mut agree = example();
    agree["order_id"] = json!("WEB-778812");
    assert_eq!(order(&agree), order(&example()));
    let mut disagree = example();
    disagree["order_id"] = json!("WEB-1");
    assert_eq!(reject(&disagree).detail, "id and order_id disagree: \"WEB-778812\" versus \"WEB-1\"");
}
