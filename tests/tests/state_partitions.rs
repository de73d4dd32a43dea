//! The state commands over a partitioned state (docs/operations.md, "State commands over
//! partitions"): `tally inspect`, `tally state checkpoint`, `restore` and `rebuild` on every
//! partition of a 16-partition state, and on one partition with `--partition`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tally_tests::fixtures::traffic;
use tally_tests::{tally_bin, wait_until, DayTotals, Js, Model, NatsServer, Tally};
use tally_topologies::partition;

const DAY: &str = "2026-11-27";
const PARTITIONS: u32 = 16;
/// Stores enough to put state into several partitions.
const STORES: [&str; 6] = ["0042", "0043", "0044", "0045", "0046", "0047"];
const DRAIN: Duration = Duration::from_secs(30);

/// Runs `tally <args>` with stderr a pipe and a progress line at every update.
fn tally(args: &[&str]) -> Output {
    Command::new(tally_bin()).args(args).env("RUST_LOG", "warn").output().expect("run tally")
}

/// `tally <args>`, which must succeed; its stdout.
fn tally_ok(args: &[&str]) -> String {
    let out = tally(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tally {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// `tally <args>`, which must fail; its stderr.
fn tally_err(args: &[&str]) -> String {
    let out = tally(args);
    assert!(!out.status.success(), "tally {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `tally inspect --state <state> [--partition N] <what…>` as JSON.
fn inspect(state: &Path, partition: Option<u32>, what: &[&str]) -> Value {
    let index = partition.map(|n| n.to_string());
    let mut args = vec!["inspect", "--state", text(state)];
    if let Some(index) = &index {
        args.extend(["--partition", index.as_str()]);
    }
    args.extend(what);
    serde_json::from_str(&tally_ok(&args)).expect("inspect prints JSON")
}

/// Waits until every partition's consumer has been delivered and has acked all its messages:
/// after a restart, the partitions that had nothing left to read report ack floor 0
/// (`Js::consumer_caught_up`), so `Tally::wait_drained` does not apply.
async fn wait_caught_up(tally: &Tally, js: &Js) {
    let (stream, consumer) = (tally.input_stream(), tally.consumer());
    let (stream, consumer) = (&stream, &consumer);
    let done = wait_until(DRAIN, move || async move { js.consumer_caught_up(stream, consumer).await }).await;
    assert!(done, "tally did not catch up: {}\n{}", js.consumer_summary(stream, consumer).await, tally.logs());
}

/// Waits until tally has caught up and its /v1 totals equal the model's, then asserts them (with
/// the difference when they never do). Both: right after a start, the consumers of the previous
/// run may still be there, caught up, until tally recreates each after its committed position.
async fn wait_exact(tally: &Tally, js: &Js, model: &Model, what: &str) {
    wait_caught_up(tally, js).await;
    let exact = || async { day_totals(tally).await.into_iter().all(|(store, totals)| totals == model.day(store, DAY)) };
    wait_until(DRAIN, exact).await;
    wait_caught_up(tally, js).await;
    assert_exact(tally, day_totals(tally).await, model, what);
}

/// A summary without the paths it was read from, to compare states in different directories.
fn without_paths(mut summary: Value) -> Value {
    summary.as_object_mut().expect("a summary is an object").remove("state_path");
    for partition in summary["partitions"].as_array_mut().expect("a summary lists its partitions") {
        partition.as_object_mut().expect("a partition's summary is an object").remove("state_path");
    }
    summary
}

async fn publish(js: &Js, model: &mut Model, tag: &str, count: usize, seed: u64) {
    for (n, store) in STORES.iter().enumerate() {
        for (subject, record) in traffic("retail", store, DAY, tag, count, seed + n as u64) {
            model.apply(&record);
            js.publish_json(&subject, &record).await;
        }
    }
}

fn assert_exact(tally: &Tally, totals: Vec<(&str, DayTotals)>, model: &Model, what: &str) {
    for (store, got) in totals {
        assert_eq!(got, model.day(store, DAY), "{what}: store {store}\n{}", tally.logs());
    }
}

async fn day_totals<'s>(tally: &Tally) -> Vec<(&'s str, DayTotals)> {
    let mut totals = Vec::new();
    for store in STORES {
        totals.push((store, DayTotals::from_http(&tally.day(store, DAY).await).normalized()));
    }
    totals
}

// Proves a checkpoint of a 16-partition state keeps the layout and every partition's position
// and store-days, as inspect shows them on the state; restored into a fresh state.path it
// inspects exactly as the checkpoint does, and tally on it resumes each partition after its own
// position, so that traffic published after the checkpoint is counted once and the /v1 totals
// equal the live instance's. (The checkpoint is taken while tally is stopped: one taken while it
// runs may hold each partition as of its last memtable flush, an older point than inspect sees;
// tests/state_ops.rs checks that a live one restores and resumes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_every_partition_restores_to_the_same_answers() {
    let nats = NatsServer::start();
    let mut live = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    publish(&js, &mut model, "A", 60, 1).await;
    live.wait_drained(&js, DRAIN).await;
    live.stop_gracefully();
    let at_stop = inspect(live.state_dir(), None, &["summary"]);

    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("checkpoint");
    let config = live.config_path().to_path_buf();
    let said =
        tally_ok(&["state", "checkpoint", "--progress-every", "0s", "--config", text(&config), text(&checkpoint)]);
    assert!(
        said.contains("Checkpoint written") && said.contains("16 partitions, committed stream sequences"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(checkpoint.join("PARTITIONS")).unwrap().trim(), "16");
    for index in 0..PARTITIONS {
        assert!(checkpoint.join(format!("partition-{index}/CURRENT")).exists(), "partition {index} is checkpointed");
    }
    let checkpointed = inspect(&checkpoint, None, &["summary"]);
    assert_eq!(without_paths(checkpointed.clone()), without_paths(at_stop), "the checkpoint holds the state");
    let partitions = checkpointed["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), PARTITIONS as usize);
    assert_eq!(checkpointed["partition_count"], PARTITIONS);
    let highest = partitions.iter().map(|p| p["committed_stream_sequence"].as_u64().unwrap()).max();
    assert_eq!(checkpointed["committed_stream_sequence"].as_u64(), highest, "the highest position");
    let pending: u64 = partitions.iter().map(|p| p["outbox_pending"].as_u64().unwrap()).sum();
    assert_eq!(checkpointed["outbox_pending"].as_u64(), Some(pending), "the outboxes' sum");
    assert_eq!(checkpointed["stores"], STORES.len());
    let holding = partitions.iter().filter(|p| p["store_days"].as_u64().unwrap() > 0).count();
    let homes: std::collections::BTreeSet<u32> = STORES.iter().map(|s| partition::of_store(s, PARTITIONS)).collect();
    assert_eq!(holding, homes.len(), "each store's days are in its own partition: {checkpointed}");

    // More traffic after the checkpoint; then the live instance goes away.
    live.spawn_run().await;
    publish(&js, &mut model, "B", 40, 11).await;
    live.wait_drained(&js, DRAIN).await;
    let live_totals = day_totals(&live).await;
    assert_exact(&live, live_totals.clone(), &model, "the live instance");
    live.stop_gracefully();

    let mut restored = Tally::builder(&nats.url()).prepare();
    let said = tally_ok(&["state", "restore", "--config", text(restored.config_path()), text(&checkpoint)]);
    assert!(said.contains("16 partitions, committed stream sequences"), "{said}");
    assert_eq!(
        without_paths(inspect(restored.state_dir(), None, &["summary"])),
        without_paths(checkpointed.clone()),
        "the restored state holds what the checkpoint holds"
    );
    restored.spawn_run().await;
    wait_exact(&restored, &js, &model, "after the restore").await;
    assert_eq!(day_totals(&restored).await, live_totals, "the /v1 totals after the restore equal the live ones");
    restored.stop_gracefully();
    let after = inspect(restored.state_dir(), None, &["summary"]);
    for store in STORES {
        let day = inspect(restored.state_dir(), None, &["day", store, DAY]);
        assert_eq!(DayTotals::from_http(&day).normalized(), model.day(store, DAY), "inspect day {store}");
    }
    let positions = |summary: &Value| -> Vec<u64> {
        summary["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["committed_stream_sequence"].as_u64().unwrap())
            .collect()
    };
    let moved = positions(&after).iter().zip(positions(&checkpointed)).filter(|(now, then)| *now > then).count();
    assert_eq!(moved, homes.len(), "each partition with stores resumed after its own position: {after}");
}

// Proves `--partition N` reads, checkpoints, restores and rebuilds one partition alone: inspect
// (next to the running instance) shows that partition's stores and position only, and a store
// asked of another partition is named with its own; the partition's checkpoint holds what
// inspect showed and restores into its emptied directory, and tally then resumes that partition
// after the checkpoint and stays exact; a partition rebuilt from the stream next to the running
// instance has the partition's stores and their exact totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_is_inspected_checkpointed_restored_and_rebuilt_alone() {
    let nats = NatsServer::start();
    let mut live = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    publish(&js, &mut model, "A", 60, 21).await;
    live.wait_drained(&js, DRAIN).await;
    let store = STORES[0];
    let home = partition::of_store(store, PARTITIONS);
    let other = (home + 1) % PARTITIONS;
    let state = live.state_dir().to_path_buf();

    let whole = inspect(&state, None, &["summary"]);
    let one = inspect(&state, Some(home), &["summary"]);
    assert_eq!(one["partitions"].as_array().unwrap().len(), 1, "{one}");
    for field in ["partition", "state_path", "committed_stream_sequence", "store_days"] {
        assert_eq!(one["partitions"][0][field], whole["partitions"][home as usize][field], "{field}: {one}\n{whole}");
    }
    let days = one["store_days"].as_array().unwrap();
    assert!(days.contains(&Value::from(format!("{store}/{DAY}"))), "{one}");
    for day in days {
        let owner = day.as_str().unwrap().split('/').next().unwrap();
        assert_eq!(partition::of_store(owner, PARTITIONS), home, "only the partition's stores: {one}");
    }
    assert_eq!(inspect(&state, Some(home), &["day", store, DAY]), inspect(&state, None, &["day", store, DAY]));
    let elsewhere =
        tally_err(&["inspect", "--state", text(&state), "--partition", &other.to_string(), "day", store, DAY]);
    assert!(elsewhere.contains(&format!("belongs to partition {home} of 16")), "{elsewhere}");

    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("one");
    let config = live.config_path().to_path_buf();
    let index = home.to_string();
    live.stop_gracefully();
    let said = tally_ok(&["state", "checkpoint", "--partition", &index, "--config", text(&config), text(&checkpoint)]);
    assert!(said.contains(&format!("partition {home} of 16, committed stream sequence")), "{said}");
    assert!(checkpoint.join("CURRENT").exists(), "one partition checkpoints as a single database");
    let checkpointed = inspect(&checkpoint, None, &["summary"]);
    assert_eq!(checkpointed["store_days"], one["store_days"]);
    let position = &one["partitions"][0]["committed_stream_sequence"];
    assert_eq!(&checkpointed["committed_stream_sequence"], position, "the partition's position: {said}");
    assert!(said.contains(&format!("committed stream sequence {position}")), "{said}");
    live.spawn_run().await;

    // The rebuild of one partition, next to the live instance, answers as the live one does.
    let rebuilt = work.path().join("rebuilt");
    let said = tally_ok(&["state", "rebuild", "--partition", &index, "--config", text(&config), text(&rebuilt)]);
    assert!(said.contains(&format!("Rebuilt partition {home} of 16")) && said.contains("partition-"), "{said}");
    assert!(rebuilt.join("CURRENT").exists() && !rebuilt.join("PARTITIONS").exists(), "a single database");
    let rebuilt_day = DayTotals::from_http(&inspect(&rebuilt, None, &["day", store, DAY])).normalized();
    assert_eq!(rebuilt_day, model.day(store, DAY), "the rebuilt partition's totals");
    assert_eq!(inspect(&rebuilt, None, &["summary"])["store_days"], one["store_days"], "the partition's stores only");
    let input = js.context.get_stream(live.input_stream()).await.expect("the input stream");
    let consumer = format!("tally-rebuild-p{home}");
    assert!(input.consumer_info(&consumer).await.is_err(), "the rebuild deleted its consumer {consumer}");

    // More traffic; then the partition's state is replaced by its checkpoint and tally resumes.
    publish(&js, &mut model, "B", 40, 31).await;
    live.wait_drained(&js, DRAIN).await;
    live.stop_gracefully();
    let refused = tally_err(&["state", "restore", "--partition", &index, "--config", text(&config), text(&checkpoint)]);
    assert!(refused.contains(&format!("partition {home} of state.path")) && refused.contains("not empty"), "{refused}");
    std::fs::rename(state.join(format!("partition-{home}")), work.path().join("old")).unwrap();
    let said = tally_ok(&["state", "restore", "--partition", &index, "--config", text(&config), text(&checkpoint)]);
    assert!(said.contains(&format!("partition-{home}")), "{said}");
    let restored = inspect(&state, Some(home), &["summary"]);
    for field in ["committed_stream_sequence", "outbox_pending", "store_days"] {
        assert_eq!(restored["partitions"][0][field], checkpointed["partitions"][0][field], "{field} as checkpointed");
    }
    live.spawn_run().await;
    wait_exact(&live, &js, &model, "after restoring one partition").await;
}

// Proves a `--partition` outside the state's or the stream's partitions is refused with the
// valid range, by every command that takes it, and that a whole checkpoint is not restored as
// one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_out_of_range_is_refused_with_the_valid_range() {
    let nats = NatsServer::start();
    let live = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    publish(&js, &mut model, "A", 10, 41).await;
    live.wait_drained(&js, DRAIN).await;
    let (state, config) = (live.state_dir(), live.config_path());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("checkpoint");

    let said = tally_err(&["inspect", "--state", text(state), "--partition", "16", "summary"]);
    assert!(said.contains("--partition 16 is out of range") && said.contains("16 partitions, 0 to 15"), "{said}");
    let said = tally_err(&["state", "checkpoint", "--partition", "16", "--config", text(config), text(&dir)]);
    assert!(said.contains("--partition 16 is out of range") && said.contains("0 to 15"), "{said}");
    assert!(!dir.exists(), "nothing written");
    let said = tally_err(&["state", "rebuild", "--partition", "99", "--config", text(config), text(&dir)]);
    assert!(said.contains("--partition 99 is out of range: the input stream RETAIL_IN holds 16 partitions"), "{said}");

    tally_ok(&["state", "checkpoint", "--config", text(config), text(&dir)]);
    let fresh = Tally::builder(&nats.url()).prepare();
    let said = tally_err(&["state", "restore", "--partition", "3", "--config", text(fresh.config_path()), text(&dir)]);
    assert!(said.contains("is a checkpoint of 16 partitions") && said.contains("partition-3"), "{said}");
}
