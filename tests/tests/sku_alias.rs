//! SKU aliases (docs/wire-format.md, "SKU aliases"; docs/operations.md, "SKU aliases") against
//! a real nats-server and the real binary: aliases edited with `tally sku-alias` reach the
//! running processor through the KV bucket; records are counted under canonical skus from
//! then on, never retroactively; codes without an alias show on the metric and the endpoint.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_tests::fixtures::{inventory_subject, pos_subject, DAY};
use tally_tests::process::Tally;
use tally_tests::{prom, start_all, Js, DRAIN_TIMEOUT};

const STORE: &str = "0042";
const ALERTS_STREAM: &str = "RETAIL_ALERTS";

fn sale(id: &str, at: &str, sku: &str, qty: &str) -> Value {
    json!({"type": "pos.transaction", "id": id, "store": STORE, "register": "R01",
           "occurred_at": format!("{DAY}T{at}Z"), "business_day": DAY,
           "lines": [{"line": 1, "sku": sku, "qty": qty, "unit_price": "4.00"}],
           "tenders": [{"type": "card", "amount": "4.00"}]})
}

fn decrement(id: &str, at: &str, reference: &str, sku: &str, qty: &str) -> Value {
    json!({"type": "inventory.movement", "id": id, "store": STORE, "occurred_at": format!("{DAY}T{at}Z"),
           "business_day": DAY, "reason": "sale", "ref": reference, "lines": [{"sku": sku, "qty": qty}]})
}

/// `tally sku-alias <args…>` against this instance's NATS and bucket.
fn sku_alias(tally: &Tally, args: &[&str]) -> Output {
    tally.command("sku-alias").args(args).output().expect("run tally sku-alias")
}

fn sku_alias_ok(tally: &Tally, args: &[&str]) -> String {
    let out = sku_alias(tally, args);
    assert!(out.status.success(), "tally sku-alias {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn metric(tally: &Tally, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, text) = tally.http_get_text("/metrics").await;
    assert_eq!(status, 200);
    prom::sum(&prom::parse(&text), name, labels)
}

/// Waits until the running tally applies `count` aliases (`tally_sku_aliases`).
async fn wait_aliases(tally: &Tally, count: usize) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let held = metric(tally, "tally_sku_aliases", &[]).await;
        if held == count as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "tally holds {held} aliases, not {count}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sold(report: &Value, sku: &str) -> Option<String> {
    let skus = report["pos"]["skus"].as_array().expect("skus");
    skus.iter().find(|s| s["sku"] == sku).map(|s| s["sold_units"].as_str().expect("units").to_string())
}

async fn publish_all(js: &Js, records: &[(String, Value)]) {
    for (subject, record) in records {
        js.publish_json(subject, record).await;
    }
}

// Proves a day with aliases defined before and after traffic: a UPC sale and an article-number
// decrement under aliases put beforehand reconcile with no alert; a code aliased only after its
// first sale keeps that sale under itself and counts the later one under the sku; codes without
// an alias are counted as themselves, alert as such, and show on the metric and the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_aliases_defined_before_and_after_traffic() {
    let (_nats, tally, js) = start_all("[drift]\nsettle = \"1m\"\n").await;
    let (pos, inventory) = (pos_subject("retail", STORE), inventory_subject("retail", STORE));
    sku_alias_ok(&tally, &["put", "pos/012345678905", "100234"]);
    sku_alias_ok(&tally, &["put", "inventory/ART-100234", "100234"]);
    wait_aliases(&tally, 2).await;

    let mut before = Vec::new();
    for n in 0..3 {
        let id = format!("T{n}");
        before.push((pos.clone(), sale(&id, &format!("10:0{n}:00"), "012345678905", "1")));
        before.push((inventory.clone(), decrement(&format!("M{n}"), &format!("10:0{n}:30"), &id, "ART-100234", "-1")));
    }
    // Sold under a UPC that has no alias, never decremented: drift that must still page.
    before.push((pos.clone(), sale("T9", "10:05:00", "099999999999", "3")));
    before.push((pos.clone(), sale("T10", "10:06:00", "UPC-LATE", "2")));
    publish_all(&js, &before).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    sku_alias_ok(&tally, &["put", "pos/UPC-LATE", "100555"]);
    wait_aliases(&tally, 3).await;
    let after = vec![
        (pos.clone(), sale("T11", "10:07:00", "UPC-LATE", "1")),
        // Event time past the settle time, so that whatever drifts pages.
        (
            inventory.clone(),
            json!({"type": "inventory.movement", "id": "NUDGE", "store": STORE,
            "occurred_at": format!("{DAY}T10:30:00Z"), "business_day": DAY, "reason": "receipt",
            "lines": [{"sku": "Z", "qty": "1"}]}),
        ),
    ];
    publish_all(&js, &after).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let report = tally.day(STORE, DAY).await;
    assert_eq!(sold(&report, "100234").as_deref(), Some("3"), "{report}");
    assert_eq!(sold(&report, "012345678905"), None, "{report}");
    assert_eq!(sold(&report, "UPC-LATE").as_deref(), Some("2"), "the sale before the alias stays: {report}");
    assert_eq!(sold(&report, "100555").as_deref(), Some("1"), "{report}");
    let drifting: Vec<&str> = report["drift"].as_array().unwrap().iter().map(|d| d["sku"].as_str().unwrap()).collect();
    assert!(!drifting.contains(&"100234") && !drifting.contains(&"ART-100234"), "{report}");

    // 099999999999 drifts by 3 and UPC-LATE by 2 (its sale before the alias); 100555 by 1 stays under min_units.
    tally_tests::wait_for_messages(&js, ALERTS_STREAM, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut paged: Vec<String> = js
        .messages(ALERTS_STREAM)
        .await
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap()["sku"].as_str().unwrap().to_string())
        .collect();
    paged.sort();
    assert_eq!(paged, vec!["099999999999".to_string(), "UPC-LATE".to_string()]);

    assert_eq!(metric(&tally, "tally_unmapped_skus_total", &[("system", "pos")]).await, 2.0);
    // The receipt of Z: the inventory system has aliases, Z has none.
    assert_eq!(metric(&tally, "tally_unmapped_skus_total", &[("system", "inventory")]).await, 1.0);
    let (status, body) = tally.http_get(&format!("/v1/stores/{STORE}/unmapped")).await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(String, String, u64)> = body["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["system"].as_str().unwrap().into(), r["code"].as_str().unwrap().into(), r["lines"].as_u64().unwrap())
        })
        .collect();
    let expected = [("inventory", "Z", 1), ("pos", "099999999999", 1), ("pos", "UPC-LATE", 1)];
    assert_eq!(rows, expected.map(|(s, c, n)| (s.to_string(), c.to_string(), n)).to_vec(), "{body}");
    assert_eq!(body["unmapped"][1]["business_days"], json!([DAY]), "{body}");
    let (status, _) = tally.http_get("/v1/stores/9999/unmapped").await;
    assert_eq!(status, 404);
    let (status, _) = tally.http_get(&format!("/v1/stores/{STORE}/unmapped?business_day=27-11-2026")).await;
    assert_eq!(status, 400);
}

// Proves the CLI round trip: put, list, rm, an import whose bad line is reported by number and
// stops it, the same import with --skip-bad, and that a restarted tally starts with every alias
// and counts a record under an imported one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip_with_csv_import() {
    let (_nats, mut tally, js) = start_all("").await;
    assert_eq!(sku_alias_ok(&tally, &["put", "pos/4011", "BANANA"]), "pos/4011 -> BANANA\n");
    assert_eq!(sku_alias_ok(&tally, &["list"]), "pos/4011,BANANA\n");
    let bad_name = sku_alias(&tally, &["put", "4011", "BANANA"]);
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("not <system>/<code>"));
    sku_alias_ok(&tally, &["rm", "pos/4011"]);
    assert_eq!(sku_alias_ok(&tally, &["list"]), "");
    let gone = sku_alias(&tally, &["rm", "pos/4011"]);
    assert!(!gone.status.success(), "removing a missing alias fails");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("there is no alias pos/4011"));

    let file = tally.state_dir().with_file_name("aliases.csv");
    let mut csv = String::from("system,code,sku\n# produce\npos,4011,BANANA\n");
    csv.push_str("pos/4012 ORANGE\n");
    for n in 0..500 {
        csv.push_str(&format!("inventory/ART-{n:05},SKU-{n:05}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let path = file.to_str().unwrap();
    let refused = sku_alias(&tally, &["import", path]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("aliases.csv:4: ") && stderr.contains("nothing imported"), "{stderr}");
    assert_eq!(sku_alias_ok(&tally, &["list"]), "", "a refused import writes nothing");

    let imported = sku_alias_ok(&tally, &["import", "--skip-bad", path]);
    assert!(imported.contains("Imported 501 aliases") && imported.contains("1 bad line(s) skipped"), "{imported}");
    let listed = sku_alias_ok(&tally, &["list", "--system", "pos"]);
    assert_eq!(listed, "pos/4011,BANANA\n");
    wait_aliases(&tally, 501).await;

    tally.restart().await;
    wait_aliases(&tally, 501).await;
    js.publish_json(
        &inventory_subject("retail", STORE),
        &json!({"type": "inventory.movement", "id": "R1",
        "store": STORE, "occurred_at": format!("{DAY}T09:00:00Z"), "business_day": DAY, "reason": "sale",
        "lines": [{"sku": "ART-00042", "qty": "-1"}]}),
    )
    .await;
    js.publish_json(&pos_subject("retail", STORE), &sale("T1", "09:00:00", "4011", "1")).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let report = tally.day(STORE, DAY).await;
    assert_eq!(sold(&report, "BANANA").as_deref(), Some("1"), "{report}");
    assert_eq!(report["inventory"]["by_reason"]["sale"], "-1", "{report}");
    let drift: Vec<&str> = report["drift"].as_array().unwrap().iter().map(|d| d["sku"].as_str().unwrap()).collect();
    assert!(drift.contains(&"SKU-00042") && drift.contains(&"BANANA"), "{report}");
}

/// `tally <args…>` to its end; stdout, or a panic with stderr.
fn tally_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(tally_tests::tally_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tally");
    assert!(out.status.success(), "tally {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Proves the documented way to re-key past days (docs/operations.md, "Re-keying days after new
// aliases"): the live state keeps a day counted before its aliases under the codes, and a
// rebuild from the stream counts the same records under the canonical sku, with no drift left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_re_keys_a_day_under_the_aliases_put_since() {
    let (_nats, tally, js) = start_all("").await;
    let records = vec![
        (pos_subject("retail", STORE), sale("T1", "10:00:00", "012345678905", "2")),
        (inventory_subject("retail", STORE), decrement("M1", "10:01:00", "T1", "ART-100234", "-2")),
    ];
    publish_all(&js, &records).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    sku_alias_ok(&tally, &["put", "pos/012345678905", "100234"]);
    sku_alias_ok(&tally, &["put", "inventory/ART-100234", "100234"]);
    wait_aliases(&tally, 2).await;

    let live = tally.day(STORE, DAY).await;
    assert_eq!(sold(&live, "012345678905").as_deref(), Some("2"), "history is not rewritten: {live}");
    assert_eq!(live["drift"].as_array().unwrap().len(), 2, "the +2/-2 pair: {live}");

    let rebuilt = tally.state_dir().with_file_name("rebuilt");
    let (config, rebuilt) = (tally.config_path().to_str().unwrap(), rebuilt.to_str().unwrap());
    tally_ok(&["state", "--progress-every", "0s", "rebuild", "--config", config, rebuilt]);
    let report: Value =
        serde_json::from_str(&tally_ok(&["inspect", "--state", rebuilt, "day", STORE, DAY])).expect("JSON");
    assert_eq!(sold(&report, "100234").as_deref(), Some("2"), "{report}");
    assert_eq!(sold(&report, "012345678905"), None, "{report}");
    assert_eq!(report["inventory"]["by_reason"]["sale"], "-2", "{report}");
    assert_eq!(report["drift"], json!([]), "{report}");
}
