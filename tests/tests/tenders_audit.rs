//! Sales audit of tenders (docs/wire-format.md, "ERP posting"; docs/http-api.md): the day
//! report shows tenders over/short as soon as the day-close is in, the final posting's audit
//! carries the same, and a day-close without tenders adds no field anywhere.

use serde_json::{json, Value};
use tally_tests::fixtures::{line, pos_subject, tender, transaction, void, DAY};
use tally_tests::{start_all, wait_until, Js, DRAIN_TIMEOUT};

const ERP_STREAM: &str = "RETAIL_ERP";

fn day_close(store: &str, tenders: Option<Value>) -> Value {
    let mut close = json!({"type": "pos.day_close", "id": format!("CLOSE-{store}"), "store": store,
                           "business_day": DAY, "occurred_at": format!("{DAY}T22:00:00Z"),
                           "transaction_count": 2, "net_sales": "65.46", "tax": "0"});
    if let Some(tenders) = tenders {
        close["tenders"] = tenders;
    }
    close
}

/// Two sales (card 35.46 + cash 10.00, cash 20.00) and a voided card sale of 5.00, then the
/// day-close; then a record 11 minutes past it (close_grace is 10) finalizes the day.
async fn publish_day(js: &Js, store: &str, close_tenders: Option<Value>) {
    let subject = pos_subject("retail", store);
    let sales = [
        transaction(
            &format!("{store}-T1"),
            store,
            DAY,
            vec![line(1, "A", "1", "45.46")],
            vec![tender("card", "35.46"), tender("cash", "10.00")],
        ),
        transaction(
            &format!("{store}-T2"),
            store,
            DAY,
            vec![line(1, "B", "2", "10.00")],
            vec![tender("cash", "20.00")],
        ),
        transaction(&format!("{store}-T3"), store, DAY, vec![line(1, "C", "1", "5.00")], vec![tender("card", "5.00")]),
        void(&format!("{store}-V3"), store, DAY, &format!("{store}-T3")),
    ];
    for record in &sales {
        js.publish_json(&subject, record).await;
    }
    js.publish_json(&subject, &day_close(store, close_tenders)).await;
}

async fn finalize(js: &Js, store: &str) {
    let later = json!({"type": "pos.transaction", "id": format!("{store}-N1"), "store": store,
                       "occurred_at": format!("{DAY}T22:11:00Z"), "business_day": "2026-11-28",
                       "lines": [{"sku": "A", "qty": "1", "unit_price": "1.00"}]});
    js.publish_json(&pos_subject("retail", store), &later).await;
}

/// The final posting of a store's day, once it is on RETAIL_ERP.
async fn final_posting(js: &Js, store: &str) -> Value {
    let found = wait_until(DRAIN_TIMEOUT, move || async move { find_final(js, store).await.is_some() }).await;
    assert!(found, "no final posting of {store} on {ERP_STREAM}");
    find_final(js, store).await.expect("found above")
}

async fn find_final(js: &Js, store: &str) -> Option<Value> {
    js.messages(ERP_STREAM)
        .await
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.payload).expect("a JSON posting"))
        .find(|p| p["store"] == store && p["business_day"] == DAY && p["kind"] == "final")
}

// Proves over/short per tender type is the day-close's amount minus the computed one, voids
// applied, exact: an over (cash), a type only the day-close names (gift), a type only the POS
// used (check), a balanced one (card); shown by the day report before the day is final and
// carried by the final posting's audit; and that a day-close without tenders adds the field
// neither to the report nor to the audit (whose other fields are unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenders_over_short_in_the_day_report_and_the_final_audit() {
    let (_nats, tally, js) = start_all("").await;
    let close_tenders = json!([{"type": "card", "amount": "35.46"}, {"type": "cash", "amount": "21.01"},
                               {"type": "cash", "amount": "10.00"}, {"type": "gift", "amount": "5.00"}]);
    publish_day(&js, "0042", Some(close_tenders)).await;
    let check = transaction("0042-T4", "0042", DAY, vec![line(1, "D", "1", "12.50")], vec![tender("check", "12.50")]);
    js.publish_json(&pos_subject("retail", "0042"), &check).await;
    publish_day(&js, "0043", None).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let expected = json!([
        {"type": "card", "pos_amount": "35.46", "computed_amount": "35.46", "over_short": "0.00"},
        {"type": "cash", "pos_amount": "31.01", "computed_amount": "30.00", "over_short": "1.01"},
        {"type": "check", "pos_amount": "0", "computed_amount": "12.50", "over_short": "-12.50"},
        {"type": "gift", "pos_amount": "5.00", "computed_amount": "0", "over_short": "5.00"},
    ]);
    let report = tally.day("0042", DAY).await;
    assert_eq!(report["postings"]["final"], false, "before finalization: {report}");
    assert_eq!(report["day_close"]["tenders_over_short"], expected, "day report: {report}");
    let without = tally.day("0043", DAY).await;
    assert!(without["day_close"].is_object(), "0043's day-close is in: {without}");
    assert!(without["day_close"].get("tenders_over_short").is_none(), "no tenders, no field: {without}");

    finalize(&js, "0042").await;
    finalize(&js, "0043").await;
    let audit = final_posting(&js, "0042").await["audit"].clone();
    assert_eq!(audit["tenders_over_short"], expected, "final audit: {audit}");
    // The close's net (65.46) leaves out the check sale (12.50): the other figures are still there.
    assert_eq!(audit["difference_net"], "-12.50", "final audit: {audit}");
    let audit = final_posting(&js, "0043").await["audit"].clone();
    let keys: Vec<&str> = audit.as_object().expect("an audit object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "difference_net",
            "difference_tax",
            "difference_transactions",
            "missing_register_seqs",
            "pos_net_sales",
            "pos_tax",
            "pos_transaction_count"
        ],
        "without day-close tenders the audit keeps exactly its earlier fields: {audit}"
    );
    let report = tally.day("0043", DAY).await;
    assert!(report["audit"].get("tenders_over_short").is_none(), "{report}");
}
