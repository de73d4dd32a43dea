//! Unit tests of the generator's pure core, checked against an independent reading of the
//! contract (docs/wire-format.md, "Encoding of input" and "Input records") rather than against the generator's own structures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::*;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 14, 0, 0).single().unwrap_or_default()
}

fn opts(seed: u64) -> GenOptions {
    GenOptions { stores: 12, skus_per_store: 500, seed, ..GenOptions::default() }
}

/// Runs `baskets` baskets `step_secs` apart and returns every message in publish order.
fn generate(o: GenOptions, baskets: u64, step_secs: i64) -> (Vec<WireMessage>, Traffic) {
    let mut t = Traffic::new(o, start());
    let mut out = Vec::new();
    for k in 0..baskets {
        let at = start() + Duration::seconds(k as i64 * step_secs);
        out.extend(t.due(at));
        out.extend(t.next_basket(at));
    }
    out.extend(t.drain_all());
    (out, t)
}

fn decode(m: &WireMessage) -> Option<Value> {
    let v: Value = if m.is_msgpack() {
        rmp_serde::from_slice(&m.payload).ok()?
    } else {
        serde_json::from_slice(&m.payload).ok()?
    };
    v.is_object().then_some(v)
}

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => n.as_i64().map(Decimal::from),
        _ => None,
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The DLQ reason an independent contract reader gives a message, or its record when valid.
fn classify(m: &WireMessage) -> Result<Value, &'static str> {
    let v = decode(m).ok_or("decode")?;
    let (topic, kinds): (&str, &[&str]) = match s(&v, "type") {
        "pos.transaction" | "pos.day_close" => ("pos", &["pos.transaction", "pos.day_close"]),
        "inventory.movement" => ("inventory", &["inventory.movement"]),
        _ => return Err("unknown_type"),
    };
    assert!(kinds.contains(&s(&v, "type")));
    let token = m.subject.rsplit('.').next().unwrap_or("");
    assert_eq!(m.subject, format!("retail.{topic}.{token}"), "record on the wrong subject");
    if s(&v, "store") != token {
        return Err("store_mismatch");
    }
    DateTime::parse_from_rfc3339(s(&v, "occurred_at")).map_err(|_| "timestamp")?;
    assert!(NaiveDate::parse_from_str(s(&v, "business_day"), "%Y-%m-%d").is_ok());
    assert!(!s(&v, "id").is_empty(), "id is required");
    let empty = Vec::new();
    let lines = v.get("lines").and_then(Value::as_array).unwrap_or(&empty);
    for line in lines {
        for key in ["qty", "unit_price", "discount", "tax"] {
            if let Some(x) = line.get(key) {
                dec(x).ok_or("decimal")?;
            }
        }
    }
    match s(&v, "type") {
        "pos.transaction" => assert!(!lines.is_empty() || v["voids"].is_string()),
        "inventory.movement" => {
            assert!(!lines.is_empty());
            let reasons =
                ["sale", "return", "adjustment", "shrink", "damage", "count", "receipt", "transfer_in", "transfer_out"];
            assert!(reasons.contains(&s(&v, "reason")), "reason {}", s(&v, "reason"));
        }
        _ => assert!(dec(&v["net_sales"]).is_some() && dec(&v["tax"]).is_some()),
    }
    Ok(v)
}

fn valid(msgs: &[WireMessage]) -> Vec<Value> {
    msgs.iter().filter_map(|m| classify(m).ok()).collect()
}

fn is_sale_txn(v: &Value) -> bool {
    s(v, "type") == "pos.transaction" && v["lines"].is_array()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    // Proves the core is deterministic for a seed (and that the seed actually matters).
    let (a, ta) = generate(opts(7), 800, 3);
    let (b, tb) = generate(opts(7), 800, 3);
    let (c, _) = generate(opts(8), 800, 3);
    assert_eq!(a, b);
    assert_eq!(ta.stats(), tb.stats());
    assert_ne!(a, c);
}

#[test]
fn tenders_sum_to_net_plus_tax() {
    // Proves every transaction's tenders add up exactly to Σ(qty × price − discount + tax).
    let (msgs, _) = generate(opts(1), 1500, 2);
    let mut checked = 0;
    for v in valid(&msgs).iter().filter(|v| is_sale_txn(v)) {
        let mut due = Decimal::ZERO;
        for l in v["lines"].as_array().into_iter().flatten() {
            let disc = l.get("discount").and_then(dec).unwrap_or_default();
            let (q, p, t) = (dec(&l["qty"]), dec(&l["unit_price"]), dec(&l["tax"]));
            due += q.unwrap_or_default() * p.unwrap_or_default() - disc + t.unwrap_or_default();
            assert_eq!(p.map(|p| p.scale()), Some(2));
        }
        let paid: Decimal = v["tenders"].as_array().into_iter().flatten().filter_map(|t| dec(&t["amount"])).sum();
        assert_eq!(paid, due, "transaction {}", s(v, "id"));
        checked += 1;
    }
    assert!(checked > 1400);
}

#[test]
fn valid_payloads_have_the_contracts_fields() {
    // Proves every message not counted as malformed decodes with the required fields and sane values.
    let o = GenOptions { malformed_share: 0.0, void_share: 0.05, return_share: 0.2, ..opts(2) };
    let (msgs, t) = generate(o, 2000, 2);
    let (mut returns, mut not_restocked, mut return_of, mut voids) = (0, 0, 0, 0);
    let mut seen = HashSet::new();
    for m in &msgs {
        let v = classify(m).unwrap_or_else(|reason| panic!("{reason}: {:?}", m.subject));
        if !seen.insert(s(&v, "id").to_string()) {
            continue; // A duplicate re-send of a record already counted.
        }
        let offset = &s(&v, "occurred_at")[19..];
        assert!(offset.starts_with('+') || offset.starts_with('-'), "offset in {offset}");
        if s(&v, "voids").starts_with('0') {
            voids += 1;
        }
        for l in v["lines"].as_array().into_iter().flatten() {
            assert_eq!(s(l, "sku").len(), 6);
            if is_sale_txn(&v) && dec(&l["qty"]).is_some_and(|q| q.is_sign_negative()) {
                returns += 1;
                not_restocked += usize::from(l["restock"] == Value::Bool(false));
                return_of += usize::from(l.get("return_of").is_some());
            }
        }
    }
    assert_eq!(returns as u64, t.stats().returns);
    assert_eq!(voids as u64, t.stats().voids);
    assert!(not_restocked > 0 && not_restocked < returns && return_of > 0 && voids > 0);
}

#[test]
fn clean_sales_get_exactly_matching_decrements() {
    // Proves Σ sale-movement qty per sku = −sold units for every sale without injected drift,
    // that drift is exactly a missing or doubled decrement, and that a void puts stock back.
    let o = GenOptions { drift_share: 0.1, void_share: 0.05, duplicate_share: 0.05, malformed_share: 0.01, ..opts(3) };
    let (msgs, t) = generate(o, 3000, 2);
    let records = valid(&msgs);
    let mut sold: HashMap<String, BTreeMap<String, Decimal>> = HashMap::new();
    let mut voided = HashSet::new();
    let mut moved: HashMap<String, BTreeMap<String, Decimal>> = HashMap::new();
    let mut seen = HashSet::new();
    for v in &records {
        if !seen.insert(s(v, "id").to_string()) {
            continue; // A duplicate re-send: tally skips it, so do we.
        }
        let lines = v["lines"].as_array().into_iter().flatten();
        match (s(v, "type"), s(v, "reason")) {
            ("pos.transaction", _) if is_sale_txn(v) => {
                let e = sold.entry(s(v, "id").into()).or_default();
                for l in lines.filter(|l| dec(&l["qty"]).is_some_and(|q| q > Decimal::ZERO)) {
                    *e.entry(s(l, "sku").into()).or_default() += dec(&l["qty"]).unwrap_or_default();
                }
            }
            ("pos.transaction", _) => drop(voided.insert(s(v, "voids").to_string())),
            ("inventory.movement", "sale") => {
                let e = moved.entry(s(v, "ref").into()).or_default();
                for l in lines {
                    *e.entry(s(l, "sku").into()).or_default() += dec(&l["qty"]).unwrap_or_default();
                }
            }
            _ => {}
        }
    }
    let mut drifted = 0;
    for (id, units) in sold.iter().filter(|(_, u)| !u.is_empty()) {
        let got = moved.get(id).cloned().unwrap_or_default();
        let scaled = |k: i64| -> BTreeMap<String, Decimal> {
            units.iter().map(|(sku, q)| (sku.clone(), -*q * Decimal::from(k))).collect()
        };
        let zero = |m: &BTreeMap<String, Decimal>| m.values().all(Decimal::is_zero);
        if voided.contains(id) {
            assert!(zero(&got), "voided {id} keeps stock moved: {got:?}");
        } else if got != scaled(1) {
            assert!(zero(&got) || got == scaled(2), "{id}: sold {units:?}, moved {got:?}");
            drifted += 1;
        }
    }
    assert!(moved.keys().all(|r| sold.contains_key(r)), "a movement refs an unknown sale");
    assert_eq!(drifted, t.stats().drift_injected);
    assert!(drifted > 100 && t.stats().duplicates > 50 && !voided.is_empty());
}

#[test]
fn register_seqs_increase_without_gaps() {
    // Proves seqs per (store, register, business day) run 1, 2, 3, … and match the id, across days.
    let o = GenOptions { malformed_share: 0.0, stores: 3, ..opts(4) };
    let (msgs, _) = generate(o, 3000, 60);
    let mut last: HashMap<(String, String, String), u64> = HashMap::new();
    let (mut days, mut seen) = (HashSet::new(), HashSet::new());
    let records = valid(&msgs);
    for v in records.iter().filter(|v| is_sale_txn(v) && seen.insert(s(v, "id"))) {
        let seq = v["seq"].as_u64().unwrap_or(0);
        let (store, reg, day) = (s(v, "store"), s(v, "register"), s(v, "business_day"));
        let id = format!("{store}-{reg}-{}-{seq:06}", day.replace('-', ""));
        assert_eq!(s(v, "id"), id);
        let prev = last.insert((store.into(), reg.into(), day.into()), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "gap or repeat at {id}");
        days.insert(day.to_string());
    }
    assert!(days.len() >= 3);
}

#[test]
fn malformed_share_is_respected_and_each_is_rejectable() {
    // Proves about malformed_share of messages are malformed, each for the DLQ reason counted.
    let o = GenOptions { malformed_share: 0.01, ..opts(5) };
    let (msgs, t) = generate(o, 10_000, 1);
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    for m in &msgs {
        if let Err(reason) = classify(m) {
            *by_reason.entry(reason).or_default() += 1;
        }
    }
    let bad: u64 = by_reason.values().sum();
    assert_eq!(by_reason, t.stats().malformed_by_reason);
    assert_eq!(msgs.len() as u64, t.stats().messages);
    let share = bad as f64 / msgs.len() as f64;
    assert!((0.008..0.012).contains(&share), "malformed share {share}");
    assert_eq!(by_reason.len(), 5, "every kind occurs: {by_reason:?}");
}

#[test]
fn msgpack_share_gives_decodable_maps() {
    // Proves about msgpack_share of messages are MessagePack maps with string keys only.
    let o = GenOptions { malformed_share: 0.0, ..opts(6) };
    let (msgs, _) = generate(o, 3000, 2);
    let packed: Vec<_> = msgs.iter().filter(|m| m.is_msgpack()).collect();
    let share = packed.len() as f64 / msgs.len() as f64;
    assert!((0.27..0.33).contains(&share), "msgpack share {share}");
    for m in packed {
        let v = rmpv::decode::read_value(&mut m.payload.as_slice());
        let Ok(rmpv::Value::Map(entries)) = v else { panic!("not a map: {v:?}") };
        assert!(entries.iter().all(|(k, _)| k.is_str()));
    }
}

#[test]
fn day_close_matches_the_days_transactions() {
    // Proves each store's day close reports exactly its day's valid transactions minus those
    // voided before the close, is emitted by `due` after local midnight, and that error
    // injection shifts it by a small over/short.
    let o = GenOptions { stores: 4, void_share: 0.05, malformed_share: 0.01, ..opts(9) };
    let (msgs, t) = generate(o.clone(), 2000, 60);
    let records = valid(&msgs);
    let time = |v: &Value| DateTime::parse_from_rfc3339(s(v, "occurred_at")).ok();
    let voided_at: HashMap<&str, _> =
        records.iter().filter(|v| v["voids"].is_string()).map(|v| (s(v, "voids"), time(v))).collect();
    let mut seen = HashSet::new();
    let txns: Vec<&Value> = records.iter().filter(|v| is_sale_txn(v) && seen.insert(s(v, "id"))).collect();
    let closes: Vec<_> = records.iter().filter(|v| s(v, "type") == "pos.day_close").collect();
    assert_eq!(closes.len() as u64, t.stats().day_closes);
    assert!(closes.len() >= 4, "a day ends for every store within the run");
    for c in &closes {
        let (mut n, mut net, mut tax) = (0, Decimal::ZERO, Decimal::ZERO);
        let of_day =
            txns.iter().filter(|v| s(v, "store") == s(c, "store") && s(v, "business_day") == s(c, "business_day"));
        for v in of_day.filter(|v| voided_at.get(s(v, "id")).is_none_or(|at| *at > time(c))) {
            n += 1;
            for l in v["lines"].as_array().into_iter().flatten() {
                let (q, p) = (dec(&l["qty"]).unwrap_or_default(), dec(&l["unit_price"]).unwrap_or_default());
                net += q * p - l.get("discount").and_then(dec).unwrap_or_default();
                tax += dec(&l["tax"]).unwrap_or_default();
            }
        }
        assert_eq!(c["transaction_count"].as_i64(), Some(n), "{}", s(c, "id"));
        assert_eq!((dec(&c["net_sales"]), dec(&c["tax"])), (Some(net), Some(tax)), "{}", s(c, "id"));
    }
    let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap_or_default();
    let skewed = generate(GenOptions { day_close_error_share: 1.0, ..o }, 2000, 60).1;
    assert_eq!(t.day_closes(day).len(), 4);
    for (a, b) in t.day_closes(day).iter().zip(&skewed.day_closes(day)) {
        let (a, b) = (decode(a).unwrap_or_default(), decode(b).unwrap_or_default());
        let diff = dec(&a["net_sales"]).unwrap_or_default() - dec(&b["net_sales"]).unwrap_or_default();
        assert!(!diff.is_zero() && diff.abs() <= Decimal::new(2000, 2), "over/short {diff}");
    }
}

#[test]
fn orders_are_off_by_default_and_matched_exactly_when_asked_for() {
    // Proves the default traffic has no order (and draws nothing for them), and that with
    // `order_share` every order is on P.orders.<store> with positive units of a known kind, and
    // is fulfilled by exactly one movement that names it: a `sale` decrement of its units for
    // shipped and picked-up orders, a `return` of them for orders returned to the store.
    let (plain, t) = generate(opts(11), 1500, 2);
    assert_eq!(t.stats().orders, 0);
    assert!(plain.iter().all(|m| !m.subject.starts_with("retail.orders.")));

    let (msgs, t) = generate(GenOptions { order_share: 0.2, malformed_share: 0.0, ..opts(11) }, 1500, 2);
    type Units = BTreeMap<String, Decimal>;
    let mut orders: HashMap<String, (String, Units)> = HashMap::new();
    let mut fulfilled: HashMap<String, Vec<(String, Units)>> = HashMap::new();
    for m in &msgs {
        let v = decode(m).expect("a decodable record");
        let units = |v: &Value| -> Units {
            let mut out = BTreeMap::new();
            for l in v["lines"].as_array().into_iter().flatten() {
                *out.entry(s(l, "sku").to_string()).or_default() += dec(&l["qty"]).expect("a decimal qty");
            }
            out
        };
        if s(&v, "type") == "order.fulfillment" {
            assert_eq!(m.subject, format!("retail.orders.{}", s(&v, "store")));
            let lines = units(&v);
            assert!(!lines.is_empty() && lines.values().all(|q| *q > Decimal::ZERO), "{v}");
            orders.insert(s(&v, "id").to_string(), (s(&v, "fulfillment").to_string(), lines));
        } else if s(&v, "ref").starts_with("WEB-") {
            fulfilled.entry(s(&v, "ref").to_string()).or_default().push((s(&v, "reason").to_string(), units(&v)));
        }
    }
    assert_eq!(orders.len() as u64, t.stats().orders);
    assert!(orders.len() > 100, "{} orders", orders.len());
    let kinds: HashSet<&str> = orders.values().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, HashSet::from(["ship_from_store", "pickup_in_store", "returned_to_store"]));
    for (id, (kind, lines)) in &orders {
        let (reason, sign) = if kind == "returned_to_store" { ("return", 1) } else { ("sale", -1) };
        let expected: Units = lines.iter().map(|(sku, q)| (sku.clone(), *q * Decimal::from(sign))).collect();
        assert_eq!(fulfilled.get(id), Some(&vec![(reason.to_string(), expected)]), "{id} ({kind})");
    }
    assert_eq!(fulfilled.len(), orders.len(), "a movement names an unknown order");
}
