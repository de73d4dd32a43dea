//! Example tests of `decode` as a whole: the contract's records, each rejection reason from
//! both formats, and the number and time edge cases.

use super::*;
use crate::model::{MovementReason, PosTransaction};
use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;

pub(super) const POS: &str = "retail.pos.0042";
pub(super) const INV: &str = "retail.inventory.0042";

/// Store 0042 is in New York, every other store in UTC.
fn tz(store: &str) -> chrono_tz::Tz {
    if store == "0042" {
        chrono_tz::America::New_York
    } else {
        chrono_tz::UTC
    }
}

pub(super) fn ctx() -> DecodeContext<'static> {
    DecodeContext {
        subject_prefix: "retail",
        default_currency: "USD",
        timezone_of: &tz,
        max_message_bytes: 64 * 1024,
        max_lines: 100,
    }
}

pub(super) fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

pub(super) fn json_of(subject: &str, text: &str) -> Result<Event, Rejection> {
    decode(subject, Some("application/json"), text.as_bytes(), &ctx()).map(|(_, e)| e)
}

pub(super) fn msgpack_bytes(value: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

/// `doc` as MessagePack with the value at `path` (map keys, or array indexes as digits)
/// replaced by `value`: a way to put floats, bin and ext data where JSON cannot.
pub(super) fn msgpack_with(doc: &serde_json::Value, path: &str, value: rmpv::Value) -> Vec<u8> {
    let bytes = msgpack_bytes(doc);
    let mut raw = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let mut at = &mut raw;
    for key in path.split('.') {
        at = match at {
            rmpv::Value::Map(entries) => &mut entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)).unwrap().1,
            rmpv::Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            other => panic!("no {key} in {other}"),
        };
    }
    *at = value;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &raw).unwrap();
    out
}

/// Replaces the value at a dotted path (`"lines.0.qty"`; digits index arrays) in `doc`.
pub(super) fn set_path(doc: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut at = doc;
    for key in path.split('.') {
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[key],
        };
    }
    *at = value;
}

/// Decodes a document both as JSON text and as MessagePack, with no content type, and
/// asserts that the two outcomes agree.
pub(super) fn both(subject: &str, value: &serde_json::Value) -> Result<Event, Rejection> {
    let from_json = decode(subject, None, value.to_string().as_bytes(), &ctx()).map(|(_, e)| e);
    let from_msgpack = decode(subject, None, &msgpack_bytes(value), &ctx()).map(|(_, e)| e);
    assert_eq!(from_json.as_ref().map_err(|r| r.reason), from_msgpack.as_ref().map_err(|r| r.reason));
    if let (Ok(j), Ok(m)) = (&from_json, &from_msgpack) {
        assert_eq!(j, m);
    }
    from_json
}

pub(super) const TRANSACTION: &str = r#"{
  "type": "pos.transaction", "id": "0042-R03-20261127-000123", "store": "0042",
  "register": "R03", "seq": 123, "occurred_at": "2026-11-27T10:15:03-05:00",
  "business_day": "2026-11-27", "currency": "USD",
  "lines": [
    {"line": 1, "sku": "100234", "qty": "2", "unit_price": "19.99", "discount": "2.00", "tax": "2.88"},
    {"line": 2, "sku": "100987", "qty": "-1", "unit_price": "5.00", "tax": "-0.40",
     "restock": true, "return_of": "0042-R01-20261120-000044"}
  ],
  "tenders": [{"type": "card", "amount": "35.46"}],
  "voids": null
}"#;

const MOVEMENT: &str = r#"{"type": "inventory.movement", "id": "INV-0042-778812", "store": "0042",
  "occurred_at": "2026-11-27T10:17:40-05:00", "business_day": "2026-11-27", "reason": "sale",
  "ref": "0042-R03-20261127-000123", "lines": [{"sku": "100234", "qty": "-2"}]}"#;

const DAY_CLOSE: &str = r#"{"type": "pos.day_close", "id": "CLOSE-0042-2026-11-27", "store": "0042",
 "business_day": "2026-11-27", "occurred_at": "2026-11-27T22:05:00-05:00",
 "transaction_count": 1234, "net_sales": "45678.90", "tax": "3654.31",
 "tenders": [{"type": "card", "amount": "40012.20"}, {"type": "cash", "amount": "9321.01"}]}"#;

pub(super) fn transaction_value() -> serde_json::Value {
    serde_json::from_str(TRANSACTION).unwrap()
}

fn transaction(event: Event) -> PosTransaction {
    match event {
        Event::Transaction(t) => t,
        other => panic!("not a transaction: {other:?}"),
    }
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::from_str(text).unwrap()
}

// The contract's transaction example decodes to exactly the values it shows.
#[test]
fn contract_transaction_example() {
    let (source, event) = decode(POS, None, TRANSACTION.as_bytes(), &ctx()).unwrap();
    assert_eq!(source, Source::Pos);
    let t = transaction(event);
    assert_eq!(t.id, "0042-R03-20261127-000123");
    assert_eq!((t.store.as_str(), t.register.as_deref(), t.seq), ("0042", Some("R03"), Some(123)));
    assert_eq!(t.occurred_at, DateTime::parse_from_rfc3339("2026-11-27T15:15:03Z").unwrap());
    assert_eq!(t.occurred_at.offset().local_minus_utc(), -5 * 3600);
    assert_eq!((t.business_day, t.currency.as_str(), t.voids), (day("2026-11-27"), "USD", None));
    assert_eq!(t.lines.len(), 2);
    let (a, b) = (&t.lines[0], &t.lines[1]);
    assert_eq!((a.line, a.sku.as_str(), a.qty, a.unit_price), (Some(1), "100234", dec("2"), dec("19.99")));
    assert_eq!((a.discount, a.tax, a.restock, a.return_of.as_deref()), (dec("2.00"), dec("2.88"), true, None));
    assert_eq!(a.discount.scale(), 2);
    assert_eq!((b.qty, b.unit_price, b.discount, b.tax), (dec("-1"), dec("5.00"), dec("0"), dec("-0.40")));
    assert_eq!((b.restock, b.return_of.as_deref()), (true, Some("0042-R01-20261120-000044")));
    assert_eq!(t.tenders.len(), 1);
    assert_eq!((t.tenders[0].kind.as_str(), t.tenders[0].amount), ("card", dec("35.46")));
}

// The contract's movement example decodes to exactly the values it shows.
#[test]
fn contract_movement_example() {
    let (source, event) = decode(INV, None, MOVEMENT.as_bytes(), &ctx()).unwrap();
    assert_eq!(source, Source::Inventory);
    let Event::Movement(m) = event else { panic!("not a movement") };
    assert_eq!((m.id.as_str(), m.store.as_str()), ("INV-0042-778812", "0042"));
    assert_eq!(m.occurred_at, DateTime::parse_from_rfc3339("2026-11-27T10:17:40-05:00").unwrap());
    assert_eq!((m.business_day, m.reason), (day("2026-11-27"), MovementReason::Sale));
    assert_eq!(m.reference.as_deref(), Some("0042-R03-20261127-000123"));
    assert_eq!((m.lines.len(), m.lines[0].sku.as_str(), m.lines[0].qty), (1, "100234", dec("-2")));
}

// The contract's day-close example decodes to exactly the values it shows.
#[test]
fn contract_day_close_example() {
    let Event::DayClose(c) = json_of(POS, DAY_CLOSE).unwrap() else { panic!("not a day close") };
    assert_eq!((c.id.as_str(), c.store.as_str(), c.business_day), ("CLOSE-0042-2026-11-27", "0042", day("2026-11-27")));
    assert_eq!(c.occurred_at, DateTime::parse_from_rfc3339("2026-11-27T22:05:00-05:00").unwrap());
    assert_eq!((c.transaction_count, c.net_sales, c.tax), (1234, dec("45678.90"), dec("3654.31")));
    let tenders: Vec<_> = c.tenders.iter().map(|t| (t.kind.as_str(), t.amount)).collect();
    assert_eq!(tenders, [("card", dec("40012.20")), ("cash", dec("9321.01"))]);
}

// The same record as JSON and as MessagePack decodes to the same Event, for all three types.
#[test]
fn json_and_msgpack_agree() {
    for (subject, text) in [(POS, TRANSACTION), (INV, MOVEMENT), (POS, DAY_CLOSE)] {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let from_json = json_of(subject, text).unwrap();
        let from_msgpack = decode(subject, Some("application/msgpack"), &msgpack_bytes(&value), &ctx());
        assert_eq!(from_msgpack.unwrap().1, from_json);
    }
}

// 19.99 as a JSON number, a string, a MessagePack f64 and an f32 is exactly Decimal 19.99.
#[test]
fn nineteen_ninety_nine_in_every_form() {
    let mut doc = transaction_value();
    doc["lines"][0]["unit_price"] = json!(19.99);
    let mut payloads = vec![TRANSACTION.replace("\"19.99\"", "19.99").into_bytes(), TRANSACTION.as_bytes().to_vec()];
    payloads.push(msgpack_bytes(&doc)); // serde_json holds 19.99 as an f64
    payloads.push(msgpack_with(&doc, "lines.0.unit_price", rmpv::Value::F32(19.99)));
    for payload in payloads {
        let t = transaction(decode(POS, None, &payload, &ctx()).unwrap().1);
        assert_eq!(t.lines[0].unit_price, dec("19.99"));
        assert_eq!(t.lines[0].unit_price.to_string(), "19.99");
    }
}

// A JSON number keeps every digit of its literal: no trip through f64.
#[test]
fn json_numbers_keep_all_digits() {
    let text =
        TRANSACTION.replace("\"19.99\"", "0.30000000000000004").replace("\"2.88\"", "123456789012345.1234567891234");
    let t = transaction(json_of(POS, &text).unwrap());
    assert_eq!(t.lines[0].unit_price.to_string(), "0.30000000000000004");
    assert_eq!(t.lines[0].tax.to_string(), "123456789012345.1234567891234");
}

// Exponent forms, as JSON numbers and as strings, are exact.
#[test]
fn exponent_forms() {
    let text = TRANSACTION
        .replace("\"qty\": \"2\"", "\"qty\": 1e2")
        .replace("\"19.99\"", "1.5E-3")
        .replace("\"2.88\"", "\"25e-1\"");
    let t = transaction(json_of(POS, &text).unwrap());
    assert_eq!((t.lines[0].qty, t.lines[0].unit_price, t.lines[0].tax), (dec("100"), dec("0.0015"), dec("2.5")));
    let too_big = TRANSACTION.replace("\"19.99\"", "1e30");
    assert_eq!(json_of(POS, &too_big).unwrap_err().reason, RejectReason::Decimal);
}

// Without business_day, a sale at 21:00 New York time (02:00 UTC next day) belongs to New York's day.
#[test]
fn business_day_defaults_in_store_time_zone() {
    let mut doc = transaction_value();
    doc.as_object_mut().unwrap().remove("business_day");
    doc["occurred_at"] = json!("2026-11-28T02:00:00Z");
    assert_eq!(both(POS, &doc).unwrap().business_day(), day("2026-11-27"));
    // Store 0007 is in UTC: the same instant is already the 28th there.
    doc["store"] = json!("0007");
    assert_eq!(both("retail.pos.0007", &doc).unwrap().business_day(), day("2026-11-28"));
    // An explicit business_day wins over the default.
    doc["business_day"] = json!("2026-11-26");
    assert_eq!(both("retail.pos.0007", &doc).unwrap().business_day(), day("2026-11-26"));
}

// 100k nested brackets inside a record are a Decode rejection, not a stack overflow.
#[test]
fn deep_nesting_is_rejected() {
    let mut ctx = ctx();
    ctx.max_message_bytes = 1 << 20;
    let json = format!("{{\"type\": \"pos.transaction\", \"x\": {}", "[".repeat(100_000));
    assert_eq!(decode(POS, None, json.as_bytes(), &ctx).unwrap_err().reason, RejectReason::Decode);
    let mut msgpack = vec![0x81, 0xa1, b'x'];
    msgpack.extend(std::iter::repeat_n(0x91, 100_000));
    assert_eq!(decode(POS, None, &msgpack, &ctx).unwrap_err().reason, RejectReason::Decode);
}

// Proves `record_id` reads the id of a refused record from either format, and gives none for
// what has no string id or is over the size limit.
#[test]
fn record_id_of_refused_records() {
    let doc = json!({"type": "pos.transaction", "id": "T-9", "store": "0042", "lines": "broken"});
    let text = doc.to_string();
    assert_eq!(record_id(None, text.as_bytes(), 1024).as_deref(), Some("T-9"));
    assert_eq!(
        record_id(Some("application/msgpack"), &rmp_serde::to_vec_named(&doc).unwrap(), 1024).as_deref(),
        Some("T-9")
    );
    assert_eq!(record_id(None, text.as_bytes(), 10), None);
    assert_eq!(record_id(None, b"{not json", 1024), None);
    assert_eq!(record_id(None, br#"{"id": 7}"#, 1024), None);
}
