//! The expected answer, computed independently of tally from the documented rules (docs/wire-format.md, "Input records"
//! and docs/http-api.md, the day endpoint), and the normalised shape both sides are compared in.
//!
//! [`DayTotals`] holds decimals as `rust_decimal::Decimal`, whose equality is numeric ("2.00" ==
//! "2"), and drops entries whose figures are all zero: after a void, a tender type or sku with
//! nothing left may be listed with zeros or not at all, and both are right.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuTotals {
    pub sold_units: Decimal,
    pub returned_units: Decimal,
    pub restocked_units: Decimal,
    pub gross: Decimal,
    pub discount: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
}

impl SkuTotals {
    fn is_zero(&self) -> bool {
        [self.sold_units, self.returned_units, self.restocked_units, self.gross, self.discount, self.net, self.tax]
            .iter()
            .all(Decimal::is_zero)
    }

    fn add(&mut self, other: &SkuTotals, sign: Decimal) {
        self.sold_units += sign * other.sold_units;
        self.returned_units += sign * other.returned_units;
        self.restocked_units += sign * other.restocked_units;
        self.gross += sign * other.gross;
        self.discount += sign * other.discount;
        self.net += sign * other.net;
        self.tax += sign * other.tax;
    }
}

/// The comparable part of one store-day: `pos`, `inventory.by_reason`, `duplicates`,
/// `conflicts` of `GET /v1/stores/<store>/days/<day>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub transactions: i64,
    pub gross: Decimal,
    pub discount: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub tenders: BTreeMap<String, Decimal>,
    pub skus: BTreeMap<String, SkuTotals>,
    pub inventory: BTreeMap<String, Decimal>,
    pub duplicates: u64,
    pub conflicts: u64,
}

impl DayTotals {
    /// Reads the day endpoint's JSON. Panics, showing the JSON, when a field the contract names
    /// is missing or is not a decimal.
    pub fn from_http(body: &Value) -> DayTotals {
        let pos = field(body, body, "pos");
        let mut totals = DayTotals {
            transactions: field(body, pos, "transactions")
                .as_i64()
                .unwrap_or_else(|| panic!("pos.transactions is not an integer in {body}")),
            gross: dec(body, field(body, pos, "gross")),
            discount: dec(body, field(body, pos, "discount")),
            net: dec(body, field(body, pos, "net")),
            tax: dec(body, field(body, pos, "tax")),
            duplicates: field(body, body, "duplicates")
                .as_u64()
                .unwrap_or_else(|| panic!("duplicates is not an integer in {body}")),
            conflicts: field(body, body, "conflicts")
                .as_u64()
                .unwrap_or_else(|| panic!("conflicts is not an integer in {body}")),
            ..DayTotals::default()
        };
        for tender in array(body, field(body, pos, "tenders")) {
            let kind = str_field(body, tender, "type");
            *totals.tenders.entry(kind).or_default() += dec(body, field(body, tender, "amount"));
        }
        for sku in array(body, field(body, pos, "skus")) {
            let id = str_field(body, sku, "sku");
            let figures = SkuTotals {
                sold_units: dec(body, field(body, sku, "sold_units")),
                returned_units: dec(body, field(body, sku, "returned_units")),
                restocked_units: dec(body, field(body, sku, "restocked_units")),
                gross: dec(body, field(body, sku, "gross")),
                discount: dec(body, field(body, sku, "discount")),
                net: dec(body, field(body, sku, "net")),
                tax: dec(body, field(body, sku, "tax")),
            };
            totals.skus.entry(id).or_default().add(&figures, Decimal::ONE);
        }
        let by_reason = field(body, field(body, body, "inventory"), "by_reason");
        let by_reason =
            by_reason.as_object().unwrap_or_else(|| panic!("inventory.by_reason is not an object in {body}"));
        for (reason, qty) in by_reason {
            *totals.inventory.entry(reason.clone()).or_default() += dec(body, qty);
        }
        totals.normalized()
    }

    /// Drops zero tenders, all-zero skus and zero inventory reasons.
    pub fn normalized(mut self) -> DayTotals {
        self.tenders.retain(|_, amount| !amount.is_zero());
        self.skus.retain(|_, sku| !sku.is_zero());
        self.inventory.retain(|_, qty| !qty.is_zero());
        self
    }

    /// The same totals without the duplicate and conflict counters, for comparing store-days
    /// that received different duplicates.
    pub fn without_counters(mut self) -> DayTotals {
        self.duplicates = 0;
        self.conflicts = 0;
        self
    }

    fn add(&mut self, delta: &DayTotals, sign: Decimal) {
        self.transactions += if sign.is_sign_negative() { -delta.transactions } else { delta.transactions };
        self.gross += sign * delta.gross;
        self.discount += sign * delta.discount;
        self.net += sign * delta.net;
        self.tax += sign * delta.tax;
        for (kind, amount) in &delta.tenders {
            *self.tenders.entry(kind.clone()).or_default() += sign * amount;
        }
        for (sku, figures) in &delta.skus {
            self.skus.entry(sku.clone()).or_default().add(figures, sign);
        }
        for (reason, qty) in &delta.inventory {
            *self.inventory.entry(reason.clone()).or_default() += sign * qty;
        }
    }
}

fn field<'a>(whole: &Value, value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or_else(|| panic!("field `{name}` missing in {value} (whole answer: {whole})"))
}

fn str_field(whole: &Value, value: &Value, name: &str) -> String {
    field(whole, value, name)
        .as_str()
        .unwrap_or_else(|| panic!("field `{name}` is not a string in {value} (whole answer: {whole})"))
        .to_string()
}

fn array<'a>(whole: &Value, value: &'a Value) -> &'a Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("{value} is not an array (whole answer: {whole})"))
}

/// A decimal from a JSON string or number; numbers are read from their text.
pub fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => {
            Decimal::from_str(&n.to_string()).or_else(|_| Decimal::from_scientific(&n.to_string())).ok()
        }
        _ => None,
    }
}

fn dec(whole: &Value, value: &Value) -> Decimal {
    decimal(value).unwrap_or_else(|| panic!("{value} is not a decimal (whole answer: {whole})"))
}

/// Parses a decimal literal; for expectations written in tests.
pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|err| panic!("{text:?} is not a decimal: {err}"))
}

/// A reference model of the day totals: feed it every record that was published, in order,
/// and ask for the totals of a store-day. It assumes valid records with `business_day` set
/// (it does not reproduce decoding or DLQ rules: tests that publish invalid records leave them
/// out of the model).
#[derive(Debug, Default)]
pub struct Model {
    /// (store, id) → the first accepted content with that id.
    seen: HashMap<(String, String), Value>,
    /// (store, transaction id) → its business day and its effect on that day.
    transactions: HashMap<(String, String), (String, DayTotals)>,
    /// (store, transaction id) of every void seen, applied or waiting for its transaction.
    voided: HashSet<(String, String)>,
    days: BTreeMap<(String, String), DayTotals>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Applies one published record (a JSON object per docs/wire-format.md, "Input records").
    pub fn apply(&mut self, record: &Value) {
        let store = record["store"].as_str().expect("model: record has a store").to_string();
        let id = record["id"].as_str().expect("model: record has an id").to_string();
        let day = record["business_day"].as_str().expect("model: record has a business_day").to_string();
        let key = (store.clone(), id.clone());
        if let Some(first) = self.seen.get(&key) {
            let counters = self.days.entry((store, day)).or_default();
            if first == record {
                counters.duplicates += 1;
            } else {
                counters.conflicts += 1;
            }
            return;
        }
        self.seen.insert(key.clone(), record.clone());
        match record["type"].as_str().expect("model: record has a type") {
            "pos.transaction" => {
                if let Some(target) = record.get("voids").and_then(Value::as_str) {
                    self.void(&store, target);
                    // The void record itself may carry no lines; if it does, they are ignored.
                    self.days.entry((store, day)).or_default();
                    return;
                }
                let delta = transaction_delta(record);
                let cancelled = self.voided.contains(&key);
                if !cancelled {
                    self.days.entry((store.clone(), day.clone())).or_default().add(&delta, Decimal::ONE);
                } else {
                    self.days.entry((store.clone(), day.clone())).or_default();
                }
                self.transactions.insert(key, (day, delta));
            }
            "inventory.movement" => {
                let reason = record["reason"].as_str().expect("model: movement has a reason").to_string();
                let totals = self.days.entry((store, day)).or_default();
                for line in record["lines"].as_array().expect("model: movement has lines") {
                    let qty = decimal(&line["qty"]).expect("model: qty is a decimal");
                    *totals.inventory.entry(reason.clone()).or_default() += qty;
                }
            }
            "pos.day_close" => {
                self.days.entry((store, day)).or_default();
            }
            other => panic!("model: unknown record type {other}"),
        }
    }

    fn void(&mut self, store: &str, target: &str) {
        let key = (store.to_string(), target.to_string());
        if !self.voided.insert(key.clone()) {
            return; // voided twice: the second void changes nothing
        }
        if let Some((day, delta)) = self.transactions.get(&key) {
            self.days.entry((store.to_string(), day.clone())).or_default().add(delta, Decimal::NEGATIVE_ONE);
        }
    }

    /// The expected totals of a store-day (all zero if nothing arrived for it).
    pub fn day(&self, store: &str, day: &str) -> DayTotals {
        self.days.get(&(store.to_string(), day.to_string())).cloned().unwrap_or_default().normalized()
    }

    /// Every (store, business day) the model has seen a record for.
    pub fn store_days(&self) -> Vec<(String, String)> {
        self.days.keys().cloned().collect()
    }
}

/// The effect of one accepted transaction on its day, per docs/wire-format.md, "POS transaction": `gross = qty ×
/// unit_price`, `net = gross − discount`, `tax` apart; `qty > 0` sold, `qty < 0` returned and,
/// with `restock` (default true), restocked.
fn transaction_delta(record: &Value) -> DayTotals {
    let mut delta = DayTotals { transactions: 1, ..DayTotals::default() };
    for line in record["lines"].as_array().expect("model: transaction has lines") {
        let sku = line["sku"].as_str().expect("model: line has a sku").to_string();
        let qty = decimal(&line["qty"]).expect("model: qty");
        let price = decimal(&line["unit_price"]).expect("model: unit_price");
        let discount = line.get("discount").and_then(decimal).unwrap_or_default();
        let tax = line.get("tax").and_then(decimal).unwrap_or_default();
        let restock = line.get("restock").and_then(Value::as_bool).unwrap_or(true);
        let gross = qty * price;
        let net = gross - discount;
        let figures = SkuTotals {
            sold_units: if qty > Decimal::ZERO { qty } else { Decimal::ZERO },
            returned_units: if qty < Decimal::ZERO { -qty } else { Decimal::ZERO },
            restocked_units: if qty < Decimal::ZERO && restock { -qty } else { Decimal::ZERO },
            gross,
            discount,
            net,
            tax,
        };
        delta.gross += gross;
        delta.discount += discount;
        delta.net += net;
        delta.tax += tax;
        delta.skus.entry(sku).or_default().add(&figures, Decimal::ONE);
    }
    for tender in record.get("tenders").and_then(Value::as_array).into_iter().flatten() {
        let kind = tender["type"].as_str().expect("model: tender type").to_string();
        let amount = decimal(&tender["amount"]).expect("model: tender amount");
        *delta.tenders.entry(kind).or_default() += amount;
    }
    delta
}
