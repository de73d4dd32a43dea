//! Tests of a record's trace (docs/http-api.md, "Trace a record"): driven through
//! `Retail::apply_batch` over the in-memory store, read back with `trace::trace` as the HTTP
//! API and `tally trace` read it.

use chrono::Duration;
use serde_json::{json, Value};

use crate::lineage::TraceContext;
use crate::test_support::{movement_at, sale_at, Harness};
use crate::topology::{Outcome, TopologyConfig};
use crate::trace::trace;

const S: &str = "0042";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn at(hms: &str) -> String {
    format!("2026-11-27T{hms}-05:00")
}

fn harness() -> Harness {
    let mut config = TopologyConfig::default();
    config.store_timezones.insert(S.into(), chrono_tz::America::New_York);
    Harness::with(config)
}

fn traced(parent: &'static str) -> TraceContext<'static> {
    TraceContext { traceparent: Some(parent), msg_id: None }
}

/// The one trace of `id`, which must exist.
fn one(h: &Harness, id: &str) -> Value {
    let mut traces = trace(&h.store, id, None).unwrap();
    assert_eq!(traces.len(), 1, "{id}: {traces:?}");
    traces.remove(0)
}

fn nudge(h: &mut Harness, time: &str) {
    let id = format!("NUDGE-{time}");
    assert_eq!(h.record(&movement_at(S, &id, time, "receipt", None, &[("Z", "1")])), Outcome::Accepted);
}

// Proves a sale is traced from its arrival through its duplicate and conflicting copies, the
// alert revision that listed it, the movement that matched it and the posting that first
// carried it; and a later sale to the next posting, not the first.
#[test]
fn a_sale_is_traced_to_its_copies_alert_movement_and_first_posting() {
    let mut h = harness();
    let t1 = sale_at(S, "T1", &at("10:00:00"), "A", "3", "19.99");
    assert_eq!(h.send_traced(&t1, traced(PARENT)), Outcome::Accepted);
    let arrived_seq = h.seq;
    assert_eq!(h.record(&t1), Outcome::Duplicate);
    let duplicate_seq = h.seq;
    let changed = sale_at(S, "T1", &at("10:00:00"), "A", "4", "19.99");
    assert!(matches!(h.record(&changed), Outcome::Rejected(_)));
    let conflict_seq = h.seq;
    nudge(&mut h, &at("10:15:00"));
    h.record(&movement_at(S, "M1", &at("10:20:00"), "sale", Some("T1"), &[("A", "-3")]));
    h.tick_after(Duration::minutes(6));
    h.record(&sale_at(S, "T2", &at("10:30:00"), "A", "1", "19.99"));
    h.tick_after(Duration::minutes(6));

    let t1 = one(&h, "T1");
    assert_eq!(t1["store"], json!(S));
    assert_eq!(t1["type"], json!("pos.transaction"));
    assert_eq!(t1["outcome"], json!("applied"));
    assert_eq!(t1["business_day"], json!("2026-11-27"));
    assert_eq!(t1["arrived"]["stream_sequence"], json!(arrived_seq));
    assert_eq!(t1["arrived"]["at"], json!("2026-11-27T15:00:00.000Z"));
    assert_eq!(t1["traceparent"], json!(PARENT));
    assert_eq!(t1["duplicates"], json!({"count": 1, "last_stream_sequence": duplicate_seq}));
    assert_eq!(t1["dead_lettered"].as_array().unwrap().len(), 1);
    assert_eq!(t1["dead_lettered"][0]["reason"], json!("conflict"));
    assert_eq!(t1["dead_lettered"][0]["stream_sequence"], json!(conflict_seq));
    assert_eq!(t1["movements"], json!([{"sku": "A", "movement": "M1"}]));
    assert_eq!(t1["alerts"], json!([{"id": "drift/0042/2026-11-27/A", "revision": 1, "state": "firing"}]));
    assert_eq!(t1["postings"][0]["id"], json!("0042/2026-11-27/0001"));
    assert_eq!(t1["postings"][0]["kind"], json!("interim"));

    let t2 = one(&h, "T2");
    assert_eq!(t2["postings"][0]["id"], json!("0042/2026-11-27/0002"), "T2 came after the first posting");
    assert_eq!(t2["alerts"], json!([]));
    assert!(t2.get("traceparent").is_none(), "T2 carried no trace context");

    let m1 = one(&h, "M1");
    assert_eq!(m1["type"], json!("inventory.movement"));
    assert_eq!(m1["postings"], json!([]));
}

// Proves a record that was only dead-lettered is traced with its reason, and an unknown id
// has no trace.
#[test]
fn a_dead_lettered_record_is_traced_with_its_reason() {
    let mut h = harness();
    let mut bad = sale_at(S, "BAD1", &at("10:00:00"), "A", "1", "19,99");
    bad["lines"][0]["unit_price"] = json!("19,99");
    assert!(matches!(h.send_traced(&bad, traced(PARENT)), Outcome::Rejected(_)));
    let bad = one(&h, "BAD1");
    assert_eq!(bad["outcome"], json!("dead_lettered"));
    assert_eq!(bad["dead_lettered"][0]["reason"], json!("decimal"));
    assert_eq!(bad["dead_lettered"][0]["subject"], json!("retail.pos.0042"));
    assert_eq!(bad["dead_lettered"][0]["traceparent"], json!(PARENT));
    assert!(trace(&h.store, "NEVER", None).unwrap().is_empty());
    assert!(trace(&h.store, "BAD1", Some("0043")).unwrap().is_empty(), "another store holds no BAD1");
}

// Proves a voided sale is traced as voided by its void, and the void names what it voids.
#[test]
fn a_void_and_its_target_name_each_other() {
    let mut h = harness();
    h.record(&sale_at(S, "T1", &at("10:00:00"), "A", "1", "2.00"));
    h.record(&crate::test_support::void_at(S, "V1", &at("10:05:00"), "T1"));
    let t1 = one(&h, "T1");
    assert_eq!(t1["outcome"], json!("voided"));
    assert_eq!(t1["voided_by"], json!("V1"));
    assert_eq!(one(&h, "V1")["voids"], json!("T1"));
}

// Proves the trace context travels: the DLQ copy and the alert revision a record causes carry
// its `traceparent`; an alert fired by time passing does not carry the record that moved it.
#[test]
fn outputs_caused_by_a_record_carry_its_trace_context() {
    let mut h = harness();
    h.record(&sale_at(S, "T1", &at("10:00:00"), "A", "3", "19.99"));
    let nudge = movement_at(S, "N1", &at("10:15:00"), "receipt", None, &[("Z", "1")]);
    h.send_traced(&nudge, traced("00-11111111111111111111111111111111-2222222222222222-01"));
    let decrement = movement_at(S, "M1", &at("10:20:00"), "sale", Some("T1"), &[("A", "-3")]);
    h.send_traced(&decrement, traced(PARENT));
    let mut bad = sale_at(S, "BAD1", &at("10:21:00"), "A", "1", "1");
    bad["lines"][0]["qty"] = json!("two");
    h.send_traced(&bad, traced(PARENT));
    let header = |entry: &crate::aggregates::OutboxEntry| {
        entry.headers.iter().find(|(name, _)| name == "traceparent").map(|(_, v)| v.clone())
    };
    let outbox = h.outbox();
    let alerts: Vec<_> = outbox.iter().filter(|e| e.subject == "retail.alerts.drift.0042").collect();
    assert_eq!(alerts.len(), 2, "firing, then resolved");
    assert_eq!(header(alerts[0]), None, "fired by the settle timer, not by N1");
    assert_eq!(header(alerts[1]).as_deref(), Some(PARENT), "resolved by M1");
    let dlq = outbox.iter().find(|e| e.subject.starts_with("retail.dlq.")).expect("BAD1 dead-lettered");
    assert_eq!(header(dlq).as_deref(), Some(PARENT));
}

// Proves a dedupe entry written by an earlier version, without `arrival`, still decodes, and
// its record is traced without arrival details.
#[test]
fn a_dedupe_entry_from_an_earlier_version_still_decodes() {
    #[derive(serde::Serialize)]
    struct EarlierSeen {
        fingerprint: u64,
        business_day: chrono::NaiveDate,
        transaction: Option<()>,
        voided_by: Option<String>,
    }
    let day = crate::test_support::day();
    let earlier = EarlierSeen { fingerprint: 7, business_day: day, transaction: None, voided_by: None };
    let seen: crate::aggregates::Seen = crate::codec::decode(&rmp_serde::to_vec(&earlier).unwrap()).unwrap();
    assert_eq!((seen.fingerprint, seen.business_day, seen.arrival), (7, day, None));
}

// Proves a shrink movement is traced to the inventory adjustment posting of the period it was
// booked in, and one that came after that posting to the next one.
#[test]
fn an_adjustment_movement_is_traced_to_its_inventory_adjustment_posting() {
    let mut h = harness();
    h.record(&movement_at(S, "SH1", &at("10:00:00"), "shrink", None, &[("A", "-2")]));
    h.tick_after(Duration::minutes(6));
    h.record(&movement_at(S, "SH2", &at("11:00:00"), "damage", None, &[("A", "-1")]));
    h.tick_after(Duration::minutes(6));
    let first = one(&h, "SH1");
    assert_eq!(
        first["postings"],
        json!([{"id": "0042/period/2026-11/0001", "kind": "inventory_adjustment",
                                          "covers_stream_sequence": 1}])
    );
    assert_eq!(one(&h, "SH2")["postings"][0]["id"], json!("0042/period/2026-11/0002"));
    let receipt = movement_at(S, "R1", &at("11:30:00"), "receipt", None, &[("A", "5")]);
    h.record(&receipt);
    h.tick_after(Duration::minutes(6));
    assert_eq!(one(&h, "R1")["postings"], json!([]), "a receipt is not posted");
}

// Proves every record type's stored code reads back as its `type`, so the byte code and the
// names stay in step.
#[test]
fn every_record_type_reads_back_from_its_code() {
    use crate::lineage::{Arrival, RECORD_TYPES};
    let mut h = harness();
    h.record(&sale_at(S, "T1", &at("10:00:00"), "A", "1", "2.00"));
    h.record(&movement_at(S, "M1", &at("10:01:00"), "receipt", None, &[("A", "1")]));
    h.record(&crate::test_support::day_close_at(S, "2026-11-27", &at("21:00:00"), 1, "2.00", "0"));
    for (id, expected) in [("T1", RECORD_TYPES[0]), ("M1", RECORD_TYPES[1]), ("CLOSE-0042-2026-11-27", RECORD_TYPES[2])]
    {
        assert_eq!(one(&h, id)["type"], json!(expected), "{id}");
    }
    let order = Arrival { record_type: 4, ..Arrival::default() };
    assert_eq!(order.record_type(), Some("order.fulfillment"));
}
