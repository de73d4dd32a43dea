//! The three input records of docs/wire-format.md, "Input records", from a map whose `type` and `store` are checked.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::Decimal;

use super::fields::{schema, Obj, MAGNITUDE_MAX};
use super::{DecodeContext, RejectReason, Rejection};
use crate::model::{DayClose, InventoryMovement, MovementLine, MovementReason, PosLine, PosTransaction, Tender};

/// docs/wire-format.md, "POS transaction". A record carries either lines (a sale or return) or `voids` (a post-void,
/// which carries no lines); tenders are kept on both as sent.
pub fn transaction(obj: &Obj, store: String, ctx: &DecodeContext) -> Result<PosTransaction, Rejection> {
    let id = obj.req_str("id")?;
    let (occurred_at, business_day) = when(obj, &store, ctx)?;
    let register = obj.opt_str("register")?;
    let seq = obj.opt_u64("seq")?;
    let currency = obj.opt_str("currency")?.unwrap_or_else(|| ctx.default_currency.to_string());
    let voids = obj.opt_str("voids")?;
    let lines = obj.items("lines", ctx.max_lines)?.iter().map(pos_line).collect::<Result<Vec<_>, _>>()?;
    match (&voids, lines.is_empty()) {
        (Some(_), false) => {
            return Err(schema("lines: a void (`voids` set) carries no lines".to_string()));
        }
        (None, true) => {
            let detail = "lines: a transaction needs a non-empty `lines` or a `voids` id";
            return Err(schema(detail.to_string()));
        }
        _ => {}
    }
    let tenders = tenders(obj, ctx)?;
    check_transaction_arithmetic(&lines, &tenders)?;
    Ok(PosTransaction { id, store, register, seq, occurred_at, business_day, currency, lines, tenders, voids })
}

/// One POS line. A zero `qty` is refused: it is neither a sale nor a return.
fn pos_line(obj: &Obj) -> Result<PosLine, Rejection> {
    let line = obj.opt_u64("line")?;
    let sku = obj.req_str("sku")?;
    let qty = obj.req_decimal("qty")?;
    if qty.is_zero() {
        return Err(schema(format!("{}: must not be zero", obj.path_of("qty"))));
    }
    Ok(PosLine {
        line,
        sku,
        qty,
        unit_price: obj.req_decimal("unit_price")?,
        discount: obj.decimal_or("discount", Decimal::ZERO)?,
        tax: obj.decimal_or("tax", Decimal::ZERO)?,
        restock: obj.bool_or("restock", true)?,
        return_of: obj.opt_str("return_of")?,
    })
}

/// docs/wire-format.md, "Inventory movement". A line's `qty` may be zero (a count that found nothing to change).
pub fn movement(obj: &Obj, store: String, ctx: &DecodeContext) -> Result<InventoryMovement, Rejection> {
    let id = obj.req_str("id")?;
    let (occurred_at, business_day) = when(obj, &store, ctx)?;
    let reason_text = obj.req_str("reason")?;
    let reason = MovementReason::parse(&reason_text).ok_or_else(|| {
        let known: Vec<&str> = MovementReason::ALL.iter().map(|r| r.as_str()).collect();
        let detail = format!("reason: {reason_text:?} is not one of {}", known.join(", "));
        schema(detail)
    })?;
    let reference = obj.opt_str("ref")?;
    let lines = obj.items("lines", ctx.max_lines)?.iter().map(movement_line).collect::<Result<Vec<_>, Rejection>>()?;
    if lines.is_empty() {
        return Err(schema("lines: a movement needs a non-empty `lines`".to_string()));
    }
    let units: Vec<(&str, Decimal)> = lines.iter().map(|line| (line.sku.as_str(), line.qty)).collect();
    check_unit_sums(&units)?;
    check_movement_values(&lines)?;
    Ok(InventoryMovement { id, store, occurred_at, business_day, reason, reference, lines })
}

/// One line of a movement; an optional `unit_cost` must not be negative.
fn movement_line(line: &Obj) -> Result<MovementLine, Rejection> {
    let unit_cost = line.opt_decimal("unit_cost")?;
    if unit_cost.is_some_and(|cost| cost.is_sign_negative() && !cost.is_zero()) {
        return Err(schema(format!("{}: a unit cost is not negative", line.path_of("unit_cost"))));
    }
    Ok(MovementLine { sku: line.req_str("sku")?, qty: line.req_decimal("qty")?, unit_cost })
}

/// docs/wire-format.md, "Day close".
pub fn day_close(obj: &Obj, store: String, ctx: &DecodeContext) -> Result<DayClose, Rejection> {
    let id = obj.req_str("id")?;
    let (occurred_at, business_day) = when(obj, &store, ctx)?;
    Ok(DayClose {
        id,
        store,
        business_day,
        occurred_at,
        transaction_count: obj.req_u64("transaction_count")?,
        net_sales: obj.req_decimal("net_sales")?,
        tax: obj.req_decimal("tax")?,
        tenders: tenders(obj, ctx)?,
    })
}

/// `occurred_at`, and `business_day` defaulting to the calendar day of `occurred_at` in the
/// store's time zone (a sale at 21:00 in New York is 02:00 UTC the next day, but belongs to
/// the New York day).
pub(super) fn when(
    obj: &Obj,
    store: &str,
    ctx: &DecodeContext,
) -> Result<(DateTime<FixedOffset>, NaiveDate), Rejection> {
    let occurred_at = obj.req_timestamp("occurred_at")?;
    let business_day = match obj.opt_day("business_day")? {
        Some(day) => day,
        None => occurred_at.with_timezone(&(ctx.timezone_of)(store)).date_naive(),
    };
    Ok((occurred_at, business_day))
}

fn tenders(obj: &Obj, ctx: &DecodeContext) -> Result<Vec<Tender>, Rejection> {
    obj.items("tenders", ctx.max_lines)?
        .iter()
        .map(|t| Ok(Tender { kind: t.req_str("type")?, amount: t.req_decimal("amount")? }))
        .collect()
}

/// The largest mantissa `Decimal` holds: 2^96 − 1.
const MANTISSA_MAX: u128 = (1u128 << 96) - 1;

/// A record whose own arithmetic in the aggregates (docs/wire-format.md, "POS transaction": `gross = qty × unit_price`,
/// `net = gross − discount`, and their sums per record, per sku and per tender type) would
/// overflow or round is refused as `decimal`. Each value may parse exactly and still be near
/// Decimal's limit; accepting it would crash the processor on that message at every restart
/// (Decimal's operators panic on overflow) or round a total that must be exact. Sums are
/// checked in both orders because a post-void reverses the lines in the order they were added.
fn check_transaction_arithmetic(lines: &[PosLine], tenders: &[Tender]) -> Result<(), Rejection> {
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
    for forward in [true, false] {
        let mut record = [Decimal::ZERO; 6];
        let mut per_sku: BTreeMap<&str, [Decimal; 6]> = BTreeMap::new();
        let ordered: Box<dyn Iterator<Item = &(&str, [Decimal; 6])>> =
            if forward { Box::new(computed.iter()) } else { Box::new(computed.iter().rev()) };
        for (sku, values) in ordered {
            let sku_sums = per_sku.entry(sku).or_insert([Decimal::ZERO; 6]);
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
fn check_movement_values(lines: &[MovementLine]) -> Result<(), Rejection> {
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

/// `a + b` when Decimal holds it exactly within [`MAGNITUDE_MAX`]; `None` otherwise.
fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    if sum.abs() > MAGNITUDE_MAX {
        return None;
    }
    // Decimal rounds instead of failing when aligning the scales overflows the mantissa;
    // undoing the addition exposes that.
    (sum.checked_sub(a) == Some(b)).then_some(sum)
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
