//! Unit tests of SKU aliases in the topology (docs/wire-format.md, "SKU aliases"), over the
//! in-memory store with an in-memory alias table.

use std::sync::Arc;

use chrono::Duration;
use serde_json::{json, Value};
use tally_state::{MemStore, Overlay, Store};

use crate::sku_alias::{SharedAliases, SkuAliases, SkuSystems};
use crate::test_support::{day, movement_at, sale_at, void_at, Harness};
use crate::topology::{Applied, InputMessage, Outcome, Retail, Tick, TopologyConfig};
use crate::unmapped;

const S: &str = "0042";
const UPC: &str = "012345678905";
const ARTICLE: &str = "ART-100234";
const SKU: &str = "100234";

fn at(hms: &str) -> String {
    format!("2026-11-27T{hms}Z")
}

fn table(entries: &[(&str, &str, &str)]) -> SkuAliases {
    let mut aliases = SkuAliases::default();
    for (system, code, sku) in entries {
        aliases.insert(system, code, sku);
    }
    aliases
}

/// A harness whose topology reads `shared`, and the table it reads.
fn harness(config: TopologyConfig, shared: &Arc<SharedAliases>) -> Harness {
    let mut h = Harness::with(config);
    h.retail = Retail::with_aliases(h.retail.config().clone(), Arc::clone(shared));
    h
}

/// Sends one record in its own batch and returns what became of it.
fn apply(h: &mut Harness, value: &Value) -> Applied {
    h.seq += 1;
    let subject = crate::test_support::subject_of(value);
    let payload = value.to_string();
    let msg = InputMessage::new(&subject, None, payload.as_bytes(), h.seq);
    let mut txn = Overlay::new(&h.store);
    let result = h.retail.apply_batch(&mut txn, &[msg], h.now, Tick::Skip).unwrap();
    h.store.write(&txn.into_batch()).unwrap();
    result.applied[0].clone().expect("a new sequence is applied")
}

fn both_codes() -> Arc<SharedAliases> {
    Arc::new(SharedAliases::new(table(&[("pos", UPC, SKU), ("inventory", ARTICLE, SKU)])))
}

/// A day where POS scans the UPC and inventory decrements the article number, 3 units each,
/// then event time moves past the settle time.
fn day_of_two_codes(h: &mut Harness) {
    for (n, minute) in ["10:00:00", "10:01:00", "10:02:00"].iter().enumerate() {
        let id = format!("T{n}");
        assert_eq!(apply(h, &sale_at(S, &id, &at(minute), UPC, "1", "19.99")).outcome, Outcome::Accepted);
        let movement = movement_at(S, &format!("M{n}"), &at(minute), "sale", Some(&id), &[(ARTICLE, "-1")]);
        assert_eq!(apply(h, &movement).outcome, Outcome::Accepted);
    }
    let late = movement_at(S, "NUDGE", &at("11:00:00"), "receipt", None, &[("Z", "1")]);
    apply(h, &late);
    h.tick_after(Duration::minutes(1));
}

// Proves aliases defined before traffic make a UPC sale and an article-number decrement one
// key with no drift, where without them the same day pages as a +3/−3 pair.
#[test]
fn aliases_before_traffic_reconcile_two_codes() {
    let mut plain = harness(TopologyConfig::default(), &Arc::default());
    day_of_two_codes(&mut plain);
    let paged: Vec<String> = plain.alerts(S).iter().map(|a| a.body["sku"].as_str().unwrap().to_string()).collect();
    assert!(paged.contains(&UPC.to_string()) && paged.contains(&ARTICLE.to_string()), "{paged:?}");

    let mut h = harness(TopologyConfig::default(), &both_codes());
    day_of_two_codes(&mut h);
    assert!(h.alerts(S).is_empty(), "{:?}", h.alerts(S));
    let sku = h.sku(SKU);
    assert_eq!((sku.sold_units.to_string(), sku.expected_units().to_string()), ("3".into(), "3".into()));
    assert!(h.sku_of(S, day(), UPC).is_none() && h.sku_of(S, day(), ARTICLE).is_none());
    // Every transaction was referenced by its movement under the canonical sku: nothing unmatched.
    assert!(sku.unmatched.is_empty(), "{:?}", sku.unmatched);
}

// Proves an alias that arrives later affects only later records: what was counted under the
// code stays there, and a void of an earlier sale reverses it where it was counted.
#[test]
fn alias_after_traffic_does_not_rewrite_history() {
    let shared: Arc<SharedAliases> = Arc::default();
    let mut h = harness(TopologyConfig::default(), &shared);
    apply(&mut h, &sale_at(S, "T1", &at("10:00:00"), UPC, "2", "1.00"));
    shared.replace(Arc::new(table(&[("pos", UPC, SKU)])));
    apply(&mut h, &sale_at(S, "T2", &at("10:05:00"), UPC, "1", "1.00"));
    assert_eq!(h.sku(UPC).sold_units.to_string(), "2");
    assert_eq!(h.sku(SKU).sold_units.to_string(), "1");
    // The re-sent T1 is a duplicate, not a sale of the canonical sku.
    assert_eq!(apply(&mut h, &sale_at(S, "T1", &at("10:00:00"), UPC, "2", "1.00")).outcome, Outcome::Duplicate);
    apply(&mut h, &void_at(S, "V1", &at("10:10:00"), "T1"));
    assert_eq!(h.sku(UPC).sold_units.to_string(), "0");
    assert_eq!(h.sku(SKU).sold_units.to_string(), "1");
}

// Proves a code of a system that has aliases, with none of its own, is counted as itself and
// reported (per store-day, with its lines); a canonical system's and an unmapped system's are not.
#[test]
fn unmapped_codes_are_counted_as_themselves_and_reported() {
    let config = TopologyConfig {
        sku_systems: SkuSystems { canonical: Some("inventory".into()), ..SkuSystems::default() },
        ..TopologyConfig::default()
    };
    let shared = Arc::new(SharedAliases::new(table(&[("pos", UPC, SKU), ("inventory", ARTICLE, SKU)])));
    let mut h = harness(config, &shared);
    let two_lines = json!({"type": "pos.transaction", "id": "T1", "store": S, "occurred_at": at("10:00:00"),
        "lines": [{"sku": "099999999999", "qty": "1", "unit_price": "1"}, {"sku": UPC, "qty": "1", "unit_price": "1"},
                  {"sku": "099999999999", "qty": "2", "unit_price": "1"}]});
    let applied = apply(&mut h, &two_lines);
    assert_eq!(applied.unmapped, Some(("pos".to_string(), 2)));
    assert_eq!(h.sku("099999999999").sold_units.to_string(), "3");
    let inventory = movement_at(S, "M1", &at("10:01:00"), "receipt", None, &[("ART-UNKNOWN", "5")]);
    assert_eq!(apply(&mut h, &inventory).unmapped, None, "the canonical system is never unmapped");
    let other = json!({"type": "inventory.movement", "id": "M2", "store": S, "occurred_at": at("10:02:00"),
        "reason": "receipt", "sku_system": "plu", "lines": [{"sku": "4011", "qty": "1"}]});
    assert_eq!(apply(&mut h, &other).unmapped, None, "a system without aliases is not mapped yet");

    let body = unmapped::report(&h.store, S, None, 100).unwrap().unwrap();
    assert_eq!(body["total"], 1);
    let row = &body["unmapped"][0];
    assert_eq!(
        (row["system"].as_str(), row["code"].as_str(), row["lines"].as_u64()),
        (Some("pos"), Some("099999999999"), Some(2))
    );
    assert_eq!(row["business_days"], json!(["2026-11-27"]));
    assert_eq!(row["last_seen"], "2026-11-27T10:00:00Z");
    assert!(unmapped::report(&h.store, "9999", None, 100).unwrap().is_none(), "an unknown store is None");
}

// Proves a record's own `sku_system` picks the aliases it is read against, that it is part of
// the record's content (same id, other system: a conflict), and that a bad one is refused.
#[test]
fn record_names_its_system() {
    let shared = Arc::new(SharedAliases::new(table(&[("pos", UPC, SKU), ("plu", "4011", "BANANA")])));
    let mut h = harness(TopologyConfig::default(), &shared);
    let mut sale = sale_at(S, "T1", &at("10:00:00"), "4011", "1", "0.25");
    sale["sku_system"] = json!("plu");
    apply(&mut h, &sale);
    assert_eq!(h.sku("BANANA").sold_units.to_string(), "1");
    sale["sku_system"] = json!("pos");
    assert!(matches!(apply(&mut h, &sale).outcome, Outcome::Rejected(crate::decode::RejectReason::Conflict)));
    let mut bad = sale_at(S, "T2", &at("10:00:00"), "4011", "1", "0.25");
    bad["sku_system"] = json!("p/l.u");
    assert!(matches!(apply(&mut h, &bad).outcome, Outcome::Rejected(crate::decode::RejectReason::Schema)));
}

// Proves aliases that traffic never names leave every output and total byte-identical to a
// topology without aliases.
#[test]
fn aliases_not_named_change_nothing() {
    let unrelated = Arc::new(SharedAliases::new(table(&[("pos", "000000000000", "X"), ("inventory", "Y", "X")])));
    let mut with = harness(TopologyConfig::default(), &unrelated);
    let mut without = harness(TopologyConfig::default(), &Arc::default());
    for h in [&mut with, &mut without] {
        day_of_two_codes(h);
        h.tick_after(Duration::hours(40));
    }
    assert_eq!(with.outbox(), without.outbox());
    assert_eq!(with.skus_of(S, day()), without.skus_of(S, day()));
    assert!(!with.outbox().is_empty());
}

// Proves unmapped counts are pruned with their day.
#[test]
fn unmapped_codes_are_pruned_with_their_day() {
    let config = TopologyConfig { retention: Duration::days(2), ..TopologyConfig::default() };
    let mut h = harness(config, &Arc::new(SharedAliases::new(table(&[("pos", UPC, SKU)]))));
    apply(&mut h, &sale_at(S, "T1", &at("10:00:00"), "0999", "1", "1"));
    let store: &MemStore = &h.store;
    assert_eq!(unmapped::report(store, S, None, 10).unwrap().unwrap()["total"], 1);
    apply(&mut h, &movement_at(S, "LATER", "2026-12-05T10:00:00Z", "receipt", None, &[(SKU, "1")]));
    assert_eq!(unmapped::report(&h.store, S, None, 10).unwrap().unwrap()["total"], 0);
}

// Proves an order's codes are read as `orders` (sku.orders_system) and counted under their
// canonical sku, so a POS sale, an order and their decrements of one article meet in one key.
#[test]
fn orders_codes_are_canonicalized_too() {
    let shared = Arc::new(SharedAliases::new(table(&[("pos", UPC, SKU), ("orders", "WEB-1", SKU)])));
    let mut h = harness(TopologyConfig::default(), &shared);
    apply(&mut h, &sale_at(S, "T1", &at("10:00:00"), UPC, "1", "1.00"));
    let order = crate::test_support::order_at(S, "O1", &at("10:01:00"), "ship_from_store", &[("WEB-1", "2")]);
    assert_eq!(apply(&mut h, &order).outcome, Outcome::Accepted);
    assert_eq!(h.sku(SKU).expected_units().to_string(), "3");
    assert!(h.sku_of(S, day(), "WEB-1").is_none());
}
