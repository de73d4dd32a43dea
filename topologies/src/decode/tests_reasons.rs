//! Each rejection reason from both wire formats, and the wording of rejection details.

use super::tests::{both, ctx, msgpack_bytes, set_path, transaction_value, INV, POS};
use super::*;
use serde_json::json;

// Each rejection reason that decoding can produce arises from JSON and from MessagePack alike.
#[test]
fn every_reason_from_both_formats() {
    let line = json!({"sku": "1", "qty": 1, "unit_price": 1});
    let tender = json!({"type": "cash", "amount": 1});
    let cases = [
        (POS, "id", json!(7), RejectReason::Schema),
        (INV, "id", json!("x"), RejectReason::Schema), // a pos type on the inventory subject
        (POS, "lines.1.qty", json!("abc"), RejectReason::Decimal),
        (POS, "lines.0.unit_price", json!("1e30"), RejectReason::Decimal),
        (POS, "occurred_at", json!("2026-11-27 10:15"), RejectReason::Timestamp),
        (POS, "occurred_at", json!("2026-11-27T10:15:03"), RejectReason::Timestamp), // no offset
        (POS, "occurred_at", json!(1_795_000_000), RejectReason::Timestamp),
        (POS, "business_day", json!("2026-02-30"), RejectReason::Timestamp),
        (POS, "business_day", json!("2026-1-5"), RejectReason::Timestamp),
        (POS, "type", json!("pos.refund"), RejectReason::UnknownType),
        (POS, "store", json!("0043"), RejectReason::StoreMismatch),
        (POS, "lines", json!(vec![line; 101]), RejectReason::TooLarge),
        (POS, "tenders", json!(vec![tender; 101]), RejectReason::TooLarge),
    ];
    for (subject, path, value, reason) in cases {
        let mut doc = transaction_value();
        set_path(&mut doc, path, value);
        let got = both(subject, &doc).unwrap_err();
        assert_eq!(got.reason, reason, "{doc}");
    }
    let mut small = ctx();
    small.max_message_bytes = 100;
    let doc = transaction_value();
    for payload in [doc.to_string().into_bytes(), msgpack_bytes(&doc)] {
        assert_eq!(decode(POS, None, &payload, &small).unwrap_err().reason, RejectReason::TooLarge);
    }
    // Decode: malformed bytes of each format, a non-map top level, a non-string map key.
    let json_bad: [&[u8]; 3] = [b"{\"type\": ", b"[1, 2]", b"{\"a\":1}{"];
    for payload in json_bad {
        let got = decode(POS, Some("application/json"), payload, &ctx()).unwrap_err();
        assert_eq!(got.reason, RejectReason::Decode, "{}", got.detail);
    }
    let msgpack_bad: [&[u8]; 4] = [&[0x81, 0xa1], &[0x92, 0x01, 0x02], &[0x81, 0x01, 0x02], &[0xc1]];
    for payload in msgpack_bad {
        let got = decode(POS, None, payload, &ctx()).unwrap_err();
        assert_eq!(got.reason, RejectReason::Decode, "{}", got.detail);
    }
}

// Rejection details name the field by its path, and each reason has its contract name.
#[test]
fn details_name_the_field() {
    let mut doc = transaction_value();
    doc["lines"][1]["qty"] = json!("abc");
    assert_eq!(both(POS, &doc).unwrap_err().detail, "lines[1].qty: \"abc\" is not a decimal");
    doc = transaction_value();
    doc["tenders"][0]["amount"] = json!(true);
    assert_eq!(both(POS, &doc).unwrap_err().detail, "tenders[0].amount: true is not a decimal");
    let names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    let expected = [
        "decode",
        "schema",
        "decimal",
        "timestamp",
        "unknown_type",
        "store_mismatch",
        "conflict",
        "too_large",
        "currency",
    ];
    assert_eq!(names, expected);
    let shown = Rejection::new(RejectReason::Schema, "id: required field is missing").to_string();
    assert_eq!(shown, "Schema: id: required field is missing");
}
