//! /metrics (docs/http-api.md): valid Prometheus text that names the contract's metrics.

use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::prom::{self, check_with_promtool};
use tally_tests::{start_all, wait_for_messages, wait_until, Js, NatsServer, Tally, DLQ_STREAM, DRAIN_TIMEOUT};

const REQUIRED: [&str; 6] = [
    "tally_events_total",
    "tally_dlq_total",
    "tally_commit_duration_seconds",
    "tally_consumer_pending_messages",
    "tally_outbox_pending_messages",
    "tally_build_info",
];

// Proves: after real traffic (accepted and rejected), /metrics passes `promtool check metrics`,
// carries every metric of the contract that applies so far, and counts what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_name_the_contract_metrics() {
    let (_nats, tally, js) = start_all("").await;
    let pos = pos_subject("retail", "0042");
    for i in 0..5 {
        js.publish_json(&pos, &example_transaction(&format!("T-{i}"), "0042", DAY)).await;
    }
    js.publish(&pos, b"{broken".to_vec(), &[]).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    wait_for_messages(&js, DLQ_STREAM, 1).await;

    // Gauges settle after the outbox has published and the consumer has caught up.
    let tally_ref = &tally;
    let settled = wait_until(DRAIN_TIMEOUT, move || async move {
        let (_, text) = tally_ref.http_get_text("/metrics").await;
        let samples = prom::parse(&text);
        !prom::samples(&samples, "tally_outbox_pending_messages").is_empty()
            && prom::sum(&samples, "tally_outbox_pending_messages", &[]) == 0.0
            && prom::sum(&samples, "tally_consumer_pending_messages", &[]) == 0.0
            && prom::sum(&samples, "tally_dlq_total", &[("reason", "decode")]) >= 1.0
    })
    .await;

    let (status, text) = tally.http_get_text("/metrics").await;
    assert_eq!(status, 200);
    let (ok, report) = check_with_promtool(&text);
    assert!(ok, "promtool check metrics failed:\n{report}\n--- body ---\n{text}");

    for name in REQUIRED {
        let present = text.lines().any(|line| {
            !line.starts_with('#') && line.starts_with(name) && line[name.len()..].starts_with(['{', ' ', '_'])
        });
        assert!(present, "/metrics has no sample of {name}:\n{text}");
    }
    assert!(
        settled,
        "outbox and consumer pending gauges must drop to 0 and tally_dlq_total{{reason=\"decode\"}} reach 1:\n{text}"
    );

    let samples = prom::parse(&text);
    let events = prom::sum(&samples, "tally_events_total", &[]);
    assert!(events >= 6.0, "tally_events_total counts the 6 inputs, got {events}:\n{text}");
    for sample in prom::samples(&samples, "tally_events_total") {
        assert!(
            sample.labels.contains_key("source") && sample.labels.contains_key("outcome"),
            "tally_events_total has labels source and outcome: {sample:?}"
        );
    }
    let build = prom::samples(&samples, "tally_build_info");
    assert!(
        build.iter().any(|s| s.value == 1.0 && s.labels.get("version").is_some_and(|v| !v.is_empty())),
        "tally_build_info{{version=…}} 1 expected: {build:?}"
    );
    // Labels stay bounded: never a sku or a transaction id.
    for sample in &samples {
        for value in sample.labels.values() {
            assert!(
                !value.starts_with("T-") && value != "100234" && value != "100987",
                "a transaction id or sku leaked into a label: {sample:?}"
            );
        }
    }
}

// Proves tally reports its memory by part: the process's RSS and the parts that `state.*`
// settings bound, each once, the value cache (off by default, 8 MiB here) within its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_gauge_reports_every_part() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).env("TALLY_STATE_VALUE_CACHE_BYTES", "8388608").start().await;
    let js = Js::connect(&nats.url()).await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    const PARTS: [&str; 6] = ["rss", "block_cache", "memtables", "index_and_filters", "value_cache", "key_filter"];
    // The gauge is refreshed every second; after a commit the value cache holds something.
    let tally_ref = &tally;
    let reported = wait_until(DRAIN_TIMEOUT, move || async move {
        let (_, text) = tally_ref.http_get_text("/metrics").await;
        let samples = prom::parse(&text);
        PARTS.iter().all(|part| {
            prom::samples(&samples, "tally_memory_bytes")
                .iter()
                .any(|s| s.labels.get("part").map(String::as_str) == Some(*part))
        }) && prom::sum(&samples, "tally_memory_bytes", &[("part", "value_cache")]) > 0.0
    })
    .await;
    let (_, text) = tally.http_get_text("/metrics").await;
    assert!(reported, "tally_memory_bytes lacks a part, or the value cache reads 0 after a commit:\n{text}");
    let samples = prom::parse(&text);
    let memory = prom::samples(&samples, "tally_memory_bytes");
    assert_eq!(memory.len(), PARTS.len(), "one sample per part, no other labels: {memory:?}");
    let rss = prom::sum(&samples, "tally_memory_bytes", &[("part", "rss")]);
    assert!(rss > (1 << 20) as f64, "a running tally's RSS is more than 1 MiB, got {rss}");
    let cache = prom::sum(&samples, "tally_memory_bytes", &[("part", "value_cache")]);
    assert!(cache <= (8u64 << 20) as f64, "the value cache stays within its budget, got {cache}");
    // Each partition's key filter starts at its smallest size, 64 Ki keys at 10 bits: 80 KiB.
    let filters = prom::sum(&samples, "tally_memory_bytes", &[("part", "key_filter")]);
    assert!(filters >= (80u64 << 10) as f64, "every open state has a key filter, got {filters} bytes");
}

/// Waits until `tally_erp_final_postings_overdue` reads `expected` for each store, as one
/// sample per store; false (and the last /metrics) when it does not within `DRAIN_TIMEOUT`.
async fn overdue_reaches(tally: &Tally, expected: &[(&str, f64)]) -> (bool, String) {
    let settled = wait_until(DRAIN_TIMEOUT, move || async move {
        let (_, text) = tally.http_get_text("/metrics").await;
        let samples = prom::parse(&text);
        expected.iter().all(|(store, value)| {
            let of_store: Vec<_> = prom::samples(&samples, "tally_erp_final_postings_overdue")
                .into_iter()
                .filter(|s| s.labels.get("store").map(String::as_str) == Some(*store))
                .collect();
            of_store.len() == 1 && of_store[0].value == *value
        })
    })
    .await;
    (settled, tally.http_get_text("/metrics").await.1)
}

// Proves tally_erp_final_postings_overdue moves with the store's event time: a store whose only
// day is three days old counts one day overdue while a store that keeps up counts none, and the
// count falls to 0 once a newer record of the lagging store finalizes that day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_postings_overdue_gauge_rises_and_falls() {
    let (_nats, tally, js) = start_all("").await;
    let today = chrono::Utc::now().date_naive();
    let day = |ago: i64| (today - chrono::Duration::days(ago)).format("%Y-%m-%d").to_string();
    // Records occur at noon: day-3's finalization (end of day + erp.max_open 30 h) is due at
    // 06:00 yesterday, long past; yesterday's is due at 06:00 tomorrow.
    let (old, recent) = (day(3), day(1));
    js.publish_json(&pos_subject("retail", "0900"), &example_transaction("OLD-1", "0900", &old)).await;
    js.publish_json(&pos_subject("retail", "0901"), &example_transaction("NEW-1", "0901", &recent)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (settled, text) = overdue_reaches(&tally, &[("0900", 1.0), ("0901", 0.0)]).await;
    assert!(settled, "store 0900's day {old} must count overdue, 0901 none:\n{text}");
    assert_eq!(tally.day("0900", &old).await["postings"]["final"], false);

    // A record of yesterday moves 0900's event time past day-3's deadline: the day finalizes.
    js.publish_json(&pos_subject("retail", "0900"), &example_transaction("NEW-2", "0900", &recent)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (settled, text) = overdue_reaches(&tally, &[("0900", 0.0), ("0901", 0.0)]).await;
    assert!(settled, "store 0900's overdue count must fall to 0 once {old} finalizes:\n{text}");
    assert_eq!(tally.day("0900", &old).await["postings"]["final"], true);
}
