//! The arithmetic a record brings to the aggregates must be exact: its products and its sums
//! per record, per sku and per tender type, in either order (docs/wire-format.md, "POS
//! transaction"). A record that would overflow or round is refused as `decimal`.
//!
//! Checking every sum order by order costs two passes of `Decimal` additions, each undone to
//! prove it did not round, over maps per sku and per tender type: a third of a sale's decoding.
//! Almost every record is far from any limit, and [`every_sum_exact`] proves that in one pass
//! of integer additions; only a record it cannot clear is checked order by order, which also
//! names what overflowed. So what is refused, and why, is what it was.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::fields::MAGNITUDE_MAX;
use super::number::MANTISSA_MAX;
use super::RejectReason;
use super::Rejection;
use crate::model::{MovementLine, PosLine, Tender};

/// A record whose own arithmetic in the aggregates (docs/wire-format.md, "POS transaction": `gross = qty × unit_price`,
/// `net = gross − discount`, and their sums per record, per sku and per tender type) would
/// overflow or round is refused as `decimal`. Each value may parse exactly and still be near
/// Decimal's limit; accepting it would crash the processor on that message at every restart
/// (Decimal's operators panic on overflow) or round a total that must be exact. Sums are
/// checked in both orders because a post-void reverses the lines in the order they were added.
pub(super) fn check_transaction_arithmetic(lines: &[PosLine], tenders: &[Tender]) -> Result<(), Rejection> {
    let computed = line_values(lines)?;
    let columns_exact = (0..LINE_VALUES).all(|k| every_sum_exact(computed.iter().map(|(_, values)| values[k])));
    if columns_exact && every_sum_exact(tenders.iter().map(|tender| tender.amount)) {
        return Ok(());
    }
    check_sums_order_by_order(&computed, tenders)
}

/// What a line adds to the aggregates: sold, returned, gross, discount, net and tax.
const LINE_VALUES: usize = 6;

/// Each line's sku and values, its own product and difference checked.
fn line_values(lines: &[PosLine]) -> Result<Vec<(&str, [Decimal; LINE_VALUES])>, Rejection> {
    let mut computed = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let gross = exact_mul(line.qty, line.unit_price).ok_or_else(|| {
            out_of_range(format!("lines[{i}]: qty × unit_price ({} × {})", line.qty, line.unit_price))
        })?;
        let net = exact_add(gross, -line.discount)
            .ok_or_else(|| out_of_range(format!("lines[{i}]: gross − discount ({gross} − {})", line.discount)))?;
        // Sold and returned units are kept apart in the aggregates, so they are summed apart.
        let (sold, returned) =
            if line.qty.is_sign_positive() { (line.qty, Decimal::ZERO) } else { (Decimal::ZERO, line.qty) };
        if gross.abs() > MAGNITUDE_MAX || net.abs() > MAGNITUDE_MAX {
            return Err(out_of_range(format!("lines[{i}]: gross {gross} or net {net}")));
        }
        computed.push((line.sku.as_str(), [sold, returned, gross, line.discount, net, line.tax]));
    }
    Ok(computed)
}

/// Every sum of the lines' values (per record and per sku) and of the tenders (per type), in
/// both orders, each addition proved exact.
fn check_sums_order_by_order(computed: &[(&str, [Decimal; LINE_VALUES])], tenders: &[Tender]) -> Result<(), Rejection> {
    for forward in [true, false] {
        let mut record = [Decimal::ZERO; LINE_VALUES];
        let mut per_sku: BTreeMap<&str, [Decimal; LINE_VALUES]> = BTreeMap::new();
        let ordered: Box<dyn Iterator<Item = &(&str, [Decimal; LINE_VALUES])>> =
            if forward { Box::new(computed.iter()) } else { Box::new(computed.iter().rev()) };
        for (sku, values) in ordered {
            let sku_sums = per_sku.entry(sku).or_insert([Decimal::ZERO; LINE_VALUES]);
            for (k, value) in values.iter().enumerate() {
                record[k] = exact_add(record[k], *value).ok_or_else(|| out_of_range("the sum of the lines".into()))?;
                sku_sums[k] = exact_add(sku_sums[k], *value)
                    .ok_or_else(|| out_of_range(format!("the sum of the lines of sku {sku:?}")))?;
            }
        }
        let mut per_type: BTreeMap<&str, Decimal> = BTreeMap::new();
        let ordered: Box<dyn Iterator<Item = &Tender>> =
            if forward { Box::new(tenders.iter()) } else { Box::new(tenders.iter().rev()) };
        for tender in ordered {
            let sum = per_type.entry(tender.kind.as_str()).or_insert(Decimal::ZERO);
            *sum = exact_add(*sum, tender.amount)
                .ok_or_else(|| out_of_range(format!("the sum of the {:?} tenders", tender.kind)))?;
        }
    }
    Ok(())
}

/// A movement's line values (`qty × unit_cost`, when a line has a cost) and their sum must be
/// exact too.
pub(super) fn check_movement_values(lines: &[MovementLine]) -> Result<(), Rejection> {
    let mut values = Decimal::ZERO;
    for (i, line) in lines.iter().enumerate() {
        let Some(cost) = line.unit_cost else { continue };
        let value = exact_mul(line.qty, cost)
            .filter(|value| value.abs() <= MAGNITUDE_MAX)
            .ok_or_else(|| out_of_range(format!("lines[{i}]: qty × unit_cost ({} × {cost})", line.qty)))?;
        values = exact_add(values, value).ok_or_else(|| out_of_range("the sum of the lines' values".into()))?;
    }
    Ok(())
}

/// The same for a movement or an order, given as (sku, qty) per line: their quantities are
/// summed per record and per sku.
pub(super) fn check_unit_sums(lines: &[(&str, Decimal)]) -> Result<(), Rejection> {
    if every_sum_exact(lines.iter().map(|&(_, qty)| qty)) {
        return Ok(());
    }
    for forward in [true, false] {
        let mut total = Decimal::ZERO;
        let mut per_sku: BTreeMap<&str, Decimal> = BTreeMap::new();
        let ordered: Box<dyn Iterator<Item = &(&str, Decimal)>> =
            if forward { Box::new(lines.iter()) } else { Box::new(lines.iter().rev()) };
        for &(sku, qty) in ordered {
            total = exact_add(total, qty).ok_or_else(|| out_of_range("the sum of the lines".into()))?;
            let sum = per_sku.entry(sku).or_insert(Decimal::ZERO);
            *sum = exact_add(*sum, qty).ok_or_else(|| out_of_range(format!("the sum of the lines of sku {sku:?}")))?;
        }
    }
    Ok(())
}

fn out_of_range(what: String) -> Rejection {
    Rejection::new(RejectReason::Decimal, format!("{what} does not fit a decimal exactly within ±{MAGNITUDE_MAX}"))
}

/// Whether every sum of some of `values`, added in any order, is exact within
/// [`MAGNITUDE_MAX`]. It is when their absolute values, brought to the largest of their scales,
/// sum to a mantissa that Decimal holds and to a magnitude within the bound: adding two partial
/// sums then aligns both to a scale no larger, with mantissas no larger than that whole sum's,
/// so Decimal neither overflows nor rounds, and no partial sum exceeds the bound. `false` only
/// says that this proof does not apply: the caller then checks order by order.
pub(super) fn every_sum_exact(values: impl Iterator<Item = Decimal> + Clone) -> bool {
    let scale = values.clone().map(|value| value.scale()).max().unwrap_or(0);
    let mut total: u128 = 0;
    for value in values {
        let aligned = mantissa_at(value, scale).map(i128::unsigned_abs);
        match aligned.and_then(|aligned| total.checked_add(aligned)) {
            Some(sum) if sum <= MANTISSA_MAX => total = sum,
            _ => return false,
        }
    }
    Decimal::try_from_i128_with_scale(total as i128, scale).is_ok_and(|sum| sum <= MAGNITUDE_MAX)
}

/// `value`'s mantissa brought to `scale` (at least its own), `None` past 128 bits.
fn mantissa_at(value: Decimal, scale: u32) -> Option<i128> {
    10i128.checked_pow(scale - value.scale())?.checked_mul(value.mantissa())
}

/// `a + b` when Decimal holds it exactly within [`MAGNITUDE_MAX`]; `None` otherwise.
///
/// Added as integers at the larger scale, the scale Decimal gives the sum: Decimal itself rounds
/// instead of failing when that sum's mantissa passes 96 bits, and undoing its addition (what
/// this did before) can round back to the value it started from, which let a record through
/// whose reversal did not net to zero (`tests_fuzz_regressions`).
fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale().max(b.scale());
    let sum = mantissa_at(a, scale)?.checked_add(mantissa_at(b, scale)?)?;
    // Fails when the mantissa passes 96 bits.
    let sum = Decimal::try_from_i128_with_scale(sum, scale).ok()?;
    (sum.abs() <= MAGNITUDE_MAX).then_some(sum)
}

/// `a × b` when Decimal holds it exactly; `None` on overflow or rounding.
fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let (a, b) = (a.normalize(), b.normalize());
    let mantissa = a.mantissa().unsigned_abs().checked_mul(b.mantissa().unsigned_abs())?;
    if a.scale() + b.scale() > Decimal::MAX_SCALE || mantissa > MANTISSA_MAX {
        return None;
    }
    a.checked_mul(b)
}

#[cfg(test)]
#[path = "tests_arithmetic.rs"]
mod tests;
