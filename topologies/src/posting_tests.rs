//! ERP posting tests (docs/wire-format.md, "ERP posting", issue 4 item 6): postings are gapless deltas whose sum is the
//! day's totals, one final with its audit, adjustments for anything late. Driven through
//! `Retail::apply_batch` on a fake processing clock; postings read from the outbox.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::test_support::{day_close_at, sale_at, void_at, Harness, Published};
use crate::topology::{Outcome, TopologyConfig};

const S: &str = "0042";

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn d(value: &Value) -> Decimal {
    dec(value.as_str().unwrap_or_else(|| panic!("{value} is not a decimal string")))
}

fn s(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {value}")).to_string()
}

/// Store 0042 in UTC, interim postings every 5 minutes of processing time (the defaults).
fn harness() -> Harness {
    Harness::with(TopologyConfig::default())
}

/// A one-line sale of store 0042 with register and seq; `line` is (sku, qty, unit_price, tax),
/// paid by card.
fn tx(id: &str, at: &str, register: &str, seq: u64, line: (&str, &str, &str, &str), card: &str) -> Value {
    let (sku, qty, price, tax) = line;
    let mut value = sale_at(S, id, at, sku, qty, price);
    value["register"] = json!(register);
    value["seq"] = json!(seq);
    value["lines"][0]["tax"] = json!(tax);
    value["tenders"] = json!([{"type": "card", "amount": card}]);
    value
}

fn kinds(postings: &[Published]) -> Vec<String> {
    postings.iter().map(|p| s(&p.body, "kind")).collect()
}

fn of_day(postings: Vec<Published>, day: &str) -> Vec<Published> {
    postings.into_iter().filter(|p| p.body["business_day"] == day).collect()
}

// Proves a tick sends at most `POSTINGS_PER_TICK_MAX` interval postings, and that the store-days
// it left for later are posted by the following ticks, each once.
#[test]
fn a_tick_posts_a_bounded_number_of_store_days_and_the_next_ticks_the_rest() {
    use crate::lifecycle::POSTINGS_PER_TICK_MAX;
    let mut h = harness();
    let stores = POSTINGS_PER_TICK_MAX + 8;
    for i in 0..stores {
        let store = format!("{:04}", 100 + i);
        h.record(&sale_at(&store, &format!("T{i}"), "2026-11-27T10:00:00Z", "A", "1", "10.00"));
    }
    let interim = |emitted: &crate::outputs::Emitted| emitted.postings.get("interim").copied().unwrap_or(0);
    assert_eq!(interim(&h.tick_after(Duration::minutes(5))), POSTINGS_PER_TICK_MAX as u64);
    assert_eq!(interim(&h.tick_after(Duration::seconds(1))), 8);
    assert_eq!(interim(&h.tick_after(Duration::seconds(1))), 0, "every store-day was posted once");
    for i in 0..stores {
        let posted = h.postings(&format!("{:04}", 100 + i));
        assert_eq!(kinds(&posted), ["interim"], "store {i}");
    }
}

// Proves a transaction that arrives after its day's final posting yields exactly one
// adjustment, in its own business day, after an interval tick, and touches no other day.
#[test]
fn late_transaction_after_final_is_one_adjustment_in_its_own_day() {
    let mut h = harness();
    h.record(&tx("T1", "2026-11-27T10:00:00Z", "R01", 1, ("A", "2", "10.00", "1.60"), "21.60"));
    h.tick_after(Duration::minutes(5));
    h.record(&day_close_at(S, "2026-11-27", "2026-11-27T21:00:00Z", 1, "20.00", "1.60"));
    // The next day's first sale moves the watermark past close + close_grace: day 1 is final.
    h.record(&tx("U1", "2026-11-28T09:00:00Z", "R01", 1, ("B", "1", "3.00", "0.24"), "3.24"));
    h.tick_after(Duration::minutes(5));
    assert_eq!(kinds(&of_day(h.postings(S), "2026-11-27")), vec!["interim", "final"]);
    assert_eq!(kinds(&of_day(h.postings(S), "2026-11-28")), vec!["interim"]);
    let before = h.postings(S).len();
    // A late sale of day 1, and a void of it that never arrives: one adjustment.
    h.record(&tx("T2", "2026-11-27T20:00:00Z", "R01", 2, ("A", "1", "10.00", "0.80"), "10.80"));
    assert!(h.tick_after(Duration::minutes(4)).postings.is_empty(), "erp_interval not yet elapsed");
    let emitted = h.tick_after(Duration::minutes(1));
    assert_eq!(emitted.postings, BTreeMap::from([("adjustment", 1)]));
    let postings = h.postings(S);
    assert_eq!(postings.len(), before + 1);
    let adjustment = &postings[before];
    assert_eq!(adjustment.msg_id, "0042/2026-11-27/0003");
    let expected = json!({
        "type": "erp.posting", "id": "0042/2026-11-27/0003", "store": S, "business_day": "2026-11-27",
        "seq": 3, "kind": "adjustment", "currency": "USD",
        "lines": [{"sku": "A", "qty": "1", "gross": "10.00", "discount": "0", "net": "10.00", "tax": "0.80"}],
        "tenders": [{"type": "card", "amount": "10.80"}],
        "control": {"transactions": 1, "lines": 1, "net": "10.00", "tax": "0.80"},
        "cumulative": {"transactions": 2, "net": "30.00", "tax": "2.40"},
        "audit": null,
    });
    assert_eq!(adjustment.body, expected);
    h.tick_after(Duration::minutes(30));
    assert_eq!(h.postings(S).len(), before + 1, "nothing more, in either day");
}

// Proves the final posting's audit reports POS-minus-computed differences against a
// disagreeing day-close and each register's missing seqs, voided seqs counting as seen.
#[test]
fn audit_reports_differences_and_missing_register_seqs() {
    let mut h = harness();
    let sales = [
        ("T1", "R01", 1),
        ("T2", "R01", 2),
        ("T4", "R01", 4),
        ("T7", "R01", 7),
        ("T10", "R02", 10),
        ("T11", "R02", 11),
        ("T5", "R03", 5),
    ];
    for (i, (id, register, seq)) in sales.iter().enumerate() {
        let at = format!("2026-11-27T10:{:02}:00Z", i);
        assert_eq!(h.record(&tx(id, &at, register, *seq, ("A", "1", "10.00", "0.80"), "10.80")), Outcome::Accepted);
    }
    assert_eq!(
        h.record(&tx("T4", "2026-11-27T10:02:00Z", "R01", 4, ("A", "1", "10.00", "0.80"), "10.80")),
        Outcome::Duplicate
    );
    h.record(&void_at(S, "V2", "2026-11-27T11:00:00Z", "T2"));
    h.tick_after(Duration::minutes(5));
    assert_eq!(h.postings(S)[0].body["audit"], Value::Null, "interim postings carry no audit");
    h.record(&day_close_at(S, "2026-11-27", "2026-11-27T21:00:00Z", 7, "72.50", "5.00"));
    // Idle for 16 minutes: the watermark moves 11 past the close, beyond close_grace.
    let emitted = h.tick_after(Duration::minutes(16));
    assert_eq!(emitted.postings.get("final"), Some(&1));
    let postings = h.postings(S);
    let last = postings.last().unwrap();
    assert_eq!(s(&last.body, "kind"), "final");
    let expected = json!({
        "pos_transaction_count": 7, "pos_net_sales": "72.50", "pos_tax": "5.00",
        "difference_transactions": 1, "difference_net": "12.50", "difference_tax": "0.20",
        "missing_register_seqs": [{"register": "R01", "seqs": [3, 5, 6]}],
        // The day close names card 72.50; the six remaining sales paid 10.80 each by card.
        "tenders_over_short": [{"type": "card", "pos_amount": "72.50", "computed_amount": "64.80",
                                "over_short": "7.70"}],
    });
    assert_eq!(last.body["audit"], expected);
    assert_eq!(last.body["cumulative"], json!({"transactions": 6, "net": "60.00", "tax": "4.80"}));
}

// Proves a day finalized without day-close (end of day + max_open, the store idle) carries an
// audit with null POS figures and the register gaps.
#[test]
fn audit_without_day_close_has_null_pos_figures_and_gaps() {
    let mut h = harness();
    h.record(&tx("T1", "2026-11-27T20:00:00Z", "R01", 1, ("A", "1", "10.00", "0.80"), "10.80"));
    h.record(&tx("T4", "2026-11-27T20:01:00Z", "R01", 4, ("A", "1", "10.00", "0.80"), "10.80"));
    h.record(&tx("T9", "2026-11-27T20:02:00Z", "R02", 9, ("A", "1", "10.00", "0.80"), "10.80"));
    // End of day 2026-11-28T00:00Z + max_open 30h = 2026-11-29T06:00Z: 33h58m after 20:02,
    // plus the 5 idle minutes before the watermark moves.
    h.tick_after(Duration::hours(34) + Duration::minutes(2));
    assert!(h.postings(S).iter().all(|p| p.body["kind"] != "final"), "one minute short of max_open");
    h.tick_after(Duration::minutes(1));
    let postings = h.postings(S);
    assert_eq!(kinds(&postings), vec!["interim", "final"]);
    let expected = json!({
        "pos_transaction_count": null, "pos_net_sales": null, "pos_tax": null,
        "difference_transactions": null, "difference_net": null, "difference_tax": null,
        "missing_register_seqs": [{"register": "R01", "seqs": [2, 3]}],
    });
    assert_eq!(postings[1].body["audit"], expected);
    assert_eq!(postings[1].body["lines"], json!([]), "the interim already carried everything");
}

// Proves changes that cancel out within one interval (a transaction and its void, in either
// order) post nothing and consume no seq.
#[test]
fn changes_that_cancel_out_post_nothing_and_take_no_seq() {
    let mut h = harness();
    h.record(&tx("T1", "2026-11-27T10:00:00Z", "R01", 1, ("A", "1", "10.00", "0.80"), "10.80"));
    assert_eq!(h.tick_after(Duration::minutes(5)).postings, BTreeMap::from([("interim", 1)]));
    h.record(&tx("T2", "2026-11-27T10:01:00Z", "R01", 2, ("B", "3", "4.00", "0.96"), "12.96"));
    h.record(&void_at(S, "V2", "2026-11-27T10:02:00Z", "T2"));
    h.record(&void_at(S, "V3", "2026-11-27T10:03:00Z", "T3"));
    h.record(&tx("T3", "2026-11-27T10:02:30Z", "R01", 3, ("C", "2", "1.00", "0.16"), "2.16"));
    assert!(h.tick_after(Duration::minutes(5)).postings.is_empty());
    assert!(h.tick_after(Duration::minutes(5)).postings.is_empty(), "nothing left dirty");
    assert_eq!(h.postings(S).len(), 1);
    h.record(&tx("T4", "2026-11-27T10:04:00Z", "R01", 4, ("A", "2", "10.00", "1.60"), "21.60"));
    h.tick_after(Duration::minutes(5));
    let postings = h.postings(S);
    assert_eq!(postings.len(), 2);
    assert_eq!(postings[1].msg_id, "0042/2026-11-27/0002");
    assert_eq!(postings[1].body["seq"], json!(2));
    assert_eq!(
        postings[1].body["lines"],
        json!([{"sku": "A", "qty": "2", "gross": "20.00", "discount": "0", "net": "20.00", "tax": "1.60"}])
    );
    assert_eq!(postings[1].body["control"], json!({"transactions": 1, "lines": 1, "net": "20.00", "tax": "1.60"}));
}

// Proves every posting names a currency, the configured default when the day saw no sale that
// named one (here: only a transaction cancelled by its earlier void, and movements).
#[test]
fn final_posting_of_a_day_without_applied_sales_names_the_default_currency() {
    let mut h = harness();
    h.record(&void_at(S, "V1", "2026-11-27T10:00:00Z", "T1"));
    h.record(&tx("T1", "2026-11-27T09:59:00Z", "R01", 1, ("A", "1", "10.00", "0.80"), "10.80"));
    h.record(&day_close_at(S, "2026-11-27", "2026-11-27T21:00:00Z", 0, "0", "0"));
    h.tick_after(Duration::minutes(20));
    let postings = h.postings(S);
    assert_eq!(kinds(&postings), vec!["final"]);
    assert_eq!(postings[0].body["currency"], json!("USD"));
}

/// One generated transaction: its day (0 or 1), minute, lines (sku, qty, price, discount and
/// tax in cents, restock), tenders (type, cents), register, whether it is sent at all, voided
/// (0 no, 1 once, 2 twice) with its voids dated the next business day or its own, and re-sent as
/// a duplicate. Arrival order is shuffled separately.
#[derive(Debug, Clone)]
struct Plan {
    day: usize,
    minute: u32,
    lines: Vec<(usize, i64, i64, i64, i64, bool)>,
    tenders: Vec<(usize, i64)>,
    register: usize,
    sent: bool,
    voids: u8,
    void_next_day: bool,
    dup: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Send(usize),
    Duplicate(usize),
    Void(usize, u8),
    DayClose,
    Tick(i64),
}

const SKUS: [&str; 3] = ["A", "B", "C"];
const TENDERS: [&str; 2] = ["card", "cash"];
const DAYS: [&str; 2] = ["2026-11-27", "2026-11-28"];

fn cents(c: i64) -> String {
    Decimal::new(c, 2).to_string()
}

fn plan() -> impl Strategy<Value = Plan> {
    let line = (0usize..3, prop_oneof![-2i64..0, 1i64..4], 1i64..2000, 0i64..300, 0i64..200, any::<bool>());
    (
        0usize..2,
        0u32..600,
        proptest::collection::vec(line, 1..4),
        proptest::collection::vec((0usize..2, -500i64..5000), 0..3),
        0usize..2,
        prop::bool::weighted(0.9),
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)],
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(day, minute, lines, tenders, register, sent, voids, void_next_day, dup)| Plan {
            day,
            minute,
            // Discount and tax are signed like the quantity (docs/wire-format.md, "POS transaction").
            lines: lines
                .into_iter()
                .map(|(sku, qty, p, disc, tax, restock)| {
                    (sku, qty, p, disc * qty.signum(), tax * qty.signum(), restock)
                })
                .collect(),
            tenders,
            register,
            sent,
            voids,
            void_next_day,
            dup,
        })
}

fn time_of(plan: &Plan, extra_minutes: u32) -> String {
    let minute = plan.minute + extra_minutes;
    format!("{}T{:02}:{:02}:00Z", DAYS[plan.day], 10 + minute / 60, minute % 60)
}

fn transaction(i: usize, plan: &Plan) -> Value {
    let lines: Vec<Value> = plan
        .lines
        .iter()
        .enumerate()
        .map(|(n, &(sku, qty, price, discount, tax, restock))| {
            json!({"line": n + 1, "sku": SKUS[sku], "qty": qty.to_string(), "unit_price": cents(price),
                   "discount": cents(discount), "tax": cents(tax), "restock": restock})
        })
        .collect();
    let tenders: Vec<Value> =
        plan.tenders.iter().map(|&(t, c)| json!({"type": TENDERS[t], "amount": cents(c)})).collect();
    json!({"type": "pos.transaction", "id": format!("T{i}"), "store": S, "register": format!("R{}", plan.register),
           "seq": i + 1, "occurred_at": time_of(plan, 0), "business_day": DAYS[plan.day],
           "lines": lines, "tenders": tenders})
}

/// A run: the plans and the steps in arrival order.
fn scenario() -> impl Strategy<Value = (Vec<Plan>, Vec<Step>)> {
    (proptest::collection::vec(plan(), 1..10), proptest::collection::vec(0i64..=20, 0..10), any::<bool>())
        .prop_flat_map(|(plans, ticks, close)| {
            let mut steps = Vec::new();
            for (i, p) in plans.iter().enumerate() {
                if p.sent {
                    steps.push(Step::Send(i));
                }
                if p.sent && p.dup {
                    steps.push(Step::Duplicate(i));
                }
                for k in 0..p.voids {
                    steps.push(Step::Void(i, k));
                }
            }
            steps.extend(ticks.into_iter().map(Step::Tick));
            if close {
                steps.push(Step::DayClose);
            }
            (Just(plans), Just(steps).prop_shuffle())
        })
}

/// The day's totals computed straight from the plans: what every accepted, unvoided
/// transaction adds up to.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    transactions: i64,
    lines: i64,
    net: Decimal,
    tax: Decimal,
    /// sku → (qty, gross, discount, net, tax)
    skus: BTreeMap<String, [Decimal; 5]>,
    tenders: BTreeMap<String, Decimal>,
}

impl Totals {
    /// Drops all-zero skus and tenders, which postings need not mention.
    fn without_zeros(mut self) -> Totals {
        self.skus.retain(|_, v| v.iter().any(|x| !x.is_zero()));
        self.tenders.retain(|_, v| !v.is_zero());
        self
    }
}

fn model(plans: &[Plan], day: usize) -> Totals {
    let mut t = Totals::default();
    for p in plans.iter().filter(|p| p.day == day && p.sent && p.voids == 0) {
        t.transactions += 1;
        t.lines += p.lines.len() as i64;
        for &(sku, qty, price, discount, tax, _) in &p.lines {
            let (qty, gross, discount, tax) = (
                Decimal::from(qty),
                Decimal::from(qty) * Decimal::new(price, 2),
                Decimal::new(discount, 2),
                Decimal::new(tax, 2),
            );
            let e = t.skus.entry(SKUS[sku].to_string()).or_default();
            for (slot, v) in e.iter_mut().zip([qty, gross, discount, gross - discount, tax]) {
                *slot += v;
            }
            t.net += gross - discount;
            t.tax += tax;
        }
        for &(kind, c) in &p.tenders {
            *t.tenders.entry(TENDERS[kind].to_string()).or_default() += Decimal::new(c, 2);
        }
    }
    t.without_zeros()
}

/// The sum of a day's postings, checking each posting's own consistency on the way.
fn sum_of_postings(postings: &[Published], store: &str, day: &str) -> Result<Totals, TestCaseError> {
    let mut t = Totals::default();
    let mut final_seen = 0;
    for (n, p) in postings.iter().enumerate() {
        let b = &p.body;
        let seq = n as u64 + 1;
        prop_assert_eq!(&b["seq"], &json!(seq), "seqs are 1..n without gaps");
        let id = format!("{store}/{day}/{seq:04}");
        prop_assert_eq!(&b["id"], &json!(id));
        prop_assert_eq!(&p.msg_id, &id);
        let kind = s(b, "kind");
        let expected_kind = match final_seen {
            0 if kind == "final" => "final",
            0 => "interim",
            _ => "adjustment",
        };
        prop_assert_eq!(kind.as_str(), expected_kind, "posting {} of {}", seq, day);
        if kind == "final" {
            final_seen += 1;
        } else {
            prop_assert_eq!(&b["audit"], &Value::Null);
        }
        let (mut lines_net, mut lines_tax) = (Decimal::ZERO, Decimal::ZERO);
        for line in b["lines"].as_array().unwrap() {
            let e = t.skus.entry(s(line, "sku")).or_default();
            for (slot, field) in e.iter_mut().zip(["qty", "gross", "discount", "net", "tax"]) {
                *slot += d(&line[field]);
            }
            lines_net += d(&line["net"]);
            lines_tax += d(&line["tax"]);
        }
        for tender in b["tenders"].as_array().unwrap() {
            *t.tenders.entry(s(tender, "type")).or_default() += d(&tender["amount"]);
        }
        let control = &b["control"];
        prop_assert_eq!(d(&control["net"]), lines_net, "control.net is the sum of the posting's lines");
        prop_assert_eq!(d(&control["tax"]), lines_tax);
        t.transactions += control["transactions"].as_i64().unwrap();
        t.lines += control["lines"].as_i64().unwrap();
        t.net += d(&control["net"]);
        t.tax += d(&control["tax"]);
        let cumulative = &b["cumulative"];
        prop_assert_eq!(cumulative["transactions"].as_i64().unwrap(), t.transactions, "cumulative is the running sum");
        prop_assert_eq!(d(&cumulative["net"]), t.net);
        prop_assert_eq!(d(&cumulative["tax"]), t.tax);
    }
    prop_assert_eq!(final_seen, 1, "exactly one final posting for {}", day);
    Ok(t.without_zeros())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Proves, for any interleaving of transactions, returns, voids (either order), duplicates
    // and ticks, that a day's postings are gapless, end in one final then adjustments, and sum
    // exactly to its totals, per sku, per tender and in control.
    #[test]
    fn sum_of_postings_equals_the_days_totals((plans, steps) in scenario()) {
        let config = TopologyConfig { erp_interval: Duration::minutes(1), ..TopologyConfig::default() };
        let mut h = Harness::with(config);
        let mut sent = std::collections::BTreeSet::new();
        for step in &steps {
            match step {
                // The re-send may come first; whichever arrives second is the duplicate.
                Step::Send(i) | Step::Duplicate(i) => {
                    let outcome = if sent.insert(*i) { Outcome::Accepted } else { Outcome::Duplicate };
                    prop_assert_eq!(h.record(&transaction(*i, &plans[*i])), outcome);
                }
                Step::Void(i, k) => {
                    let mut void = void_at(S, &format!("V{i}-{k}"), &time_of(&plans[*i], 1), &format!("T{i}"));
                    // A post-void reverses its transaction's day, whatever day it is dated.
                    let void_day = if plans[*i].void_next_day { 1 } else { plans[*i].day };
                    void["business_day"] = json!(DAYS[void_day]);
                    prop_assert_eq!(h.record(&void), Outcome::Accepted);
                }
                Step::DayClose => {
                    prop_assert_eq!(h.record(&day_close_at(S, DAYS[0], "2026-11-27T21:00:00Z", 1, "1.00", "0")), Outcome::Accepted);
                }
                Step::Tick(minutes) => drop(h.tick_after(Duration::minutes(*minutes))),
            }
        }
        // Idle long enough for both days to pass end of day + max_open, then one more interval.
        h.tick_after(Duration::days(3));
        h.tick_after(Duration::minutes(1));
        let postings = h.postings(S);
        for (n, day_text) in DAYS.iter().enumerate() {
            let date = NaiveDate::parse_from_str(day_text, "%Y-%m-%d").unwrap();
            let of_day = of_day(postings.clone(), day_text);
            let Some(store_day) = h.store_day_of(S, date) else {
                prop_assert!(of_day.is_empty(), "postings for a day without totals");
                continue;
            };
            prop_assert!(store_day.finalized);
            let posted = sum_of_postings(&of_day, S, day_text)?;
            let expected = model(&plans, n);
            // The stored totals agree with the independent model, and the postings with both.
            let mut stored = Totals {
                transactions: store_day.transactions,
                lines: store_day.lines,
                net: store_day.net,
                tax: store_day.tax,
                tenders: store_day.tenders.clone(),
                ..Totals::default()
            };
            for (sku, t) in h.skus_of(S, date) {
                stored.skus.insert(sku, [t.sold_units - t.returned_units, t.gross, t.discount, t.net, t.tax]);
            }
            let stored = stored.without_zeros();
            prop_assert_eq!(&stored, &expected, "stored totals of {}", day_text);
            prop_assert_eq!(&posted, &expected, "posted sum of {}", day_text);
        }
        prop_assert!(of_day(postings.clone(), "2026-11-27").len() + of_day(postings, "2026-11-28").len() == h.postings(S).len());
        prop_assert_eq!(h.store_day().posting.dirty_since, None);
    }
}
