//! Bad input at scale (issue 5, item 3), seen from outside: oversized messages, absurd values,
//! huge records and deep nesting go to the DLQ with their reason (docs/wire-format.md, "The dead-letter queue"), and none of them
//! crashes tally or stalls its consumer: valid records published after them still count, exactly.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_tests::fixtures::{example_transaction, line, pos_subject, tender, transaction, DAY};
use tally_tests::js::to_msgpack;
use tally_tests::{
    assert_dlq_entry, wait_for_messages, DayTotals, Js, Model, NatsServer, StoredMessage, Tally, DLQ_STREAM,
    DRAIN_TIMEOUT,
};

/// Decimal's largest value, 2^96 − 1: it parses exactly, but twice it does not fit.
const DECIMAL_MAX: &str = "79228162514264337593543950335";

/// Publishes the valid `record`, applies it to `model`.
async fn publish_valid(js: &Js, model: &mut Model, subject: &str, record: &Value) {
    js.publish_json(subject, record).await;
    model.apply(record);
}

/// Waits for `expected` DLQ entries and the drained consumer; then checks each entry, that the
/// DLQ holds nothing else, that the day's totals equal the model's, and that tally still runs.
async fn assert_outcome(
    tally: &mut Tally,
    js: &Js,
    model: &Model,
    expected: &[(&str, String, Vec<u8>, u64)],
) -> Vec<StoredMessage> {
    let dlq = wait_for_messages(js, DLQ_STREAM, expected.len() as u64).await;
    tally.wait_drained(js, DRAIN_TIMEOUT).await;
    for (reason, subject, payload, seq) in expected {
        assert_dlq_entry(&dlq, "retail", reason, subject, *seq, payload);
    }
    assert_eq!(dlq.len(), expected.len(), "only the bad records are dead-lettered");
    let day = tally.day("0042", DAY).await;
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY), "valid records count exactly; day: {day}");
    assert!(tally.is_running(), "tally must survive bad input\n{}", tally.logs());
    let (status, body) = tally.http_get("/readyz").await;
    assert_eq!(status, 200, "tally must stay ready after bad input: {body}");
    dlq
}

fn detail_of(dlq: &[StoredMessage], seq: u64) -> &str {
    let seq = seq.to_string();
    dlq.iter()
        .find(|m| m.header("Tally-Source-Sequence") == Some(seq.as_str()))
        .and_then(|m| m.header("Tally-Error-Detail"))
        .unwrap_or_default()
}

// Proves: with input.max_message_bytes = 4096, an oversized message is `too_large`, and
// absurd decimals (10^30 as a string, a JSON number and a MessagePack float; a qty × unit_price
// beyond Decimal's range) are `decimal`; valid records before and after still count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_absurd_values_go_to_the_dlq() {
    let nats = NatsServer::start();
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_message_bytes = 4096\n").await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();
    let mut expected: Vec<(&str, String, Vec<u8>, u64)> = Vec::new();

    publish_valid(&js, &mut model, &pos, &example_transaction("T-1", "0042", DAY)).await;

    let mut oversized = example_transaction("T-big", "0042", DAY);
    oversized["padding"] = json!("x".repeat(4096));
    let huge_qty = |qty: Value| {
        transaction(
            "T-qty",
            "0042",
            DAY,
            vec![json!({"line": 1, "sku": "100234", "qty": qty, "unit_price": "1.00"})],
            vec![],
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too_large", serde_json::to_vec(&oversized).expect("encodes")),
        ("decimal", serde_json::to_vec(&huge_qty(json!("1000000000000000000000000000000"))).expect("encodes")),
        ("decimal", serde_json::to_vec(&huge_qty(json!("1e30"))).expect("encodes")),
        // A JSON number literal, written by hand so that no float rounds it on the way.
        ("decimal", {
            let text = serde_json::to_string(&huge_qty(json!("QTY"))).expect("encodes");
            text.replace("\"QTY\"", "1000000000000000000000000000000").into_bytes()
        }),
        ("decimal", to_msgpack(&huge_qty(json!(1e30)), false)),
        // Each value fits a Decimal, their product does not: refused rather than crashing
        // tally on Decimal's overflow at every restart.
        ("decimal", {
            let tx = transaction("T-gross", "0042", DAY, vec![line(1, "100234", "2", DECIMAL_MAX)], vec![]);
            serde_json::to_vec(&tx).expect("encodes")
        }),
    ];
    for (reason, payload) in cases {
        let seq = js.publish(&pos, payload.clone(), &[]).await;
        expected.push((reason, pos.clone(), payload, seq));
    }
    publish_valid(&js, &mut model, &pos, &example_transaction("T-2", "0042", DAY)).await;

    let dlq = assert_outcome(&mut tally, &js, &model, &expected).await;
    let oversized_detail = detail_of(&dlq, expected[0].3);
    assert!(oversized_detail.contains("4096"), "the detail names the limit: {oversized_detail:?}");
}

// Proves: with a payload limit large enough to let them in, 10 000 lines (over input.max_lines,
// 1000) are `too_large`, 100 000 nested brackets (JSON and MessagePack) are `decode`, and a
// 1 MiB string in an unknown field is ignored as the contract says; none of them crashes or
// stalls tally, and it works through them in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_records_and_deep_nesting_do_not_stall_the_consumer() {
    let nats = NatsServer::start_with_config("max_payload: 8MB\n");
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_message_bytes = 4194304\n").await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();
    let mut expected: Vec<(&str, String, Vec<u8>, u64)> = Vec::new();

    publish_valid(&js, &mut model, &pos, &example_transaction("T-1", "0042", DAY)).await;
    let started = Instant::now();

    let lines: Vec<Value> = (1..=10_000).map(|n| line(n, &format!("SKU-{n}"), "1", "1.00")).collect();
    let many_lines = transaction("T-lines", "0042", DAY, lines, vec![tender("card", "10000.00")]);
    let deep_json_object = format!(r#"{{"type": "pos.transaction", "id": "T-deep", "x": {}"#, "[".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too_large", serde_json::to_vec(&many_lines).expect("encodes")),
        ("decode", "[".repeat(100_000).into_bytes()),
        ("decode", deep_json_object.into_bytes()),
        // 0x91: a MessagePack array of one element, 100 000 times.
        ("decode", {
            let mut bytes = vec![0x81, 0xa1, b'x'];
            bytes.extend(std::iter::repeat_n(0x91u8, 100_000));
            bytes.push(0xc0);
            bytes
        }),
    ];
    for (reason, payload) in cases {
        let seq = js.publish(&pos, payload.clone(), &[]).await;
        expected.push((reason, pos.clone(), payload, seq));
    }

    // Unknown fields are ignored (docs/wire-format.md, "Encoding of input"), however large.
    let mut with_note = example_transaction("T-note", "0042", DAY);
    with_note["note"] = json!("n".repeat(1 << 20));
    publish_valid(&js, &mut model, &pos, &with_note).await;
    publish_valid(&js, &mut model, &pos, &example_transaction("T-2", "0042", DAY)).await;

    let dlq = assert_outcome(&mut tally, &js, &model, &expected).await;
    let lines_detail = detail_of(&dlq, expected[0].3);
    assert!(
        lines_detail.contains("lines") && lines_detail.contains("1000"),
        "the detail names the line limit: {lines_detail:?}"
    );
    eprintln!("huge records: worked through in {:?}", started.elapsed());
}

// Proves: a 1 MiB string where a short one belongs (the sku, the id) neither crashes nor stalls
// tally: such a record is either counted or dead-lettered, and valid records after it count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_strings_in_keys_do_not_crash_or_stall() {
    let nats = NatsServer::start_with_config("max_payload: 8MB\n");
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_message_bytes = 4194304\n").await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();

    publish_valid(&js, &mut model, &pos, &example_transaction("T-1", "0042", DAY)).await;
    let long = "k".repeat(1 << 20);
    let long_sku = transaction("T-sku", "0042", DAY, vec![line(1, &long, "1", "2.50")], vec![]);
    let long_id = example_transaction(&long, "0042", DAY);
    let long_sku_seq = js.publish_json(&pos, &long_sku).await;
    let long_id_seq = js.publish_json(&pos, &long_id).await;
    publish_valid(&js, &mut model, &pos, &example_transaction("T-2", "0042", DAY)).await;

    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert!(tally.is_running(), "tally must survive megabyte keys\n{}", tally.logs());
    let dlq = if js.message_count(DLQ_STREAM).await > 0 { js.messages(DLQ_STREAM).await } else { Vec::new() };
    // Whatever tally decided for each, the day must agree with it exactly.
    for (seq, record) in [(long_sku_seq, &long_sku), (long_id_seq, &long_id)] {
        let dead = dlq.iter().any(|m| m.header("Tally-Source-Sequence") == Some(seq.to_string().as_str()));
        eprintln!("megabyte key record #{seq}: {}", if dead { "dead-lettered" } else { "counted" });
        if !dead {
            model.apply(record);
        }
    }
    let day = tally.day("0042", DAY).await;
    let mut got = DayTotals::from_http(&day);
    let mut want = model.day("0042", DAY);
    // The day report lists skus; compare everything but the megabyte one's name.
    got.skus.retain(|sku, _| sku.len() < 100);
    want.skus.retain(|sku, _| sku.len() < 100);
    assert_eq!(got, want, "the day agrees with what tally accepted");
}

/// One bad record of kind `k` (0..11) with a known reason; `n` makes its id unique.
fn bad_record(k: u64, n: u64, limit_bytes: usize) -> (&'static str, Vec<u8>) {
    let id = format!("B-{n}");
    let json = |v: &Value| serde_json::to_vec(v).expect("encodes");
    let mut tx = example_transaction(&id, "0042", DAY);
    match k {
        0 => ("decode", json(&tx)[..40].to_vec()),
        1 => ("decode", vec![0xc1, 0x00, (n % 256) as u8]),
        2 => {
            tx.as_object_mut().expect("object").remove("id");
            ("schema", json(&tx))
        }
        3 => {
            tx["lines"][0]["qty"] = json!("two");
            ("decimal", json(&tx))
        }
        4 => {
            tx["lines"][0]["qty"] = json!("1e30");
            ("decimal", json(&tx))
        }
        5 => {
            tx["lines"][0]["unit_price"] = json!(DECIMAL_MAX);
            ("decimal", json(&tx))
        }
        6 => {
            tx["occurred_at"] = json!("yesterday");
            ("timestamp", json(&tx))
        }
        7 => {
            tx["type"] = json!("pos.refund");
            ("unknown_type", json(&tx))
        }
        8 => ("store_mismatch", json(&example_transaction(&id, "0043", DAY))),
        9 => {
            tx["padding"] = json!("p".repeat(limit_bytes));
            ("too_large", json(&tx))
        }
        _ => {
            tx["lines"] = Value::Array((0..1001).map(|i| line(i, "100234", "1", "1.00")).collect());
            ("too_large", to_msgpack(&tx, false))
        }
    }
}

// Proves: a flood of 3 000 bad records of every kind, interleaved with 300 valid ones, is all
// dead-lettered with the right reasons while every valid record counts exactly, within the
// drain timeout (the throughput is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_input_is_dead_lettered_while_valid_records_count() {
    const LIMIT_BYTES: usize = 64 * 1024;
    let nats = NatsServer::start();
    let mut tally = Tally::start(&nats.url(), &format!("[input]\nmax_message_bytes = {LIMIT_BYTES}\n")).await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();
    let mut expected: Vec<(&str, String, Vec<u8>, u64)> = Vec::new();

    let started = Instant::now();
    for n in 0..3_300u64 {
        if n % 11 == 10 {
            let tx = example_transaction(&format!("V-{n}"), "0042", DAY);
            publish_valid(&js, &mut model, &pos, &tx).await;
        } else {
            let (reason, payload) = bad_record(n % 11, n, LIMIT_BYTES);
            let seq = js.publish(&pos, payload.clone(), &[]).await;
            expected.push((reason, pos.clone(), payload, seq));
        }
    }
    let published = started.elapsed();
    let dlq = wait_for_messages(&js, DLQ_STREAM, expected.len() as u64).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT + Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    for (reason, subject, payload, seq) in &expected {
        assert_dlq_entry(&dlq, "retail", reason, subject, *seq, payload);
    }
    assert_eq!(dlq.len(), expected.len(), "only the bad records are dead-lettered");
    let day = tally.day("0042", DAY).await;
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY), "the valid records count exactly");
    assert!(tally.is_running(), "tally must survive the flood\n{}", tally.logs());
    eprintln!(
        "flood: 3300 records ({} bad) published in {published:?}, all processed in {elapsed:?} ({:.0} records/s)",
        expected.len(),
        3300.0 / elapsed.as_secs_f64()
    );
}

// Proves: a rejected input just under nats-server's max_payload, which cannot be republished
// verbatim with the DLQ headers added, does not stall the outputs that come after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_at_max_payload_does_not_stall_outputs() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_message_bytes = 1048576\n").await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();

    // An unknown type, padded to 100 bytes under the server's limit: it fits as an input,
    // and its DLQ copy (same payload plus five Tally-* headers) does not.
    let mut bad = example_transaction("T-edge", "0042", DAY);
    bad["type"] = json!("pos.refund");
    let base = serde_json::to_vec(&bad).expect("encodes").len();
    bad["padding"] = json!("p".repeat(65536 - 100 - base - 14));
    let bad = serde_json::to_vec(&bad).expect("encodes");
    let bad_seq = js.publish(&pos, bad.clone(), &[]).await;
    // Then an ordinary rejection, whose DLQ entry must still arrive, and a valid record.
    let mut later = example_transaction("T-later", "0042", DAY);
    later["type"] = json!("pos.refund");
    let later_bytes = serde_json::to_vec(&later).expect("encodes");
    let later_seq = js.publish(&pos, later_bytes.clone(), &[]).await;
    publish_valid(&js, &mut model, &pos, &example_transaction("T-1", "0042", DAY)).await;

    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let dlq = wait_for_messages(&js, DLQ_STREAM, 1).await;
    assert_dlq_entry(&dlq, "retail", "unknown_type", &pos, later_seq, &later_bytes);
    let edge = dlq
        .iter()
        .find(|m| m.header("Tally-Source-Sequence") == Some(bad_seq.to_string().as_str()))
        .expect("the max_payload record is dead-lettered too, truncated to fit");
    assert_eq!(edge.header("Tally-Error"), Some("unknown_type"));
    assert_eq!(edge.header("Tally-Payload-Truncated"), Some(bad.len().to_string().as_str()));
    assert!(bad.starts_with(&edge.payload), "the copy keeps the first bytes of the input");
    let day = tally.day("0042", DAY).await;
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY));
    assert!(tally.is_running(), "{}", tally.logs());
}
