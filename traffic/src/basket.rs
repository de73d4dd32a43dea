//! What a shopper buys and how the POS and the inventory platform write it down: basket lines,
//! discounts, tax, tenders, and the JSON records of docs/wire-format.md, "Input records". Pure functions over the caller's
//! random generator; the orchestration (ids, lags, drift, voids) lives in `traffic`.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::SmallRng;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, StoreProfile};
use crate::wire::{local_time, money, units};

/// Lines per basket 1..=8, weights chosen for a mean of ~3.2.
const LINE_COUNT_WEIGHTS: [f64; 8] = [0.22, 0.22, 0.18, 0.13, 0.10, 0.07, 0.05, 0.03];

/// One POS line. `qty < 0` is a return; amounts carry the sign of `qty`.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub sku: usize,
    pub qty: i64,
    pub unit_price: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub restock: bool,
    pub return_of: Option<String>,
}

impl Line {
    pub fn net(&self) -> Decimal {
        Decimal::from(self.qty) * self.unit_price - self.discount
    }
}

/// A recent transaction of a store that a return may point back to.
pub(super) struct Recent {
    pub id: String,
    pub skus: Vec<usize>,
}

fn line_count(rng: &mut SmallRng) -> usize {
    let mut x = rng.random::<f64>() * LINE_COUNT_WEIGHTS.iter().sum::<f64>();
    for (i, w) in LINE_COUNT_WEIGHTS.iter().enumerate() {
        if x < *w {
            return i + 1;
        }
        x -= w;
    }
    LINE_COUNT_WEIGHTS.len()
}

/// The lines of one basket: mostly sales of popular SKUs, some discounted, `return_share` of
/// them returns (a fifth not restocked, half pointing at a recent transaction of the store).
pub(super) fn build_lines(
    rng: &mut SmallRng,
    catalog: &Catalog,
    store: &StoreProfile,
    recent: &VecDeque<Recent>,
    return_share: f64,
) -> Vec<Line> {
    let n = line_count(rng);
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let line = if rng.random_bool(return_share.clamp(0.0, 1.0)) {
            let from = if !recent.is_empty() && rng.random_bool(0.5) {
                recent.get(rng.random_range(0..recent.len()))
            } else {
                None
            };
            let (sku, return_of) = match from {
                Some(r) if !r.skus.is_empty() => (r.skus[rng.random_range(0..r.skus.len())], Some(r.id.clone())),
                _ => (catalog.sample(rng), None),
            };
            let qty = if rng.random_bool(0.1) { -2 } else { -1 };
            let unit_price = catalog.prices[sku];
            Line {
                sku,
                qty,
                unit_price,
                discount: Decimal::ZERO,
                tax: Decimal::ZERO,
                restock: rng.random_bool(0.8),
                return_of,
            }
        } else {
            let sku = catalog.sample(rng);
            let qty = match rng.random::<f64>() {
                x if x < 0.80 => 1,
                x if x < 0.94 => 2,
                _ => rng.random_range(3..=6),
            };
            let unit_price = catalog.prices[sku];
            let gross = Decimal::from(qty) * unit_price;
            let discount = if rng.random_bool(0.12) {
                let percent = [5, 10, 15, 20, 25][rng.random_range(0..5)];
                (gross * Decimal::new(percent, 2)).round_dp(2)
            } else {
                Decimal::ZERO
            };
            Line { sku, qty, unit_price, discount, tax: Decimal::ZERO, restock: true, return_of: None }
        };
        lines.push(line);
    }
    for line in &mut lines {
        line.tax = (line.net() * store.tax_rate).round_dp(2);
    }
    lines
}

/// Tenders that sum exactly to `total`: card, cash, gift card, or a split; a refund goes back
/// on one tender; an even exchange needs none.
pub(super) fn split_tenders(rng: &mut SmallRng, total: Decimal) -> Vec<(&'static str, Decimal)> {
    if total.is_zero() {
        return Vec::new();
    }
    if total.is_sign_negative() {
        return vec![(if rng.random_bool(0.7) { "card" } else { "cash" }, total)];
    }
    match rng.random::<f64>() {
        x if x < 0.62 => vec![("card", total)],
        x if x < 0.87 => vec![("cash", total)],
        x if x < 0.95 => {
            let gift = Decimal::from(rng.random_range(5..=50)).min(total);
            let rest = total - gift;
            let mut out = vec![("gift_card", gift)];
            if !rest.is_zero() {
                out.push(("card", rest));
            }
            out
        }
        _ => {
            let cash = (total * Decimal::new(rng.random_range(10..=90), 2)).round_dp(2);
            if cash.is_zero() || cash == total {
                return vec![("card", total)];
            }
            vec![("cash", cash), ("card", total - cash)]
        }
    }
}

/// Where and when a record happens, shared by every record builder.
pub(super) struct Stamp<'a> {
    pub store: &'a StoreProfile,
    pub at: DateTime<Utc>,
    pub business_day: NaiveDate,
    /// Write whole quantities as JSON/MessagePack integers instead of strings.
    pub qty_as_number: bool,
}

fn header(kind: &str, id: &str, s: &Stamp<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m.insert("id".into(), id.into());
    m.insert("store".into(), s.store.id.clone().into());
    m.insert("occurred_at".into(), local_time(s.at, s.store.tz).into());
    m.insert("business_day".into(), s.business_day.to_string().into());
    m
}

/// A `pos.transaction` with lines (docs/wire-format.md, "POS transaction").
#[allow(clippy::too_many_arguments)]
pub(super) fn transaction_json(
    s: &Stamp<'_>,
    id: &str,
    register: &str,
    seq: u32,
    currency: &str,
    catalog: &Catalog,
    lines: &[Line],
    tenders: &[(&'static str, Decimal)],
    explicit_null_voids: bool,
) -> Value {
    let mut m = header("pos.transaction", id, s);
    m.insert("register".into(), register.into());
    m.insert("seq".into(), seq.into());
    m.insert("currency".into(), currency.into());
    let lines: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = json!({"line": i + 1, "sku": catalog.skus[l.sku],
                "qty": units(l.qty, s.qty_as_number), "unit_price": money(l.unit_price),
                "tax": money(l.tax)});
            if !l.discount.is_zero() {
                v["discount"] = money(l.discount);
            }
            if l.qty < 0 {
                v["restock"] = l.restock.into();
                if let Some(of) = &l.return_of {
                    v["return_of"] = of.as_str().into();
                }
            }
            v
        })
        .collect();
    m.insert("lines".into(), lines.into());
    let tenders: Vec<Value> = tenders.iter().map(|(t, a)| json!({"type": t, "amount": money(*a)})).collect();
    m.insert("tenders".into(), tenders.into());
    if explicit_null_voids {
        m.insert("voids".into(), Value::Null);
    }
    Value::Object(m)
}

/// A post-void of the earlier transaction `voided` (no lines, no seq: it is not a sale).
pub(super) fn void_json(s: &Stamp<'_>, id: &str, register: &str, voided: &str) -> Value {
    let mut m = header("pos.transaction", id, s);
    m.insert("register".into(), register.into());
    m.insert("voids".into(), voided.into());
    Value::Object(m)
}

/// An `inventory.movement` (docs/wire-format.md, "Inventory movement"); `lines` are (sku index, signed stock delta).
pub(super) fn movement_json(
    s: &Stamp<'_>,
    id: &str,
    reason: &str,
    reference: Option<&str>,
    catalog: &Catalog,
    lines: &BTreeMap<usize, i64>,
) -> Value {
    let mut m = header("inventory.movement", id, s);
    m.insert("reason".into(), reason.into());
    if let Some(r) = reference {
        m.insert("ref".into(), r.into());
    }
    let lines: Vec<Value> =
        lines.iter().map(|(sku, q)| json!({"sku": catalog.skus[*sku], "qty": units(*q, s.qty_as_number)})).collect();
    m.insert("lines".into(), lines.into());
    Value::Object(m)
}

/// An `order.fulfillment` (docs/wire-format.md, "Order fulfillment"); `lines` hold positive units.
pub(super) fn order_json(
    s: &Stamp<'_>,
    id: &str,
    kind: &str,
    catalog: &Catalog,
    lines: &BTreeMap<usize, i64>,
) -> Value {
    let mut m = header("order.fulfillment", id, s);
    m.insert("fulfillment".into(), kind.into());
    let lines: Vec<Value> =
        lines.iter().map(|(sku, q)| json!({"sku": catalog.skus[*sku], "qty": units(*q, s.qty_as_number)})).collect();
    m.insert("lines".into(), lines.into());
    Value::Object(m)
}

/// A movement the POS did not cause: receipts, shrink, damage, counts, transfers, adjustments.
pub(super) fn unrelated_movement(rng: &mut SmallRng, catalog: &Catalog) -> (&'static str, BTreeMap<usize, i64>) {
    let (reason, skus, lo, hi, signed) = match rng.random::<f64>() {
        x if x < 0.30 => ("receipt", 4, 12, 144, false),
        x if x < 0.40 => ("transfer_in", 3, 1, 24, false),
        x if x < 0.50 => ("transfer_out", 3, -24, -1, false),
        x if x < 0.65 => ("shrink", 1, -2, -1, false),
        x if x < 0.75 => ("damage", 1, -1, -1, false),
        x if x < 0.90 => ("count", 2, 1, 5, true),
        _ => ("adjustment", 1, 1, 3, true),
    };
    let mut lines = BTreeMap::new();
    for _ in 0..rng.random_range(1..=skus) {
        let q: i64 = rng.random_range(lo..=hi);
        let q = if signed && rng.random_bool(0.5) { -q } else { q };
        *lines.entry(catalog.sample(rng)).or_insert(0) += q;
    }
    lines.retain(|_, q| *q != 0);
    if lines.is_empty() {
        lines.insert(catalog.sample(rng), 1);
    }
    (reason, lines)
}
