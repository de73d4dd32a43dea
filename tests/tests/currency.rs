//! A store-day is summed in one currency (docs/wire-format.md, "The dead-letter queue",
//! `currency`): against a real nats-server and the real binary, a transaction in another
//! currency than its day's goes to `P.dlq.currency` byte for byte and changes no total.

use serde_json::json;
use tally_tests::fixtures::{line, pos_subject, tender, transaction, DAY};
use tally_tests::{start_all, Js, DRAIN_TIMEOUT};

const DLQ_STREAM: &str = "RETAIL_DLQ";

fn sale(id: &str, currency: &str, price: &str) -> serde_json::Value {
    let mut record = transaction(id, "0042", DAY, vec![line(1, "A", "1", price)], vec![tender("card", price)]);
    record["currency"] = json!(currency);
    record
}

async fn publish_bytes(js: &Js, subject: &str, payload: Vec<u8>) {
    js.context.publish(subject.to_string(), payload.into()).await.expect("publish").await.expect("PubAck");
}

// Proves the day's first transaction sets its currency, a later one in another currency is
// dead-lettered with reason `currency` (payload unchanged, headers naming both currencies) and
// left out of the day's totals, and one in the day's currency is still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_another_currency_is_dead_lettered_and_not_summed() {
    let (_nats, tally, js) = start_all("").await;
    let subject = pos_subject("retail", "0042");
    js.publish_json(&subject, &sale("T1", "USD", "10.00")).await;
    let euro = serde_json::to_vec(&sale("T2", "EUR", "7.00")).expect("JSON");
    publish_bytes(&js, &subject, euro.clone()).await;
    js.publish_json(&subject, &sale("T3", "USD", "2.50")).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let dead = js.messages(DLQ_STREAM).await;
    assert_eq!(dead.len(), 1, "one dead letter: {:?}", dead.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert_eq!(dead[0].subject, "retail.dlq.currency");
    assert_eq!(dead[0].payload.as_ref(), euro.as_slice(), "the record, byte for byte");
    assert_eq!(dead[0].header("Tally-Error"), Some("currency"));
    let detail = dead[0].header("Tally-Error-Detail").unwrap_or_default();
    assert!(detail.contains("\"EUR\"") && detail.contains("\"USD\""), "{detail}");

    let report = tally.day("0042", DAY).await;
    assert_eq!(report["currency"], "USD", "{report}");
    assert_eq!(report["pos"]["transactions"], 2, "{report}");
    assert_eq!(report["pos"]["net"], "12.50", "{report}");
}
