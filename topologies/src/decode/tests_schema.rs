//! Example tests of the schema rules: required fields, defaults, voids, formats, subjects.

use super::tests::{ctx, dec, json_of, msgpack_bytes, msgpack_with, set_path, INV, POS, TRANSACTION};
use super::*;
use serde_json::json;

fn reject(subject: &str, doc: &serde_json::Value) -> Rejection {
    let from_json = json_of(subject, &doc.to_string()).unwrap_err();
    let from_msgpack = decode(subject, None, &msgpack_bytes(doc), &ctx()).unwrap_err();
    assert_eq!(from_json, from_msgpack, "{doc}");
    from_json
}

fn minimal() -> serde_json::Value {
    json!({"type": "pos.transaction", "id": "T1", "store": "0042",
           "occurred_at": "2026-11-27T10:00:00+01:00",
           "lines": [{"sku": "A", "qty": "1", "unit_price": "3"}]})
}

// A minimal transaction gets every default: currency, discount, tax, restock, no tenders.
#[test]
fn defaults_apply() {
    let Ok(Event::Transaction(t)) = json_of(POS, &minimal().to_string()) else { panic!() };
    assert_eq!((t.currency.as_str(), t.register, t.seq, t.voids), ("USD", None, None, None));
    let l = &t.lines[0];
    assert_eq!((l.line, l.discount, l.tax, l.restock, l.return_of.clone()), (None, dec("0"), dec("0"), true, None));
    assert!(t.tenders.is_empty());
}

// Null counts as absent for optional fields, and unknown fields are ignored.
#[test]
fn null_is_absent_and_unknown_fields_ignored() {
    let mut doc = minimal();
    for key in ["register", "seq", "business_day", "currency", "tenders", "voids"] {
        doc[key] = json!(null);
    }
    doc["lines"][0]["discount"] = json!(null);
    doc["lines"][0]["restock"] = json!(null);
    doc["loyalty"] = json!({"card": [1, 2, {"deep": true}]});
    doc["lines"][0]["colour"] = json!("red");
    let with_extras = json_of(POS, &doc.to_string()).unwrap();
    assert_eq!(with_extras, json_of(POS, &minimal().to_string()).unwrap());
}

// A void carries no lines; a transaction with neither lines nor voids is refused.
#[test]
fn voids_and_lines() {
    let mut void = minimal();
    void["voids"] = json!("T0");
    void["lines"] = json!([]);
    let Ok(Event::Transaction(t)) = json_of(POS, &void.to_string()) else { panic!() };
    assert_eq!((t.voids.as_deref(), t.lines.len()), (Some("T0"), 0));
    void.as_object_mut().unwrap().remove("lines");
    assert!(json_of(POS, &void.to_string()).is_ok());
    void["lines"] = minimal()["lines"].clone();
    assert_eq!(reject(POS, &void).reason, RejectReason::Schema);
    let mut neither = minimal();
    neither["lines"] = json!([]);
    assert_eq!(reject(POS, &neither).detail, "lines: a transaction needs a non-empty `lines` or a `voids` id");
    neither["voids"] = json!(5);
    assert_eq!(reject(POS, &neither).detail, "voids: expected a string, got 5");
}

// Wrong types and missing fields are schema rejections naming the field path.
#[test]
fn schema_details() {
    let int = "expected a non-negative integer";
    let cases = [
        ("id", json!(""), "id: must not be empty".to_string()),
        ("id", json!(null), "id: required field is missing".into()),
        ("store", json!(42), "store: expected a string, got 42".into()),
        ("type", json!(["x"]), "type: expected a string, got an array of 1".into()),
        ("seq", json!(-1), format!("seq: {int}, got -1")),
        ("seq", json!(1.5), format!("seq: {int}, got 1.5")),
        ("seq", json!("12"), format!("seq: {int}, got \"12\"")),
        ("lines", json!({"sku": "A"}), "lines: expected an array, got a map".into()),
        ("lines.0", json!("A"), "lines[0]: expected a map, got \"A\"".into()),
        ("lines.0.sku", json!(null), "lines[0].sku: required field is missing".into()),
        ("lines.0.qty", json!("0.00"), "lines[0].qty: must not be zero".into()),
        ("lines.0.restock", json!("y"), "lines[0].restock: expected a boolean, got \"y\"".into()),
        ("tenders", json!([{"amount": "1"}]), "tenders[0].type: required field is missing".into()),
    ];
    for (path, value, detail) in cases {
        let mut doc = minimal();
        set_path(&mut doc, path, value);
        let got = reject(POS, &doc);
        assert_eq!((got.reason, got.detail), (RejectReason::Schema, detail));
    }
    let mut doc = minimal();
    doc.as_object_mut().unwrap().remove("type");
    assert_eq!(reject(POS, &doc).detail, "type: required field is missing");
}

// MessagePack bin where a string belongs is schema; NaN where a decimal belongs is decimal.
#[test]
fn msgpack_only_values() {
    use rmpv::Value as R;
    let replace = |path: &str, v: R| decode(POS, None, &msgpack_with(&minimal(), path, v), &ctx()).unwrap_err();
    assert_eq!(replace("id", R::Binary(b"T1".to_vec())).reason, RejectReason::Schema);
    assert_eq!(replace("id", R::Ext(1, b"T1".to_vec())).reason, RejectReason::Schema);
    let got = replace("lines.0.qty", R::F64(f64::NAN));
    assert_eq!((got.reason, got.detail.as_str()), (RejectReason::Decimal, "lines[0].qty: NaN is not a decimal"));
}

// Movements: reasons by name, ref becomes reference, zero qty allowed, lines required.
#[test]
fn movement_rules() {
    let doc = json!({"type": "inventory.movement", "id": "M1", "store": "0042",
        "occurred_at": "2026-11-27T10:00:00Z", "reason": "transfer_out", "lines": [{"sku": "A", "qty": 0}]});
    let Ok(Event::Movement(m)) = json_of(INV, &doc.to_string()) else { panic!() };
    assert_eq!((m.reason, m.reference, m.lines[0].qty), (crate::model::MovementReason::TransferOut, None, dec("0")));
    let mut bad = doc.clone();
    bad["reason"] = json!("theft");
    assert_eq!(reject(INV, &bad).reason, RejectReason::Schema);
    bad = doc.clone();
    bad["lines"] = json!([]);
    assert_eq!(reject(INV, &bad).reason, RejectReason::Schema);
    bad = doc.clone();
    bad["ref"] = json!(12);
    assert_eq!(reject(INV, &bad).detail, "ref: expected a string, got 12");
    // A movement on the pos subject is refused.
    assert_eq!(reject(POS, &doc).reason, RejectReason::Schema);
}

// The content type decides the format, ignoring parameters and case; else the first byte.
#[test]
fn content_type_decides_format() {
    let json = TRANSACTION.as_bytes();
    let msgpack = msgpack_bytes(&serde_json::from_str(TRANSACTION).unwrap());
    for ct in [None, Some("application/json"), Some("Application/JSON; charset=utf-8"), Some("text/plain")] {
        assert!(decode(POS, ct, json, &ctx()).is_ok(), "{ct:?}");
    }
    let padded = [b"  \n".as_slice(), json].concat();
    assert!(decode(POS, None, &padded, &ctx()).is_ok());
    for ct in [None, Some("application/msgpack"), Some("application/x-msgpack;v=5")] {
        assert!(decode(POS, ct, &msgpack, &ctx()).is_ok(), "{ct:?}");
    }
    let wrong = decode(POS, Some("application/msgpack"), json, &ctx()).unwrap_err();
    assert_eq!(wrong.reason, RejectReason::Decode);
    assert_eq!(decode(POS, Some("application/json"), &msgpack, &ctx()).unwrap_err().reason, RejectReason::Decode);
}

// Only `P.pos.<store>`, `P.inventory.<store>` and `P.orders.<store>` with a valid store token are input subjects.
#[test]
fn input_subjects() {
    assert_eq!(parse_input_subject("retail", "retail.pos.0042"), Some((Source::Pos, "0042")));
    assert_eq!(parse_input_subject("retail", "retail.orders.0042"), Some((Source::Orders, "0042")));
    assert_eq!(parse_input_subject("retail", "retail.inventory.a_B-9"), Some((Source::Inventory, "a_B-9")));
    assert_eq!(parse_input_subject("acme.retail", "acme.retail.pos.7"), Some((Source::Pos, "7")));
    let long = format!("retail.pos.{}", "x".repeat(65));
    for bad in [
        "retail.pos",
        "retail.pos.",
        "retail.pos.a.b",
        "retail.orders.a.b",
        "retail.erp.0042",
        "retailx.pos.1",
        "other.pos.1",
        "retail.pos.a*",
        long.as_str(),
    ] {
        assert_eq!(parse_input_subject("retail", bad), None, "{bad}");
    }
    assert!(
        is_valid_store_id(&"Z".repeat(64))
            && !is_valid_store_id("")
            && !is_valid_store_id("a.b")
            && !is_valid_store_id("é")
    );
    let got = decode("retail.erp.0042", None, TRANSACTION.as_bytes(), &ctx()).unwrap_err();
    assert_eq!(got.reason, RejectReason::Schema);
}
