//! docs/wire-format.md, "Order fulfillment": the order management system's record, from a map
//! whose `type` and `store` are checked.
//!
//! Order management systems name an order's id and its fulfillment kind in several ways; the
//! documented names are `id` and `fulfillment`, and the spellings listed in [`ID_NAMES`] and
//! [`FULFILLMENT_NAMES`] are read when the documented one is absent. Two spellings present with
//! different values are refused, never silently chosen between.

use super::arithmetic::check_unit_sums;
use super::fields::{schema, Obj};
use super::records::when;
use super::{DecodeContext, Rejection};
use crate::model::{Fulfillment, OrderFulfillment, OrderLine};

/// Where the order id is read from, in order of preference.
const ID_NAMES: [&str; 2] = ["id", "order_id"];
/// Where the fulfillment kind is read from, in order of preference.
const FULFILLMENT_NAMES: [&str; 4] = ["fulfillment", "fulfillment_kind", "fulfillment_type", "kind"];

pub fn fulfillment(obj: &Obj, store: String, ctx: &DecodeContext) -> Result<OrderFulfillment, Rejection> {
    let id = aliased_str(obj, &ID_NAMES)?;
    let (occurred_at, business_day) = when(obj, &store, ctx)?;
    let kind_text = aliased_str(obj, &FULFILLMENT_NAMES)?;
    let fulfillment = Fulfillment::parse(&kind_text).ok_or_else(|| {
        let known: Vec<&str> = Fulfillment::ALL.iter().map(|f| f.as_str()).collect();
        schema(format!("fulfillment: {kind_text:?} is not one of {}", known.join(", ")))
    })?;
    let lines = obj.items("lines", ctx.max_lines)?.iter().map(order_line).collect::<Result<Vec<_>, _>>()?;
    if lines.is_empty() {
        return Err(schema("lines: an order fulfillment needs a non-empty `lines`".to_string()));
    }
    let units: Vec<(&str, rust_decimal::Decimal)> = lines.iter().map(|line| (line.sku.as_str(), line.qty)).collect();
    check_unit_sums(&units)?;
    Ok(OrderFulfillment { id, store, occurred_at, business_day, fulfillment, lines })
}

/// One line: a sku and its units. The kind gives the direction, so the sign of `qty` carries
/// none: publishers that sign quantities like the POS (a return negative) or like inventory (a
/// decrement negative) mean the same units, and are read alike (and fingerprint alike). Zero
/// units is no fulfillment.
fn order_line(obj: &Obj) -> Result<OrderLine, Rejection> {
    let sku = obj.req_str("sku")?;
    let qty = obj.req_decimal("qty")?;
    if qty.is_zero() {
        return Err(schema(format!("{}: must not be zero", obj.path_of("qty"))));
    }
    Ok(OrderLine { sku, qty: qty.abs() })
}

/// The required string field under the first of `names` present; refused when it is under
/// none, or under two with different values.
fn aliased_str(obj: &Obj, names: &[&str]) -> Result<String, Rejection> {
    let mut found: Option<(&str, String)> = None;
    for name in names {
        let Some(value) = obj.opt_str(name)? else { continue };
        match &found {
            None => found = Some((name, value)),
            Some((first, kept)) if *kept != value => {
                let detail = format!("{first} and {name} disagree: {kept:?} versus {value:?}");
                return Err(schema(detail));
            }
            Some(_) => {}
        }
    }
    found.map(|(_, value)| value).ok_or_else(|| schema(format!("{}: required field is missing", names[0])))
}
