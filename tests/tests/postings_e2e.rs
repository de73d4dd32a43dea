//! ERP postings end to end: over a business day of several stores, the postings of each
//! store-day sum to exactly the independently computed totals, seqs have no gaps, ids are the
//! `Nats-Msg-Id`s, the final audit names the day-close difference and the missing seq, and a
//! late transaction becomes one adjustment.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_tests::fixtures::{self, line_full, tender, transaction};
use tally_tests::model::{d, decimal};
use tally_tests::{wait_until, Js, Model, NatsServer, StoredMessage, Tally};

const DAY: &str = "2026-11-27";
const STORES: [&str; 3] = ["0001", "0002", "0003"];

/// Interim postings every second; a day finalizes as soon as its store has been idle for a
/// second after its day-close.
const CONFIG: &str = r#"
[erp]
interval = "1s"
close_grace = "0s"
[drift]
idle_timeout = "1s"
"#;

/// The sums of all postings of one store-day, in the contract's shape.
#[derive(Debug, Default, PartialEq)]
struct PostingSums {
    transactions: i64,
    net: Decimal,
    tax: Decimal,
    tenders: BTreeMap<String, Decimal>,
    /// sku → (qty, gross, discount, net, tax)
    lines: BTreeMap<String, [Decimal; 5]>,
}

impl PostingSums {
    fn add(&mut self, posting: &Value) {
        self.transactions += posting["control"]["transactions"].as_i64().expect("control.transactions");
        self.net += dec(&posting["control"]["net"]);
        self.tax += dec(&posting["control"]["tax"]);
        for tender in posting["tenders"].as_array().expect("tenders") {
            *self.tenders.entry(tender["type"].as_str().unwrap().into()).or_default() += dec(&tender["amount"]);
        }
        for line in posting["lines"].as_array().expect("lines") {
            let entry = self.lines.entry(line["sku"].as_str().unwrap().into()).or_default();
            for (i, field) in ["qty", "gross", "discount", "net", "tax"].iter().enumerate() {
                entry[i] += dec(&line[*field]);
            }
        }
    }

    /// Drops entries that sum to zero: a sku or tender that was voided away may or may not appear.
    fn normalized(mut self) -> PostingSums {
        self.tenders.retain(|_, v| !v.is_zero());
        self.lines.retain(|_, v| v.iter().any(|x| !x.is_zero()));
        self
    }
}

fn dec(value: &Value) -> Decimal {
    decimal(value).unwrap_or_else(|| panic!("{value} is not a decimal"))
}

/// What the model says the postings must add up to.
fn expected_sums(model: &Model, store: &str) -> PostingSums {
    let totals = model.day(store, DAY);
    let lines = totals
        .skus
        .iter()
        .map(|(sku, t)| (sku.clone(), [t.sold_units - t.returned_units, t.gross, t.discount, t.net, t.tax]))
        .collect();
    PostingSums { transactions: totals.transactions, net: totals.net, tax: totals.tax, tenders: totals.tenders, lines }
        .normalized()
}

fn postings_of(messages: &[StoredMessage], store: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m.subject == format!("retail.erp.postings.{store}"))
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.payload).expect("postings are JSON");
            assert_eq!(m.header("Nats-Msg-Id"), body["id"].as_str(), "Nats-Msg-Id must be the posting id");
            body
        })
        .collect()
}

fn with_seq(mut tx: Value, seq: u64, at: &str) -> Value {
    tx["seq"] = json!(seq);
    tx["register"] = json!("R02");
    tx["occurred_at"] = json!(at);
    tx
}

// Proves sums, seqs, ids, audit and adjustments of ERP postings against an independent model.
#[tokio::test(flavor = "multi_thread")]
async fn postings_sum_to_the_day_and_audit_the_close() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), CONFIG).await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    let mut publish_all = |records: Vec<(String, Value)>| {
        for (_, record) in &records {
            model.apply(record);
        }
        records
    };

    // First half of the day, a pause for interim postings, then the second half.
    let mut halves: Vec<Vec<(String, Value)>> = vec![Vec::new(), Vec::new()];
    for (i, store) in STORES.iter().enumerate() {
        let traffic = fixtures::traffic("retail", store, DAY, "A", 120, 7 + i as u64);
        let (first, second) = traffic.split_at(60);
        halves[0].extend(first.iter().cloned());
        halves[1].extend(second.iter().cloned());
    }
    // Store 0003: register R02 with seq 3 missing, and a void that arrives before its transaction.
    let r02 = |seq: u64| {
        let tx = transaction(
            &format!("R02-{seq}"),
            "0003",
            DAY,
            vec![line_full(1, "200001", "1", "10.00", "0", "0.80")],
            vec![tender("card", "10.80")],
        );
        ("retail.pos.0003".to_string(), with_seq(tx, seq, "2026-11-27T15:00:00Z"))
    };
    halves[0].push(("retail.pos.0003".into(), fixtures::void("VOID-R02-4", "0003", DAY, "R02-4")));
    halves[1].extend([r02(1), r02(2), r02(4), r02(5)]);

    for half in halves {
        for (subject, record) in publish_all(half) {
            js.publish_json(&subject, &record).await;
        }
        tally.wait_drained(&js, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // Day-closes: stores 0001 and 0002 agree with what was sent; 0003 reports 12.34 more net.
    for store in STORES {
        let totals = model.day(store, DAY);
        let net = if store == "0003" { totals.net + d("12.34") } else { totals.net };
        let close = json!({"type": "pos.day_close", "id": format!("CLOSE-{store}"), "store": store,
            "business_day": DAY, "occurred_at": "2026-11-27T22:05:00Z",
            "transaction_count": totals.transactions, "net_sales": net.to_string(), "tax": totals.tax.to_string()});
        js.publish_json(&format!("retail.pos.{store}"), &close).await;
    }
    let finals = wait_until(Duration::from_secs(30), || async {
        js.message_count("RETAIL_ERP").await > 0
            && js
                .messages("RETAIL_ERP")
                .await
                .iter()
                .filter(|m| serde_json::from_slice::<Value>(&m.payload).map(|b| b["kind"] == "final").unwrap_or(false))
                .count()
                == STORES.len()
    })
    .await;
    assert!(finals, "every store-day gets its final posting\n{}", tally.logs());

    // A late transaction for store 0001 after its final posting.
    let late = transaction(
        "LATE-1",
        "0001",
        DAY,
        vec![line_full(1, "100001", "2", "3.50", "0", "0.56")],
        vec![tender("cash", "7.56")],
    );
    model.apply(&late);
    js.publish_json("retail.pos.0001", &late).await;
    let adjusted = wait_until(Duration::from_secs(30), || async {
        js.messages("RETAIL_ERP")
            .await
            .iter()
            .any(|m| serde_json::from_slice::<Value>(&m.payload).map(|b| b["kind"] == "adjustment").unwrap_or(false))
    })
    .await;
    assert!(adjusted, "a late transaction after final yields an adjustment\n{}", tally.logs());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let messages = js.messages("RETAIL_ERP").await;
    for store in STORES {
        let postings = postings_of(&messages, store);
        let mut sums = PostingSums::default();
        let mut cumulative_net = Decimal::ZERO;
        for (i, posting) in postings.iter().enumerate() {
            let seq = i as u64 + 1;
            assert_eq!(posting["seq"], json!(seq), "seqs are gapless from 1 for {store}");
            assert_eq!(posting["id"], json!(format!("{store}/{DAY}/{seq:04}")));
            sums.add(posting);
            cumulative_net += dec(&posting["control"]["net"]);
            assert_eq!(dec(&posting["cumulative"]["net"]), cumulative_net, "cumulative is the running sum");
        }
        let kinds: Vec<&str> = postings.iter().map(|p| p["kind"].as_str().unwrap()).collect();
        let final_at = kinds.iter().position(|k| *k == "final").expect("a final posting");
        assert!(kinds[..final_at].iter().all(|k| *k == "interim"), "{store}: {kinds:?}");
        assert!(kinds[final_at + 1..].iter().all(|k| *k == "adjustment"), "{store}: {kinds:?}");
        assert!(final_at >= 1, "{store}: interim postings came before the final one: {kinds:?}");
        assert_eq!(sums.normalized(), expected_sums(&model, store), "{store}: postings must sum to the day's totals");

        let audit = &postings[final_at]["audit"];
        if store == "0003" {
            assert_eq!(dec(&audit["difference_net"]), d("12.34"), "audit: {audit}");
            assert_eq!(audit["difference_transactions"], json!(0));
            assert_eq!(audit["missing_register_seqs"], json!([{"register": "R02", "seqs": [3]}]));
        } else {
            assert_eq!(dec(&audit["difference_net"]), Decimal::ZERO, "audit: {audit}");
        }
    }
    let adjustments: Vec<Value> =
        postings_of(&messages, "0001").into_iter().filter(|p| p["kind"] == "adjustment").collect();
    assert_eq!(adjustments.len(), 1, "exactly one adjustment: {adjustments:#?}");
    assert_eq!(adjustments[0]["control"]["transactions"], json!(1));
    assert_eq!(dec(&adjustments[0]["control"]["net"]), d("7.00"));
}
