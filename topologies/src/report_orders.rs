//! The day report's order parts (docs/http-api.md, the day endpoint): the day's `orders`
//! section and a drift row's `expected_units_by_source`. Both are absent when no order touched
//! the day or the key, so that reports of days without orders stay as they were.

use serde_json::{json, Map, Value};

use crate::aggregates::{SkuDay, StoreDay};

/// The day's order fulfillments: how many, their units per kind, and per sku.
pub fn orders(totals: &StoreDay, skus: &[(String, SkuDay)]) -> Option<Value> {
    if totals.orders.count == 0 {
        return None;
    }
    let sku_rows: Vec<Value> = skus
        .iter()
        .filter(|(_, f)| !f.orders.is_empty())
        .map(|(sku, f)| json!({"sku": sku, "units_by_fulfillment": by_kind(f.orders.iter())}))
        .collect();
    Some(json!({
        "count": totals.orders.count,
        "units_by_fulfillment": by_kind(totals.orders.units.iter()),
        "skus": sku_rows,
    }))
}

/// A drift row's `expected_units` split into its POS and order shares.
pub fn expected_by_source(sku: &SkuDay) -> Option<Value> {
    let (pos, orders) = sku.expected_by_source()?;
    Some(json!({"pos": pos.normalize().to_string(), "orders": orders.normalize().to_string()}))
}

fn by_kind<'a>(
    units: impl Iterator<Item = (&'a crate::model::Fulfillment, &'a rust_decimal::Decimal)>,
) -> Map<String, Value> {
    units.map(|(kind, units)| (kind.as_str().to_string(), units.to_string().into())).collect()
}
