//! Business KPIs on /metrics (docs/alerting.md, "Business KPIs"; docs/http-api.md): a real
//! tally and nats-server, generated sales, voids and decrements (some by reference, some
//! without, some missing, some late), and the gauges read back equal what an independent model
//! of the definitions computes from the very records the test published.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_tests::fixtures::{inventory_subject, pos_subject, Rng, DAY};
use tally_tests::{prom, start_all, wait_until, Tally, DRAIN_TIMEOUT};

/// The drift settle time of the test's config.
const SETTLE_MINUTES: i64 = 10;
const SKUS: [&str; 5] = ["A", "B", "C", "D", "E"];
const PRICES: [&str; 4] = ["2.49", "10.00", "0.99", "7.35"];

/// One generated record, with what the model needs of it.
#[derive(Debug, Clone)]
enum Record {
    Sale {
        id: String,
        at: DateTime<Utc>,
        sku: &'static str,
        qty: Decimal,
        price: Decimal,
    },
    Void {
        id: String,
        at: DateTime<Utc>,
        target: String,
    },
    /// A `sale` decrement of `qty` (negative) units, referencing a sale or not.
    Decrement {
        id: String,
        at: DateTime<Utc>,
        sku: &'static str,
        qty: Decimal,
        reference: Option<String>,
    },
}

impl Record {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Record::Sale { at, .. } | Record::Void { at, .. } | Record::Decrement { at, .. } => *at,
        }
    }

    fn to_json(&self, store: &str) -> (String, Value) {
        let at_text = |at: &DateTime<Utc>| at.to_rfc3339();
        match self {
            Record::Sale { id, at, sku, qty, price } => (
                pos_subject("retail", store),
                json!({"type": "pos.transaction", "id": id, "store": store, "occurred_at": at_text(at),
                       "business_day": DAY, "lines": [{"sku": sku, "qty": qty.to_string(), "unit_price": price.to_string()}],
                       "tenders": [{"type": "card", "amount": (*qty * *price).to_string()}]}),
            ),
            Record::Void { id, at, target } => (
                pos_subject("retail", store),
                json!({"type": "pos.transaction", "id": id, "store": store, "occurred_at": at_text(at),
                       "business_day": DAY, "voids": target}),
            ),
            Record::Decrement { id, at, sku, qty, reference } => {
                let mut value = json!({"type": "inventory.movement", "id": id, "store": store,
                                       "occurred_at": at_text(at), "business_day": DAY, "reason": "sale",
                                       "lines": [{"sku": sku, "qty": qty.to_string()}]});
                if let Some(reference) = reference {
                    value["ref"] = json!(reference);
                }
                (inventory_subject("retail", store), value)
            }
        }
    }
}

/// A store's records over two hours of one day, in event-time order: sales, a few voids, and
/// for each sale a decrement by reference (a few minutes to half an hour later, so some still
/// lag at the end), one without reference, a partial one, or none.
fn traffic(store: &str, seed: u64) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let start = DateTime::parse_from_rfc3339(&format!("{DAY}T10:00:00Z")).unwrap().to_utc();
    let mut records = Vec::new();
    for n in 0..40 {
        // Distinct minutes per store (and seconds per record kind) keep event times unique.
        let at = start + Duration::minutes(3 * n) + Duration::seconds(rng.below(60) as i64);
        let id = format!("{store}-T{n}");
        let sku = SKUS[rng.below(SKUS.len() as u64) as usize];
        let qty = Decimal::from(1 + rng.below(3));
        let price: Decimal = PRICES[rng.below(PRICES.len() as u64) as usize].parse().unwrap();
        records.push(Record::Sale { id: id.clone(), at, sku, qty, price });
        let later = at + Duration::minutes(1 + rng.below(30) as i64);
        let decrement = |qty: Decimal, reference: Option<String>| Record::Decrement {
            id: format!("{store}-M{n}"),
            at: later,
            sku,
            qty: -qty,
            reference,
        };
        match rng.below(10) {
            0..=4 => records.push(decrement(qty, Some(id.clone()))),
            5 => records.push(decrement(qty, None)),
            6 if qty > Decimal::ONE => records.push(decrement(qty - Decimal::ONE, Some(id.clone()))),
            7 => records.push(decrement(qty + Decimal::ONE, None)),
            _ => {}
        }
        if rng.below(12) == 0 {
            records.push(Record::Void { id: format!("{store}-V{n}"), at: at + Duration::seconds(30), target: id });
        }
    }
    // A double decrement of a sku of its own, so that some sku is recorded beyond its sales.
    let price = "4.20".parse().unwrap();
    records.push(Record::Sale { id: format!("{store}-T-double"), at: start, sku: "G", qty: Decimal::ONE, price });
    let reference = Some(format!("{store}-T-double"));
    let at = start + Duration::seconds(20);
    records.push(Record::Decrement {
        id: format!("{store}-M-double"),
        at,
        sku: "G",
        qty: -Decimal::from(3),
        reference,
    });
    records.sort_by_key(Record::at);
    // Last, a sale of a sku of its own that nothing decrements: it sets the watermark, so it
    // lags for certain, whatever the draws.
    let last = records.last().map(Record::at).expect("records") + Duration::minutes(1);
    let price = "3.10".parse().unwrap();
    records.push(Record::Sale { id: format!("{store}-T-last"), at: last, sku: "F", qty: Decimal::TWO, price });
    records
}

/// The four KPIs of one store, exact.
#[derive(Debug, Default, Clone, PartialEq)]
struct Kpis {
    unreconciled_units: Decimal,
    unreconciled_value: Decimal,
    variance_units: Decimal,
    variance_value: Decimal,
}

/// The definitions of docs/alerting.md ("Business KPIs"), from the records alone: per sku, drift
/// = units sold (voids applied) + units decremented; unreconciled = positive drift less the
/// units of sales after `watermark − settle` that no decrement of that sku referenced.
fn model(records: &[Record]) -> Kpis {
    let voided: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match r {
            Record::Void { target, .. } => Some(target.as_str()),
            _ => None,
        })
        .collect();
    let referenced: BTreeSet<(&str, &str)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Decrement { sku, reference: Some(tx), .. } => Some((tx.as_str(), *sku)),
            _ => None,
        })
        .collect();
    let watermark = records.iter().map(Record::at).max().expect("records");
    let settled_by = watermark - Duration::minutes(SETTLE_MINUTES);
    let mut drift: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut lagging: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut price: BTreeMap<&str, (DateTime<Utc>, Decimal)> = BTreeMap::new();
    for record in records {
        match record {
            Record::Sale { id, at, sku, qty, price: unit_price } => {
                // The latest price counts voided sales too (docs/wire-format.md, "Drift").
                if price.get(sku).is_none_or(|(seen, _)| at >= seen) {
                    price.insert(sku, (*at, *unit_price));
                }
                if voided.contains(id.as_str()) {
                    continue;
                }
                *drift.entry(sku).or_default() += qty;
                if *at > settled_by && !referenced.contains(&(id.as_str(), *sku)) {
                    *lagging.entry(sku).or_default() += qty;
                }
            }
            Record::Decrement { sku, qty, .. } => *drift.entry(sku).or_default() += qty,
            Record::Void { .. } => {}
        }
    }
    let mut kpis = Kpis::default();
    for (sku, units) in drift {
        let unit_price = price.get(sku).map(|(_, p)| *p).unwrap_or_default();
        kpis.variance_units += units;
        kpis.variance_value += units * unit_price;
        if units > Decimal::ZERO {
            let unreconciled = (units - lagging.get(sku).copied().unwrap_or_default()).max(Decimal::ZERO);
            kpis.unreconciled_units += unreconciled;
            kpis.unreconciled_value += unreconciled * unit_price;
        }
    }
    kpis
}

/// The store's four gauges as /metrics shows them (`None` while one is missing).
fn gauges(samples: &[prom::Sample], store: &str) -> Option<[f64; 4]> {
    let one = |name: &str| {
        let of_store: Vec<_> = prom::samples(samples, name)
            .into_iter()
            .filter(|s| s.labels.get("store").map(String::as_str) == Some(store))
            .collect();
        (of_store.len() == 1).then(|| of_store[0].value)
    };
    Some([
        one("tally_unreconciled_sales")?,
        one("tally_unreconciled_sales_value")?,
        one("tally_inventory_variance_units")?,
        one("tally_inventory_variance_value")?,
    ])
}

fn as_f64(kpis: &Kpis) -> [f64; 4] {
    // Normalized as tally does before converting, so equal decimals give the same f64.
    let f = |d: Decimal| d.normalize().to_f64().expect("a small decimal");
    [f(kpis.unreconciled_units), f(kpis.unreconciled_value), f(kpis.variance_units), f(kpis.variance_value)]
}

/// Waits until /metrics shows `expected` for every store; returns whether it did, and the text.
async fn metrics_reach(tally: &Tally, expected: &[(String, [f64; 4])]) -> (bool, String) {
    let reached = wait_until(DRAIN_TIMEOUT, move || async move {
        let samples = prom::parse(&tally.http_get_text("/metrics").await.1);
        expected.iter().all(|(store, values)| gauges(&samples, store).as_ref() == Some(values))
    })
    .await;
    (reached, tally.http_get_text("/metrics").await.1)
}

// Proves tally_unreconciled_sales(_value) and tally_inventory_variance_units/_value equal, per
// store, the model of their definitions over generated traffic (lagging, late, partial, excess,
// unreferenced and missing decrements, voids), that a finalized day drops out while its store
// reads 0, and (a control) that the traffic exercises each case the model distinguishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_gauges_equal_the_model_of_the_published_records() {
    let (_nats, tally, js) = start_all(&format!("[drift]\nsettle = \"{SETTLE_MINUTES}m\"\n")).await;
    let stores = ["0701", "0702"];
    let mut expected = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let records = traffic(store, 17 + i as u64);
        for record in &records {
            let (subject, value) = record.to_json(store);
            js.publish_json(&subject, &value).await;
        }
        let kpis = model(&records);
        // Control: the traffic is not degenerate, and lag is left out of the unreconciled units.
        let positive_drift = model_positive_drift(&records);
        assert!(kpis.unreconciled_units > Decimal::ZERO, "{store}: no unreconciled sales in {kpis:?}");
        assert!(kpis.unreconciled_units < positive_drift, "{store}: nothing lagging in {kpis:?}");
        assert_ne!(kpis.variance_units, positive_drift, "{store}: no sku recorded beyond its sales");
        expected.push((store.to_string(), as_f64(&kpis)));
        eprintln!("kpi: store {store}: {} records, model {kpis:?}", records.len());
    }
    // 0703: two units sold and never decremented, then its day-close; a record 11 minutes past
    // the close (close_grace is 10) finalizes the day, which then no longer counts.
    let close_store = "0703";
    let sale = Record::Sale {
        id: "0703-T1".into(),
        at: DateTime::parse_from_rfc3339(&format!("{DAY}T10:00:00Z")).unwrap().to_utc(),
        sku: "A",
        qty: Decimal::from(2),
        price: "2.49".parse().unwrap(),
    };
    let (subject, value) = sale.to_json(close_store);
    js.publish_json(&subject, &value).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let open = [(close_store.to_string(), as_f64(&model(&[sale])))];
    let (reached, text) = metrics_reach(&tally, &[expected.clone(), open.to_vec()].concat()).await;
    assert!(reached, "KPI gauges differ from the model {expected:?} {open:?}:\n{}", kpi_lines(&text));

    let close = json!({"type": "pos.day_close", "id": "CLOSE-0703", "store": close_store, "business_day": DAY,
                       "occurred_at": format!("{DAY}T20:00:00Z"), "transaction_count": 1, "net_sales": "4.98",
                       "tax": "0"});
    js.publish_json(&pos_subject("retail", close_store), &close).await;
    let next_day = json!({"type": "inventory.movement", "id": "0703-R1", "store": close_store,
                          "occurred_at": format!("{DAY}T20:11:00Z"), "business_day": "2026-11-28",
                          "reason": "receipt", "lines": [{"sku": "A", "qty": "5"}]});
    js.publish_json(&inventory_subject("retail", close_store), &next_day).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(tally.day(close_store, DAY).await["postings"]["final"], true, "0703's day is final");
    let finalized = [(close_store.to_string(), [0.0; 4])];
    let (reached, text) = metrics_reach(&tally, &[expected, finalized.to_vec()].concat()).await;
    assert!(reached, "a finalized day must drop out of the KPIs, its store reading 0:\n{}", kpi_lines(&text));
}

/// The sum of the skus' positive drift, without leaving out lag: what unreconciled sales must
/// stay under when some sales still lag.
fn model_positive_drift(records: &[Record]) -> Decimal {
    let voided: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| if let Record::Void { target, .. } = r { Some(target.as_str()) } else { None })
        .collect();
    let mut drift: BTreeMap<&str, Decimal> = BTreeMap::new();
    for record in records {
        match record {
            Record::Sale { id, sku, qty, .. } if !voided.contains(id.as_str()) => *drift.entry(sku).or_default() += qty,
            Record::Decrement { sku, qty, .. } => *drift.entry(sku).or_default() += qty,
            _ => {}
        }
    }
    drift.values().filter(|units| **units > Decimal::ZERO).sum()
}

fn kpi_lines(text: &str) -> String {
    text.lines().filter(|l| l.contains("unreconciled") || l.contains("variance")).collect::<Vec<_>>().join("\n")
}
