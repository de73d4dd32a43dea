//! Drift alerts reach a real Prometheus Alertmanager through its v2 API (issue 3 item 4): the
//! alert appears active with the contract's labels and figures, resolves when the late
//! decrement arrives, and pushes survive Alertmanager being down.

use std::time::Duration;

use serde_json::{json, Value};
use tally_tests::fixtures::{inventory_subject, line, movement, pos_subject, tender, transaction, DAY};
use tally_tests::{free_port, prom, start_all, wait_until, Alertmanager, Tally, DRAIN_TIMEOUT};

const STORE: &str = "0042";
const SKU: &str = "100234";
/// How long Alertmanager may take to show what tally pushes (resend is 1s).
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// Tally pushing to `am_url` every `resend`; `settle = 0s` makes a missing decrement fire at once.
fn config(am_url: &str, resend: &str) -> String {
    format!("[alertmanager]\nurl = \"{am_url}\"\nresend_interval = \"{resend}\"\n[drift]\nsettle = \"0s\"\n")
}

/// A sale of 3 × `SKU` at 19.99 with no inventory decrement: drift 3 units, 59.97.
fn sale(id: &str) -> Value {
    transaction(id, STORE, DAY, vec![line(1, SKU, "3", "19.99")], vec![tender("card", "59.97")])
}

/// The decrement that matches [`sale`].
fn decrement(id: &str, sale_id: &str) -> Value {
    let mut m = movement(id, STORE, DAY, "sale", &[(SKU, "-3")]);
    m["ref"] = json!(sale_id);
    m
}

/// Tally's drift alert for `SKU`, in Alertmanager's list.
fn ours(alerts: &[Value]) -> Option<&Value> {
    alerts.iter().find(|a| {
        a["labels"]["alertname"] == "TallyInventoryDrift" && a["labels"]["store"] == STORE && a["labels"]["sku"] == SKU
    })
}

async fn wait_for_active(am: &Alertmanager, tally: &Tally) -> Value {
    let shown = wait_until(SHOW_TIMEOUT, move || async move {
        ours(&am.alerts().await).is_some_and(|a| a["status"]["state"] == "active")
    })
    .await;
    let alerts = am.alerts().await;
    assert!(
        shown,
        "Alertmanager shows no active TallyInventoryDrift alert for {STORE}/{SKU} within {SHOW_TIMEOUT:?}: {alerts:#?}\n\
         tally /v1/alerts: {}\n{}\n{}",
        tally.http_get("/v1/alerts").await.1,
        tally.logs(),
        am.logs()
    );
    ours(&alerts).cloned().expect("found above")
}

// Proves a drift alert is pushed to a real Alertmanager with the contract's labels and
// figures, and resolved there by a push once the missing decrement arrives. The resend interval
// is an hour, so the alert's endsAt is three hours ahead: it can leave the active list only
// because tally pushed its resolve, not because it expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_alert_fires_and_resolves_in_alertmanager() {
    let am = Alertmanager::start().await;
    let (_nats, tally, js) = start_all(&config(&am.url(), "1h")).await;
    js.publish_json(&pos_subject("retail", STORE), &sale("T-1")).await;

    let alert = wait_for_active(&am, &tally).await;
    let labels = &alert["labels"];
    assert_eq!(labels["business_day"], DAY, "{alert:#}");
    assert_eq!(labels["severity"], "warning", "{alert:#}");
    let annotations = &alert["annotations"];
    for (key, want) in [
        ("expected_units", "3"),
        ("recorded_units", "0"),
        ("drift_units", "3"),
        ("drift_value", "59.97"),
        ("unmatched", "T-1"),
        ("alert_id", "drift/0042/2026-11-27/100234"),
        ("revision", "1"),
        ("state", "firing"),
    ] {
        assert_eq!(annotations[key], want, "annotation {key}: {alert:#}");
    }
    assert!(annotations["drift_ratio"].as_str().is_some_and(|r| !r.is_empty()), "{alert:#}");
    assert!(annotations["summary"].as_str().is_some_and(|s| s.contains(STORE) && s.contains(SKU)), "{alert:#}");
    // The figures are tally's own, as /v1/alerts shows them.
    let (_, v1) = tally.http_get("/v1/alerts?state=firing").await;
    let firing = v1["alerts"].as_array().and_then(|a| a.first()).cloned().unwrap_or_default();
    assert_eq!(annotations["drift_ratio"], firing["drift_ratio"], "{v1:#}");

    let am_ref = &am;
    js.publish_json(&inventory_subject("retail", STORE), &decrement("M-1", "T-1")).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let resolved = wait_until(SHOW_TIMEOUT, move || async move {
        ours(&am_ref.alerts().await).is_none_or(|a| a["status"]["state"] != "active")
    })
    .await;
    assert!(
        resolved,
        "the alert is still active in Alertmanager after the decrement: {:#?}\ntally /v1/alerts: {}\n{}",
        am.alerts().await,
        tally.http_get("/v1/alerts").await.1,
        tally.logs()
    );
    // Resolved in tally too, so the disappearance is the resolve and not something else.
    let (_, v1) = tally.http_get("/v1/alerts?state=resolved").await;
    assert_eq!(v1["alerts"].as_array().map(Vec::len), Some(1), "{v1:#}");
}

// Proves pushes to an unreachable Alertmanager are counted, logged without the URL's
// credentials, and retried until it comes up, when the alert arrives; then re-sends keep
// moving its endsAt ahead, so it would expire only if tally stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_retry_until_alertmanager_is_up() {
    let port = free_port();
    let url = format!("http://tally:s3cret-pass@127.0.0.1:{port}");
    let (_nats, tally, js) = start_all(&config(&url, "1s")).await;
    js.publish_json(&pos_subject("retail", STORE), &sale("T-1")).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let tally_ref = &tally;
    let counted = wait_until(SHOW_TIMEOUT, move || async move {
        let (_, text) = tally_ref.http_get_text("/metrics").await;
        prom::sum(&prom::parse(&text), "tally_alertmanager_push_failures_total", &[]) >= 2.0
    })
    .await;
    let (_, metrics) = tally.http_get_text("/metrics").await;
    assert!(counted, "tally_alertmanager_push_failures_total must count failed pushes:\n{metrics}\n{}", tally.logs());
    let logs = tally.logs();
    assert!(logs.contains("Alertmanager failed"), "a WARN about the failed push is logged:\n{logs}");
    assert!(!logs.contains("s3cret-pass"), "the URL's password must never be logged:\n{logs}");

    let am = Alertmanager::start_on(port).await;
    let alert = wait_for_active(&am, &tally).await;
    assert_eq!(alert["annotations"]["drift_units"], "3", "{alert:#}");

    // Re-sends keep pushing endsAt ahead, so the alert would expire only if tally stopped.
    let first_end = alert["endsAt"].as_str().unwrap_or_default().to_string();
    let am_ref = &am;
    let first_end_ref = &first_end;
    let extended = wait_until(SHOW_TIMEOUT, move || async move {
        // Any change is a later endsAt; Go trims trailing zeros, so strings do not compare.
        ours(&am_ref.alerts().await)
            .and_then(|a| a["endsAt"].as_str().map(|e| e != first_end_ref.as_str()))
            .unwrap_or(false)
    })
    .await;
    assert!(extended, "endsAt never moved from {first_end}: {:#?}", am.alerts().await);
}
