//! Reconciliation tests: a state that replayed the input without publishing (a rebuild) takes
//! its books from what a live run published, and then continues the live run's posting
//! sequences and alert revisions, its deltas completing exactly what the ERP received.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;
use tally_state::{Cf, Overlay, Store, WriteBatch};

use crate::postings;
use crate::reconcile::{self, BookOutcome, Received, ReceivedAlert, ReceivedPosting};
use crate::test_support::{day_close_at, movement_at, sale_at, void_at, Harness, Published};

const S: &str = "0042";
const DAY1: &str = "2026-11-27";
const DAY2: &str = "2026-11-28";

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A day of traffic: sales on three skus, a return, a void, a movement, the day-close, and the
/// next day's first sales, which move the watermark past close + close_grace (day 1 final).
fn traffic() -> Vec<Value> {
    let mut records = Vec::new();
    for i in 0..8 {
        let sku = ["A", "B", "C"][i % 3];
        let at = format!("{DAY1}T10:{:02}:00Z", i * 5);
        records.push(sale_at(S, &format!("T{i}"), &at, sku, &format!("{}", 1 + i % 2), "10.00"));
    }
    records.push(sale_at(S, "R1", &format!("{DAY1}T11:00:00Z"), "B", "-1", "10.00"));
    records.push(void_at(S, "V3", &format!("{DAY1}T11:05:00Z"), "T3"));
    records.push(movement_at(S, "M1", &format!("{DAY1}T11:10:00Z"), "sale", Some("T0"), &[("A", "-1")]));
    records.push(day_close_at(S, DAY1, &format!("{DAY1}T21:00:00Z"), 8, "100.00", "0"));
    records.push(sale_at(S, "U1", &format!("{DAY2}T09:00:00Z"), "A", "2", "10.00"));
    records.push(sale_at(S, "U2", &format!("{DAY2}T09:05:00Z"), "D", "1", "7.50"));
    records
}

/// What follows after the switch to the rebuilt state: a late sale of day 1 (after its final
/// posting), a void of a day-1 sale, and more of day 2.
fn later() -> Vec<Value> {
    vec![
        sale_at(S, "L1", &format!("{DAY1}T20:00:00Z"), "C", "3", "10.00"),
        void_at(S, "V5", &format!("{DAY2}T09:10:00Z"), "T5"),
        sale_at(S, "U3", &format!("{DAY2}T09:20:00Z"), "B", "1", "10.00"),
    ]
}

/// Reads what `h` published, as the processor reads it back from the output streams.
fn received(h: &Harness) -> Received {
    let mut received = Received { postings_complete: true, ..Received::default() };
    for entry in h.outbox() {
        let content_type = entry.headers.iter().find(|(n, _)| n == "Content-Type").map(|(_, v)| v.as_str());
        if entry.subject.starts_with("retail.erp.postings.") {
            let posting: ReceivedPosting = reconcile::read_output(content_type, &entry.payload).unwrap();
            assert!(received.add_posting(posting));
        } else if entry.subject.starts_with("retail.alerts.drift.") {
            received.add_alert(reconcile::read_output::<ReceivedAlert>(content_type, &entry.payload).unwrap());
        }
    }
    received
}

/// Empties the outbox, as `tally state rebuild` does with what it recomputed.
fn discard_outbox(h: &mut Harness) {
    let mut batch = WriteBatch::default();
    for (key, _) in h.store.scan_from(Cf::Outbox, &[], usize::MAX).unwrap() {
        batch.delete(Cf::Outbox, key);
    }
    h.store.write(&batch).unwrap();
}

/// Reconciles every store-day `h` holds with `received`; returns the outcomes by day.
fn reconcile_all(h: &mut Harness, received: &Received) -> BTreeMap<NaiveDate, BookOutcome> {
    let days = crate::report::store_days(&h.store, 100).unwrap();
    let mut txn = Overlay::new(&h.store);
    let mut outcomes = BTreeMap::new();
    for (store, day) in days {
        let got = received.days.get(&(store.clone(), day));
        let outcome = reconcile::reconcile_day(&mut txn, &store, day, got, received.postings_complete, h.now).unwrap();
        outcomes.insert(day, outcome.expect("the day is held"));
    }
    h.store.write(&txn.into_batch()).unwrap();
    outcomes
}

/// The sums of postings: (transactions, lines, net, tax), tenders, and per sku
/// (qty, gross, discount, net, tax).
#[derive(Debug, Default, PartialEq)]
struct Sums {
    control: (i64, i64, Decimal, Decimal),
    tenders: BTreeMap<String, Decimal>,
    skus: BTreeMap<String, [Decimal; 5]>,
}

fn dec(value: &Value) -> Decimal {
    Decimal::from_str(value.as_str().unwrap()).unwrap()
}

impl Sums {
    fn add(&mut self, posting: &Value) {
        let control = &posting["control"];
        self.control.0 += control["transactions"].as_i64().unwrap();
        self.control.1 += control["lines"].as_i64().unwrap();
        self.control.2 += dec(&control["net"]);
        self.control.3 += dec(&control["tax"]);
        for tender in posting["tenders"].as_array().unwrap() {
            *self.tenders.entry(tender["type"].as_str().unwrap().into()).or_default() += dec(&tender["amount"]);
        }
        for line in posting["lines"].as_array().unwrap() {
            let sum = self.skus.entry(line["sku"].as_str().unwrap().into()).or_default();
            for (i, field) in ["qty", "gross", "discount", "net", "tax"].iter().enumerate() {
                sum[i] += dec(&line[*field]);
            }
        }
    }

    /// What the postings of a day must add up to: its totals in `h`.
    fn expected(h: &Harness, day: NaiveDate) -> Sums {
        let totals = h.store_day_of(S, day).unwrap();
        let mut sums = Sums {
            control: (totals.transactions, totals.lines, totals.net, totals.tax),
            tenders: totals.tenders.clone(),
            ..Sums::default()
        };
        for (sku, figures) in h.skus_of(S, day) {
            let line = postings::postable(&figures);
            sums.skus.insert(sku, [line.qty, line.gross, line.discount, line.net, line.tax]);
        }
        sums.normalized()
    }

    fn normalized(mut self) -> Sums {
        self.tenders.retain(|_, v| !v.is_zero());
        self.skus.retain(|_, v| v.iter().any(|x| !x.is_zero()));
        self
    }
}

fn of_day(postings: &[Published], day: &str) -> Vec<Value> {
    postings.iter().filter(|p| p.body["business_day"] == day).map(|p| p.body.clone()).collect()
}

/// Asserts that for each day, `first` then `then` run seq 1, 2, … with ids to match, hold one
/// final posting, and sum to the day's totals in `h`.
fn assert_one_sequence(h: &Harness, first: &[Published], then: &[Published]) {
    for day in [DAY1, DAY2] {
        let all: Vec<Value> = of_day(first, day).into_iter().chain(of_day(then, day)).collect();
        for (i, posting) in all.iter().enumerate() {
            let seq = i as u64 + 1;
            assert_eq!(posting["seq"].as_u64(), Some(seq), "{day}: {all:#?}");
            assert_eq!(posting["id"].as_str(), Some(format!("{S}/{day}/{seq:04}").as_str()));
        }
        let finals = all.iter().filter(|p| p["kind"] == "final").count();
        assert_eq!(finals, usize::from(day == DAY1), "{day}: one final posting, for day 1 only: {all:#?}");
        let mut sums = Sums::default();
        all.iter().for_each(|p| sums.add(p));
        assert_eq!(sums.normalized(), Sums::expected(h, date(day)), "{day}: the postings sum to the totals");
    }
}

/// The live run: `traffic()` with an interval tick after each record `ticks` picks.
fn live(ticks: &[bool]) -> Harness {
    let mut h = Harness::new();
    for (i, record) in traffic().iter().enumerate() {
        h.record(record);
        if ticks.get(i).copied().unwrap_or(false) {
            h.tick_after(Duration::minutes(5));
        }
    }
    h.tick_after(Duration::minutes(5));
    h
}

/// The rebuild: `traffic()` replayed without ticks, its outputs discarded, its books
/// reconciled with what `live` published.
fn rebuilt(live: &Harness) -> (Harness, BTreeMap<NaiveDate, BookOutcome>) {
    let mut h = Harness::new();
    for record in traffic() {
        h.record(&record);
    }
    discard_outbox(&mut h);
    let outcomes = reconcile_all(&mut h, &received(live));
    (h, outcomes)
}

/// Applies `later()` with ticks enough to post everything.
fn continue_with_later(h: &mut Harness) {
    for record in later() {
        h.record(&record);
    }
    h.tick_after(Duration::minutes(5));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    // Proves that whenever the live run sent its interim postings, a rebuilt state reconciled
    // with them continues each day's posting sequence after the live run's last posting, never
    // sends a second final, and its postings complete the live run's to the day's totals.
    #[test]
    fn a_reconciled_rebuild_continues_the_live_posting_sequence(ticks in proptest::collection::vec(any::<bool>(), 14)) {
        let live = live(&ticks);
        let (mut rebuilt, outcomes) = rebuilt(&live);
        prop_assert!(outcomes.values().all(|o| *o == BookOutcome::Matched), "{outcomes:?}");
        continue_with_later(&mut rebuilt);
        assert_one_sequence(&rebuilt, &live.postings(S), &rebuilt.postings(S));
    }
}

// Proves the failure this module prevents: without reconciling, the rebuilt state's next
// posting reuses an id the live run already published with other content.
#[test]
fn without_reconciling_a_rebuild_reuses_a_published_posting_id() {
    let live = live(&[true; 14]);
    let mut h = Harness::new();
    for record in traffic() {
        h.record(&record);
    }
    discard_outbox(&mut h);
    continue_with_later(&mut h);
    let published: BTreeMap<String, Value> = live.postings(S).into_iter().map(|p| (p.msg_id, p.body)).collect();
    let reused = h.postings(S).into_iter().filter(|p| published.get(&p.msg_id).is_some_and(|body| *body != p.body));
    assert!(reused.count() > 0, "the unreconciled rebuild would have sent a published id with other content");
}

// Proves that when the ERP received nothing of a day and the postings stream lost nothing, the
// book starts over: everything is posted again from seq 1.
#[test]
fn a_day_the_erp_never_received_is_posted_from_the_first_seq() {
    let (mut h, outcomes) = rebuilt(&Harness::new());
    assert_eq!(outcomes.get(&date(DAY1)), Some(&BookOutcome::Reset), "day 1's rebuilt final was never published");
    assert_eq!(outcomes.get(&date(DAY2)), Some(&BookOutcome::Unposted));
    h.tick_after(Duration::minutes(5));
    assert_one_sequence(&h, &[], &h.postings(S));
    let day1 = of_day(&h.postings(S), DAY1);
    assert_eq!(day1.len(), 1);
    assert_eq!(day1[0]["kind"], "final", "a finalized day whose final the ERP lacks gets its final posting");
    assert!(day1[0]["audit"]["pos_transaction_count"].is_number(), "with its audit");
}

// Proves that when the postings stream lost a day's first postings, the next posting still
// takes a seq after the last one the stream holds: no id is sent twice.
#[test]
fn a_day_whose_first_postings_aged_out_continues_after_the_last_seq() {
    let live = live(&[true; 14]);
    let live_postings = live.postings(S);
    let mut h = Harness::new();
    for record in traffic() {
        h.record(&record);
    }
    discard_outbox(&mut h);
    // Only the last posting of each day is left in the stream.
    let mut kept = Received::default();
    for day in [DAY1, DAY2] {
        let last = of_day(&live_postings, day).pop().unwrap();
        kept.add_posting(serde_json::from_value(last).unwrap());
    }
    let outcomes = reconcile_all(&mut h, &kept);
    assert!(outcomes.values().all(|o| *o == BookOutcome::Partial), "{outcomes:?}");
    continue_with_later(&mut h);
    for day in [DAY1, DAY2] {
        let last_live = of_day(&live_postings, day).last().unwrap()["seq"].as_u64().unwrap();
        let next = of_day(&h.postings(S), day);
        assert!(!next.is_empty(), "{day}: the later records are posted");
        assert_eq!(next[0]["seq"].as_u64(), Some(last_live + 1), "{day}: {next:#?}");
    }
}

// Proves a day the live run finalized (its store idle) and the rebuild did not yet gets no
// second final posting when the rebuilt state finalizes it: what is left is an adjustment.
#[test]
fn a_day_final_on_the_erp_side_is_not_finalized_twice() {
    let records = [
        sale_at(S, "T1", &format!("{DAY1}T10:00:00Z"), "A", "2", "10.00"),
        day_close_at(S, DAY1, &format!("{DAY1}T21:00:00Z"), 1, "20.00", "0"),
    ];
    let mut live = Harness::new();
    for record in &records {
        live.record(record);
    }
    live.tick_after(Duration::minutes(30));
    assert_eq!(of_day(&live.postings(S), DAY1).last().unwrap()["kind"], "final", "idle: final by processing time");
    let mut h = Harness::new();
    for record in &records {
        h.record(record);
    }
    assert!(!h.store_day().finalized, "the rebuild did not idle");
    discard_outbox(&mut h);
    reconcile_all(&mut h, &received(&live));
    h.record(&sale_at(S, "T2", &format!("{DAY1}T20:00:00Z"), "A", "1", "10.00"));
    h.tick_after(Duration::minutes(30));
    let kinds: Vec<Value> = of_day(&h.postings(S), DAY1).iter().map(|p| p["kind"].clone()).collect();
    assert_eq!(kinds, ["adjustment"]);
    assert_one_sequence_day1_only(&h, &live.postings(S), &h.postings(S));
}

fn assert_one_sequence_day1_only(h: &Harness, first: &[Published], then: &[Published]) {
    let all: Vec<Value> = of_day(first, DAY1).into_iter().chain(of_day(then, DAY1)).collect();
    let seqs: Vec<u64> = all.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    let mut sums = Sums::default();
    all.iter().for_each(|p| sums.add(p));
    assert_eq!(sums.normalized(), Sums::expected(h, date(DAY1)));
}

// Proves an alert revision the live run published (its store idle) is not reused by the
// rebuilt state: its next revision of that alert comes after it.
#[test]
fn a_published_alert_revision_is_not_sent_again_with_other_content() {
    let sale = sale_at(S, "T1", &format!("{DAY1}T10:00:00Z"), "A", "5", "10.00");
    let mut live = Harness::new();
    live.record(&sale);
    live.tick_after(Duration::minutes(10));
    live.tick_after(Duration::minutes(20));
    let fired: Vec<String> = live.alerts(S).into_iter().map(|a| a.msg_id).collect();
    assert_eq!(fired, [format!("drift/{S}/{DAY1}/A/1")], "the idle store's watermark settled the key");
    let mut h = Harness::new();
    h.record(&sale);
    discard_outbox(&mut h);
    reconcile_all(&mut h, &received(&live));
    // Event time moves past the settle time: the rebuilt state fires the key itself.
    h.record(&sale_at(S, "T2", &format!("{DAY1}T10:30:00Z"), "B", "1", "10.00"));
    let sent: Vec<String> = h.alerts(S).into_iter().map(|a| a.msg_id).collect();
    assert_eq!(sent, [format!("drift/{S}/{DAY1}/A/2")]);
}
