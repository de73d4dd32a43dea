//! State operations: a checkpoint taken while tally runs restores into a fresh directory and
//! resumes exactly after its position; a rebuild from the stream reproduces the live totals;
//! each shows its progress as plain lines when stderr is not a terminal.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tally_tests::fixtures::traffic;
use tally_tests::{tally_bin, wait_until, DayTotals, Js, Model, NatsServer, Tally};

const DAY: &str = "2026-11-27";

/// Runs `tally state <op> --config <config> <dir>` with stderr a pipe (not a terminal) and a
/// progress line at every update; returns its stdout and stderr; panics on failure.
fn state_op(op: &str, config: &Path, dir: &Path) -> (String, String) {
    let out = Command::new(tally_bin())
        .args(["state", op, "--progress-every", "0s", "--config"])
        .arg(config)
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tally state");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "tally state {op} failed: {stdout}\n{stderr}");
    (stdout, stderr)
}

/// The line of `stderr` that starts with `<op>: ` and contains `part`, if any.
fn progress_line<'a>(stderr: &'a str, op: &str, part: &str) -> Option<&'a str> {
    stderr.lines().find(|line| line.starts_with(&format!("{op}: ")) && line.contains(part))
}

async fn publish(js: &Js, model: &mut Model, records: Vec<(String, serde_json::Value)>) {
    for (subject, record) in records {
        model.apply(&record);
        js.publish_json(&subject, &record).await;
    }
}

// Proves a live checkpoint restores into a fresh state that resumes after its position with
// nothing lost or counted twice, and a rebuild from the stream gives the same totals; and that
// off a terminal each operation prints progress lines with a rate and ETA and a closing summary.
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
    let (said, progress) = state_op("checkpoint", live.config_path(), &checkpoint);
    assert!(said.contains("Checkpoint written"), "{said}");
    let summary = progress_line(&progress, "checkpoint", " in ").unwrap_or_default();
    assert!(summary.contains("B/s); ") && summary.contains(" hard-linked, "), "checkpoint's closing line: {progress}");

    // More traffic after the checkpoint, then the live instance goes away.
    publish(&js, &mut model, traffic("retail", "0042", DAY, "B", 100, 12)).await;
    live.wait_drained(&js, Duration::from_secs(30)).await;
    let live_totals = DayTotals::from_http(&live.day("0042", DAY).await).normalized();
    assert_eq!(live_totals, model.day("0042", DAY), "the live instance is exact");
    live.stop_gracefully();

    // Restored into a fresh state dir, tally re-reads what came after the checkpoint.
    let mut restored = Tally::builder(&nats.url()).prepare();
    let (_, progress) = state_op("restore", restored.config_path(), &checkpoint);
    // Not a terminal: plain lines with the share done, the rate and the time left, then the summary.
    let line = progress_line(&progress, "restore", " %), ").unwrap_or_default();
    assert!(line.contains("B of ") && line.contains("B/s, ETA "), "a progress line of restore: {progress}");
    let summary = progress_line(&progress, "restore", " in ").unwrap_or_default();
    assert!(summary.contains("B/s); ") && summary.ends_with(" files"), "restore's closing line: {progress}");
    restored.spawn_run().await;
    restored.wait_drained(&js, Duration::from_secs(30)).await;
    // Until tally recreates the consumer of the store's partition after the checkpoint's
    // position, the live instance's consumer is still there, drained: wait for the totals too.
    let expected = model.day("0042", DAY);
    let (r, e) = (&restored, &expected);
    wait_until(Duration::from_secs(30), move || async move {
        DayTotals::from_http(&r.day("0042", DAY).await).normalized() == *e
    })
    .await;
    let restored_totals = DayTotals::from_http(&restored.day("0042", DAY).await).normalized();
    assert_eq!(restored_totals, model.day("0042", DAY), "restore + resume loses and doubles nothing");

    // A rebuild from the stream into a new directory, next to the running instance.
    let rebuilt_dir = work.path().join("rebuilt");
    let (said, progress) = state_op("rebuild", restored.config_path(), &rebuilt_dir);
    assert!(said.contains("Rebuilt state"), "{said}");
    let line = progress_line(&progress, "rebuild", " messages (").unwrap_or_default();
    assert!(line.contains("/s, ETA "), "a progress line of rebuild: {progress}");
    let summary = progress_line(&progress, "rebuild", " messages in ").unwrap_or_default();
    assert!(
        summary.ends_with("/s)"),
        "rebuild's closing line, e.g. `rebuild: 5712 messages in 3.1 s (1842/s)`: {progress}"
    );
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
