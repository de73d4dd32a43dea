//! The HTTP API (docs/http-api.md): health, readiness and the day's reconciliation.

use serde_json::Value;
use tally_tests::fixtures::{example_transaction, inventory_subject, movement, pos_subject, DAY};
use tally_tests::model::d;
use tally_tests::{start_all, DayTotals, DRAIN_TIMEOUT};

// Proves: /healthz and /readyz answer 200 while tally is consuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200_while_consuming() {
    let (_nats, tally, js) = start_all("").await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (status, body) = tally.http_get("/healthz").await;
    assert_eq!(status, 200, "/healthz: {body}");
    let (status, body) = tally.http_get("/readyz").await;
    assert_eq!(status, 200, "/readyz: {body}");
}

// Proves: an unknown store, an unknown day of a known store and a malformed day are each a 404
// with a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_store_or_day_is_a_404_with_json() {
    let (_nats, tally, js) = start_all("").await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(tally.http_get(&format!("/v1/stores/0042/days/{DAY}")).await.0, 200);
    for path in [
        format!("/v1/stores/9999/days/{DAY}"),
        "/v1/stores/0042/days/2026-11-28".to_string(),
        "/v1/stores/0042/days/not-a-day".to_string(),
    ] {
        let (status, body) = tally.http_get(&path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert!(body.is_object(), "GET {path} must answer a JSON error object, got {body}");
    }
}

fn assert_decimal_string(body: &Value, pointer: &str) {
    let value = body.pointer(pointer).unwrap_or_else(|| panic!("{pointer} missing in {body}"));
    let text = value.as_str().unwrap_or_else(|| panic!("{pointer} must be a decimal string on output, got {value}"));
    assert!(text.parse::<rust_decimal::Decimal>().is_ok(), "{pointer} = {text:?} is not a decimal");
}

// Proves: the day endpoint has the contract's shape and figures: store, business_day, currency,
// pos totals, tenders, per-sku figures and inventory by reason, decimals as strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_endpoint_has_the_contract_shape() {
    let (_nats, tally, js) = start_all("").await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    js.publish_json(&inventory_subject("retail", "0042"), &movement("M-1", "0042", DAY, "sale", &[("100234", "-2")]))
        .await;
    js.publish_json(
        &inventory_subject("retail", "0042"),
        &movement("M-2", "0042", DAY, "receipt", &[("100234", "300")]),
    )
    .await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let body = tally.day("0042", DAY).await;
    assert_eq!(body["store"], "0042", "{body}");
    assert_eq!(body["business_day"], DAY, "{body}");
    assert_eq!(body["currency"], "USD", "{body}");
    for pointer in ["/pos/gross", "/pos/discount", "/pos/net", "/pos/tax", "/pos/tenders/0/amount"] {
        assert_decimal_string(&body, pointer);
    }
    let skus = body["pos"]["skus"].as_array().unwrap_or_else(|| panic!("pos.skus is not an array: {body}"));
    for (i, _) in skus.iter().enumerate() {
        for field in ["sold_units", "returned_units", "restocked_units", "gross", "discount", "net", "tax"] {
            assert_decimal_string(&body, &format!("/pos/skus/{i}/{field}"));
        }
    }
    assert_decimal_string(&body, "/inventory/by_reason/sale");
    assert_decimal_string(&body, "/inventory/by_reason/receipt");

    let totals = DayTotals::from_http(&body);
    assert_eq!(totals.transactions, 1);
    assert_eq!(totals.gross, d("34.98"));
    assert_eq!(totals.discount, d("2.00"));
    assert_eq!(totals.net, d("32.98"));
    assert_eq!(totals.tax, d("2.48"));
    assert_eq!(totals.tenders.get("card"), Some(&d("35.46")));
    let sold = &totals.skus["100234"];
    assert_eq!(
        (sold.sold_units, sold.gross, sold.discount, sold.net, sold.tax),
        (d("2"), d("39.98"), d("2.00"), d("37.98"), d("2.88"))
    );
    let returned = &totals.skus["100987"];
    assert_eq!(
        (returned.returned_units, returned.restocked_units, returned.sold_units, returned.net, returned.tax),
        (d("1"), d("1"), d("0"), d("-5.00"), d("-0.40"))
    );
    assert_eq!(totals.inventory.get("sale"), Some(&d("-2")));
    assert_eq!(totals.inventory.get("receipt"), Some(&d("300")));
    assert_eq!((totals.duplicates, totals.conflicts), (0, 0));
}
