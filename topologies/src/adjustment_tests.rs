//! Inventory adjustment postings (docs/wire-format.md, "Inventory adjustment posting") through
//! the topology's public surface, on the in-memory store and a fake processing-time clock.

use chrono::Duration;
use serde_json::{json, Value};

use crate::fiscal::{FiscalCalendar, FiscalSettings};
use crate::test_support::{movement_at, sale_at, Harness};
use crate::topology::{Outcome, TopologyConfig};

fn harness(close_grace: Duration) -> Harness {
    let fiscal = FiscalSettings { calendar: FiscalCalendar::Months, close_grace };
    Harness::with(TopologyConfig { fiscal, ..TopologyConfig::default() })
}

/// A movement of store 0042 whose lines are `(sku, qty, unit_cost)`.
fn adjustment(id: &str, at: &str, reason: &str, lines: &[(&str, &str, Option<&str>)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, qty, cost)| match cost {
            Some(cost) => json!({"sku": sku, "qty": qty, "unit_cost": cost}),
            None => json!({"sku": sku, "qty": qty}),
        })
        .collect();
    json!({"type": "inventory.movement", "id": id, "store": "0042", "occurred_at": at,
           "business_day": &at[..10], "reason": reason, "lines": lines})
}

fn adjustment_postings(h: &Harness) -> Vec<Value> {
    h.postings("0042").into_iter().map(|p| p.body).filter(|b| b["kind"] == "inventory_adjustment").collect()
}

// Proves shrink, damage, count and adjustment movements of one period become one posting
// after erp.interval, per sku and reason, with values exactly qty × unit_cost and the
// unvalued units apart, while sale movements and receipts post nothing.
#[test]
fn adjustments_of_a_period_post_together_after_the_interval() {
    let mut h = harness(Duration::zero());
    let records = [
        adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("4.99")), ("100987", "-1", None)]),
        adjustment("A2", "2026-11-11T10:00:00Z", "shrink", &[("100234", "-1", Some("4.995"))]),
        adjustment("A3", "2026-11-12T10:00:00Z", "damage", &[("100234", "-3", Some("0.10"))]),
        adjustment("A4", "2026-11-13T10:00:00Z", "count", &[("100987", "5", None)]),
        adjustment("A5", "2026-11-14T10:00:00Z", "adjustment", &[("100555", "0.250", Some("8"))]),
        movement_at("0042", "M1", "2026-11-14T11:00:00Z", "sale", None, &[("100234", "-1")]),
        movement_at("0042", "M2", "2026-11-14T12:00:00Z", "receipt", None, &[("100234", "50")]),
    ];
    for record in &records {
        assert_eq!(h.record(record), Outcome::Accepted);
    }
    h.tick_after(Duration::minutes(4));
    assert!(adjustment_postings(&h).is_empty(), "nothing before erp.interval");
    let emitted = h.tick_after(Duration::minutes(1));
    assert_eq!(emitted.postings.get("inventory_adjustment"), Some(&1));
    let postings: Vec<_> =
        h.postings("0042").into_iter().filter(|p| p.body["kind"] == "inventory_adjustment").collect();
    assert_eq!(postings.len(), 1);
    assert_eq!(postings[0].msg_id, "0042/period/2026-11/0001");
    let expected = json!({
        "type": "erp.posting", "kind": "inventory_adjustment", "id": "0042/period/2026-11/0001",
        "store": "0042", "period": "2026-11", "period_start": "2026-11-01", "period_end": "2026-11-30",
        "belongs_to_period": null, "seq": 1, "currency": "USD",
        "lines": [
            {"sku": "100234", "reason": "damage", "units": "-3", "value": "-0.30", "unvalued_units": "0"},
            {"sku": "100234", "reason": "shrink", "units": "-3", "value": "-14.975", "unvalued_units": "0"},
            {"sku": "100555", "reason": "adjustment", "units": "0.25", "value": "2.000", "unvalued_units": "0"},
            {"sku": "100987", "reason": "count", "units": "5", "value": "0", "unvalued_units": "5"},
            {"sku": "100987", "reason": "shrink", "units": "-1", "value": "0", "unvalued_units": "-1"},
        ],
        "control": {"lines": 5, "units": "-1.75", "value": "-13.275", "unvalued_units": "4"},
        "cumulative": {"units": "-1.75", "value": "-13.275", "unvalued_units": "4"},
    });
    assert_eq!(postings[0].body, expected);
    h.tick_after(Duration::minutes(10));
    assert_eq!(adjustment_postings(&h).len(), 1, "posted lines are not posted again");
}

// Proves periods split at the boundary: on-time adjustments book in their own period, a late
// one for a closed period books in the open one naming its own, and seq counts per period
// without gaps.
#[test]
fn a_late_adjustment_is_booked_in_the_open_period_naming_its_own() {
    let mut h = harness(Duration::zero());
    h.record(&adjustment("A1", "2026-11-30T20:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]));
    h.tick_after(Duration::minutes(5));
    h.record(&adjustment("A2", "2026-12-01T09:00:00Z", "count", &[("100234", "-1", Some("4.99"))]));
    // Its business day is in November, which closed when event time passed December 1, 00:00.
    h.record(&adjustment("A3", "2026-11-30T21:00:00Z", "shrink", &[("100987", "-4", Some("1.25"))]));
    h.tick_after(Duration::minutes(5));
    h.record(&adjustment("A4", "2026-12-02T09:00:00Z", "damage", &[("100234", "-1", None)]));
    h.tick_after(Duration::minutes(5));
    let got: Vec<(String, Value, u64, Value)> = adjustment_postings(&h)
        .into_iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["belongs_to_period"].clone(),
                b["seq"].as_u64().unwrap(),
                b["control"]["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("0042/period/2026-11/0001".to_string(), Value::Null, 1, json!("-9.98")),
            // One tick posts the late lines first: a store's postings go in (period, belongs) order.
            ("0042/period/2026-12/0001".to_string(), json!("2026-11"), 1, json!("-5.00")),
            ("0042/period/2026-12/0002".to_string(), Value::Null, 2, json!("-4.99")),
            ("0042/period/2026-12/0003".to_string(), Value::Null, 3, json!("0")),
        ]
    );
}

// Proves `fiscal.close_grace` keeps a period open after its end: a late adjustment within the
// grace books in its own period, one after it in the open one.
#[test]
fn the_close_grace_keeps_a_period_open() {
    let mut h = harness(Duration::days(2));
    h.record(&adjustment("A1", "2026-12-01T09:00:00Z", "shrink", &[("100234", "-1", None)]));
    h.record(&adjustment("A2", "2026-11-30T21:00:00Z", "shrink", &[("100234", "-2", None)]));
    h.record(&sale_at("0042", "T1", "2026-12-03T00:00:00Z", "100234", "1", "4.99"));
    h.record(&adjustment("A3", "2026-11-29T21:00:00Z", "damage", &[("100234", "-3", None)]));
    h.tick_after(Duration::minutes(5));
    let got: Vec<(Value, Value, Value)> = adjustment_postings(&h)
        .into_iter()
        .map(|b| (b["period"].clone(), b["belongs_to_period"].clone(), b["control"]["units"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("2026-11"), Value::Null, json!("-2")),
            (json!("2026-12"), json!("2026-11"), json!("-3")),
            (json!("2026-12"), Value::Null, json!("-1")),
        ]
    );
}

// Proves a 4-5-4 calendar names its periods and boundaries in the postings.
#[test]
fn week_calendars_name_their_periods() {
    let calendar = FiscalCalendar::parse("4-5-4", Some("2026-02-01")).unwrap();
    let fiscal = FiscalSettings { calendar, close_grace: Duration::zero() };
    let mut h = Harness::with(TopologyConfig { fiscal, ..TopologyConfig::default() });
    h.record(&adjustment("A1", "2026-11-28T10:00:00Z", "shrink", &[("100234", "-1", Some("2"))]));
    h.tick_after(Duration::minutes(5));
    let body = &adjustment_postings(&h)[0];
    assert_eq!(body["id"], "0042/period/FY2026-P10/0001");
    assert_eq!((&body["period_start"], &body["period_end"]), (&json!("2026-11-01"), &json!("2026-11-28")));
}

// Proves adjustments that cancel out post nothing and take no seq, and a unit cost that
// differs on a re-sent id is a conflict, while the same record again is a duplicate.
#[test]
fn cancelled_adjustments_post_nothing_and_costs_count_in_the_fingerprint() {
    let mut h = harness(Duration::zero());
    let shrink = adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]);
    h.record(&shrink);
    h.record(&adjustment("A2", "2026-11-10T11:00:00Z", "shrink", &[("100234", "2", Some("4.99"))]));
    assert_eq!(h.record(&shrink), Outcome::Duplicate);
    let other_cost = adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("5.99"))]);
    assert!(matches!(h.record(&other_cost), Outcome::Rejected(_)));
    h.tick_after(Duration::minutes(5));
    assert!(adjustment_postings(&h).is_empty());
    h.record(&adjustment("A3", "2026-11-11T10:00:00Z", "count", &[("100234", "1", None)]));
    h.tick_after(Duration::minutes(5));
    assert_eq!(adjustment_postings(&h)[0]["seq"], 1);
}

// Proves a negative unit cost is a schema error and a value beyond the decimal bound a decimal
// error, both dead-lettered, and that a cost written as a JSON number is read exactly.
#[test]
fn unit_costs_are_checked() {
    use crate::decode::RejectReason;
    let mut h = harness(Duration::zero());
    let negative = adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("-4.99"))]);
    assert_eq!(h.record(&negative), Outcome::Rejected(RejectReason::Schema));
    let huge = adjustment("A2", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-1000000000", Some("10000000"))]);
    assert_eq!(h.record(&huge), Outcome::Rejected(RejectReason::Decimal));
    let exact = r#"{"type": "inventory.movement", "id": "A3", "store": "0042", "occurred_at": "2026-11-10T10:00:00Z",
                    "reason": "damage", "lines": [{"sku": "100234", "qty": -3, "unit_cost": 0.1}]}"#;
    assert_eq!(h.send("retail.inventory.0042", exact.as_bytes()), Outcome::Accepted);
    h.tick_after(Duration::minutes(5));
    assert_eq!(adjustment_postings(&h)[0]["lines"][0]["value"], "-0.3");
}

/// Runs `adjustments_reconcile` on a harness's state with the postings `bodies` as the stream.
fn reconcile_with(h: &Harness, bodies: &[Value]) -> Vec<crate::reconcile::BookOutcome> {
    use crate::adjustments_reconcile::{reconcile, ReceivedAdjustment, ReceivedAdjustments};
    use tally_state::{Overlay, Store};
    let mut received = ReceivedAdjustments::default();
    for body in bodies {
        received.add(serde_json::from_value::<ReceivedAdjustment>(body.clone()).unwrap());
    }
    let mut txn = Overlay::new(&h.store);
    let outcomes = reconcile(&mut txn, &received, true, h.now).unwrap();
    h.store.write(&txn.into_batch()).unwrap();
    outcomes.into_iter().map(|(_, _, outcome)| outcome).collect()
}

// Proves a rebuilt state (the same input, never ticked) whose books are set from the postings
// the ERP received continues the sequence with exactly the posting the live run sent next,
// and posts nothing when the ERP has everything.
#[test]
fn a_rebuilt_state_continues_the_erps_sequence() {
    use crate::reconcile::BookOutcome;
    let records = [
        adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]),
        adjustment("A2", "2026-11-11T10:00:00Z", "count", &[("100987", "3", None)]),
        adjustment("A3", "2026-11-12T10:00:00Z", "shrink", &[("100234", "-1", Some("4.99"))]),
    ];
    let mut live = harness(Duration::zero());
    live.record(&records[0]);
    live.record(&records[1]);
    live.tick_after(Duration::minutes(5));
    live.record(&records[2]);
    live.tick_after(Duration::minutes(5));
    let sent = adjustment_postings(&live);
    assert_eq!(sent.len(), 2);

    // The ERP holds the first posting only.
    let mut rebuilt = harness(Duration::zero());
    records.iter().for_each(|r| assert_eq!(rebuilt.record(r), Outcome::Accepted));
    assert_eq!(reconcile_with(&rebuilt, &sent[..1]), vec![BookOutcome::Matched]);
    rebuilt.tick_after(Duration::minutes(5));
    assert_eq!(adjustment_postings(&rebuilt), sent[1..].to_vec(), "the live run's second posting, field for field");

    // The ERP holds both: nothing is owed.
    let mut rebuilt = harness(Duration::zero());
    records.iter().for_each(|r| assert_eq!(rebuilt.record(r), Outcome::Accepted));
    assert_eq!(reconcile_with(&rebuilt, &sent), vec![BookOutcome::Matched]);
    rebuilt.tick_after(Duration::minutes(5));
    assert!(adjustment_postings(&rebuilt).is_empty());

    // The ERP holds nothing: everything again, from seq 1.
    let mut rebuilt = harness(Duration::zero());
    records.iter().for_each(|r| assert_eq!(rebuilt.record(r), Outcome::Accepted));
    assert_eq!(reconcile_with(&rebuilt, &[]), vec![BookOutcome::Unposted]);
    rebuilt.tick_after(Duration::minutes(5));
    let again = adjustment_postings(&rebuilt);
    assert_eq!((again.len(), &again[0]["seq"], &again[0]["control"]["value"]), (1, &json!(1), &json!("-14.97")));
}

/// A (store, period)'s book, read from the harness's state.
fn book_of(h: &Harness, period: &str) -> Option<crate::adjustments::PeriodBook> {
    crate::adjustments::book(&tally_state::Overlay::new(&h.store), "0042", period).unwrap()
}

// Proves a period's books and lines are pruned once the store's event time is past its end
// plus the retention, when everything was posted, and not before.
#[test]
fn posted_periods_are_pruned_after_the_retention() {
    let mut h = harness(Duration::zero());
    h.record(&adjustment("A1", "2026-11-10T10:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]));
    h.tick_after(Duration::minutes(5));
    // 35 days (the default retention) after November ends, less a minute: kept.
    h.record(&sale_at("0042", "T1", "2027-01-04T23:59:00Z", "100234", "1", "4.99"));
    assert_eq!(book_of(&h, "2026-11").map(|b| b.seq), Some(1));
    h.record(&sale_at("0042", "T2", "2027-01-05T00:01:00Z", "100234", "1", "4.99"));
    assert_eq!(book_of(&h, "2026-11"), None);
    let left = tally_state::Store::scan_prefix(
        &h.store,
        tally_state::Cf::Aggregates,
        &crate::adjustments::lines_prefix("0042", "2026-11"),
        10,
    )
    .unwrap();
    assert!(left.is_empty(), "the period's lines go with its book");
}

// Proves a period that only the postings stream holds (its movements are gone from the input,
// or it was pruned) is left alone: no posting takes back what the ERP received.
#[test]
fn a_period_only_the_stream_holds_is_left_alone() {
    let mut live = harness(Duration::zero());
    live.record(&adjustment("A1", "2026-10-10T10:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]));
    live.tick_after(Duration::minutes(5));
    let sent = adjustment_postings(&live);
    let mut rebuilt = harness(Duration::zero());
    rebuilt.record(&adjustment("A2", "2026-11-10T10:00:00Z", "count", &[("100234", "1", None)]));
    assert_eq!(reconcile_with(&rebuilt, &sent), vec![crate::reconcile::BookOutcome::Unposted]);
    rebuilt.tick_after(Duration::minutes(5));
    let posted: Vec<Value> = adjustment_postings(&rebuilt).iter().map(|p| p["period"].clone()).collect();
    assert_eq!(posted, vec![json!("2026-11")], "nothing for October");
}
