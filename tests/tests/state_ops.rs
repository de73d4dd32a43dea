//! State operations: a checkpoint taken while tally runs restores into a fresh directory and
//! resumes exactly after its position; a rebuild from the stream reproduces the live totals.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tally_tests::fixtures::traffic;
use tally_tests::{tally_bin, DayTotals, Js, Model, NatsServer, Tally};

const DAY: &str = "2026-11-27";

/// Runs `tally state <op> --config <config> <dir>` and returns its stdout; panics on failure.
fn state_op(op: &str, config: &Path, dir: &Path) -> String {
    let out = Command::new(tally_bin())
        .args(["state", op, "--config"])
        .arg(config)
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tally state");
    assert!(
        out.status.success(),
        "tally state {op} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn publish(js: &Js, model: &mut Model, records: Vec<(String, serde_json::Value)>) {
    for (subject, record) in records {
        model.apply(&record);
        js.publish_json(&subject, &record).await;
    }
}

// Proves a live checkpoint restores into a fresh state that resumes after its position with
// nothing lost or counted twice, and a rebuild from the stream gives the same totals.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_restore_and_rebuild() {
    let nats = NatsServer::start();
    let mut live = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    publish(&js, &mut model, traffic("retail", "0042", DAY, "A", 150, 11)).await;
    live.wait_drained(&js, Duration::from_secs(30)).await;

    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("checkpoint");
    let said = state_op("checkpoint", live.config_path(), &checkpoint);
    assert!(said.contains("Checkpoint written"), "{said}");

    // More traffic after the checkpoint, then the live instance goes away.
    publish(&js, &mut model, traffic("retail", "0042", DAY, "B", 100, 12)).await;
    live.wait_drained(&js, Duration::from_secs(30)).await;
    let live_totals = DayTotals::from_http(&live.day("0042", DAY).await).normalized();
    assert_eq!(live_totals, model.day("0042", DAY), "the live instance is exact");
    live.stop_gracefully();

    // Restored into a fresh state dir, tally re-reads what came after the checkpoint.
    let mut restored = Tally::builder(&nats.url()).prepare();
    state_op("restore", restored.config_path(), &checkpoint);
    restored.spawn_run().await;
    restored.wait_drained(&js, Duration::from_secs(30)).await;
    let restored_totals = DayTotals::from_http(&restored.day("0042", DAY).await).normalized();
    assert_eq!(restored_totals, model.day("0042", DAY), "restore + resume loses and doubles nothing");

    // A rebuild from the stream into a new directory, next to the running instance.
    let rebuilt_dir = work.path().join("rebuilt");
    let said = state_op("rebuild", restored.config_path(), &rebuilt_dir);
    assert!(said.contains("Rebuilt state"), "{said}");
    let inspected = Command::new(tally_bin())
        .args(["inspect", "--state"])
        .arg(&rebuilt_dir)
        .args(["day", "0042", DAY])
        .output()
        .expect("run tally inspect");
    assert!(inspected.status.success(), "{}", String::from_utf8_lossy(&inspected.stderr));
    let body: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("inspect prints JSON");
    assert_eq!(DayTotals::from_http(&body).normalized(), model.day("0042", DAY), "a rebuild reproduces the totals");
}
