//! Builders for the contract's input records (docs/wire-format.md, "Input records") and deterministic traffic.
//!
//! Decimals are written as JSON strings, as most publishers send them; tests that need other
//! encodings build the record with `serde_json::json!` or re-encode it (`js::to_msgpack`).

use serde_json::{json, Value};

/// The day most tests use.
pub const DAY: &str = "2026-11-27";

/// `<prefix>.pos.<store>`.
pub fn pos_subject(prefix: &str, store: &str) -> String {
    format!("{prefix}.pos.{store}")
}

/// `<prefix>.inventory.<store>`.
pub fn inventory_subject(prefix: &str, store: &str) -> String {
    format!("{prefix}.inventory.{store}")
}

/// A sale (or, with a negative `qty`, a restocked return) line without discount or tax.
pub fn line(n: u32, sku: &str, qty: &str, unit_price: &str) -> Value {
    json!({"line": n, "sku": sku, "qty": qty, "unit_price": unit_price})
}

/// A line with discount and tax.
pub fn line_full(n: u32, sku: &str, qty: &str, unit_price: &str, discount: &str, tax: &str) -> Value {
    json!({"line": n, "sku": sku, "qty": qty, "unit_price": unit_price, "discount": discount, "tax": tax})
}

/// A return line (`qty` negative), restocked or not.
pub fn return_line(n: u32, sku: &str, qty: &str, unit_price: &str, tax: &str, restock: bool) -> Value {
    json!({"line": n, "sku": sku, "qty": qty, "unit_price": unit_price, "tax": tax, "restock": restock})
}

pub fn tender(kind: &str, amount: &str) -> Value {
    json!({"type": kind, "amount": amount})
}

/// A POS transaction at noon UTC of `day`, with `business_day` set.
pub fn transaction(id: &str, store: &str, day: &str, lines: Vec<Value>, tenders: Vec<Value>) -> Value {
    json!({
        "type": "pos.transaction",
        "id": id,
        "store": store,
        "register": "R01",
        "occurred_at": format!("{day}T12:00:00Z"),
        "business_day": day,
        "currency": "USD",
        "lines": lines,
        "tenders": tenders,
    })
}

/// The example transaction of docs/wire-format.md ("POS transaction"), for `store`/`day` and with `id`: gross 34.98,
/// discount 2.00, net 32.98, tax 2.48, card 35.46; sku 100234 sold 2, sku 100987 returned and
/// restocked 1.
pub fn example_transaction(id: &str, store: &str, day: &str) -> Value {
    let mut tx = transaction(
        id,
        store,
        day,
        vec![
            line_full(1, "100234", "2", "19.99", "2.00", "2.88"),
            json!({"line": 2, "sku": "100987", "qty": "-1", "unit_price": "5.00", "tax": "-0.40",
                   "restock": true, "return_of": "0042-R01-20261120-000044"}),
        ],
        vec![tender("card", "35.46")],
    );
    tx["seq"] = json!(123);
    tx["register"] = json!("R03");
    tx["voids"] = Value::Null;
    tx
}

/// A post-void of transaction `target`.
pub fn void(id: &str, store: &str, day: &str, target: &str) -> Value {
    json!({
        "type": "pos.transaction",
        "id": id,
        "store": store,
        "register": "R01",
        "occurred_at": format!("{day}T13:00:00Z"),
        "business_day": day,
        "voids": target,
    })
}

/// An inventory movement with `(sku, qty)` lines.
pub fn movement(id: &str, store: &str, day: &str, reason: &str, lines: &[(&str, &str)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect();
    json!({
        "type": "inventory.movement",
        "id": id,
        "store": store,
        "occurred_at": format!("{day}T12:30:00Z"),
        "business_day": day,
        "reason": reason,
        "lines": lines,
    })
}

/// Deterministic pseudo-random numbers (SplitMix64), so traffic is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `count` records of realistic traffic for one store-day, as (subject, record): baskets of 1–5
/// lines with prices in cents, some returns (restocked or not), inventory movements for the
/// sales, a post-void now and then (always after its transaction), and an exact duplicate now
/// and then. Ids are `<tag>-<store>-<n>`, so two calls with different tags never collide.
pub fn traffic(prefix: &str, store: &str, day: &str, tag: &str, count: usize, seed: u64) -> Vec<(String, Value)> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<(String, Value)> = Vec::with_capacity(count);
    let mut sales: Vec<String> = Vec::new();
    let mut n = 0u64;
    while out.len() < count {
        n += 1;
        let roll = rng.below(100);
        if roll < 5 && !sales.is_empty() {
            let target = sales.swap_remove(rng.below(sales.len() as u64) as usize);
            out.push((pos_subject(prefix, store), void(&format!("{tag}-{store}-V{n}"), store, day, &target)));
        } else if roll < 8 && !out.is_empty() {
            let again = out[rng.below(out.len() as u64) as usize].clone();
            out.push(again);
        } else if roll < 30 {
            let sku = format!("{:06}", 100_000 + rng.below(40));
            let qty = format!("-{}", 1 + rng.below(5));
            out.push((
                inventory_subject(prefix, store),
                movement(&format!("{tag}-{store}-M{n}"), store, day, "sale", &[(sku.as_str(), qty.as_str())]),
            ));
        } else {
            let lines_count = 1 + rng.below(5) as u32;
            let mut lines = Vec::new();
            let mut total_cents: i64 = 0;
            for i in 1..=lines_count {
                let sku = format!("{:06}", 100_000 + rng.below(40));
                let price_cents = 99 + rng.below(5_000) as i64;
                let price = format!("{}.{:02}", price_cents / 100, price_cents % 100);
                if rng.below(10) == 0 {
                    let restock = rng.below(2) == 0;
                    lines.push(return_line(i, &sku, "-1", &price, "0", restock));
                    total_cents -= price_cents;
                } else {
                    let qty = 1 + rng.below(3) as i64;
                    let tax_cents = price_cents * qty * 8 / 100;
                    let tax = format!("{}.{:02}", tax_cents / 100, tax_cents % 100);
                    lines.push(line_full(i, &sku, &qty.to_string(), &price, "0", &tax));
                    total_cents += price_cents * qty + tax_cents;
                }
            }
            let sign = if total_cents < 0 { "-" } else { "" };
            let amount = format!("{sign}{}.{:02}", total_cents.abs() / 100, total_cents.abs() % 100);
            let kind = if rng.below(3) == 0 { "cash" } else { "card" };
            let id = format!("{tag}-{store}-T{n}");
            sales.push(id.clone());
            out.push((pos_subject(prefix, store), transaction(&id, store, day, lines, vec![tender(kind, &amount)])));
        }
    }
    out
}
