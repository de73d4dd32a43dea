//! The one-pass proof of [`every_sum_exact`] against the order-by-order check it stands in for.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

/// A decimal of any scale whose mantissa is small, mid-sized or near Decimal's limit, so that
/// some lists are cleared in one pass and some are not.
fn a_value() -> impl Strategy<Value = Decimal> {
    let mantissa = prop_oneof![-10_000i128..10_000, -(1i128 << 70)..(1i128 << 70), -(1i128 << 95)..(1i128 << 95)];
    (mantissa, 0u32..=28).prop_map(|(m, scale)| Decimal::from_i128_with_scale(m, scale))
}

/// Adds `values` in order, each addition proved exact within the bound.
fn sum_exactly(values: impl Iterator<Item = Decimal>) -> Option<Decimal> {
    values.into_iter().try_fold(Decimal::ZERO, exact_add)
}

fn a_line(sku: &str, qty: Decimal, unit_price: Decimal, discount: Decimal, tax: Decimal) -> PosLine {
    PosLine { line: None, sku: sku.to_string(), qty, unit_price, discount, tax, restock: true, return_of: None }
}

fn outcome(result: Result<(), Rejection>) -> Option<String> {
    result.err().map(|rejection| format!("{:?}: {}", rejection.reason, rejection.detail))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// What the one pass clears, every order and every subset adds exactly.
    #[test]
    fn what_one_pass_clears_adds_exactly_in_any_order(
        values in proptest::collection::vec(a_value(), 0..12),
        keep in proptest::collection::vec(any::<bool>(), 12),
    ) {
        if every_sum_exact(values.iter().copied()) {
            prop_assert!(sum_exactly(values.iter().copied()).is_some());
            prop_assert!(sum_exactly(values.iter().rev().copied()).is_some());
            let subset = values.iter().zip(&keep).filter(|(_, kept)| **kept).map(|(value, _)| *value);
            prop_assert!(sum_exactly(subset).is_some());
        }
    }

    /// A transaction's check refuses exactly what the order-by-order check refuses, for the
    /// same reason and with the same detail.
    #[test]
    fn a_transaction_is_refused_exactly_when_order_by_order_refuses_it(
        lines in proptest::collection::vec((0usize..3, a_value(), a_value(), a_value(), a_value()), 1..6),
        tenders in proptest::collection::vec((0usize..2, a_value()), 0..4),
    ) {
        let skus = ["A", "B", "C"];
        let lines: Vec<PosLine> = lines
            .into_iter()
            .filter(|(_, qty, ..)| !qty.is_zero())
            .map(|(sku, qty, price, discount, tax)| a_line(skus[sku], qty, price.abs(), discount, tax))
            .collect();
        let kinds = ["cash", "card"];
        let tenders: Vec<Tender> =
            tenders.into_iter().map(|(kind, amount)| Tender { kind: kinds[kind].to_string(), amount }).collect();
        let slow = line_values(&lines).and_then(|computed| check_sums_order_by_order(&computed, &tenders));
        prop_assert_eq!(outcome(check_transaction_arithmetic(&lines, &tenders)), outcome(slow));
    }

    #[test]
    fn unit_sums_are_refused_exactly_when_order_by_order_refuses_them(
        lines in proptest::collection::vec((0usize..3, a_value()), 1..8),
    ) {
        let skus = ["A", "B", "C"];
        let lines: Vec<(&str, Decimal)> = lines.into_iter().map(|(sku, qty)| (skus[sku], qty)).collect();
        let forward = sum_exactly(lines.iter().map(|&(_, qty)| qty));
        let backward = sum_exactly(lines.iter().rev().map(|&(_, qty)| qty));
        if check_unit_sums(&lines).is_ok() {
            prop_assert!(forward.is_some() && backward.is_some());
        }
    }
}

#[test]
fn one_pass_clears_a_sum_at_the_bound_and_not_beyond() {
    let half = MAGNITUDE_MAX / Decimal::TWO;
    assert!(every_sum_exact([half, -half].into_iter()));
    assert!(!every_sum_exact([half, -half, Decimal::new(1, 2)].into_iter()));
    // Netting to zero is not enough: some order passes through the bound.
    assert!(!every_sum_exact([MAGNITUDE_MAX, Decimal::ONE, -Decimal::ONE].into_iter()));
}

#[test]
fn one_pass_does_not_clear_values_whose_common_scale_overflows_the_mantissa() {
    // 10^14 at scale 0 brought to scale 15 is 10^29, beyond a 96-bit mantissa (about 7.9e28).
    let values = [Decimal::new(100_000_000_000_000, 0), Decimal::new(1, 15)];
    assert!(!every_sum_exact(values.into_iter()));
    // Order by order it is refused too: Decimal would round the sum.
    assert!(check_unit_sums(&[("A", values[0]), ("A", values[1])]).is_err());
}

#[test]
fn a_sale_of_ordinary_lines_is_cleared_in_one_pass() {
    let lines = [
        a_line("A", Decimal::new(2, 0), Decimal::new(1999, 2), Decimal::new(100, 2), Decimal::new(304, 2)),
        a_line("B", Decimal::new(-1, 0), Decimal::new(500, 2), Decimal::ZERO, Decimal::new(-40, 2)),
    ];
    let computed = line_values(&lines).unwrap();
    assert!((0..LINE_VALUES).all(|k| every_sum_exact(computed.iter().map(|(_, values)| values[k]))));
    assert!(check_transaction_arithmetic(&lines, &[]).is_ok());
}
