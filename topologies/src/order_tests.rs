//! Order fulfillment tests (docs/wire-format.md, "Order fulfillment"; issue 17 item 4): orders
//! as expected units in drift, their breakdown in alerts and the day report, dedupe and
//! conflicts as for POS records, and state written before orders existed. Driven through
//! `Retail::apply_batch` over the in-memory store, read back as the processor would publish.

use std::str::FromStr;

use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::aggregates::{SkuDay, StoreDay};
use crate::codec;
use crate::decode::RejectReason;
use crate::model::Fulfillment;
use crate::report;
use crate::test_support::{day, movement_at, order_at, sale_at, Harness, Published};
use crate::topology::{Outcome, TopologyConfig};

const S: &str = "0042";

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// An event time on 2026-11-27 in store 0042's zone (New York, UTC−5 in November).
fn at(hms: &str) -> String {
    format!("2026-11-27T{hms}-05:00")
}

fn harness() -> Harness {
    let mut config = TopologyConfig::default();
    config.store_timezones.insert(S.into(), chrono_tz::America::New_York);
    Harness::with(config)
}

fn accept(h: &mut Harness, record: &Value) {
    assert_eq!(h.record(record), Outcome::Accepted, "{record}");
}

/// Moves the store's watermark with a receipt of an unrelated sku, which never drifts.
fn nudge(h: &mut Harness, time: &str) {
    accept(h, &movement_at(S, &format!("NUDGE-{time}"), time, "receipt", None, &[("Z", "1")]));
}

fn day_report(h: &Harness) -> Value {
    report::day_report(&h.store, S, day()).unwrap().expect("the day is known")
}

fn bodies(alerts: &[Published]) -> Vec<&Value> {
    alerts.iter().map(|a| &a.body).collect()
}

// Proves shipped and picked-up order units are expected decrements and units returned to the
// store an expected increment: movements that match POS and orders together leave no drift and
// no alert, and the day report shows the orders apart.
#[test]
fn orders_matched_by_their_movements_leave_no_drift() {
    let mut h = harness();
    accept(&mut h, &sale_at(S, "T1", &at("10:00:00"), "A", "2", "19.99"));
    accept(&mut h, &order_at(S, "O1", &at("10:01:00"), "ship_from_store", &[("A", "3")]));
    accept(&mut h, &order_at(S, "O2", &at("10:02:00"), "pickup_in_store", &[("B", "1")]));
    accept(&mut h, &order_at(S, "O3", &at("10:03:00"), "returned_to_store", &[("A", "1")]));
    let a = h.sku("A");
    assert_eq!((a.expected_units(), a.expected_by_source()), (dec("4"), Some((dec("2"), dec("2")))));
    assert_eq!(h.sku("B").expected_units(), dec("1"));

    accept(&mut h, &movement_at(S, "M1", &at("10:05:00"), "sale", Some("T1"), &[("A", "-2")]));
    accept(&mut h, &movement_at(S, "M2", &at("10:05:00"), "sale", Some("O1"), &[("A", "-3")]));
    accept(&mut h, &movement_at(S, "M3", &at("10:05:00"), "sale", Some("O2"), &[("B", "-1")]));
    accept(&mut h, &movement_at(S, "M4", &at("10:05:00"), "return", Some("O3"), &[("A", "1")]));
    nudge(&mut h, &at("12:00:00"));

    assert!(h.alerts(S).is_empty(), "no alert: {:?}", h.alerts(S));
    for sku in ["A", "B"] {
        let figures = h.sku(sku);
        assert!(figures.drift_units().is_zero() && figures.unmatched.is_empty(), "{sku}: {figures:?}");
    }
    let report = day_report(&h);
    assert_eq!(report["drift"], json!([]), "{report}");
    assert_eq!(
        report["orders"],
        json!({"count": 3,
               "units_by_fulfillment": {"ship_from_store": "3", "pickup_in_store": "1", "returned_to_store": "1"},
               "skus": [{"sku": "A", "units_by_fulfillment": {"ship_from_store": "3", "returned_to_store": "1"}},
                        {"sku": "B", "units_by_fulfillment": {"pickup_in_store": "1"}}]}),
        "{report}"
    );
    // Orders are no POS sale: the POS side of the day holds the one transaction only.
    assert_eq!((report["pos"]["transactions"].clone(), report["pos"]["net"].clone()), (json!(1), json!("39.98")));
}

// Proves an order whose decrement is missing fires after the settle time with `expected_units`
// broken down by source and the order on the unmatched list, and resolves when the decrement
// arrives; a key no order touched has no breakdown.
#[test]
fn an_order_without_its_decrement_fires_with_the_breakdown() {
    let mut h = harness();
    accept(&mut h, &sale_at(S, "T1", &at("10:00:00"), "A", "2", "19.99"));
    accept(&mut h, &movement_at(S, "M1", &at("10:00:10"), "sale", Some("T1"), &[("A", "-2")]));
    accept(&mut h, &order_at(S, "O1", &at("10:00:30"), "ship_from_store", &[("A", "3")]));
    accept(&mut h, &sale_at(S, "T2", &at("10:00:40"), "B", "4", "1.50"));
    nudge(&mut h, &at("10:16:00"));

    let alerts = h.alerts(S);
    assert_eq!(alerts.len(), 2, "{:?}", bodies(&alerts));
    let a = alerts.iter().find(|p| p.body["sku"] == "A").expect("an alert for A").body.clone();
    assert_eq!(
        (a["state"].clone(), a["expected_units"].clone(), a["recorded_units"].clone(), a["drift_units"].clone()),
        (json!("firing"), json!("5"), json!("2"), json!("3"))
    );
    assert_eq!(a["expected_units_by_source"], json!({"pos": "2", "orders": "3"}));
    assert_eq!(a["drift_value"], "59.97", "valued at the sku's latest POS price");
    assert_eq!(a["unmatched"], json!(["O1"]));
    let b = alerts.iter().find(|p| p.body["sku"] == "B").expect("an alert for B").body.clone();
    assert!(b.get("expected_units_by_source").is_none(), "no order touched B: {b}");

    let report = day_report(&h);
    let row = |sku: &str| report["drift"].as_array().unwrap().iter().find(|r| r["sku"] == sku).unwrap().clone();
    assert_eq!(row("A")["expected_units_by_source"], json!({"pos": "2", "orders": "3"}));
    assert!(row("B").get("expected_units_by_source").is_none(), "{report}");

    accept(&mut h, &movement_at(S, "M2", &at("10:20:00"), "sale", Some("O1"), &[("A", "-3")]));
    let resolved = h.alerts(S).into_iter().rfind(|p| p.body["sku"] == "A").unwrap();
    assert_eq!(
        (resolved.msg_id.as_str(), resolved.body["state"].as_str()),
        ("drift/0042/2026-11-27/A/2", Some("resolved"))
    );
    assert_eq!(resolved.body["expected_units_by_source"], json!({"pos": "2", "orders": "3"}));
    assert_eq!(resolved.body["unmatched"], json!([]));
}

// Proves a movement that names an order before the order arrives has already matched it.
#[test]
fn a_movement_ahead_of_its_order_matches_it() {
    let mut h = harness();
    accept(&mut h, &movement_at(S, "M1", &at("10:00:00"), "sale", Some("O1"), &[("A", "-2")]));
    accept(&mut h, &order_at(S, "O1", &at("10:00:05"), "pickup_in_store", &[("A", "2")]));
    let a = h.sku("A");
    assert!(a.drift_units().is_zero() && a.unmatched.is_empty(), "{a:?}");
}

// Proves dedupe and conflicts work for orders as for POS records: the same order again (spelled
// otherwise) is a counted duplicate, the same id with other content a conflict dead-lettered on
// P.dlq.conflict, and neither changes the units; an unknown kind goes to P.dlq.schema.
#[test]
fn duplicate_and_conflicting_orders() {
    let mut h = harness();
    let order = order_at(S, "O1", &at("10:00:00"), "ship_from_store", &[("A", "2")]);
    accept(&mut h, &order);
    let mut respelled = order.clone();
    respelled["lines"][0]["qty"] = json!(2.0);
    respelled["note"] = json!("an unknown field");
    assert_eq!(h.record(&respelled), Outcome::Duplicate);
    let mut other_kind = order.clone();
    other_kind["fulfillment"] = json!("pickup_in_store");
    assert_eq!(h.record(&other_kind), Outcome::Rejected(RejectReason::Conflict));
    // Ids are one namespace per store: a POS record under an order's id conflicts with it.
    assert_eq!(
        h.record(&sale_at(S, "O1", &at("10:01:00"), "A", "1", "1.00")),
        Outcome::Rejected(RejectReason::Conflict)
    );
    let mut unknown = order_at(S, "O2", &at("10:02:00"), "ship_from_store", &[("A", "1")]);
    unknown["fulfillment"] = json!("teleport");
    assert_eq!(h.record(&unknown), Outcome::Rejected(RejectReason::Schema));

    let totals = h.store_day();
    assert_eq!((totals.duplicates, totals.conflicts, totals.orders.count), (1, 2, 1));
    assert_eq!(h.sku("A").orders.get(&Fulfillment::ShipFromStore), Some(&dec("2")));
    assert_eq!(h.sku("A").sold_units, Decimal::ZERO);
    let conflicts = h.published("retail.dlq.conflict");
    assert_eq!(conflicts.iter().map(|p| p.msg_id.as_str()).collect::<Vec<_>>(), ["dlq/3", "dlq/4"]);
    assert_eq!(conflicts[0].body, other_kind, "the record, verbatim");
    assert_eq!(h.published("retail.dlq.schema").len(), 1);
}

// Proves orders change no POS total and send no ERP posting: a day with only orders posts
// nothing at the interval, and the postings of a day with sales carry the POS lines only.
#[test]
fn orders_post_nothing_to_the_erp() {
    let mut h = harness();
    accept(&mut h, &order_at(S, "O1", &at("10:00:00"), "ship_from_store", &[("A", "2")]));
    assert!(h.tick_after(Duration::minutes(6)).postings.is_empty(), "an order alone posts nothing");
    accept(&mut h, &sale_at(S, "T1", &at("10:05:00"), "B", "1", "3.00"));
    h.tick_after(Duration::minutes(6));
    let postings = h.postings(S);
    assert_eq!(postings.len(), 1);
    assert_eq!(postings[0].body["lines"].as_array().unwrap().len(), 1);
    assert_eq!(postings[0].body["lines"][0]["sku"], "B");
    assert_eq!(postings[0].body["control"]["transactions"], 1);
}

/// A stored value as an earlier version wrote it: this version's positional array without its
/// last field (`orders`, the field orders added).
fn without_last_field(bytes: &[u8]) -> Vec<u8> {
    let mut value: rmpv::Value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let rmpv::Value::Array(fields) = &mut value else { panic!("stored by position: {value:?}") };
    fields.pop();
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).unwrap();
    out
}

// Proves sku-days and store-days written before orders existed still decode, with no orders,
// and so give the figures and outputs they gave before.
#[test]
fn state_written_before_orders_still_decodes() {
    let mut h = harness();
    accept(&mut h, &sale_at(S, "T1", &at("10:00:00"), "A", "2", "19.99"));
    accept(&mut h, &movement_at(S, "M1", &at("10:00:10"), "sale", Some("T1"), &[("A", "-1")]));
    let sku = h.sku("A");
    let earlier: SkuDay = codec::decode(&without_last_field(&codec::encode(&sku))).unwrap();
    assert_eq!(earlier, sku);
    assert_eq!((earlier.expected_by_source(), earlier.drift_units()), (None, dec("1")));
    let totals = h.store_day();
    let earlier: StoreDay = codec::decode(&without_last_field(&codec::encode(&totals))).unwrap();
    assert_eq!(earlier, totals);
    assert_eq!(earlier.orders.count, 0);
    assert!(day_report(&h).get("orders").is_none(), "no orders section without orders");
}

// Proves an order is traced like a transaction: applied, its type, the movement that named it
// and the alert revisions that listed it as unmatched, and no ERP posting (orders post nothing).
#[test]
fn an_order_is_traced_to_its_movement_and_alerts() {
    let mut h = harness();
    accept(&mut h, &order_at(S, "O1", &at("10:00:00"), "ship_from_store", &[("A", "3"), ("B", "1")]));
    nudge(&mut h, &at("10:16:00"));
    accept(&mut h, &movement_at(S, "M1", &at("10:20:00"), "sale", Some("O1"), &[("A", "-3")]));
    let traces = crate::trace::trace(&h.store, "O1", Some(S)).unwrap();
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace = &traces[0];
    assert_eq!((&trace["type"], &trace["outcome"]), (&json!("order.fulfillment"), &json!("applied")), "{trace}");
    assert_eq!(trace["movements"], json!([{"sku": "A", "movement": "M1"}]), "{trace}");
    let alerts: Vec<(Value, Value)> =
        trace["alerts"].as_array().unwrap().iter().map(|a| (a["id"].clone(), a["state"].clone())).collect();
    assert_eq!(alerts, [(json!("drift/0042/2026-11-27/A"), json!("firing"))], "{trace}");
    assert_eq!(trace["postings"], json!([]), "{trace}");
}

// Proves the dedupe entry of a record other than an order is stored exactly as before orders
// (the order's skus are left out), and that such an entry reads back with no skus.
#[test]
fn dedupe_entries_of_other_records_keep_their_bytes() {
    #[derive(serde::Serialize)]
    struct BeforeOrders<'a> {
        fingerprint: u64,
        business_day: chrono::NaiveDate,
        transaction: Option<()>,
        voided_by: Option<String>,
        arrival: Option<&'a crate::lineage::Arrival>,
    }
    let mut h = harness();
    accept(&mut h, &movement_at(S, "M1", &at("10:00:00"), "receipt", None, &[("A", "1")]));
    let bytes =
        tally_state::Store::get(&h.store, tally_state::Cf::Dedupe, &crate::keys::seen(S, "M1")).unwrap().unwrap();
    let seen: crate::aggregates::Seen = codec::decode(&bytes).unwrap();
    assert!(seen.order_skus.is_empty());
    let before = BeforeOrders {
        fingerprint: seen.fingerprint,
        business_day: seen.business_day,
        transaction: None,
        voided_by: None,
        arrival: seen.arrival.as_ref(),
    };
    assert_eq!(rmp_serde::to_vec(&before).unwrap(), bytes);
    let read_for_its_day: crate::aggregates::SeenDay = codec::decode(&bytes).unwrap();
    assert_eq!(read_for_its_day.business_day, day());
    accept(&mut h, &order_at(S, "O1", &at("10:01:00"), "pickup_in_store", &[("B", "1"), ("A", "2"), ("B", "1")]));
    let bytes =
        tally_state::Store::get(&h.store, tally_state::Cf::Dedupe, &crate::keys::seen(S, "O1")).unwrap().unwrap();
    let seen: crate::aggregates::Seen = codec::decode(&bytes).unwrap();
    assert_eq!(seen.order_skus, ["A", "B"]);
    let read_for_its_day: crate::aggregates::SeenDay = codec::decode(&bytes).unwrap();
    assert_eq!(read_for_its_day.business_day, day());
}
