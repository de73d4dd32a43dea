//! Drift on event time: a recorded business day replayed at full speed into fresh state fires
//! the same alerts (ids, revisions, figures) as a paced run, and the right ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tally_tests::{Js, NatsServer, Tally};

const STORE: &str = "0042";
const DAY: &str = "2026-11-27";

/// Idle advancement by processing time is the one documented exception to replay equality, so
/// it is kept out of reach; finalization comes from the day-close and event time.
const CONFIG: &str = r#"
[drift]
settle = "15m"
idle_timeout = "24h"
[erp]
close_grace = "0s"
interval = "1h"
"#;

fn at(minutes: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z").unwrap();
    (base + chrono::Duration::minutes(minutes)).to_rfc3339()
}

fn sale(i: usize, minute: i64, sku: &str, qty: &str) -> (i64, Value) {
    let tx = json!({"type": "pos.transaction", "id": format!("T{i:03}"), "store": STORE, "register": "R01",
        "seq": i + 1, "occurred_at": at(minute), "business_day": DAY,
        "lines": [{"sku": sku, "qty": qty, "unit_price": "10.00"}]});
    (minute, tx)
}

fn decrement(id: &str, minute: i64, sku: &str, qty: &str, reference: &str) -> (i64, Value) {
    let movement = json!({"type": "inventory.movement", "id": id, "store": STORE, "occurred_at": at(minute),
        "business_day": DAY, "reason": "sale", "ref": reference, "lines": [{"sku": sku, "qty": qty}]});
    (minute, movement)
}

/// A day of 40 sales over 8 skus with decrements lagging 0–11 minutes (under the settle time),
/// one sku whose decrement is missing, one decremented twice, one decremented 40 minutes late,
/// then the day-close and a next-day record that moves event time past finalization.
fn recorded_day() -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for i in 0..40usize {
        let minute = i as i64 * 9;
        let sku = format!("S{}", i % 8);
        let qty = if i % 2 == 0 { "2" } else { "3" };
        let tx_id = format!("T{i:03}");
        events.push(sale(i, minute, &sku, qty));
        let negative = format!("-{qty}");
        let lag = (i as i64 * 7) % 12;
        match i {
            3 => {}
            7 => {
                events.push(decrement(&format!("M{i:03}a"), minute + lag, &sku, &negative, &tx_id));
                events.push(decrement(&format!("M{i:03}b"), minute + lag + 1, &sku, &negative, &tx_id));
            }
            5 => events.push(decrement(&format!("M{i:03}"), minute + 40, &sku, &negative, &tx_id)),
            _ => events.push(decrement(&format!("M{i:03}"), minute + lag, &sku, &negative, &tx_id)),
        }
    }
    events.push((
        12 * 60,
        json!({"type": "pos.day_close", "id": "CLOSE", "store": STORE, "business_day": DAY,
        "occurred_at": at(12 * 60), "transaction_count": 40, "net_sales": "1000.00", "tax": "0"}),
    ));
    events.push((
        13 * 60,
        json!({"type": "inventory.movement", "id": "NEXT", "store": STORE,
        "occurred_at": at(13 * 60), "business_day": "2026-11-28", "reason": "receipt",
        "lines": [{"sku": "S0", "qty": "10"}]}),
    ));
    events.sort_by_key(|(minute, _)| *minute);
    let subject = |record: &Value| {
        let family = if record["type"] == "inventory.movement" { "inventory" } else { "pos" };
        format!("retail.{family}.{STORE}")
    };
    events.into_iter().map(|(_, record)| (subject(&record), record)).collect()
}

/// Every alert published, by `Nats-Msg-Id`, once their count has stopped changing.
async fn settled_alerts(js: &Js) -> BTreeMap<String, Value> {
    let mut previous = u64::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(750)).await;
        let count = js.message_count("RETAIL_ALERTS").await;
        if count == previous && count > 0 {
            break;
        }
        previous = count;
    }
    let mut alerts = BTreeMap::new();
    for message in js.messages("RETAIL_ALERTS").await {
        let id = message.header("Nats-Msg-Id").expect("alerts carry Nats-Msg-Id").to_string();
        let body: Value = serde_json::from_slice(&message.payload).expect("alerts are JSON");
        assert!(alerts.insert(id.clone(), body).is_none(), "alert {id} published twice");
    }
    alerts
}

// Proves a full-speed replay into fresh state yields exactly the alerts of a paced run, and
// that those are the injected drift only: no alert from lag shorter than the settle time.
#[tokio::test(flavor = "multi_thread")]
async fn replay_at_full_speed_fires_the_same_alerts() {
    let recorded = recorded_day();

    let paced = {
        let nats = NatsServer::start();
        let tally = Tally::start(&nats.url(), CONFIG).await;
        let js = Js::connect(&nats.url()).await;
        for (subject, record) in &recorded {
            js.publish_json(subject, record).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        tally.wait_drained(&js, Duration::from_secs(30)).await;
        let alerts = settled_alerts(&js).await;
        drop(tally);
        alerts
    };

    let replayed = {
        let nats = NatsServer::start();
        let mut tally = Tally::builder(&nats.url()).toml(CONFIG).prepare();
        tally.setup_ok();
        let js = Js::connect(&nats.url()).await;
        for (subject, record) in &recorded {
            js.publish_json(subject, record).await;
        }
        tally.spawn_run().await;
        tally.wait_drained(&js, Duration::from_secs(30)).await;
        settled_alerts(&js).await
    };

    assert_eq!(paced, replayed, "a replay must fire the same alerts as the paced run");
    let final_alerts: BTreeMap<&str, &Value> =
        paced.values().filter(|a| a["state"] == "final").map(|a| (a["sku"].as_str().unwrap(), a)).collect();
    assert_eq!(final_alerts.keys().copied().collect::<Vec<_>>(), vec!["S3", "S7"], "final alerts: {paced:#?}");
    assert_eq!(final_alerts["S3"]["drift_units"], "3", "missing decrement of T003 (qty 3)");
    assert_eq!(final_alerts["S3"]["unmatched"], json!(["T003"]));
    assert_eq!(final_alerts["S7"]["drift_units"], "-3", "double decrement of T007 (qty 3)");
    let late_sku_alerts: Vec<&Value> = paced.values().filter(|a| a["sku"] == "S5").collect();
    let states: Vec<&str> = late_sku_alerts.iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["firing", "resolved"], "the 40-minute-late decrement fires, then resolves");
    let lagging: Vec<&Value> =
        paced.values().filter(|a| !["S3", "S5", "S7"].contains(&a["sku"].as_str().unwrap())).collect();
    assert!(lagging.is_empty(), "lag under the settle time must never alert: {lagging:#?}");
}
