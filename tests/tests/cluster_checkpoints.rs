//! Checkpoints in the JetStream Object Store (docs/operations.md, "Checkpoints in the Object
//! Store"), on a three-server NATS cluster: a new owner restores a killed owner's partitions from
//! their checkpoints instead of replaying the input from its start, and ends with the model's
//! totals and postings; a checkpoint uploads only the table files the last one did not.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt as _;
use serde_json::Value;
use tally_tests::crash::{PostingSums, ERP_STREAM};
use tally_tests::fixtures::{self, DAY};
use tally_tests::{wait_until, DayTotals, Js, Model, NatsCluster, Tally};

/// Input partitions: few, so that checkpoints every second stay cheap on a small machine.
const PARTITIONS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(120);

/// JSON logs to read the checkpoints from; a checkpoint every second.
const CONFIG: &str = r#"
[input]
batch_max = 20
partitions = 4
[erp]
interval = "1s"
[drift]
settle = "0s"
idle_timeout = "1s"
[log]
format = "json"
[cluster]
checkpoint_interval = "1s"
"#;

/// [`CONFIG`] without moving a quiet store's event time every second, which writes to the state
/// (docs/configuration.md, `drift.idle_timeout`): once its input stops, the state stays as it is.
const QUIET_CONFIG: &str = r#"
[input]
batch_max = 20
partitions = 4
[erp]
interval = "1s"
[log]
format = "json"
[cluster]
checkpoint_interval = "1s"
"#;

const CHECKPOINTED: &str = "Checkpointed a partition.";
const RESTORED: &str = "Restored a partition from its checkpoint.";
const CATCHING_UP: &str = "Catching up with a partition taken over.";

/// The log lines of `tally` with `message` (any, when empty), as JSON objects.
fn lines(tally: &Tally, message: &str) -> Vec<Value> {
    tally
        .stderr_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| message.is_empty() || line["message"] == message)
        .collect()
}

/// The log lines of `tally` with `message` about `partition`.
fn lines_of(tally: &Tally, message: &str, partition: u32) -> Vec<Value> {
    lines(tally, message).into_iter().filter(|line| line["partition"] == partition).collect()
}

fn field(line: &Value, name: &str) -> u64 {
    line[name].as_u64().unwrap_or_else(|| panic!("no number {name} in {line}"))
}

/// Generated traffic of `stores`, interleaved, applied to `model`.
fn traffic(stores: &[&str], per_store: usize, tag: &str, model: &mut Model) -> Vec<(String, Vec<u8>)> {
    let per: Vec<Vec<(String, Value)>> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| fixtures::traffic("retail", store, DAY, tag, per_store, 900 + i as u64))
        .collect();
    let mut inputs = Vec::new();
    for n in 0..per_store {
        for records in &per {
            let (subject, record) = &records[n];
            model.apply(record);
            inputs.push((subject.clone(), serde_json::to_vec(record).expect("JSON encodes")));
        }
    }
    inputs
}

async fn publish(js: &Js, inputs: &[(String, Vec<u8>)]) {
    for (subject, payload) in inputs {
        js.publish(subject, payload.clone(), &[]).await;
    }
}

/// The partitions an instance runs, from its /readyz.
async fn owned(tally: &Tally) -> Option<Vec<u32>> {
    let (_, body) = tally.try_http_get("/readyz").await.ok()?;
    body["partitions"].as_array().map(|p| p.iter().filter_map(Value::as_u64).map(|p| p as u32).collect())
}

/// Waits until `tally` shows the model's totals for every store and the postings add up to them.
async fn settled(tally: &Tally, js: &Js, model: &Model, stores: &[&str]) {
    let totals_match = || async {
        for store in stores {
            match tally.try_http_get(&format!("/v1/stores/{store}/days/{DAY}")).await {
                Ok((200, body)) if DayTotals::from_http(&body) == model.day(store, DAY) => {}
                _ => return false,
            }
        }
        true
    };
    assert!(wait_until(TIMEOUT, totals_match).await, "the totals did not reach the model\n{}", tally.logs());
    let postings_match = || async {
        if js.message_count(ERP_STREAM).await == 0 {
            return false;
        }
        let mut sums: BTreeMap<String, PostingSums> = BTreeMap::new();
        for message in js.messages(ERP_STREAM).await {
            let posting: Value = serde_json::from_slice(&message.payload).expect("postings are JSON");
            if posting["kind"] != "inventory_adjustment" {
                sums.entry(posting["store"].as_str().unwrap_or("").to_string()).or_default().add(&posting);
            }
        }
        stores
            .iter()
            .all(|s| sums.remove(*s).map(PostingSums::normalized) == Some(PostingSums::expected(model, s, DAY)))
    };
    assert!(wait_until(TIMEOUT, postings_match).await, "the postings did not add up\n{}", tally.logs());
}

/// `tally_checkpoint_last_position{partition}` on `tally`'s /metrics.
async fn checkpoint_position(tally: &Tally, partition: u32) -> u64 {
    let Ok((_, body)) = tally.try_http_get("/metrics").await else { return 0 };
    let series = format!("tally_checkpoint_last_position{{partition=\"{partition}\"}} ");
    let text = body.as_str().unwrap_or("");
    text.lines().find_map(|line| line.strip_prefix(series.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
}

// Proves item 3 of issue "Several tallies on a NATS cluster": after a SIGKILL of an owner, the
// other restores the killed partitions from their checkpoints (at a position past the stream's
// start, which the catch-up then resumes from), checkpoints them incrementally from the restored
// files, and ends with the model's totals and postings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_owner_restores_the_checkpoint_and_replays_only_what_follows() {
    const STORES: [&str; 6] = ["0401", "0402", "0403", "0404", "0405", "0406"];
    let mut model = Model::new();
    let inputs = traffic(&STORES, 80, "c", &mut model);
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls().join(",");
    let mut a = Tally::builder(&urls).toml(CONFIG).cluster("a").prepare();
    a.setup_ok();
    let mut b = Tally::builder(&urls).toml(CONFIG).cluster("b").prepare();
    a.spawn_run().await;
    b.spawn_run().await;
    let split = || async {
        let (Some(on_a), Some(on_b)) = (owned(&a).await, owned(&b).await) else { return false };
        !on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == PARTITIONS as usize
    };
    assert!(wait_until(TIMEOUT, split).await, "the two instances did not split the partitions\n{}", a.logs());
    let on_a = owned(&a).await.unwrap_or_default();
    let moving: BTreeSet<u32> = STORES
        .iter()
        .map(|store| tally_topologies::partition::of_store(store, PARTITIONS))
        .filter(|p| on_a.contains(p))
        .collect();
    assert!(!moving.is_empty(), "a runs none of the stores' partitions ({on_a:?}): nothing would move");
    let js = Js::connect(&cluster.urls()[0]).await;
    let (first, second) = inputs.split_at(inputs.len() / 2);
    publish(&js, first).await;
    let checkpointed = || async {
        for partition in &moving {
            if checkpoint_position(&a, *partition).await == 0 {
                return false;
            }
        }
        true
    };
    assert!(wait_until(TIMEOUT, checkpointed).await, "a checkpointed none of {moving:?} with input\n{}", a.logs());
    a.kill();
    let killed = std::time::Instant::now();
    publish(&js, second).await;
    let all_on_b = || async { owned(&b).await.is_some_and(|p| p.len() == PARTITIONS as usize) };
    assert!(wait_until(TIMEOUT, all_on_b).await, "b did not take a's partitions {on_a:?} over\n{}", b.logs());
    eprintln!(
        "cluster checkpoints: b ran a's partitions {on_a:?} {:.1} s after the SIGKILL",
        killed.elapsed().as_secs_f64()
    );
    settled(&b, &js, &model, &STORES).await;

    for partition in &moving {
        // Before the input, b may have restored an empty checkpoint of a partition a made first.
        let restored = lines_of(&b, RESTORED, *partition);
        let last = restored.last().unwrap_or_else(|| panic!("b did not restore partition {partition}\n{}", b.logs()));
        let position = field(last, "position");
        assert!(position > 0 && field(last, "files") > 0, "restored from a checkpoint with input: {last}");
        for catch_up in lines_of(&b, CATCHING_UP, *partition) {
            assert_eq!(field(&catch_up, "from"), position, "the catch-up resumes at the checkpoint: {catch_up}");
        }
        // The log in order: b's first checkpoint of the partition after it restored it.
        let story = || {
            lines(&b, "")
                .into_iter()
                .filter(|l| l["partition"] == *partition && (l["message"] == RESTORED || l["message"] == CHECKPOINTED))
                .skip_while(|l| l["message"] != RESTORED)
                .collect::<Vec<Value>>()
        };
        let checkpointed = || async { story().len() > 1 };
        assert!(wait_until(TIMEOUT, checkpointed).await, "b never checkpointed partition {partition}\n{}", b.logs());
        let story = story();
        let first = &story[1];
        assert!(field(first, "reused_files") > 0, "b's first checkpoint reuses the restored files: {first}");
        eprintln!(
            "cluster checkpoints: partition {partition} restored at position {position}: {} files, {} bytes in {} ms",
            last["files"], last["bytes"], last["duration_ms"]
        );
    }
}

/// Object names of the checkpoint files of `partition`, and those the last manifests name.
async fn objects_and_referenced(js: &Js, partition: u32) -> (BTreeSet<String>, BTreeSet<String>) {
    let files = js.context.get_object_store("tally_checkpoints").await.expect("the checkpoint bucket");
    let infos: Vec<_> = files.list().await.expect("list").try_collect().await.unwrap_or_default();
    let prefix = format!("p{partition}/");
    let objects = infos.into_iter().map(|i| i.name).filter(|n| n.starts_with(&prefix)).collect();
    let manifests = js.context.get_key_value("tally_checkpoints_manifests").await.expect("the manifest bucket");
    let history: Vec<_> = manifests
        .history(format!("checkpoints.{partition}"))
        .await
        .expect("history")
        .try_collect()
        .await
        .unwrap_or_default();
    let mut referenced = BTreeSet::new();
    for entry in history {
        let manifest: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
        for file in manifest["files"].as_object().into_iter().flat_map(|f| f.values()) {
            referenced.insert(file["object"].as_str().unwrap_or("").to_string());
        }
    }
    (objects, referenced)
}

// Proves checkpoints are incremental: once a partition's input stops, a checkpoint uploads no
// table file; after more input only the new table files go up, the others are reused; and the
// objects no recent manifest names are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_uploads_only_new_table_files() {
    const STORE: &str = "0411";
    let partition = tally_topologies::partition::of_store(STORE, PARTITIONS);
    let mut model = Model::new();
    let first = traffic(&[STORE], 150, "i", &mut model);
    let cluster = NatsCluster::start().await;
    let mut a = Tally::builder(&cluster.urls().join(",")).toml(QUIET_CONFIG).cluster("a").prepare();
    a.setup_ok();
    a.spawn_run().await;
    let js = Js::connect(&cluster.urls()[0]).await;
    publish(&js, &first).await;
    settled(&a, &js, &model, &[STORE]).await;

    // Quiet: two checkpoints in a row at the same position, the second uploading no table file.
    let quiet = || async {
        let lines = lines_of(&a, CHECKPOINTED, partition);
        let [.., before, last] = lines.as_slice() else { return false };
        field(before, "position") == field(last, "position") && field(last, "table_bytes") == 0
    };
    assert!(wait_until(TIMEOUT, quiet).await, "no quiet checkpoint without table bytes\n{}", a.logs());
    let quiet_line = lines_of(&a, CHECKPOINTED, partition).pop().expect("a checkpoint");
    assert!(field(&quiet_line, "reused_files") > 0, "the quiet checkpoint reuses the table files: {quiet_line}");
    let quiet_position = field(&quiet_line, "position");

    let more = traffic(&[STORE], 60, "j", &mut model);
    publish(&js, &more).await;
    settled(&a, &js, &model, &[STORE]).await;
    let moved =
        || async { lines_of(&a, CHECKPOINTED, partition).iter().any(|l| field(l, "position") > quiet_position) };
    assert!(wait_until(TIMEOUT, moved).await, "no checkpoint after more input\n{}", a.logs());
    let after = lines_of(&a, CHECKPOINTED, partition);
    let next = after.iter().find(|l| field(l, "position") > quiet_position).expect("a later checkpoint");
    assert!(field(next, "table_bytes") > 0, "the new input's table files go up: {next}");
    assert!(field(next, "reused_files") > 0, "the older table files are reused: {next}");
    let uploaded: u64 = after.iter().map(|l| field(l, "table_bytes")).sum();
    eprintln!(
        "cluster checkpoints: quiet checkpoint {quiet_line}; after {} more inputs {next}; {} checkpoints uploaded \
         {uploaded} table bytes in all",
        more.len(),
        after.len()
    );

    // Garbage collection: every object of the partition is named by one of the last manifests.
    let collected = || async {
        let (objects, referenced) = objects_and_referenced(&js, partition).await;
        !objects.is_empty() && objects.is_subset(&referenced)
    };
    let (objects, referenced) = objects_and_referenced(&js, partition).await;
    assert!(
        wait_until(TIMEOUT, collected).await,
        "objects no manifest names remain: {:?}\n{}",
        objects.difference(&referenced).collect::<Vec<_>>(),
        a.logs()
    );
}
