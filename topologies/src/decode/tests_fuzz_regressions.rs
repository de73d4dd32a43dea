//! Inputs that the fuzz targets (fuzz/, scripts/fuzz.sh) found crashing or breaking an
//! invariant, kept as tests so that they stay fixed. Each names the target that found it.
//!
//! Found so far: records whose values each parse exactly but whose arithmetic in the
//! aggregates (qty × unit_price, gross − discount, sums per record, sku and tender type) does
//! not fit a Decimal. Before the fix they were accepted; the processor then panicked on
//! Decimal's overflow at every restart (a poison message stalling the consumer), or rounded a
//! total that must be exact. They are now refused as `decimal`.

use super::tests::{both, dec, set_path, INV, POS, TRANSACTION};
use super::*;
use crate::aggregates::{SkuDay, StoreDay};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Decimal::MAX, 2^96 − 1.
const MAX: &str = "79228162514264337593543950335";

fn one_line_transaction(qty: &str, unit_price: &str) -> Value {
    json!({
        "type": "pos.transaction", "id": "T-fuzz", "store": "0042",
        "occurred_at": "2026-11-27T10:15:03-05:00",
        "lines": [{"sku": "100234", "qty": qty, "unit_price": unit_price}]
    })
}

fn assert_refused_as_decimal(subject: &str, doc: &Value) {
    match both(subject, doc) {
        Err(rejection) => {
            assert_eq!(rejection.reason, RejectReason::Decimal, "{rejection:?}");
            assert!(rejection.detail.contains("does not fit a decimal exactly"), "{rejection:?}");
        }
        Ok(event) => panic!("accepted a record whose arithmetic overflows: {event:?}"),
    }
}

// Proves a qty × unit_price over Decimal's range is refused, not accepted (decode_input found
// it: `PosLine::gross` then panicked with "Multiplication overflowed").
#[test]
fn gross_over_decimal_range_is_refused() {
    assert_refused_as_decimal(POS, &one_line_transaction("2", MAX));
    assert_refused_as_decimal(POS, &one_line_transaction("1e15", "1e15"));
    // Exact but for its scale: 29 decimal places do not fit.
    assert_refused_as_decimal(POS, &one_line_transaction("0.1", "0.0000000000000000000000000001"));
}

// Proves two line amounts that fit alone but whose sum rounds are refused (decode_input found
// it: taxes 2.881e28 and -0.40 summed to a rounded total, so a post-void did not net to zero).
#[test]
fn a_rounding_sum_of_line_taxes_is_refused() {
    let mut doc: Value = serde_json::from_str(TRANSACTION).unwrap();
    set_path(&mut doc, "lines.0.tax", json!("2.881e28"));
    assert_refused_as_decimal(POS, &doc);
}

// Proves overflowing sums per sku (sold units kept apart from returns), per record and per
// tender type are refused, and so is a movement whose quantities overflow.
#[test]
fn overflowing_sums_are_refused() {
    let big = "50000000000000000000000000000";
    let mut same_sku = one_line_transaction(big, "1");
    same_sku["lines"] = json!([
        {"sku": "A", "qty": big, "unit_price": "0"},
        {"sku": "A", "qty": "-1", "unit_price": "0"},
        {"sku": "A", "qty": big, "unit_price": "0"},
    ]);
    assert_refused_as_decimal(POS, &same_sku);

    let mut tenders = one_line_transaction("1", "1");
    tenders["tenders"] = json!([{"type": "cash", "amount": big}, {"type": "cash", "amount": big}]);
    assert_refused_as_decimal(POS, &tenders);

    let movement = json!({
        "type": "inventory.movement", "id": "M-fuzz", "store": "0042",
        "occurred_at": "2026-11-27T10:15:03-05:00", "reason": "receipt",
        "lines": [{"sku": "A", "qty": big}, {"sku": "B", "qty": big}]
    });
    assert_refused_as_decimal(INV, &movement);
}

// Proves the check refuses only what does not fit: values at Decimal's edge whose arithmetic is
// exact are still accepted, and what the aggregates compute from them is exact and reversible.
#[test]
fn exact_extremes_are_still_accepted() {
    let cases = [
        ("1", "1000000000000000"),
        ("-1", "1000000000000000"),
        ("2", "500000000000000"),
        ("1", "0.0000000000000000000000000001"),
    ];
    for (qty, unit_price) in cases {
        let event = both(POS, &one_line_transaction(qty, unit_price))
            .unwrap_or_else(|r| panic!("{qty} × {unit_price} was refused: {r:?}"));
        let Event::Transaction(tx) = event else { panic!("not a transaction") };
        assert_eq!(tx.lines[0].gross(), dec(qty) * dec(unit_price));
        let mut day = StoreDay::default();
        let mut sku = SkuDay::default();
        day.apply_transaction(&tx, Decimal::ONE);
        sku.apply_line(&tx.lines[0], Decimal::ONE);
        day.apply_transaction(&tx, Decimal::NEGATIVE_ONE);
        sku.apply_line(&tx.lines[0], Decimal::NEGATIVE_ONE);
        assert!(day.gross.is_zero() && day.net.is_zero() && sku.net.is_zero(), "{qty} × {unit_price}");
    }
}

// Proves a record whose sum rounds in one order is refused even when undoing that rounded sum
// rounds back to the value added (decode_input found it: taxes 2.88, −8, 10^−28 and −0.40
// summed from the last line give −8.3999999999999999999999999999, beyond 96 bits, which
// Decimal rounds; the aggregates then reversed the sale to −10^−28, not zero).
#[test]
fn a_sum_that_rounds_and_rounds_back_is_refused() {
    let line = |sku: &str, tax: &str| json!({"sku": sku, "qty": "1", "unit_price": "1", "tax": tax});
    let doc = json!({
        "type": "pos.transaction", "id": "T-fuzz", "store": "0042",
        "occurred_at": "2026-11-27T10:15:03-05:00",
        "lines": [line("A", "2.88"), line("B", "-8"), line("C", "0.0000000000000000000000000001"), line("D", "-0.40")]
    });
    assert_refused_as_decimal(POS, &doc);
}
