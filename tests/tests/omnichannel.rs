//! Omnichannel fulfillment (docs/wire-format.md, "Order fulfillment"): against a real
//! nats-server and the real binary, `order.fulfillment` records on `P.orders.<store>` count as
//! expected units in drift, are shown apart in the alert and the day report, and follow the POS
//! rules for duplicates, conflicts and the DLQ; `tally setup` adds their subject to an input
//! stream an earlier version made.

use async_nats::jetstream::stream;
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};
use tally_tests::fixtures::{inventory_subject, line, pos_subject, tender, transaction, DAY};
use tally_tests::js::to_msgpack;
use tally_tests::{
    assert_dlq_entry, start_all, wait_for_messages, wait_until, Js, NatsServer, Tally, DLQ_STREAM, DRAIN_TIMEOUT,
};
use tally_traffic::{GenOptions, Traffic, WireMessage};

const STORE: &str = "0042";
const ALERTS_STREAM: &str = "RETAIL_ALERTS";

fn orders_subject(store: &str) -> String {
    format!("retail.orders.{store}")
}

/// An event time of the test day, UTC (the default store time zone).
fn at(hms: &str) -> String {
    format!("{DAY}T{hms}Z")
}

fn order(id: &str, kind: &str, hms: &str, lines: &[(&str, &str)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect();
    json!({"type": "order.fulfillment", "id": id, "store": STORE, "occurred_at": at(hms),
           "business_day": DAY, "fulfillment": kind, "lines": lines})
}

fn movement(id: &str, reason: &str, reference: &str, hms: &str, lines: &[(&str, &str)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect();
    json!({"type": "inventory.movement", "id": id, "store": STORE, "occurred_at": at(hms),
           "business_day": DAY, "reason": reason, "ref": reference, "lines": lines})
}

fn sale(id: &str, hms: &str, lines: Vec<Value>, total: &str) -> Value {
    let mut tx = transaction(id, STORE, DAY, lines, vec![tender("card", total)]);
    tx["occurred_at"] = json!(at(hms));
    tx
}

/// The latest revision of every alert, as `/v1/alerts` lists them, by sku.
async fn alerts_by_sku(tally: &Tally) -> std::collections::BTreeMap<String, Value> {
    let (status, body) = tally.http_get("/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    let alerts = body["alerts"].as_array().expect("an alert list").clone();
    alerts.into_iter().map(|a| (a["sku"].as_str().expect("a sku").to_string(), a)).collect()
}

// Proves POS sales and ship-from-store, pickup and return-to-store orders together are what the
// inventory movements must match: the skus whose movements match POS plus orders raise no
// alert, the one whose order decrement is missing fires with `expected_units_by_source`, the
// alert on the stream carries the same figures, and the day report shows the orders apart. A
// MessagePack order counts like a JSON one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_from_store_orders_are_expected_decrements_in_drift() {
    let (_nats, tally, js) = start_all("").await;
    let (pos, inv, orders) = (pos_subject("retail", STORE), inventory_subject("retail", STORE), orders_subject(STORE));

    js.publish_json(
        &pos,
        &sale("T1", "10:00:00", vec![line(1, "A", "2", "10.00"), line(2, "B", "1", "4.00")], "24.00"),
    )
    .await;
    js.publish_json(&orders, &order("O1", "ship_from_store", "10:01:00", &[("A", "3")])).await;
    js.publish_msgpack(&orders, &order("O2", "pickup_in_store", "10:02:00", &[("C", "2")])).await;
    // Signed like a POS return: the kind gives the direction, the sign is ignored.
    js.publish_json(&orders, &order("O3", "returned_to_store", "10:03:00", &[("A", "-1")])).await;
    js.publish_json(&orders, &order("O4", "ship_from_store", "10:04:00", &[("B", "2")])).await;
    js.publish_json(&inv, &movement("M1", "sale", "T1", "10:05:00", &[("A", "-2"), ("B", "-1")])).await;
    js.publish_json(&inv, &movement("M2", "sale", "O1", "10:05:00", &[("A", "-3")])).await;
    js.publish_json(&inv, &movement("M3", "sale", "O2", "10:05:00", &[("C", "-2")])).await;
    js.publish_json(&inv, &movement("M4", "return", "O3", "10:05:00", &[("A", "1")])).await;
    // Event time past the settle time (15 minutes by default) of every key.
    js.publish_json(&inv, &movement("NUDGE", "receipt", "none", "11:00:00", &[("Z", "1")])).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let alerts = alerts_by_sku(&tally).await;
    assert_eq!(alerts.keys().collect::<Vec<_>>(), ["B"], "only B drifts: {alerts:?}");
    let b = &alerts["B"];
    assert_eq!(b["state"], "firing", "{b}");
    assert_eq!(
        [&b["expected_units"], &b["recorded_units"], &b["drift_units"], &b["drift_value"]],
        [&json!("3"), &json!("1"), &json!("2"), &json!("8.00")],
        "{b}"
    );
    assert_eq!(b["expected_units_by_source"], json!({"pos": "1", "orders": "2"}), "{b}");
    assert_eq!(b["unmatched"], json!(["O4"]), "the order awaiting its decrement: {b}");

    let published = wait_for_messages(&js, ALERTS_STREAM, 1).await;
    let on_stream: Value = serde_json::from_slice(&published[0].payload).expect("a JSON alert");
    assert_eq!(&on_stream, b, "the stream carries what /v1/alerts lists");
    assert_eq!(published[0].header("Nats-Msg-Id"), Some("drift/0042/2026-11-27/B/1"));

    let day = tally.day(STORE, DAY).await;
    assert_eq!(
        day["orders"],
        json!({"count": 4,
               "units_by_fulfillment": {"ship_from_store": "5", "pickup_in_store": "2", "returned_to_store": "1"},
               "skus": [{"sku": "A", "units_by_fulfillment": {"ship_from_store": "3", "returned_to_store": "1"}},
                        {"sku": "B", "units_by_fulfillment": {"ship_from_store": "2"}},
                        {"sku": "C", "units_by_fulfillment": {"pickup_in_store": "2"}}]}),
        "{day}"
    );
    assert_eq!(
        day["drift"],
        json!([{"sku": "B", "expected_units": "3", "recorded_units": "1", "drift_units": "2", "state": "firing",
                "expected_units_by_source": {"pos": "1", "orders": "2"}}]),
        "{day}"
    );
    assert_eq!(
        (&day["pos"]["transactions"], &day["pos"]["net"]),
        (&json!(1), &json!("24.00")),
        "orders are no POS sale"
    );
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "nothing was refused");

    let (status, traced) = tally.http_get("/v1/trace/O4?store=0042").await;
    assert_eq!(status, 200, "{traced}");
    let o4 = &traced["records"][0];
    assert_eq!((&o4["type"], &o4["outcome"]), (&json!("order.fulfillment"), &json!("applied")), "{traced}");
    assert_eq!(o4["alerts"], json!([{"id": "drift/0042/2026-11-27/B", "revision": 1, "state": "firing"}]), "{traced}");
    let (_, traced) = tally.http_get("/v1/trace/O1?store=0042").await;
    assert_eq!(traced["records"][0]["movements"], json!([{"sku": "A", "movement": "M2"}]), "{traced}");
}

// Proves dedupe, conflicts and the DLQ work for orders as for POS records: a re-sent order
// (spelled otherwise, or as MessagePack) is counted and skipped, the same id with another kind
// is dead-lettered verbatim as `conflict`, an unknown kind and a zero quantity as
// `schema`, an order on the POS subject as `schema`; none changes the units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_conflicting_and_bad_orders() {
    let (_nats, tally, js) = start_all("").await;
    let orders = orders_subject(STORE);
    let first = order("O1", "ship_from_store", "10:00:00", &[("A", "2")]);
    js.publish_json(&orders, &first).await;
    let mut respelled = first.clone();
    respelled["lines"][0]["qty"] = json!("2.00");
    js.publish_json(&orders, &respelled).await;
    js.publish(&orders, to_msgpack(&first, false), &[("Content-Type", "application/msgpack")]).await;

    let mut conflicting = first.clone();
    conflicting["fulfillment"] = json!("pickup_in_store");
    let conflicting_bytes = serde_json::to_vec(&conflicting).expect("JSON");
    let conflict_seq = js.publish(&orders, conflicting_bytes.clone(), &[]).await;
    let unknown_bytes = serde_json::to_vec(&order("O2", "drone_drop", "10:01:00", &[("A", "1")])).expect("JSON");
    let unknown_seq = js.publish(&orders, unknown_bytes.clone(), &[]).await;
    let zero_bytes = serde_json::to_vec(&order("O3", "ship_from_store", "10:02:00", &[("A", "0")])).expect("JSON");
    let zero_seq = js.publish(&orders, zero_bytes.clone(), &[]).await;
    let pos = pos_subject("retail", STORE);
    let misplaced_bytes = serde_json::to_vec(&order("O4", "ship_from_store", "10:03:00", &[("A", "1")])).expect("JSON");
    let misplaced_seq = js.publish(&pos, misplaced_bytes.clone(), &[]).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 4).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(dlq.len(), 4, "four dead letters");
    assert_dlq_entry(&dlq, "retail", "conflict", &orders, conflict_seq, &conflicting_bytes);
    let unknown = assert_dlq_entry(&dlq, "retail", "schema", &orders, unknown_seq, &unknown_bytes);
    let detail = unknown.header("Tally-Error-Detail").unwrap_or_default();
    assert!(detail.contains("drone_drop") && detail.contains("ship_from_store"), "{detail}");
    assert_dlq_entry(&dlq, "retail", "schema", &orders, zero_seq, &zero_bytes);
    assert_dlq_entry(&dlq, "retail", "schema", &pos, misplaced_seq, &misplaced_bytes);

    let day = tally.day(STORE, DAY).await;
    assert_eq!((&day["duplicates"], &day["conflicts"]), (&json!(2), &json!(1)), "{day}");
    assert_eq!(
        day["orders"],
        json!({"count": 1, "units_by_fulfillment": {"ship_from_store": "2"},
               "skus": [{"sku": "A", "units_by_fulfillment": {"ship_from_store": "2"}}]}),
        "{day}"
    );

    // Events are counted once their batch is committed; the series is there from the start.
    let orders_accepted = |metrics: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("tally_events_total") && l.contains("source=\"orders\"") && l.contains("\"accepted\"")
            })
            .map(str::to_string)
    };
    let counted = wait_until(DRAIN_TIMEOUT, || async {
        orders_accepted(&tally.http_get_text("/metrics").await.1).is_some_and(|l| l.ends_with(" 1"))
    })
    .await;
    let (_, metrics) = tally.http_get_text("/metrics").await;
    assert!(counted, "one accepted order: {:?}", orders_accepted(&metrics));
}

// Proves `tally setup` adds the orders subject to a RETAIL_IN that an earlier version's setup
// made (pos and inventory only), keeping its messages, and that tally then reads orders from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_adds_the_orders_subject_to_an_earlier_input_stream() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let earlier = stream::Config {
        name: "RETAIL_IN".into(),
        subjects: vec!["retail.pos.*".into(), "retail.inventory.*".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    };
    js.context.create_stream(earlier).await.expect("the stream of an earlier version");
    let pos = pos_subject("retail", STORE);
    js.publish_json(&pos, &sale("T1", "10:00:00", vec![line(1, "A", "1", "3.00")], "3.00")).await;
    let before = js.stream_info("RETAIL_IN").await;

    let tally = Tally::start(&nats.url(), "").await;
    let after = js.stream_info("RETAIL_IN").await;
    assert_eq!(after.created, before.created, "updated in place, not re-created");
    assert_eq!(after.config.subjects, ["retail.pos.*", "retail.inventory.*", "retail.orders.*"]);
    assert_eq!(after.state.messages, 1, "its messages are kept");

    js.publish_json(&orders_subject(STORE), &order("O1", "ship_from_store", "10:01:00", &[("A", "2")])).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let read = wait_until(DRAIN_TIMEOUT, || async { tally.day(STORE, DAY).await["orders"]["count"] == 1 }).await;
    assert!(read, "the order was not read: {}", tally.day(STORE, DAY).await);
    assert_eq!(tally.day(STORE, DAY).await["pos"]["transactions"], 1);
}

/// Generated traffic of a small chain with online orders and no injected drift or bad records:
/// every sale and every order is matched by its movement, after a lag of up to 10 minutes.
fn chain_with_orders() -> (Vec<WireMessage>, u64) {
    let options = GenOptions {
        stores: 3,
        skus_per_store: 300,
        seed: 17,
        drift_share: 0.0,
        malformed_share: 0.0,
        order_share: 0.3,
        ..GenOptions::default()
    };
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 15, 0, 0).single().expect("a valid instant");
    let mut traffic = Traffic::new(options, start);
    let mut out = Vec::new();
    for k in 0..600 {
        let at = start + Duration::seconds(k * 6);
        out.extend(traffic.due(at));
        out.extend(traffic.next_basket(at));
    }
    out.extend(traffic.drain_all());
    (out, traffic.stats().orders)
}

async fn publish_all(js: &Js, messages: &[WireMessage]) {
    for m in messages {
        js.publish(&m.subject, m.payload.clone(), &[("Content-Type", m.content_type)]).await;
    }
}

/// Every (store, business_day) the messages name.
fn store_days(messages: &[WireMessage]) -> std::collections::BTreeSet<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let record: Value = if m.is_msgpack() {
                rmp_serde::from_slice(&m.payload).expect("a MessagePack record")
            } else {
                serde_json::from_slice(&m.payload).expect("a JSON record")
            };
            (
                record["store"].as_str().unwrap_or_default().into(),
                record["business_day"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

/// The drift rows of every store-day, and the alerts whose latest revision is still active.
async fn drift_left(tally: &Tally, days: &std::collections::BTreeSet<(String, String)>) -> (Vec<Value>, Vec<Value>) {
    let mut rows = Vec::new();
    for (store, day) in days {
        rows.extend(tally.day(store, day).await["drift"].as_array().expect("a drift list").iter().cloned());
    }
    let (_, firing) = tally.http_get("/v1/alerts?state=firing").await;
    (rows, firing["alerts"].as_array().expect("an alert list").clone())
}

// Proves, on a generated chain whose inventory matches POS and orders exactly, that once every
// movement is in no key drifts and no alert is left firing (busy keys may fire while their
// decrements lag, and resolve), and that the same traffic without its order records (their
// movements kept) ends with drift and firing alerts: the orders are what keeps those movements
// from looking like drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_orders_leave_no_false_drift() {
    let (messages, orders) = chain_with_orders();
    assert!(orders > 100, "{orders} orders generated");
    let days = store_days(&messages);

    let (_nats, tally, js) = start_all("").await;
    publish_all(&js, &messages).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (rows, firing) = drift_left(&tally, &days).await;
    assert!(rows.is_empty() && firing.is_empty(), "no drift with orders counted: {rows:#?} {firing:#?}");
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "every record was accepted");

    let (_nats, tally, js) = start_all("").await;
    let without_orders: Vec<WireMessage> =
        messages.into_iter().filter(|m| !m.subject.starts_with("retail.orders.")).collect();
    publish_all(&js, &without_orders).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (rows, firing) = drift_left(&tally, &days).await;
    assert!(rows.len() > 50, "without the orders their movements must look like drift: {} keys", rows.len());
    assert!(!firing.is_empty(), "and fire");
    assert!(firing.iter().all(|a| a.get("expected_units_by_source").is_none()), "{firing:?}");
}
