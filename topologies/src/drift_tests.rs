//! Drift detector tests (docs/wire-format.md, "Drift alert", issue 3 item 7): the alert lifecycle on event time, driven
//! through `Retail::apply_batch` over the in-memory store with a fake processing
//! clock, reading the alerts back from the outbox as the publisher would send them.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::Duration;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_state::{Cf, Store};

use crate::aggregates::SkuDay;
use crate::drift::{DriftThresholds, Phase};
use crate::model::MovementReason;
use crate::test_support::{day_close_at, movement_at, sale_at, void_at, Harness, Published};
use crate::topology::{Outcome, TopologyConfig};

const S: &str = "0042";

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// An event time on 2026-11-27 in store 0042's zone (New York, UTC−5 in November).
fn at(hms: &str) -> String {
    format!("2026-11-27T{hms}-05:00")
}

/// Store 0042 in New York, every other store in UTC; contract default thresholds.
fn config() -> TopologyConfig {
    let mut config = TopologyConfig::default();
    config.store_timezones.insert(S.into(), chrono_tz::America::New_York);
    config
}

fn harness() -> Harness {
    Harness::with(config())
}

/// Moves a store's watermark to `time` with a receipt of an unrelated sku, which never drifts.
fn nudge(h: &mut Harness, store: &str, time: &str) {
    let id = format!("NUDGE-{store}-{time}");
    assert_eq!(h.record(&movement_at(store, &id, time, "receipt", None, &[("Z", "1")])), Outcome::Accepted);
}

fn sale(h: &mut Harness, id: &str, time: &str, sku: &str, qty: &str, price: &str) {
    assert_eq!(h.record(&sale_at(S, id, time, sku, qty, price)), Outcome::Accepted);
}

/// A `sale` decrement of `qty` units (positive) referencing `reference`.
fn decrement(h: &mut Harness, id: &str, time: &str, reference: Option<&str>, sku: &str, qty: &str) {
    let delta = format!("-{qty}");
    assert_eq!(h.record(&movement_at(S, id, time, "sale", reference, &[(sku, &delta)])), Outcome::Accepted);
}

/// (Nats-Msg-Id, state) of every alert of a store, in outbox order.
fn states(alerts: &[Published]) -> Vec<(String, String)> {
    alerts.iter().map(|a| (a.msg_id.clone(), a.body["state"].as_str().unwrap().to_string())).collect()
}

fn alert_id(sku: &str) -> String {
    format!("drift/{S}/2026-11-27/{sku}")
}

fn s(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {value}")).to_string()
}

/// The ERP postings of a store, by kind, to tell that a day was finalized.
fn posting_kinds(h: &Harness, store: &str) -> Vec<String> {
    h.postings(store).iter().map(|p| s(&p.body, "kind")).collect()
}

// Proves a decrement that lags its sale by less than the settle time never raises an alert,
// not even when the day finalizes.
#[test]
fn lag_shorter_than_settle_never_fires() {
    let mut h = harness();
    sale(&mut h, "T1", &at("10:00:00"), "A", "2", "19.99");
    assert_eq!(h.sku("A").alert.phase, Phase::Pending, "the sale alone puts the key over threshold");
    nudge(&mut h, S, &at("10:09:00"));
    decrement(&mut h, "M1", &at("10:10:00"), Some("T1"), "A", "2");
    assert_eq!(h.sku("A").alert.phase, Phase::Ok);
    // The settle timer set by the sale comes due and must find the key back under threshold.
    nudge(&mut h, S, &at("10:30:00"));
    nudge(&mut h, S, &at("12:00:00"));
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 1, "39.98", "0"));
    nudge(&mut h, S, &at("21:30:00"));
    assert_eq!(posting_kinds(&h, S), vec!["final"], "the day was finalized");
    assert!(h.alerts(S).is_empty(), "no alert: {:?}", h.alerts(S));
}

// Proves a missing decrement fires exactly once, only once the store's watermark reaches
// over_since + settle, with every figure and id of the contract.
#[test]
fn missing_decrement_fires_once_after_settle_with_exact_figures() {
    let mut h = harness();
    // An earlier sale at another price, decremented: it counts in the figures but not as unmatched.
    sale(&mut h, "T0", &at("09:00:00"), "A", "1", "18.00");
    decrement(&mut h, "M0", &at("09:05:00"), Some("T0"), "A", "1");
    sale(&mut h, "T1", &at("10:00:00"), "A", "3", "19.99");
    nudge(&mut h, S, &at("10:14:59"));
    // Another store's event time does not move this store's watermark.
    h.record(&sale_at("0043", "X1", "2026-11-27T23:00:00Z", "Q", "1", "1.00"));
    assert!(h.alerts(S).is_empty(), "not settled yet");
    nudge(&mut h, S, &at("10:15:00"));
    let alerts = h.alerts(S);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].msg_id, format!("{}/1", alert_id("A")));
    let expected = json!({
        "type": "drift.alert", "id": alert_id("A"), "revision": 1, "state": "firing", "severity": "warning",
        "store": S, "sku": "A", "business_day": "2026-11-27",
        "expected_units": "4", "recorded_units": "1", "drift_units": "3",
        "drift_value": "59.97", "drift_ratio": "0.75",
        "over_since": "2026-11-27T10:00:00-05:00", "evaluated_at": "2026-11-27T10:15:00-05:00",
        "unmatched": ["T1"],
    });
    assert_eq!(alerts[0].body, expected);
    // Staying over threshold, even with more drift, sends nothing more.
    sale(&mut h, "T2", &at("10:30:00"), "A", "1", "19.99");
    nudge(&mut h, S, &at("11:00:00"));
    nudge(&mut h, S, &at("12:00:00"));
    assert_eq!(h.alerts(S).len(), 1, "one crossing, one alert: {:?}", states(&h.alerts(S)));
    assert!(h.alerts("0043").is_empty());
}

// Proves a doubled decrement (more recorded than sold) fires too, with negative drift.
#[test]
fn double_decrement_fires_with_negative_drift() {
    let mut h = harness();
    sale(&mut h, "T1", &at("10:00:00"), "A", "2", "5.00");
    decrement(&mut h, "M1", &at("10:02:00"), Some("T1"), "A", "2");
    decrement(&mut h, "M2", &at("10:03:00"), Some("T1"), "A", "2");
    nudge(&mut h, S, &at("10:17:59"));
    assert!(h.alerts(S).is_empty(), "over since 10:03, not settled before 10:18");
    nudge(&mut h, S, &at("10:18:00"));
    let alerts = h.alerts(S);
    assert_eq!(states(&alerts), vec![(format!("{}/1", alert_id("A")), "firing".to_string())]);
    let body = &alerts[0].body;
    assert_eq!(s(body, "expected_units"), "2");
    assert_eq!(s(body, "recorded_units"), "4");
    assert_eq!(s(body, "drift_units"), "-2");
    assert_eq!(dec(&s(body, "drift_value")), dec("-10.00"));
    assert_eq!(s(body, "drift_ratio"), "0.5");
    assert_eq!(s(body, "over_since"), "2026-11-27T10:03:00-05:00");
    assert_eq!(body["unmatched"], json!([]), "T1 was referenced");
}

// Proves late decrements resolve a firing alert at once, and a new crossing fires again after
// its own settle time, with revisions counting up per alert id.
#[test]
fn late_decrements_resolve_and_a_new_crossing_fires_again() {
    let mut h = harness();
    sale(&mut h, "T1", &at("10:00:00"), "A", "3", "2.00");
    nudge(&mut h, S, &at("10:15:00"));
    decrement(&mut h, "M1", &at("10:20:00"), Some("T1"), "A", "3");
    sale(&mut h, "T2", &at("10:30:00"), "A", "2", "2.00");
    nudge(&mut h, S, &at("10:44:59"));
    assert_eq!(h.alerts(S).len(), 2, "the second crossing has not settled yet");
    nudge(&mut h, S, &at("10:45:00"));
    let alerts = h.alerts(S);
    let id = alert_id("A");
    assert_eq!(
        states(&alerts),
        vec![
            (format!("{id}/1"), "firing".to_string()),
            (format!("{id}/2"), "resolved".to_string()),
            (format!("{id}/3"), "firing".to_string()),
        ]
    );
    let resolved = &alerts[1].body;
    assert_eq!(resolved["revision"], json!(2));
    assert_eq!(
        (s(resolved, "expected_units"), s(resolved, "recorded_units"), s(resolved, "drift_units")),
        ("3".into(), "3".into(), "0".into())
    );
    assert_eq!(s(resolved, "evaluated_at"), "2026-11-27T10:20:00-05:00");
    assert_eq!(s(resolved, "over_since"), "2026-11-27T10:00:00-05:00", "the episode that ended");
    let again = &alerts[2].body;
    assert_eq!(again["revision"], json!(3));
    assert_eq!(s(again, "over_since"), "2026-11-27T10:30:00-05:00");
    assert_eq!(s(again, "drift_units"), "2");
    assert_eq!(again["unmatched"], json!(["T2"]));
}

// Proves finalization after day-close + close_grace sends `final` for every over-threshold key,
// settled or not, and for no other key.
#[test]
fn finalization_after_day_close_sends_final_for_over_threshold_keys_only() {
    let mut h = harness();
    // A: firing. C: decremented in time. D: fired, then resolved. E: under threshold (1 unit).
    sale(&mut h, "TA", &at("10:00:00"), "A", "3", "1.00");
    sale(&mut h, "TC", &at("10:00:00"), "C", "2", "1.00");
    decrement(&mut h, "MC", &at("10:05:00"), Some("TC"), "C", "2");
    sale(&mut h, "TD", &at("10:00:00"), "D", "3", "1.00");
    sale(&mut h, "TE", &at("10:00:00"), "E", "1", "1.00");
    nudge(&mut h, S, &at("10:15:00"));
    decrement(&mut h, "MD", &at("10:20:00"), Some("TD"), "D", "3");
    // B: over threshold just before the close, still pending when the day finalizes.
    sale(&mut h, "TB", &at("21:00:00"), "B", "2", "1.00");
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 5, "10.00", "0"));
    assert_eq!(h.sku("B").alert.phase, Phase::Pending);
    let before: Vec<_> = states(&h.alerts(S));
    nudge(&mut h, S, &at("21:09:59"));
    assert_eq!(states(&h.alerts(S)), before, "close_grace has not passed");
    assert!(posting_kinds(&h, S).iter().all(|k| k != "final"));
    nudge(&mut h, S, &at("21:20:00"));
    let finals: Vec<Published> = h.alerts(S).into_iter().filter(|a| a.body["state"] == "final").collect();
    assert_eq!(
        states(&finals),
        vec![(format!("{}/2", alert_id("A")), "final".into()), (format!("{}/1", alert_id("B")), "final".into())]
    );
    assert_eq!(s(&finals[0].body, "over_since"), "2026-11-27T10:00:00-05:00");
    assert_eq!(s(&finals[0].body, "drift_units"), "3");
    assert_eq!(s(&finals[1].body, "over_since"), "2026-11-27T21:00:00-05:00");
    assert_eq!(s(&finals[1].body, "drift_units"), "2");
    assert_eq!(posting_kinds(&h, S).iter().filter(|k| *k == "final").count(), 1);
    // B's settle timer (21:15) comes due after the final and must not fire it again.
    nudge(&mut h, S, &at("22:00:00"));
    assert_eq!(h.alerts(S).iter().filter(|a| a.body["sku"] == "B").count(), 1);
    for sku in ["C", "D", "E"] {
        assert!(
            h.alerts(S).iter().all(|a| !(a.body["sku"] == sku && a.body["state"] == "final")),
            "{sku} has no final"
        );
    }
}

// Proves an idle store's watermark advances by processing time only after idle_timeout, so its
// keys settle and its day finalizes at end of day + max_open through `Retail::tick` alone.
#[test]
fn idle_store_settles_and_finalizes_through_the_tick() {
    let mut h = harness();
    sale(&mut h, "T1", &at("20:00:00"), "A", "3", "1.00");
    sale(&mut h, "T2", &at("20:00:00"), "B", "1", "1.00");
    sale(&mut h, "T3", &at("20:00:00"), "C", "2", "1.00");
    decrement(&mut h, "M3", &at("20:00:00"), Some("T3"), "C", "2");
    let emitted = h.tick_after(Duration::minutes(4));
    assert!(emitted.alerts.is_empty() && emitted.postings.is_empty(), "{emitted:?}");
    assert_eq!(h.clock(S).unwrap().watermark, crate::test_support::utc(&at("20:00:00")), "not idle yet");
    // 20 minutes of processing time, 5 of them within idle_timeout: the watermark moves 15.
    h.tick_after(Duration::minutes(16));
    assert_eq!(states(&h.alerts(S)), vec![(format!("{}/1", alert_id("A")), "firing".into())]);
    assert_eq!(s(&h.alerts(S)[0].body, "evaluated_at"), "2026-11-27T20:15:00-05:00");
    // End of the New York business day is 2026-11-28T05:00Z; + max_open 30h = 2026-11-29T11:00Z.
    // The watermark is at 2026-11-28T01:15Z, so 33h45m more are needed.
    h.tick_after(Duration::hours(33) + Duration::minutes(44));
    assert_eq!(posting_kinds(&h, S), vec!["interim"], "one minute short of max_open");
    assert_eq!(h.alerts(S).len(), 1);
    let emitted = h.tick_after(Duration::minutes(1));
    assert_eq!(emitted.postings.get("final"), Some(&1));
    assert_eq!(emitted.alerts.get("final"), Some(&1));
    let alerts = h.alerts(S);
    assert_eq!(states(&alerts[1..]), vec![(format!("{}/2", alert_id("A")), "final".into())]);
    assert_eq!(s(&alerts[1].body, "evaluated_at"), "2026-11-29T06:00:00-05:00");
    assert_eq!(posting_kinds(&h, S), vec!["interim", "final"]);
}

// Proves movements with reasons other than sale and return never count as recorded units:
// they neither hide a missing decrement nor create drift.
#[test]
fn movements_with_other_reasons_never_count() {
    let mut h = harness();
    sale(&mut h, "TA", &at("10:00:00"), "A", "4", "1.00");
    sale(&mut h, "TB", &at("10:00:00"), "B", "2", "1.00");
    decrement(&mut h, "MB", &at("10:01:00"), Some("TB"), "B", "2");
    let others = [
        ("adjustment", "-4"),
        ("shrink", "-4"),
        ("damage", "-4"),
        ("count", "-4"),
        ("receipt", "4"),
        ("transfer_in", "4"),
        ("transfer_out", "-4"),
    ];
    for (i, (reason, qty)) in others.iter().enumerate() {
        let time = at(&format!("10:0{}:00", i + 2));
        let m = movement_at(S, &format!("O{i}"), &time, reason, Some("TA"), &[("A", qty), ("B", qty)]);
        assert_eq!(h.record(&m), Outcome::Accepted);
    }
    nudge(&mut h, S, &at("10:30:00"));
    let alerts = h.alerts(S);
    assert_eq!(states(&alerts), vec![(format!("{}/1", alert_id("A")), "firing".into())]);
    assert_eq!((s(&alerts[0].body, "expected_units"), s(&alerts[0].body, "recorded_units")), ("4".into(), "0".into()));
    assert_eq!(h.sku("B").drift_units(), Decimal::ZERO);
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 2, "6.00", "0"));
    nudge(&mut h, S, &at("21:30:00"));
    assert!(h.alerts(S).iter().all(|a| a.body["sku"] == "A"), "B never alerts: {:?}", states(&h.alerts(S)));
}

// Proves voids move expected units back: a voided sale without decrement never fires (void
// after or before its sale), and a void resolves a firing key.
#[test]
fn voids_move_expected_units_back() {
    let mut h = harness();
    sale(&mut h, "TA", &at("10:00:00"), "A", "3", "1.00");
    assert_eq!(h.sku("A").alert.phase, Phase::Pending);
    assert_eq!(h.record(&void_at(S, "VA", &at("10:05:00"), "TA")), Outcome::Accepted);
    assert_eq!(h.sku("A").alert.phase, Phase::Ok);
    // The void of B arrives before the sale it voids.
    assert_eq!(h.record(&void_at(S, "VB", &at("10:06:00"), "TB")), Outcome::Accepted);
    sale(&mut h, "TB", &at("10:01:00"), "B", "3", "1.00");
    assert_eq!(h.sku("B").expected_units(), Decimal::ZERO);
    assert_eq!(h.sku("B").alert.phase, Phase::Ok);
    // The watermark is at 10:06 already, so C is over threshold from 10:06 and settles at 10:21.
    sale(&mut h, "TC", &at("10:00:00"), "C", "3", "1.00");
    nudge(&mut h, S, &at("10:21:00"));
    assert_eq!(h.record(&void_at(S, "VC", &at("10:25:00"), "TC")), Outcome::Accepted);
    let alerts = h.alerts(S);
    let id = alert_id("C");
    assert_eq!(states(&alerts), vec![(format!("{id}/1"), "firing".into()), (format!("{id}/2"), "resolved".into())]);
    assert_eq!(s(&alerts[1].body, "expected_units"), "0");
    assert_eq!(alerts[1].body["unmatched"], json!([]), "a voided transaction is not awaiting a movement");
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 0, "0", "0"));
    nudge(&mut h, S, &at("21:30:00"));
    assert_eq!(posting_kinds(&h, S), vec!["final"]);
    assert_eq!(h.alerts(S).len(), 2, "nothing at finalization: {:?}", states(&h.alerts(S)));
}

// Proves `unmatched` names the key's transactions that no movement referenced, newest first,
// at most 20, and drops an id as soon as a movement references it (even one that came first).
#[test]
fn unmatched_lists_newest_first_at_most_20_and_drops_referenced_ids() {
    let mut h = harness();
    let id = |i: u32| format!("T{i:02}");
    for i in 1..=25u32 {
        let time = at(&format!("10:{:02}:{:02}", (i * 10) / 60, (i * 10) % 60));
        sale(&mut h, &id(i), &time, "A", "1", "1.00");
    }
    decrement(&mut h, "M25", &at("10:05:00"), Some("T25"), "A", "1");
    decrement(&mut h, "M10", &at("10:05:10"), Some("T10"), "A", "1");
    // A movement that names T26 before T26 itself arrives.
    decrement(&mut h, "M26", &at("10:05:20"), Some("T26"), "A", "1");
    sale(&mut h, "T26", &at("10:04:20"), "A", "1", "1.00");
    nudge(&mut h, S, &at("10:30:00"));
    let alerts = h.alerts(S);
    assert_eq!(alerts.len(), 1);
    let listed: Vec<String> = (4..=24u32).rev().filter(|&i| i != 10).map(id).collect();
    assert_eq!(listed.len(), 20);
    assert_eq!(alerts[0].body["unmatched"], json!(listed));
    assert_eq!(s(&alerts[0].body, "drift_units"), "23");
    assert_eq!(s(&alerts[0].body, "severity"), "critical", "|23| ≥ critical_units 20");
    // T24 gets its movement: the list shifts to T23 … T03, shown with the next revision.
    decrement(&mut h, "M24", &at("10:40:00"), Some("T24"), "A", "1");
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 26, "26.00", "0"));
    nudge(&mut h, S, &at("21:30:00"));
    let alerts = h.alerts(S);
    assert_eq!(alerts.len(), 2);
    assert_eq!(s(&alerts[1].body, "state"), "final");
    let listed: Vec<String> = (3..=23u32).rev().filter(|&i| i != 10).map(id).collect();
    assert_eq!(alerts[1].body["unmatched"], json!(listed));
}

// Proves `unmatched` stays exact when the newest transactions are matched and many older ones
// are not: it still lists 20 of the unmatched ones.
#[test]
fn unmatched_stays_full_when_the_newest_transactions_are_matched() {
    let mut h = harness();
    let id = |i: u32| format!("T{i:02}");
    for i in 1..=45u32 {
        let time = at(&format!("10:{:02}:{:02}", (i * 10) / 60, (i * 10) % 60));
        sale(&mut h, &id(i), &time, "A", "1", "1.00");
    }
    for i in 21..=45u32 {
        decrement(&mut h, &format!("M{i}"), &at("10:10:00"), Some(&id(i)), "A", "1");
    }
    nudge(&mut h, S, &at("10:30:00"));
    let alerts = h.alerts(S);
    assert_eq!(alerts.len(), 1);
    let listed: Vec<String> = (1..=20u32).rev().map(id).collect();
    assert_eq!(alerts[0].body["unmatched"], json!(listed));
}

// Proves a transaction stays unmatched for a sku whose movement is missing, whether another
// sku's movement referencing it (here the restock of a returned line) arrives before or after it.
#[test]
fn unmatched_does_not_depend_on_which_movement_arrives_first() {
    let mut basket = sale_at(S, "T1", &at("10:00:00"), "A", "2", "5.00");
    basket["lines"] = json!([
        {"line": 1, "sku": "A", "qty": "2", "unit_price": "5.00"},
        {"line": 2, "sku": "B", "qty": "-1", "unit_price": "3.00", "restock": true},
    ]);
    // The restock of B is recorded; the decrement of A never comes.
    let restock = movement_at(S, "R1", &at("10:01:00"), "return", Some("T1"), &[("B", "1")]);
    let run = |first: &Value, second: &Value| {
        let mut h = harness();
        h.record(first);
        h.record(second);
        nudge(&mut h, S, &at("10:30:00"));
        h.alerts(S)
    };
    let basket_first = run(&basket, &restock);
    assert_eq!(basket_first.len(), 1);
    assert_eq!(basket_first[0].body["unmatched"], json!(["T1"]), "A's decrement is missing");
    let restock_first = run(&restock, &basket);
    assert_eq!(restock_first[0].body["unmatched"], json!(["T1"]));
}

// Proves per-store threshold overrides decide whether a key fires, and with what settle time
// and severity.
#[test]
fn per_store_overrides_change_whether_a_key_fires() {
    let mut config = config();
    config.drift_overrides.insert("0042".into(), DriftThresholds { min_units: dec("5"), ..DriftThresholds::default() });
    config.drift_overrides.insert(
        "0044".into(),
        DriftThresholds {
            min_units: dec("1"),
            critical_units: dec("1"),
            settle: Duration::minutes(5),
            ..DriftThresholds::default()
        },
    );
    let mut h = Harness::with(config);
    // The same 3-unit drift in three stores; 0044 also sees a 1-unit one.
    for store in ["0042", "0043", "0044"] {
        let time = if store == S { at("10:00:00") } else { "2026-11-27T10:00:00Z".to_string() };
        h.record(&sale_at(store, &format!("T-{store}"), &time, "A", "3", "1.00"));
    }
    h.record(&sale_at("0044", "T-0044-B", "2026-11-27T10:00:00Z", "B", "1", "1.00"));
    nudge(&mut h, "0044", "2026-11-27T10:05:00Z");
    assert_eq!(h.alerts("0044").len(), 2, "0044 settles after 5 minutes");
    assert!(h.alerts("0043").is_empty(), "0043 keeps the default 15 minutes");
    nudge(&mut h, "0042", &at("10:30:00"));
    nudge(&mut h, "0043", "2026-11-27T10:30:00Z");
    assert!(h.alerts("0042").is_empty(), "3 units are under 0042's min_units of 5");
    let a43 = h.alerts("0043");
    assert_eq!(a43.len(), 1);
    assert_eq!(s(&a43[0].body, "severity"), "warning");
    for alert in h.alerts("0044") {
        assert_eq!(s(&alert.body, "severity"), "critical", "0044's critical_units is 1");
    }
    // At finalization too, 0042's key is not over threshold.
    h.record(&day_close_at("0042", "2026-11-27", &at("21:00:00"), 1, "3.00", "0"));
    nudge(&mut h, "0042", &at("21:30:00"));
    assert_eq!(posting_kinds(&h, "0042"), vec!["final"]);
    assert!(h.alerts("0042").is_empty());
}

// Proves the any-of thresholds: past min_units, a key is over on its ratio or on its value.
#[test]
fn ratio_or_value_puts_a_key_over_threshold() {
    let mut config = config();
    let strict = DriftThresholds { min_ratio: dec("0.5"), min_value: dec("100"), ..DriftThresholds::default() };
    config.drift_overrides.insert("0045".into(), strict);
    let mut h = Harness::with(config);
    let t = |hms: &str| format!("2026-11-27T{hms}Z");
    // 2 of 10 units at 1.00: ratio 0.2, value 2 — under. At 60.00: value 120 — over.
    // 2 of 3 units at 1.00: ratio 0.6667 — over.
    for (sku, qty, price) in [("A", "10", "1.00"), ("B", "10", "60.00"), ("C", "3", "1.00")] {
        h.record(&sale_at("0045", &format!("T{sku}"), &t("10:00:00"), sku, qty, price));
    }
    for (sku, qty) in [("A", "-8"), ("B", "-8"), ("C", "-1")] {
        h.record(&movement_at(
            "0045",
            &format!("M{sku}"),
            &t("10:01:00"),
            "sale",
            Some(&format!("T{sku}")),
            &[(sku, qty)],
        ));
    }
    nudge(&mut h, "0045", &t("10:30:00"));
    let fired: Vec<(String, String, String)> = h
        .alerts("0045")
        .iter()
        .map(|a| (s(&a.body, "sku"), s(&a.body, "drift_value"), s(&a.body, "drift_ratio")))
        .collect();
    assert_eq!(fired, vec![("B".into(), "120.00".into(), "0.2".into()), ("C".into(), "2.00".into(), "0.6667".into())]);
}

// Proves the ratio threshold compares the exact quotient, not the published (rounded) ratio:
// 2.499 of 25 units is 0.09996, published as 0.1, and under a min_ratio of 0.10; 2.5 of 25 is
// exactly 0.10, and over.
#[test]
fn a_ratio_just_under_the_threshold_is_under_though_it_publishes_as_the_threshold() {
    let thresholds =
        DriftThresholds { min_ratio: dec("0.10"), min_value: dec("1000000"), ..DriftThresholds::default() };
    let mut sku = SkuDay { sold_units: dec("25"), ..SkuDay::default() };
    sku.apply_movement_qty(MovementReason::Sale, dec("-22.501"));
    let figures = sku.drift_figures(Some(dec("1.00")));
    assert_eq!(figures.drift_ratio.to_string(), "0.1", "what an alert would publish");
    assert!(!figures.is_over(&thresholds), "0.09996 is under 0.10");

    let mut config = config();
    config.drift_overrides.insert("0046".into(), thresholds);
    let mut h = Harness::with(config);
    let t = |hms: &str| format!("2026-11-27T{hms}Z");
    for (sku, decrement) in [("UNDER", "-22.501"), ("AT", "-22.5")] {
        h.record(&sale_at("0046", &format!("T{sku}"), &t("10:00:00"), sku, "25", "1.00"));
        h.record(&movement_at(
            "0046",
            &format!("M{sku}"),
            &t("10:01:00"),
            "sale",
            Some(&format!("T{sku}")),
            &[(sku, decrement)],
        ));
    }
    nudge(&mut h, "0046", &t("10:30:00"));
    let fired: Vec<(String, String)> =
        h.alerts("0046").iter().map(|a| (s(&a.body, "sku"), s(&a.body, "drift_ratio"))).collect();
    assert_eq!(fired, vec![("AT".to_string(), "0.1".to_string())]);
}

// Proves a change after the day is final sends a new `final` revision at once (no settle), or
// `resolved` when the key drops under threshold, and nothing when its figures did not change.
#[test]
fn changes_after_final_send_new_revisions() {
    let mut h = harness();
    sale(&mut h, "TA", &at("10:00:00"), "A", "4", "2.50");
    sale(&mut h, "TB", &at("10:00:00"), "B", "2", "1.00");
    decrement(&mut h, "MB", &at("10:05:00"), Some("TB"), "B", "2");
    nudge(&mut h, S, &at("10:15:00"));
    h.record(&day_close_at(S, "2026-11-27", &at("21:00:00"), 2, "12.00", "0"));
    nudge(&mut h, S, &at("21:20:00"));
    let id_a = alert_id("A");
    assert_eq!(
        states(&h.alerts(S)),
        vec![(format!("{id_a}/1"), "firing".into()), (format!("{id_a}/2"), "final".into())]
    );
    // A late decrement of one unit: still over threshold, new figures.
    decrement(&mut h, "MA1", &at("21:30:00"), Some("TA"), "A", "1");
    // A receipt touches A without changing its figures.
    h.record(&movement_at(S, "RA", &at("21:31:00"), "receipt", None, &[("A", "10")]));
    decrement(&mut h, "MA2", &at("21:40:00"), Some("TA"), "A", "3");
    // B goes over after final: `final` at once, without waiting for settle.
    decrement(&mut h, "MB2", &at("21:50:00"), Some("TB"), "B", "2");
    let alerts = h.alerts(S);
    let id_b = alert_id("B");
    assert_eq!(
        states(&alerts),
        vec![
            (format!("{id_a}/1"), "firing".into()),
            (format!("{id_a}/2"), "final".into()),
            (format!("{id_a}/3"), "final".into()),
            (format!("{id_a}/4"), "resolved".into()),
            (format!("{id_b}/1"), "final".into()),
        ]
    );
    assert_eq!((s(&alerts[2].body, "recorded_units"), s(&alerts[2].body, "drift_units")), ("1".into(), "3".into()));
    assert_eq!(dec(&s(&alerts[2].body, "drift_value")), dec("7.50"));
    assert_eq!(s(&alerts[2].body, "evaluated_at"), "2026-11-27T21:30:00-05:00");
    assert_eq!(s(&alerts[3].body, "drift_units"), "0");
    assert_eq!(s(&alerts[4].body, "drift_units"), "-2");
    assert_eq!(s(&alerts[4].body, "over_since"), "2026-11-27T21:50:00-05:00");
}

// Proves drift_value does not depend on whether a post-void arrives before or after its sale:
// the same records in either order give the same alert.
#[test]
fn drift_value_does_not_depend_on_void_order() {
    let sale = sale_at(S, "T1", &at("10:00:00"), "A", "2", "5.00");
    let void = void_at(S, "V1", &at("10:01:00"), "T1");
    let run = |first: &Value, second: &Value| {
        let mut h = harness();
        h.record(first);
        h.record(second);
        // Two units recorded leaving with no sale standing: drift −2.
        decrement(&mut h, "M1", &at("10:02:00"), None, "A", "2");
        nudge(&mut h, S, &at("10:30:00"));
        h.alerts(S)
    };
    let void_after = run(&sale, &void);
    let void_first = run(&void, &sale);
    assert_eq!(void_after.len(), 1);
    assert_eq!(s(&void_after[0].body, "drift_units"), "-2");
    assert_eq!(void_first, void_after);
}

/// A recorded day of two stores: missing, doubled and late decrements, voids both ways,
/// unrelated movements, day-closes and the events that finalize them.
fn scenario() -> Vec<Value> {
    let mut v = Vec::new();
    let b = "0043";
    let bt = |hms: &str| format!("2026-11-27T{hms}Z");
    v.push(sale_at(S, "A1", &at("09:00:00"), "A", "3", "2.00"));
    v.push(sale_at(b, "B1", &bt("09:00:00"), "A", "2", "4.00"));
    v.push(movement_at(S, "MA0", &at("09:01:00"), "receipt", None, &[("Z", "5")]));
    v.push(sale_at(S, "A2", &at("09:02:00"), "B", "2", "1.50"));
    v.push(movement_at(S, "MA2", &at("09:05:00"), "sale", Some("A2"), &[("B", "-2")]));
    v.push(movement_at(S, "MA2b", &at("09:06:00"), "sale", Some("A2"), &[("B", "-2")]));
    v.push(void_at(b, "VB2", &bt("09:10:00"), "B2"));
    v.push(sale_at(b, "B2", &bt("09:03:00"), "C", "5", "1.00"));
    v.push(movement_at(b, "MB1", &bt("09:20:00"), "sale", Some("B1"), &[("A", "-2")]));
    v.push(movement_at(S, "MA3", &at("09:25:00"), "shrink", None, &[("A", "-3")]));
    v.push(sale_at(S, "A3", &at("09:30:00"), "C", "4", "3.00"));
    v.push(movement_at(S, "MA1", &at("09:40:00"), "sale", Some("A1"), &[("A", "-3")]));
    v.push(void_at(S, "VA3", &at("09:50:00"), "A3"));
    v.push(sale_at(b, "B3", &bt("10:00:00"), "D", "2", "9.00"));
    v.push(movement_at(b, "MB0", &bt("10:30:00"), "receipt", None, &[("Z", "1")]));
    v.push(sale_at(S, "A4", &at("11:00:00"), "A", "2", "2.10"));
    v.push(movement_at(S, "MA4", &at("11:40:00"), "sale", Some("A4"), &[("A", "-1")]));
    v.push(day_close_at(S, "2026-11-27", &at("21:00:00"), 4, "10.00", "0"));
    v.push(day_close_at(b, "2026-11-27", &bt("21:00:00"), 2, "10.00", "0"));
    v.push(movement_at(S, "MA4b", &at("21:30:00"), "sale", Some("A4"), &[("A", "-1")]));
    v.push(movement_at(b, "MB3", &bt("21:30:00"), "sale", Some("B3"), &[("D", "-1")]));
    v.push(movement_at(S, "MA5", &at("22:00:00"), "receipt", None, &[("Z", "1")]));
    v.push(movement_at(b, "MB3b", &bt("22:00:00"), "sale", Some("B3"), &[("D", "-4")]));
    v
}

/// Applies the records in consecutive batches of the given sizes (cycled), one overlay and one
/// commit per batch, and returns the harness.
fn run_in_batches(records: &[Value], sizes: &[usize]) -> Harness {
    let mut h = harness();
    let mut rest = records;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        h.record_batch(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    h
}

/// Every entry of every column family, to compare two runs exactly.
fn dump(h: &Harness) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    Cf::ALL
        .iter()
        .flat_map(|&cf| h.store.scan_from(cf, &[], usize::MAX).unwrap().into_iter().map(move |(k, v)| (cf, k, v)))
        .collect()
}

// Proves replaying the same messages in batches of any size (one commit per message, or one
// overlay over several) yields exactly the same alerts, outputs and state.
#[test]
fn replay_in_batches_of_any_size_yields_identical_alerts() {
    let records = scenario();
    let reference = run_in_batches(&records, &[1]);
    let alerts: Vec<Published> = ["0042", "0043"].iter().flat_map(|store| reference.alerts(store)).collect();
    let by_state = |state: &str| alerts.iter().filter(|a| a.body["state"] == state).count();
    assert!(
        by_state("firing") >= 2 && by_state("final") >= 2 && by_state("resolved") >= 1,
        "the scenario exercises the lifecycle: {:?}",
        states(&alerts)
    );
    for sizes in [vec![2], vec![3], vec![5], vec![7, 1, 4], vec![records.len()]] {
        let run = run_in_batches(&records, &sizes);
        for store in ["0042", "0043"] {
            assert_eq!(run.alerts(store), reference.alerts(store), "store {store}, batch sizes {sizes:?}");
        }
        assert_eq!(run.outbox(), reference.outbox(), "batch sizes {sizes:?}");
        assert!(dump(&run) == dump(&reference), "state differs with batch sizes {sizes:?}");
    }
}

/// One generated sale: its store (0 or 1), sku, units, minute after 09:00, how many `sale`
/// decrements reference it (0 missing, 1, 2 doubled) and after what lag, and whether (and
/// when) it is voided.
#[derive(Debug, Clone)]
struct SalePlan {
    store: usize,
    sku: usize,
    qty: u32,
    minute: u32,
    decrements: u32,
    lag: u32,
    voided: bool,
    void_lag: u32,
}

const STORES: [&str; 2] = ["0042", "0043"];
const SKUS: [&str; 3] = ["A", "B", "C"];

fn sale_plans() -> impl Strategy<Value = Vec<SalePlan>> {
    let sale = (0usize..2, 0usize..3, 1u32..5, 0u32..600, 0u32..3, 0u32..40, prop::bool::weighted(0.25), 0u32..90);
    proptest::collection::vec(sale, 1..30).prop_map(|sales| {
        sales
            .into_iter()
            .map(|(store, sku, qty, minute, decrements, lag, voided, void_lag)| SalePlan {
                store,
                sku,
                qty,
                minute,
                decrements,
                lag,
                voided,
                void_lag,
            })
            .collect()
    })
}

/// Event time `minute` minutes after 09:00 in the store's zone (0042 New York, 0043 UTC).
fn minute_time(store: usize, minute: u32) -> String {
    let (h, m) = (9 + minute / 60, minute % 60);
    if store == 0 {
        at(&format!("{h:02}:{m:02}:00"))
    } else {
        format!("2026-11-27T{h:02}:{m:02}:00Z")
    }
}

/// The recorded stream of the plans, in arrival order: sales, their lagging, missing or doubled
/// decrements, voids (some arriving before their sale), then each store's day-close, an event
/// that finalizes the day, and one late decrement without `ref` after the final.
fn stream_of(plans: &[SalePlan]) -> Vec<Value> {
    let mut timed: Vec<(u32, Value)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let (st, sku, id) = (STORES[p.store], SKUS[p.sku], format!("T{i}"));
        timed.push((p.minute, sale_at(st, &id, &minute_time(p.store, p.minute), sku, &p.qty.to_string(), "1.25")));
        for copy in 0..p.decrements {
            let m = p.minute + p.lag + copy;
            let delta = format!("-{}", p.qty);
            let movement =
                movement_at(st, &format!("M{i}-{copy}"), &minute_time(p.store, m), "sale", Some(&id), &[(sku, &delta)]);
            timed.push((m, movement));
        }
        if p.voided {
            let arrival = (p.minute + p.void_lag).saturating_sub(45);
            timed.push((arrival, void_at(st, &format!("V{i}"), &minute_time(p.store, p.minute + p.void_lag), &id)));
        }
    }
    for (store, st) in STORES.iter().enumerate() {
        timed.push((700, day_close_at(st, "2026-11-27", &minute_time(store, 700), 1, "1.00", "0")));
        timed.push((
            730,
            movement_at(st, &format!("END-{st}"), &minute_time(store, 730), "receipt", None, &[("Z", "1")]),
        ));
        timed.push((
            760,
            movement_at(st, &format!("LATE-{st}"), &minute_time(store, 690), "sale", None, &[("A", "-1")]),
        ));
    }
    timed.sort_by_key(|(arrival, _)| *arrival);
    timed.into_iter().map(|(_, v)| v).collect()
}

fn any_stream() -> impl Strategy<Value = Vec<Value>> {
    sale_plans().prop_map(|plans| stream_of(&plans))
}

/// Thresholds where the ratio matters: at least 2 units and 30 % (the value never reaches 1000).
fn ratio_thresholds() -> DriftThresholds {
    DriftThresholds { min_units: dec("2"), min_ratio: dec("0.3"), min_value: dec("1000"), ..DriftThresholds::default() }
}

/// A key's figures at the end of the stream, computed from the plans alone.
#[derive(Debug, Default)]
struct KeyModel {
    expected: i64,
    recorded: i64,
    /// (minute, id) of unvoided sales that no movement referenced.
    unmatched: Vec<(u32, String)>,
    /// Whether a sale of the key stands (not voided), so its unit price is known.
    priced: bool,
}

fn key_models(plans: &[SalePlan]) -> BTreeMap<(usize, usize), KeyModel> {
    let mut keys: BTreeMap<(usize, usize), KeyModel> = BTreeMap::new();
    for (i, p) in plans.iter().enumerate() {
        let key = keys.entry((p.store, p.sku)).or_default();
        key.recorded += (p.qty * p.decrements) as i64;
        if !p.voided {
            key.priced = true;
            key.expected += p.qty as i64;
            if p.decrements == 0 {
                key.unmatched.push((p.minute, format!("T{i}")));
            }
        }
    }
    // The late decrement of sku A in each store, after the final.
    for store in 0..STORES.len() {
        keys.entry((store, 0)).or_default().recorded += 1;
    }
    keys
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    // Proves, for any recorded stream, that batching never changes the alerts nor the state.
    #[test]
    fn replay_is_deterministic_for_any_batching(
        records in any_stream(),
        sizes in proptest::collection::vec(1usize..12, 1..5),
    ) {
        let reference = run_in_batches(&records, &[1]);
        let run = run_in_batches(&records, &sizes);
        for store in STORES {
            prop_assert_eq!(run.alerts(store), reference.alerts(store));
        }
        prop_assert!(dump(&run) == dump(&reference));
    }

    // Proves, for any stream of lagging, missing, doubled and voided decrements, that no key
    // fires before it stayed over threshold for the settle time (checked against the figures
    // after every record), and that each key's last revision is `final` with exact figures and
    // lineage exactly when an independent model puts it over threshold at the end.
    #[test]
    fn alerts_follow_an_independent_model(plans in sale_plans()) {
        let mut config = config();
        config.drift = ratio_thresholds();
        let thresholds = config.drift.clone();
        let mut h = Harness::with(config);
        // Per key, the watermark at which it last went over threshold, while it stays over.
        let mut over_since: BTreeMap<(String, String), chrono::DateTime<chrono::Utc>> = BTreeMap::new();
        for record in stream_of(&plans) {
            let before = h.outbox().len();
            h.record(&record);
            let store = s(&record, "store");
            for entry in &h.outbox()[before..] {
                if !entry.subject.starts_with("retail.alerts.drift.") {
                    continue;
                }
                let body: Value = serde_json::from_slice(&entry.payload).unwrap();
                if body["state"] != "firing" {
                    continue;
                }
                let key = (s(&body, "store"), s(&body, "sku"));
                let since = over_since.get(&key).copied();
                prop_assert!(since.is_some(), "{:?} fired without being over threshold", key);
                let since = since.unwrap();
                let evaluated = crate::test_support::utc(&s(&body, "evaluated_at"));
                prop_assert_eq!(crate::test_support::utc(&s(&body, "over_since")), since);
                prop_assert!(since + thresholds.settle <= evaluated, "{:?} fired before settling", key);
            }
            let watermark = h.clock(&store).unwrap().watermark;
            for (sku, sku_day) in h.skus_of(&store, crate::test_support::day()) {
                let figures = sku_day.drift_figures(Some(dec("1.25")));
                let key = (store.clone(), sku);
                if figures.is_over(&thresholds) {
                    over_since.entry(key).or_insert(watermark);
                } else {
                    over_since.remove(&key);
                }
            }
        }
        for ((store, sku), model) in key_models(&plans) {
            let (st, sku_name) = (STORES[store], SKUS[sku]);
            let drift = model.expected - model.recorded;
            let base = model.expected.abs().max(model.recorded.abs()).max(1);
            let over = drift.abs() >= 2 && Decimal::from(drift.abs()) / Decimal::from(base) >= dec("0.3");
            let last = h.alerts(st).into_iter().rfind(|a| a.body["sku"] == sku_name);
            if !over {
                let state = last.as_ref().map(|a| s(&a.body, "state"));
                prop_assert!(state.is_none() || state.as_deref() == Some("resolved"), "{}/{} ends {:?}", st, sku_name, state);
                continue;
            }
            prop_assert!(last.is_some(), "{}/{} is over threshold and never alerted", st, sku_name);
            let body = last.unwrap().body;
            prop_assert_eq!(s(&body, "state"), "final");
            prop_assert_eq!(dec(&s(&body, "expected_units")), Decimal::from(model.expected));
            prop_assert_eq!(dec(&s(&body, "recorded_units")), Decimal::from(model.recorded));
            prop_assert_eq!(dec(&s(&body, "drift_units")), Decimal::from(drift));
            // A sku whose every sale was voided may have no price (see the ignored test
            // `drift_value_does_not_depend_on_void_order`); otherwise the value is exact.
            if model.priced {
                prop_assert_eq!(dec(&s(&body, "drift_value")), Decimal::from(drift) * dec("1.25"));
            }
            let mut unmatched = model.unmatched;
            unmatched.sort_by(|a, b| b.cmp(a));
            let ids: Vec<String> = unmatched.into_iter().take(20).map(|(_, id)| id).collect();
            prop_assert_eq!(&body["unmatched"], &json!(ids));
        }
    }
}
