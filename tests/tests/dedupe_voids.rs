//! Idempotency on `id` (duplicates, conflicts) and post-voids in both orders (docs/wire-format.md, "POS transaction").

use serde_json::json;
use tally_tests::fixtures::{self, example_transaction, inventory_subject, movement, pos_subject, DAY};
use tally_tests::model::d;
use tally_tests::{assert_dlq_entry, start_all, wait_for_messages, DayTotals, Model, DLQ_STREAM, DRAIN_TIMEOUT};

// Proves: a re-sent record (same id, same content) is counted in `duplicates` and skipped, for
// transactions and inventory movements alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_counted_and_skipped() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    let inv = inventory_subject("retail", "0042");
    let tx = example_transaction("T-1", "0042", DAY);
    let mv = movement("M-1", "0042", DAY, "sale", &[("100234", "-2")]);
    let mut model = Model::new();
    for _ in 0..3 {
        js.publish_json(&pos, &tx).await;
        model.apply(&tx);
    }
    for _ in 0..2 {
        js.publish_json(&inv, &mv).await;
        model.apply(&mv);
    }
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let day = tally.day("0042", DAY).await;
    let totals = DayTotals::from_http(&day);
    assert_eq!(totals.duplicates, 3, "2 re-sent transactions + 1 re-sent movement; day: {day}");
    assert_eq!(totals.transactions, 1);
    assert_eq!(totals.net, d("32.98"));
    assert_eq!(totals.inventory["sale"], d("-2"));
    assert_eq!(totals, model.day("0042", DAY));
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "duplicates are not dead-lettered");
}

// Proves: the same id with different content is a conflict: dead-lettered verbatim with reason
// `conflict`, counted in `conflicts`, and the first version's totals stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_go_to_the_dlq_and_are_counted() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    let inv = inventory_subject("retail", "0042");
    let first = example_transaction("T-1", "0042", DAY);
    let mut second = first.clone();
    second["tenders"] = json!([{"type": "cash", "amount": "35.46"}]);
    let mv = movement("M-1", "0042", DAY, "receipt", &[("100234", "10")]);
    let mv_changed = movement("M-1", "0042", DAY, "receipt", &[("100234", "12")]);

    js.publish_json(&pos, &first).await;
    let second_bytes = serde_json::to_vec(&second).expect("encodes");
    let second_seq = js.publish(&pos, second_bytes.clone(), &[]).await;
    js.publish_json(&inv, &mv).await;
    let mv_bytes = serde_json::to_vec(&mv_changed).expect("encodes");
    let mv_seq = js.publish(&inv, mv_bytes.clone(), &[]).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 2).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_dlq_entry(&dlq, "retail", "conflict", &pos, second_seq, &second_bytes);
    assert_dlq_entry(&dlq, "retail", "conflict", &inv, mv_seq, &mv_bytes);

    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals.conflicts, 2);
    assert_eq!(totals.duplicates, 0);
    assert_eq!(totals.transactions, 1);
    assert_eq!(totals.tenders.get("card"), Some(&d("35.46")), "the first version stands: {totals:?}");
    assert_eq!(totals.tenders.get("cash"), None, "the conflicting version is not applied: {totals:?}");
    assert_eq!(totals.inventory["receipt"], d("10"));
}

/// Publishes to store `voided` T1, T2 and a void of T2 (the void first when `void_first`), and
/// to store `plain` only T1; returns the model of both.
async fn publish_void_scenario(js: &tally_tests::Js, voided: &str, plain: &str, void_first: bool) -> Model {
    let mut model = Model::new();
    let t1 = |store: &str| example_transaction(&format!("{store}-T1"), store, DAY);
    let t2 = |store: &str| {
        fixtures::transaction(
            &format!("{store}-T2"),
            store,
            DAY,
            vec![
                fixtures::line_full(1, "100234", "5", "19.99", "5.00", "7.60"),
                fixtures::line_full(2, "300300", "1", "120.00", "0", "9.60"),
            ],
            vec![fixtures::tender("card", "232.15")],
        )
    };
    let void = fixtures::void(&format!("{voided}-V2"), voided, DAY, &format!("{voided}-T2"));
    let mut records = vec![t1(voided), t2(voided)];
    if void_first {
        records.insert(0, void);
    } else {
        records.push(void);
    }
    records.push(t1(plain));
    for record in &records {
        let store = record["store"].as_str().expect("store");
        js.publish_json(&pos_subject("retail", store), record).await;
        model.apply(record);
    }
    model
}

// Proves: a post-void after its transaction reverses it: the store-day's totals are exactly
// those of a store that never saw the voided transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_after_its_transaction_reverses_it() {
    let (_nats, tally, js) = start_all("").await;
    let model = publish_void_scenario(&js, "A1", "B1", false).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let voided = DayTotals::from_http(&tally.day("A1", DAY).await);
    let plain = DayTotals::from_http(&tally.day("B1", DAY).await);
    assert_eq!(plain, model.day("B1", DAY), "the plain store against the model");
    assert_eq!(plain.transactions, 1);
    assert_eq!(plain.net, d("32.98"));
    assert_eq!(voided, plain, "voiding T2 brings A1 back to what it was without T2");
}

// Proves: a post-void that arrives before its transaction cancels it when it arrives, and the
// void alone changes nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_before_its_transaction_cancels_it() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "A2");
    // The void alone, then T1 so that the day exists: only T1 counts.
    js.publish_json(&pos, &fixtures::void("A2-V0", "A2", DAY, "A2-T0")).await;
    js.publish_json(&pos, &example_transaction("A2-T1x", "A2", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let early = DayTotals::from_http(&tally.day("A2", DAY).await);
    assert_eq!(early.transactions, 1, "a void of a transaction not yet seen changes nothing: {early:?}");
    assert_eq!(early.net, d("32.98"));
    // Its transaction arrives: cancelled on arrival.
    let t0 = fixtures::transaction("A2-T0", "A2", DAY, vec![fixtures::line(1, "100234", "4", "10.00")], vec![]);
    js.publish_json(&pos, &t0).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let later = DayTotals::from_http(&tally.day("A2", DAY).await);
    assert_eq!(later, early, "the voided transaction cancels when it arrives");

    let model = publish_void_scenario(&js, "A3", "B3", true).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let voided = DayTotals::from_http(&tally.day("A3", DAY).await);
    let plain = DayTotals::from_http(&tally.day("B3", DAY).await);
    assert_eq!(plain, model.day("B3", DAY));
    assert_eq!(voided, plain, "void-then-transaction cancels like transaction-then-void");
}

// Proves: a re-sent void is a duplicate and does not reverse its transaction twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_void_reverses_only_once() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    let mut model = Model::new();
    let records = [
        example_transaction("T-1", "0042", DAY),
        example_transaction("T-2", "0042", DAY),
        fixtures::void("V-2", "0042", DAY, "T-2"),
        fixtures::void("V-2", "0042", DAY, "T-2"),
    ];
    for record in &records {
        js.publish_json(&pos, record).await;
        model.apply(record);
    }
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals, model.day("0042", DAY));
    assert_eq!(totals.transactions, 1);
    assert_eq!(totals.duplicates, 1);
}
