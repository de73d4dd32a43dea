//! Inventory adjustments to finance (docs/wire-format.md, "Inventory adjustment posting"),
//! black-box against a real nats-server: shrink, damage and count movements on both sides of a
//! 4-5-4 period boundary become `inventory_adjustment` postings on `P.erp.postings.<store>`,
//! per store and period, gapless, with exact values; a late one is booked in the open period
//! and names its own; a crash and restart duplicates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_tests::model::decimal;
use tally_tests::{start_all, wait_until, Js, Tally, DRAIN_TIMEOUT};

/// Postings every second; NRF 4-5-4 periods: FY2026-P10 is 2026-11-01 to 2026-11-28, P11
/// starts 2026-11-29. Store 0077 keeps its books in New York time.
const CONFIG: &str = r#"
[erp]
interval = "1s"
[fiscal]
calendar = "4-5-4"
year_start = "2026-02-01"
[stores."0077"]
timezone = "America/New_York"
"#;

const P10: &str = "FY2026-P10";
const P11: &str = "FY2026-P11";

/// A movement whose lines are `(sku, qty, unit_cost)`.
fn movement(id: &str, store: &str, day: &str, at: &str, reason: &str, lines: &[(&str, &str, Option<&str>)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, qty, cost)| match cost {
            Some(cost) => json!({"sku": sku, "qty": qty, "unit_cost": cost}),
            None => json!({"sku": sku, "qty": qty}),
        })
        .collect();
    json!({"type": "inventory.movement", "id": id, "store": store, "business_day": day, "occurred_at": at,
           "reason": reason, "lines": lines})
}

async fn publish(js: &Js, records: &[Value]) {
    for record in records {
        let store = record["store"].as_str().unwrap();
        js.publish_json(&format!("retail.inventory.{store}"), record).await;
    }
}

/// Every inventory adjustment posting on RETAIL_ERP, checked: the `Nats-Msg-Id` is the id, no
/// id twice, and per (store, period) seqs run 1, 2, … with ids `<store>/period/<period>/<seq>`.
async fn adjustment_postings(js: &Js) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut postings = Vec::new();
    for message in js.messages("RETAIL_ERP").await {
        let body: Value = serde_json::from_slice(&message.payload).expect("postings are JSON");
        if body["kind"] != "inventory_adjustment" {
            continue;
        }
        assert_eq!(message.header("Nats-Msg-Id"), body["id"].as_str(), "Nats-Msg-Id must be the posting id");
        assert!(seen.insert(body["id"].as_str().unwrap().to_string()), "posted twice: {body}");
        postings.push(body);
    }
    let mut per_period: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for posting in &postings {
        let key = (posting["store"].as_str().unwrap().to_string(), posting["period"].as_str().unwrap().to_string());
        per_period.entry(key).or_default().push(posting["seq"].as_u64().unwrap());
    }
    for ((store, period), seqs) in &per_period {
        assert_eq!(seqs, &(1..=seqs.len() as u64).collect::<Vec<_>>(), "{store} {period}: seqs gapless in order");
    }
    for posting in &postings {
        let (store, period, seq) = (&posting["store"], &posting["period"], posting["seq"].as_u64().unwrap());
        let id = format!("{}/period/{}/{seq:04}", store.as_str().unwrap(), period.as_str().unwrap());
        assert_eq!(posting["id"], json!(id));
    }
    postings
}

/// (store, booked period, belongs_to_period or "", sku, reason) → (units, value, unvalued
/// units), summed over every posting.
type Sums = BTreeMap<(String, String, String, String, String), [Decimal; 3]>;

fn sums(postings: &[Value]) -> Sums {
    let mut sums = Sums::new();
    for posting in postings {
        let belongs = posting["belongs_to_period"].as_str().unwrap_or_default().to_string();
        let mut control = [Decimal::ZERO; 3];
        for line in posting["lines"].as_array().expect("lines") {
            let key = (
                posting["store"].as_str().unwrap().to_string(),
                posting["period"].as_str().unwrap().to_string(),
                belongs.clone(),
                line["sku"].as_str().unwrap().to_string(),
                line["reason"].as_str().unwrap().to_string(),
            );
            let entry = sums.entry(key).or_default();
            for (i, field) in ["units", "value", "unvalued_units"].iter().enumerate() {
                let amount = decimal(&line[*field]).unwrap_or_else(|| panic!("{field} of {line}"));
                entry[i] += amount;
                control[i] += amount;
            }
        }
        for (i, field) in ["units", "value", "unvalued_units"].iter().enumerate() {
            assert_eq!(decimal(&posting["control"][*field]), Some(control[i]), "control.{field} of {posting}");
        }
    }
    sums
}

fn key(store: &str, period: &str, belongs: &str, sku: &str, reason: &str) -> (String, String, String, String, String) {
    (store.into(), period.into(), belongs.into(), sku.into(), reason.into())
}

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Waits until the adjustment postings sum to `expected`; returns them.
async fn wait_for_sums(js: &Js, tally: &Tally, expected: &Sums) -> Vec<Value> {
    let reached = wait_until(DRAIN_TIMEOUT, || async { &sums(&adjustment_postings(js).await) == expected }).await;
    let postings = adjustment_postings(js).await;
    assert!(reached, "expected {expected:#?}\ngot {:#?}\n{postings:#?}\n{}", sums(&postings), tally.logs());
    postings
}

// Proves shrink and counts across a 4-5-4 period boundary: each books in its own period while
// open, values are exactly qty × unit_cost, a late shrink books in the open period naming the
// closed one, sale movements and receipts post nothing, and a crash and restart neither
// duplicates nor loses a posting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrink_and_counts_across_a_period_boundary() {
    let (_nats, mut tally, js) = start_all(CONFIG).await;

    // P10: shrink (one line without a cost), a count, and movements that are not adjustments.
    publish(
        &js,
        &[
            movement(
                "A1",
                "0042",
                "2026-11-27",
                "2026-11-27T18:00:00Z",
                "shrink",
                &[("100234", "-2", Some("4.99")), ("100987", "-1", None)],
            ),
            movement("S1", "0042", "2026-11-27", "2026-11-27T18:05:00Z", "sale", &[("100234", "-1", None)]),
            movement("R1", "0042", "2026-11-28", "2026-11-28T08:00:00Z", "receipt", &[("100234", "24", Some("4.99"))]),
            movement("A2", "0042", "2026-11-28", "2026-11-28T20:00:00Z", "count", &[("100234", "1", Some("4.99"))]),
            // 23:30 in New York on the 28th is the 29th in UTC: still P10 in the store's zone.
            movement(
                "B1",
                "0077",
                "2026-11-28",
                "2026-11-28T23:30:00-05:00",
                "damage",
                &[("300001", "-3", Some("0.333"))],
            ),
        ],
    )
    .await;
    let mut expected = Sums::new();
    expected.insert(key("0042", P10, "", "100234", "shrink"), [d("-2"), d("-9.98"), d("0")]);
    expected.insert(key("0042", P10, "", "100987", "shrink"), [d("-1"), d("0"), d("-1")]);
    expected.insert(key("0042", P10, "", "100234", "count"), [d("1"), d("4.99"), d("0")]);
    expected.insert(key("0077", P10, "", "300001", "damage"), [d("-3"), d("-0.999"), d("0")]);
    let postings = wait_for_sums(&js, &tally, &expected).await;
    let first = &postings[0];
    assert_eq!((&first["type"], &first["belongs_to_period"]), (&json!("erp.posting"), &Value::Null));
    assert_eq!((&first["period_start"], &first["period_end"]), (&json!("2026-11-01"), &json!("2026-11-28")));

    // P11 opens: a count in it, then a shrink whose business day is in P10, reported late.
    publish(
        &js,
        &[
            movement("A3", "0042", "2026-11-29", "2026-11-29T10:00:00Z", "count", &[("100234", "-3", Some("5.00"))]),
            movement("A4", "0042", "2026-11-28", "2026-11-29T11:00:00Z", "shrink", &[("100555", "-4", Some("2.50"))]),
        ],
    )
    .await;
    expected.insert(key("0042", P11, "", "100234", "count"), [d("-3"), d("-15.00"), d("0")]);
    expected.insert(key("0042", P11, P10, "100555", "shrink"), [d("-4"), d("-10.00"), d("0")]);
    let postings = wait_for_sums(&js, &tally, &expected).await;
    let late = postings.iter().find(|p| p["belongs_to_period"] == P10).expect("the late posting");
    assert_eq!(late["period"], P11, "booked in the open period");
    assert_eq!(
        late["lines"],
        json!([{"sku": "100555", "reason": "shrink", "units": "-4", "value": "-10.00",
                                      "unvalued_units": "0"}])
    );

    // A crash right after more adjustments and a re-sent one, then a restart.
    publish(
        &js,
        &[
            movement(
                "A5",
                "0042",
                "2026-11-30",
                "2026-11-30T09:00:00Z",
                "adjustment",
                &[("100234", "2", Some("4.99"))],
            ),
            movement("A4", "0042", "2026-11-28", "2026-11-29T11:00:00Z", "shrink", &[("100555", "-4", Some("2.50"))]),
        ],
    )
    .await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    tally.kill();
    tally.restart().await;
    publish(&js, &[movement("A6", "0042", "2026-11-30", "2026-11-30T10:00:00Z", "damage", &[("100987", "-1", None)])])
        .await;
    expected.insert(key("0042", P11, "", "100234", "adjustment"), [d("2"), d("9.98"), d("0")]);
    expected.insert(key("0042", P11, "", "100987", "damage"), [d("-1"), d("0"), d("-1")]);
    let postings = wait_for_sums(&js, &tally, &expected).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(adjustment_postings(&js).await, postings, "nothing more after the sums are reached");

    // The P11 postings' cumulative is the running sum of their controls.
    let mut running = Decimal::ZERO;
    for posting in postings.iter().filter(|p| p["store"] == "0042" && p["period"] == P11) {
        running += decimal(&posting["control"]["value"]).unwrap();
        assert_eq!(decimal(&posting["cumulative"]["value"]), Some(running), "{posting}");
    }
}

// Proves a state rebuilt from the input stream (`tally state rebuild`) continues every
// (store, period)'s adjustment sequence where the live instance left it: no posting id is sent
// again, nothing the ERP received is posted twice, and what came after is posted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_state_continues_the_adjustment_sequences() {
    let (nats, mut live, js) = start_all(CONFIG).await;
    publish(
        &js,
        &[
            movement("A1", "0042", "2026-11-27", "2026-11-27T18:00:00Z", "shrink", &[("100234", "-2", Some("4.99"))]),
            movement("A2", "0042", "2026-11-29", "2026-11-29T10:00:00Z", "count", &[("100234", "-3", Some("5.00"))]),
        ],
    )
    .await;
    let mut expected = Sums::new();
    expected.insert(key("0042", P10, "", "100234", "shrink"), [d("-2"), d("-9.98"), d("0")]);
    expected.insert(key("0042", P11, "", "100234", "count"), [d("-3"), d("-15.00"), d("0")]);
    let before = wait_for_sums(&js, &live, &expected).await;
    live.stop_gracefully();

    let work = tempfile::tempdir().expect("a temp dir");
    let rebuilt = work.path().join("rebuilt");
    let out = std::process::Command::new(tally_tests::tally_bin())
        .args(["state", "--progress-every", "0s", "rebuild", "--config"])
        .arg(live.config_path())
        .arg(&rebuilt)
        .output()
        .expect("run tally state rebuild");
    assert!(out.status.success(), "tally state rebuild failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut switched = Tally::builder(&nats.url())
        .toml(CONFIG)
        .toml(&format!("[state]\npath = {:?}\n", rebuilt.display().to_string()))
        .prepare();
    switched.spawn_run().await;
    publish(&js, &[movement("A3", "0042", "2026-11-30", "2026-11-30T09:00:00Z", "damage", &[("100987", "-1", None)])])
        .await;
    expected.insert(key("0042", P11, "", "100987", "damage"), [d("-1"), d("0"), d("-1")]);
    let after = wait_for_sums(&js, &switched, &expected).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(adjustment_postings(&js).await, after, "nothing more after the sums are reached");
    assert_eq!(&after[..before.len()], &before[..], "what the live instance sent stays as it was");
    let new: Vec<(&Value, &Value)> = after[before.len()..].iter().map(|p| (&p["id"], &p["lines"])).collect();
    assert_eq!(
        new,
        vec![(
            &json!("0042/period/FY2026-P11/0002"),
            &json!([{"sku": "100987", "reason": "damage", "units": "-1", "value": "0", "unvalued_units": "-1"}])
        )],
        "only the new damage, as the next seq of P11\n{}",
        switched.logs()
    );
}
