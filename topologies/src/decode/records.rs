//! The three input records of docs/wire-format.md, "Input records", from a map whose `type` and `store` are checked.

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::Decimal;

use super::arithmetic::{check_movement_values, check_transaction_arithmetic, check_unit_sums};
use super::fields::{schema, Obj};
use super::{DecodeContext, Rejection};
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
