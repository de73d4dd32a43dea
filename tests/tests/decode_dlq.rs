//! Decoding (docs/wire-format.md, "Encoding of input" and "Input records") and the dead-letter queue (docs/wire-format.md, "The dead-letter queue"), seen from outside.

use serde_json::json;
use tally_tests::fixtures::{self, example_transaction, inventory_subject, movement, pos_subject, DAY};
use tally_tests::js::to_msgpack;
use tally_tests::model::d;
use tally_tests::{assert_dlq_entry, start_all, wait_for_messages, DayTotals, Model, DLQ_STREAM, DRAIN_TIMEOUT};

// Proves: every rejection reason lands on <prefix>.dlq.<reason>, verbatim, with all four Tally-*
// headers and Nats-Msg-Id = dlq/<source seq>, while valid records around them still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_reason_goes_to_the_dlq_verbatim_with_headers() {
    let (_nats, tally, js) = start_all("[input]\nmax_message_bytes = 4096\n").await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();
    // (reason, subject, payload, source seq)
    let mut rejected: Vec<(&str, String, Vec<u8>, u64)> = Vec::new();

    let valid = example_transaction("T-1", "0042", DAY);
    js.publish_json(&pos, &valid).await;
    model.apply(&valid);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("decode", br#"{"type": "pos.transaction", "id": "#.to_vec()),
        // 0xc1 is never used in MessagePack, so this is neither JSON nor MessagePack.
        ("decode", vec![0xc1, 0x01, 0x02]),
        ("schema", {
            let mut tx = example_transaction("unused", "0042", DAY);
            tx.as_object_mut().expect("object").remove("id");
            serde_json::to_vec(&tx).expect("encodes")
        }),
        ("decimal", {
            let mut tx = example_transaction("T-dec", "0042", DAY);
            tx["lines"][0]["unit_price"] = json!("19.9.9");
            serde_json::to_vec(&tx).expect("encodes")
        }),
        ("timestamp", {
            let mut tx = example_transaction("T-ts", "0042", DAY);
            tx["occurred_at"] = json!("yesterday at noon");
            serde_json::to_vec(&tx).expect("encodes")
        }),
        ("unknown_type", {
            let mut tx = example_transaction("T-type", "0042", DAY);
            tx["type"] = json!("pos.refund");
            serde_json::to_vec(&tx).expect("encodes")
        }),
        ("store_mismatch", serde_json::to_vec(&example_transaction("T-store", "0043", DAY)).expect("encodes")),
        ("conflict", {
            let mut tx = example_transaction("T-1", "0042", DAY);
            tx["lines"][0]["qty"] = json!("3");
            serde_json::to_vec(&tx).expect("encodes")
        }),
        ("too_large", {
            let mut tx = example_transaction("T-big", "0042", DAY);
            tx["padding"] = json!("x".repeat(5000));
            serde_json::to_vec(&tx).expect("encodes")
        }),
    ];
    for (reason, payload) in cases {
        let seq = js.publish(&pos, payload.clone(), &[]).await;
        rejected.push((reason, pos.clone(), payload, seq));
    }
    let conflict = {
        let mut tx = example_transaction("T-1", "0042", DAY);
        tx["lines"][0]["qty"] = json!("3");
        tx
    };
    model.apply(&conflict);

    let valid2 = example_transaction("T-2", "0042", DAY);
    js.publish_json(&pos, &valid2).await;
    model.apply(&valid2);

    let dlq = wait_for_messages(&js, DLQ_STREAM, rejected.len() as u64).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    for (reason, subject, payload, seq) in &rejected {
        assert_dlq_entry(&dlq, "retail", reason, subject, *seq, payload);
    }
    assert_eq!(dlq.len(), rejected.len(), "only the rejected records are dead-lettered");

    let day = tally.day("0042", DAY).await;
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY), "the valid records still count; day: {day}");
    let (status, body) = tally.http_get(&format!("/v1/stores/0043/days/{DAY}")).await;
    assert_eq!(status, 404, "a record with a mismatched store must not create that store's day: {body}");
}

// Proves: inventory movements are validated like transactions and rejected the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_rejections_go_to_the_dlq_too() {
    let (_nats, tally, js) = start_all("").await;
    let inv = inventory_subject("retail", "0042");

    let good = movement("M-1", "0042", DAY, "receipt", &[("100234", "300")]);
    js.publish_json(&inv, &good).await;
    let bad_qty = serde_json::to_vec(&movement("M-2", "0042", DAY, "sale", &[("100234", "two")])).expect("encodes");
    let bad_qty_seq = js.publish(&inv, bad_qty.clone(), &[]).await;
    let wrong_store = serde_json::to_vec(&movement("M-3", "0099", DAY, "sale", &[("100234", "-1")])).expect("encodes");
    let wrong_store_seq = js.publish(&inv, wrong_store.clone(), &[]).await;
    let mut no_lines = movement("M-4", "0042", DAY, "sale", &[]);
    no_lines.as_object_mut().expect("object").remove("lines");
    no_lines.as_object_mut().expect("object").remove("reason");
    let no_lines = serde_json::to_vec(&no_lines).expect("encodes");
    let no_lines_seq = js.publish(&inv, no_lines.clone(), &[]).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 3).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_dlq_entry(&dlq, "retail", "decimal", &inv, bad_qty_seq, &bad_qty);
    assert_dlq_entry(&dlq, "retail", "store_mismatch", &inv, wrong_store_seq, &wrong_store);
    assert_dlq_entry(&dlq, "retail", "schema", &inv, no_lines_seq, &no_lines);

    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals.inventory.get("receipt"), Some(&d("300")));
    assert_eq!(totals.inventory.len(), 1, "only the valid movement counts: {totals:?}");
}

// Proves: a timestamp without an offset is not RFC 3339 per the contract and is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_without_offset_is_rejected() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    let mut tx = example_transaction("T-naive", "0042", DAY);
    tx["occurred_at"] = json!("2026-11-27T10:15:03");
    let payload = serde_json::to_vec(&tx).expect("encodes");
    let seq = js.publish(&pos, payload.clone(), &[]).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 1).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_dlq_entry(&dlq, "retail", "timestamp", &pos, seq, &payload);
}

// Proves: a record with more lines than input.max_lines is rejected as too_large, not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_lines_than_max_lines_is_too_large() {
    let (_nats, tally, js) = start_all("[input]\nmax_lines = 3\n").await;
    let pos = pos_subject("retail", "0042");
    let lines = (1..=4).map(|n| fixtures::line(n, "100234", "1", "1.00")).collect();
    let tx = fixtures::transaction("T-many", "0042", DAY, lines, vec![fixtures::tender("cash", "4.00")]);
    let payload = serde_json::to_vec(&tx).expect("encodes");
    let seq = js.publish(&pos, payload.clone(), &[]).await;
    let ok = fixtures::transaction("T-few", "0042", DAY, vec![fixtures::line(1, "100234", "3", "1.00")], vec![]);
    js.publish_json(&pos, &ok).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 1).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_dlq_entry(&dlq, "retail", "too_large", &pos, seq, &payload);
    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals.transactions, 1);
    assert_eq!(totals.gross, d("3.00"));
}

// Proves: JSON numbers are read exactly from their text, never through f64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_numbers_are_read_exactly() {
    let (_nats, tally, js) = start_all("").await;
    // Through f64, 3 × 0.1 is 0.30000000000000004 and 1.0000000000000001 is 1.
    let text = r#"{"type": "pos.transaction", "id": "T-num", "store": "0042",
        "occurred_at": "2026-11-27T12:00:00Z", "business_day": "2026-11-27",
        "lines": [{"line": 1, "sku": "A", "qty": 3, "unit_price": 0.1},
                  {"line": 2, "sku": "B", "qty": 1, "unit_price": 1.0000000000000001, "tax": 0.07}],
        "tenders": [{"type": "cash", "amount": 1.3700000000000001}]}"#;
    js.publish(&pos_subject("retail", "0042"), text.as_bytes().to_vec(), &[]).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals.gross, d("1.3000000000000001"), "{totals:?}");
    assert_eq!(totals.skus["A"].gross, d("0.3"), "{totals:?}");
    assert_eq!(totals.tax, d("0.07"));
    assert_eq!(totals.tenders["cash"], d("1.3700000000000001"));
}

// Proves: MessagePack floats are taken at their shortest round-trip decimal form (19.99, not
// 19.989999999999998…).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_floats_take_their_shortest_decimal_form() {
    let (_nats, tally, js) = start_all("").await;
    let tx = fixtures::transaction(
        "T-float",
        "0042",
        DAY,
        vec![fixtures::line_full(1, "100234", "3", "19.99", "0.1", "4.8")],
        vec![fixtures::tender("card", "64.67")],
    );
    js.publish(&pos_subject("retail", "0042"), to_msgpack(&tx, true), &[]).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals.gross, d("59.97"), "{totals:?}");
    assert_eq!(totals.discount, d("0.1"));
    assert_eq!(totals.net, d("59.87"));
    assert_eq!(totals.tax, d("4.8"));
    assert_eq!(totals.tenders["card"], d("64.67"));
    assert_eq!(totals.skus["100234"].sold_units, d("3"));
}

// Proves: the same records sent as JSON and as MessagePack (strings, floats, with and without a
// Content-Type header) give identical totals, and those match the reference model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_msgpack_inputs_give_identical_totals() {
    let (_nats, tally, js) = start_all("").await;
    let mut model = Model::new();
    for store in ["J1", "M1"] {
        let records = [
            (pos_subject("retail", store), example_transaction(&format!("{store}-T1"), store, DAY)),
            (
                pos_subject("retail", store),
                fixtures::transaction(
                    &format!("{store}-T2"),
                    store,
                    DAY,
                    vec![
                        fixtures::line_full(1, "100234", "1", "19.99", "0", "1.60"),
                        fixtures::return_line(2, "200001", "-2", "7.25", "-1.16", false),
                    ],
                    vec![fixtures::tender("cash", "6.94"), fixtures::tender("gift_card", "-12.00")],
                ),
            ),
            (pos_subject("retail", store), example_transaction(&format!("{store}-T3"), store, DAY)),
            (pos_subject("retail", store), fixtures::void(&format!("{store}-V3"), store, DAY, &format!("{store}-T3"))),
            (
                inventory_subject("retail", store),
                movement(&format!("{store}-M1"), store, DAY, "sale", &[("100234", "-2"), ("100987", "-1")]),
            ),
            (
                inventory_subject("retail", store),
                movement(&format!("{store}-M2"), store, DAY, "return", &[("100987", "1")]),
            ),
            (
                inventory_subject("retail", store),
                movement(&format!("{store}-M3"), store, DAY, "shrink", &[("100234", "-1")]),
            ),
        ];
        for (i, (subject, record)) in records.iter().enumerate() {
            model.apply(record);
            if store == "J1" {
                if i % 2 == 0 {
                    js.publish_json(subject, record).await;
                } else {
                    let body = serde_json::to_vec(record).expect("encodes");
                    js.publish(subject, body, &[("Content-Type", "application/json")]).await;
                }
            } else {
                match i % 3 {
                    0 => js.publish(subject, to_msgpack(record, false), &[]).await,
                    1 => {
                        js.publish(subject, to_msgpack(record, true), &[("Content-Type", "application/msgpack")]).await
                    }
                    _ => js.publish(subject, to_msgpack(record, true), &[]).await,
                };
            }
        }
    }
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let json_totals = DayTotals::from_http(&tally.day("J1", DAY).await);
    let msgpack_totals = DayTotals::from_http(&tally.day("M1", DAY).await);
    assert_eq!(json_totals, model.day("J1", DAY), "JSON store against the model");
    assert_eq!(msgpack_totals, json_totals, "MessagePack store against the JSON store");
    assert_eq!(json_totals.transactions, 2);
}

// Proves: the Content-Type header, when present, decides the decoder: MessagePack bytes labelled
// application/json are a decode error, not silently sniffed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_header_decides_the_decoder() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    let payload = to_msgpack(&example_transaction("T-mislabelled", "0042", DAY), false);
    let seq = js.publish(&pos, payload.clone(), &[("Content-Type", "application/json")]).await;
    let dlq = wait_for_messages(&js, DLQ_STREAM, 1).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_dlq_entry(&dlq, "retail", "decode", &pos, seq, &payload);
}

// Proves: unknown fields are ignored (forward compatibility) and business_day defaults to the
// calendar day of occurred_at in the store's configured time zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_day_defaults_to_the_store_time_zone_and_unknown_fields_are_ignored() {
    let (_nats, tally, js) = start_all("[stores.\"0042\"]\ntimezone = \"America/New_York\"\n").await;
    for store in ["0042", "0100"] {
        let mut tx = example_transaction(&format!("{store}-late"), store, DAY);
        tx.as_object_mut().expect("object").remove("business_day");
        // 02:00 UTC on the 28th is 21:00 on the 27th in New York, and the 28th in UTC.
        tx["occurred_at"] = json!("2026-11-28T02:00:00Z");
        tx["loyalty"] = json!({"member": "X-1", "points": 12});
        tx["lines"][0]["promo_code"] = json!("BF2026");
        js.publish_json(&pos_subject("retail", store), &tx).await;
    }
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let ny = DayTotals::from_http(&tally.day("0042", "2026-11-27").await);
    assert_eq!(ny.transactions, 1, "0042 (America/New_York) books it on the 27th");
    let utc = DayTotals::from_http(&tally.day("0100", "2026-11-28").await);
    assert_eq!(utc.transactions, 1, "0100 (default UTC) books it on the 28th");
    assert_eq!(ny.net, d("32.98"));
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "unknown fields must not reject a record");
}
