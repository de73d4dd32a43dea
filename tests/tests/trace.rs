//! Traceability (docs/http-api.md, "Trace a record"; docs/wire-format.md, "Trace context"):
//! a record published with a W3C `traceparent` is traced end to end by `GET /v1/trace/<id>`
//! and by `tally trace` offline, and its trace context reaches its log lines, its DLQ copies
//! and the alert revisions it causes.

use std::process::Command;

use serde_json::{json, Value};
use tally_tests::fixtures::{inventory_subject, line, pos_subject, tender, transaction, DAY};
use tally_tests::{start_all, tally_bin, wait_for_messages, wait_until, Js, DLQ_STREAM, DRAIN_TIMEOUT};

const STORE: &str = "0042";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PARENT_M1: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn sale(id: &str, qty: &str, at: &str) -> Value {
    let mut tx = transaction(id, STORE, DAY, vec![line(1, "A", qty, "19.99")], vec![tender("card", "1.00")]);
    tx["occurred_at"] = json!(format!("{DAY}T{at}Z"));
    tx
}

fn movement(id: &str, reason: &str, reference: Option<&str>, sku: &str, qty: &str, at: &str) -> Value {
    let mut movement = json!({"type": "inventory.movement", "id": id, "store": STORE,
                              "occurred_at": format!("{DAY}T{at}Z"), "business_day": DAY,
                              "reason": reason, "lines": [{"sku": sku, "qty": qty}]});
    if let Some(reference) = reference {
        movement["ref"] = json!(reference);
    }
    movement
}

async fn publish(js: &Js, subject: &str, record: &Value, headers: &[(&str, &str)]) -> u64 {
    js.publish(subject, serde_json::to_vec(record).expect("JSON encodes"), headers).await
}

// Proves a sale is traced end to end with the stream sequences it arrived at: its duplicate
// and conflicting copies, the alert revision that listed it, the movement that matched it and
// the interim posting that first carried it; that `tally trace` prints the same offline while
// tally runs; that a dead-lettered record is traced with its reason; and that the trace
// context reaches log lines, the DLQ copy and the alert revision the traced movement caused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_traced_from_arrival_to_its_alert_movement_and_posting() {
    let (_nats, tally, js) = start_all("[erp]\ninterval = \"1s\"\n").await;
    let pos = pos_subject("retail", STORE);
    let inventory = inventory_subject("retail", STORE);

    let t1 = sale("T1", "3", "10:00:00");
    let arrived = publish(&js, &pos, &t1, &[("traceparent", PARENT), ("Nats-Msg-Id", "pos-7/T1")]).await;
    let duplicate = publish(&js, &pos, &t1, &[]).await;
    let conflict = publish(&js, &pos, &sale("T1", "4", "10:00:00"), &[]).await;
    let mut bad = sale("BAD1", "1", "10:01:00");
    bad["lines"][0]["qty"] = json!("two");
    publish(&js, &pos, &bad, &[("traceparent", PARENT)]).await;
    // Past T1's settle time (15 minutes of event time): the alert fires listing T1.
    publish(&js, &inventory, &movement("N1", "receipt", None, "Z", "1", "10:16:00"), &[]).await;
    let alerts = wait_for_messages(&js, "RETAIL_ALERTS", 1).await;
    assert_eq!(alerts[0].header("traceparent"), None, "fired by event time passing, not by a traced record");
    publish(&js, &inventory, &movement("M1", "sale", Some("T1"), "A", "-3", "10:20:00"), &[("traceparent", PARENT_M1)])
        .await;
    let alerts = wait_for_messages(&js, "RETAIL_ALERTS", 2).await;
    assert_eq!(alerts[1].header("traceparent"), Some(PARENT_M1), "M1 resolved the alert");
    let postings = wait_for_messages(&js, "RETAIL_ERP", 1).await;
    let first_posting: Value = serde_json::from_slice(&postings[0].payload).unwrap();

    let (status, body) = tally.http_get("/v1/trace/T1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!("T1"));
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{body}");
    let trace = &records[0];
    assert_eq!(trace["store"], json!(STORE));
    assert_eq!(trace["business_day"], json!(DAY));
    assert_eq!(trace["outcome"], json!("applied"));
    assert_eq!(trace["arrived"]["stream_sequence"], json!(arrived));
    assert_eq!(trace["traceparent"], json!(PARENT));
    assert_eq!(trace["msg_id"], json!("pos-7/T1"));
    assert_eq!(trace["duplicates"], json!({"count": 1, "last_stream_sequence": duplicate}));
    assert_eq!(trace["dead_lettered"][0]["reason"], json!("conflict"));
    assert_eq!(trace["dead_lettered"][0]["stream_sequence"], json!(conflict));
    assert_eq!(trace["movements"], json!([{"sku": "A", "movement": "M1"}]));
    assert_eq!(trace["alerts"], json!([{"id": format!("drift/{STORE}/{DAY}/A"), "revision": 1, "state": "firing"}]));
    assert_eq!(trace["postings"][0]["id"], first_posting["id"], "T1 was in the first posting");

    let offline = Command::new(tally_bin())
        .args(["trace", "T1", "--state"])
        .arg(tally.state_dir())
        .output()
        .expect("tally trace runs");
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    let printed: Value = serde_json::from_slice(&offline.stdout).expect("tally trace prints JSON");
    assert_eq!(printed, body, "offline and online traces agree");

    let (status, bad_trace) = tally.http_get("/v1/trace/BAD1").await;
    assert_eq!(status, 200, "{bad_trace}");
    assert_eq!(bad_trace["records"][0]["outcome"], json!("dead_lettered"));
    assert_eq!(bad_trace["records"][0]["dead_lettered"][0]["reason"], json!("decimal"));
    let dlq = wait_for_messages(&js, DLQ_STREAM, 2).await;
    let bad_copy = dlq.iter().find(|m| m.header("Tally-Error") == Some("decimal")).expect("BAD1 dead-lettered");
    assert_eq!(bad_copy.header("traceparent"), Some(PARENT));
    let logged = wait_until(DRAIN_TIMEOUT, || async { tally.full_logs().contains(PARENT) }).await;
    assert!(logged, "the dead-letter log line names the traceparent:\n{}", tally.logs());

    let (status, missing) = tally.http_get("/v1/trace/NEVER-SENT").await;
    assert_eq!(status, 404, "{missing}");
    let (status, elsewhere) = tally.http_get("/v1/trace/T1?store=0043").await;
    assert_eq!(status, 404, "{elsewhere}");
}
