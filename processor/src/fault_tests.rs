//! Fault injection in-process (issue 5): the failures SIGKILL cannot produce on demand. A
//! commit that fails and is retried, a disk that fails for a while under the real run loop, an
//! outbox delete that fails after JetStream acknowledged the publish. `FailingStore` fails the
//! chosen writes; a failed write applies nothing, as a store that crashed before committing.
//!
//! The topology-level tests need nothing. The run-loop and outbox tests drive the real
//! [`Runner`] and [`Publisher`] against a throwaway `nats-server` on PATH (installed by
//! `scripts/install-deps.sh`, as for the integration tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use tally_state::{Cf, Entries, FailingStore, MemStore, Overlay, StateError, Store, WriteBatch};
use tally_topologies::report;
use tally_topologies::topology::{self, InputMessage, Retail, Tick, TopologyConfig};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::health::Health;
use crate::outbox::Publisher;
use crate::runner::Runner;
use crate::test_nats::NatsServer;

const STORES: [&str; 2] = ["0042", "0043"];
const DAY: &str = "2026-11-27";

/// A deterministic business day on the wire: (subject, payload). Sales over seven skus,
/// decrements for most of them (so drift keys fire and resolve), post-voids, exact duplicates,
/// a conflicting re-use of an id, garbage for the DLQ, then each store's day-close and a record
/// of the next day that moves event time past it.
fn day_messages(count: usize) -> Vec<(String, Vec<u8>)> {
    let at = |minute: usize| format!("{DAY}T{:02}:{:02}:00Z", 8 + minute / 60, minute % 60);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut sales: Vec<(String, String, String, u64)> = Vec::new();
    for i in 0..count {
        let store = STORES[i % STORES.len()];
        let pos = format!("retail.pos.{store}");
        let minute = i * 2;
        let record = match i % 10 {
            0..=5 => {
                let id = format!("T-{store}-{i}");
                let sku = format!("S{}", i % 7);
                let qty = 1 + (i % 3) as u64;
                let price = format!("{}.{:02}", 3 + i % 20, (i * 37) % 100);
                sales.push((store.to_string(), id.clone(), sku.clone(), qty));
                json!({"type": "pos.transaction", "id": id, "store": store, "register": "R1", "seq": i,
                       "occurred_at": at(minute), "business_day": DAY,
                       "lines": [{"line": 1, "sku": sku, "qty": qty.to_string(), "unit_price": price, "tax": "0.50"}],
                       "tenders": [{"type": if i % 3 == 0 { "cash" } else { "card" }, "amount": "9.99"}]})
            }
            6 | 7 => {
                let Some((_, id, sku, qty)) = sales.iter().rev().find(|s| s.0 == store).cloned() else { continue };
                json!({"type": "inventory.movement", "id": format!("M-{store}-{i}"), "store": store,
                       "occurred_at": at(minute + 1), "business_day": DAY, "reason": "sale", "ref": id,
                       "lines": [{"sku": sku, "qty": format!("-{qty}")}]})
            }
            8 => {
                let Some((_, target, _, _)) = sales.iter().filter(|s| s.0 == store).nth(i / 40).cloned() else {
                    continue;
                };
                json!({"type": "pos.transaction", "id": format!("V-{store}-{i}"), "store": store,
                       "occurred_at": at(minute), "business_day": DAY, "voids": target})
            }
            _ => {
                // Alternately an exact duplicate, a conflicting re-use of an id, and garbage.
                match (i / 10) % 3 {
                    0 => match out.iter().rev().find(|(s, _)| *s == pos) {
                        Some(previous) => {
                            out.push(previous.clone());
                            continue;
                        }
                        None => continue,
                    },
                    1 => match sales.iter().find(|s| s.0 == store) {
                        Some((_, id, sku, _)) => json!({"type": "pos.transaction", "id": id, "store": store,
                            "occurred_at": at(minute), "business_day": DAY,
                            "lines": [{"line": 1, "sku": sku, "qty": "99", "unit_price": "1.00"}]}),
                        None => continue,
                    },
                    _ => {
                        out.push((pos, format!("{{garbage {i}").into_bytes()));
                        continue;
                    }
                }
            }
        };
        let family = if record["type"] == "inventory.movement" { "inventory" } else { "pos" };
        out.push((format!("retail.{family}.{store}"), serde_json::to_vec(&record).unwrap()));
    }
    for store in STORES {
        let close = json!({"type": "pos.day_close", "id": format!("CLOSE-{store}"), "store": store,
            "business_day": DAY, "occurred_at": format!("{DAY}T22:00:00Z"),
            "transaction_count": 0, "net_sales": "0", "tax": "0"});
        out.push((format!("retail.pos.{store}"), serde_json::to_vec(&close).unwrap()));
        let next = json!({"type": "inventory.movement", "id": format!("NEXT-{store}"), "store": store,
            "occurred_at": "2026-11-28T09:00:00Z", "business_day": "2026-11-28", "reason": "receipt",
            "lines": [{"sku": "S0", "qty": "10"}]});
        out.push((format!("retail.inventory.{store}"), serde_json::to_vec(&next).unwrap()));
    }
    out
}

/// Drift fires after five minutes of event time; interim postings every minute of processing
/// time; a day finalizes at its day-close.
fn topology_config() -> TopologyConfig {
    let mut config = TopologyConfig {
        close_grace: chrono::Duration::zero(),
        erp_interval: chrono::Duration::minutes(1),
        ..TopologyConfig::default()
    };
    config.drift.settle = chrono::Duration::minutes(5);
    config
}

/// The processing time of batch `i`: 30 s apart, so ticks send interim postings and advance
/// idle stores, and the same batch always sees the same time.
fn now_of(i: usize) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().to_utc() + chrono::Duration::seconds(30 * i as i64)
}

/// One input message as the run loop sees it: stream sequence, subject, payload.
type Numbered = (u64, (String, Vec<u8>));

/// One batch as the run loop applies it (`Retail::apply_batch`, with the tick); the result is
/// the one write that commits it all.
fn apply_batch(retail: &Retail, store: &dyn Store, batch: &[Numbered], now: DateTime<Utc>) -> WriteBatch {
    let mut txn = Overlay::new(store);
    let inputs: Vec<InputMessage<'_>> =
        batch.iter().map(|(seq, (subject, payload))| InputMessage::new(subject, None, payload, *seq)).collect();
    retail.apply_batch(&mut txn, &inputs, now, Tick::Run).expect("apply");
    txn.into_batch()
}

/// Every entry of every column family.
fn dump(store: &dyn Store) -> BTreeMap<&'static str, Entries> {
    Cf::ALL.iter().map(|cf| (cf.name(), store.scan_from(*cf, &[], usize::MAX).expect("scan"))).collect()
}

/// The day's messages numbered as stream sequences, in batches of 7.
fn batches() -> Vec<Vec<Numbered>> {
    let numbered: Vec<_> = day_messages(240).into_iter().enumerate().map(|(i, m)| (i as u64 + 1, m)).collect();
    numbered.chunks(7).map(<[_]>::to_vec).collect()
}

/// The state after every batch committed without a fault.
fn reference_state(retail: &Retail, batches: &[Vec<Numbered>]) -> BTreeMap<&'static str, Entries> {
    let store = MemStore::new();
    for (i, batch) in batches.iter().enumerate() {
        store.write(&apply_batch(retail, &store, batch, now_of(i))).expect("write");
    }
    dump(&store)
}

#[test]
fn a_failed_commit_applies_nothing_and_its_retry_equals_no_failure() {
    // Proves, for a failure at every commit of a business day in turn, that the failed write
    // leaves the store untouched and retrying the same write (what runner::commit does) ends
    // in exactly the state of a run without the failure: aggregates, dedupe, outbox, timers.
    let retail = Retail::new(topology_config());
    let batches = batches();
    let reference = reference_state(&retail, &batches);
    assert!(!reference["outbox"].is_empty(), "the day must leave outputs in the outbox, else the test proves little");
    for fail_at in 1..=batches.len() as u64 {
        let inner = Arc::new(MemStore::new());
        let store = FailingStore::new(Arc::clone(&inner)).fail_write_number(fail_at);
        for (i, batch) in batches.iter().enumerate() {
            let write = apply_batch(&retail, &store, batch, now_of(i));
            let before = dump(inner.as_ref());
            match store.write(&write.clone()) {
                Ok(()) => {}
                Err(StateError::Injected { .. }) => {
                    assert_eq!(dump(inner.as_ref()), before, "a failed commit (write {fail_at}) must apply nothing");
                    store.write(&write).expect("the retry succeeds");
                }
                Err(other) => panic!("unexpected store error {other:?}"),
            }
        }
        assert_eq!(dump(inner.as_ref()), reference, "retrying failed write {fail_at} must equal no failure");
    }
}

#[test]
fn a_batch_re_applied_after_a_failed_commit_equals_no_failure() {
    // Proves that when a failed commit is followed by a crash, the redelivered input (the
    // previous, committed batch again plus the lost one) re-applied from the committed state
    // skips what was committed and ends in exactly the state of a run without the failure.
    let retail = Retail::new(topology_config());
    let batches = batches();
    let reference = reference_state(&retail, &batches);
    for fail_at in 1..=batches.len() as u64 {
        let inner = Arc::new(MemStore::new());
        let store = FailingStore::new(Arc::clone(&inner)).fail_write_number(fail_at);
        for (i, batch) in batches.iter().enumerate() {
            if store.write(&apply_batch(&retail, &store, batch, now_of(i))).is_ok() {
                continue;
            }
            let mut redelivered = if i > 0 { batches[i - 1].clone() } else { Vec::new() };
            redelivered.extend(batch.iter().cloned());
            store.write(&apply_batch(&retail, &store, &redelivered, now_of(i))).expect("the second attempt succeeds");
        }
        assert_eq!(dump(inner.as_ref()), reference, "re-applying after failed write {fail_at} must equal no failure");
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn config_for(nats: &NatsServer) -> Config {
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.input.batch_max = 10;
    config.input.fetch_wait = "100ms".into();
    // One run loop over one store: the partitions' loops are each this loop.
    config.input.partitions = Some(1);
    config
}

async fn jetstream_of(config: &Config) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(config.nats.url.as_str()).await.expect("connect");
    let js = jetstream::new(client.clone());
    crate::nats::setup(&js, config).await.expect("setup streams and consumer");
    (client, js)
}

async fn publish_all(js: &jetstream::Context, messages: &[(String, Vec<u8>)]) -> u64 {
    let mut last = 0;
    for (subject, payload) in messages {
        last =
            js.publish(subject.clone(), payload.clone().into()).await.expect("publish").await.expect("PubAck").sequence;
    }
    last
}

fn position(store: &dyn Store) -> u64 {
    topology::committed_position(&Overlay::new(store)).expect("position")
}

/// The POS and inventory sides of every store's day: what must not depend on timing.
fn day_totals(store: &dyn Store) -> Vec<Value> {
    STORES
        .iter()
        .map(|s| {
            let day = report::day_report(store, s, DAY.parse().unwrap()).expect("report").unwrap_or(Value::Null);
            json!({"pos": day["pos"], "inventory": day["inventory"], "duplicates": day["duplicates"], "conflicts": day["conflicts"]})
        })
        .collect()
}

/// The same totals computed without NATS, without faults.
fn expected_totals(messages: &[(String, Vec<u8>)]) -> Vec<Value> {
    let retail = Retail::new(Config::default().topology());
    let store = MemStore::new();
    let numbered: Vec<_> = messages.iter().cloned().enumerate().map(|(i, m)| (i as u64 + 1, m)).collect();
    store.write(&apply_batch(&retail, &store, &numbered, Utc::now())).expect("write");
    day_totals(&store)
}

fn new_runner(config: &Config, store: Arc<dyn Store>, client: &async_nats::Client) -> Arc<Runner> {
    Arc::new(Runner {
        client: client.clone(),
        config: config.clone(),
        store,
        retail: Arc::new(Retail::new(config.topology())),
        health: Arc::new(Health::default()),
        outbox_notify: Arc::new(Notify::new()),
        last_tick: std::sync::Mutex::new(Instant::now()),
        tick: crate::runner::Tick::Live,
        partition: crate::partitions::Partition::WHOLE,
        apply_slots: Arc::new(tokio::sync::Semaphore::new(1)),
        epoch: None,
    })
}

async fn consumer_info(js: &jetstream::Context, config: &Config) -> jetstream::consumer::Info {
    let stream = js.get_stream(&config.input.stream).await.expect("input stream");
    stream.consumer_info(&config.input.consumer).await.expect("consumer info")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_holds_acks_while_the_disk_fails_and_resumes() {
    // Proves, on the real run loop, that while every commit fails the input stays unacked, the
    // committed state and position do not move and readiness names the store; that the loop
    // resumes by itself once writes succeed; and that a shutdown while failing acks nothing and
    // a new run over the same state catches up exactly.
    let nats = NatsServer::start();
    let config = config_for(&nats);
    let (client, js) = jetstream_of(&config).await;
    let messages = day_messages(300);
    let (first, rest) = messages.split_at(100);
    let (second, third) = rest.split_at(100);

    let inner = Arc::new(MemStore::new());
    let failing = Arc::new(FailingStore::new(Arc::clone(&inner)));
    let disk_down = failing.fail_all_switch();
    let runner = new_runner(&config, failing.clone(), &client);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn({
        let (runner, js) = (Arc::clone(&runner), js.clone());
        async move { runner.run(&js, shutdown).await }
    });

    let last = publish_all(&js, first).await;
    assert!(eventually(WAIT, || async { position(inner.as_ref()) == last }).await, "the first part is committed");
    assert!(eventually(WAIT, || async { runner.health.check().is_ok() }).await, "ready while all is well");

    // The disk fails: the next batch is held, unacked, and nothing of it lands.
    disk_down.store(true, Ordering::SeqCst);
    let committed_before = position(inner.as_ref());
    let state_before = dump(inner.as_ref());
    let last = publish_all(&js, second).await;
    let store_reason = || runner.health.check().err().and_then(|problems| problems.get("store").cloned());
    assert!(eventually(WAIT, || async { store_reason().is_some() }).await, "readiness must name the store");
    let writes_failed_at = failing.writes_attempted();
    assert!(
        eventually(WAIT, || async { failing.writes_attempted() >= writes_failed_at + 2 }).await,
        "the commit is retried"
    );
    let info = consumer_info(&js, &config).await;
    assert!(info.num_ack_pending > 0, "the held batch stays unacked: {info:?}");
    assert!(info.ack_floor.stream_sequence <= committed_before, "nothing acked past the commit: {info:?}");
    assert_eq!(position(inner.as_ref()), committed_before, "the position must not move while commits fail");
    assert_eq!(dump(inner.as_ref()), state_before, "nothing may land while commits fail");
    assert!(store_reason().unwrap_or_default().contains("commit failed"), "{:?}", store_reason());

    // The disk comes back: the loop resumes by itself.
    disk_down.store(false, Ordering::SeqCst);
    assert!(eventually(WAIT, || async { position(inner.as_ref()) == last }).await, "resumes after the disk is back");
    assert!(
        eventually(WAIT, || async { runner.health.check().is_ok() }).await,
        "ready again: {:?}",
        runner.health.check()
    );

    // The disk fails again and the processor is stopped meanwhile: it exits without acking.
    disk_down.store(true, Ordering::SeqCst);
    let committed_before = position(inner.as_ref());
    let last = publish_all(&js, third).await;
    assert!(eventually(WAIT, || async { store_reason().is_some() }).await, "readiness must name the store again");
    stop.send(true).expect("signal shutdown");
    let result = task.await.expect("the run loop does not panic");
    let err = result.expect_err("a shutdown while commits fail reports the uncommitted batch");
    assert!(format!("{err:#}").contains("not acked"), "{err:#}");
    let info = consumer_info(&js, &config).await;
    assert!(info.ack_floor.stream_sequence <= committed_before, "nothing acked past the commit: {info:?}");
    assert_eq!(position(inner.as_ref()), committed_before);

    // A new run over the same state (disk fine) recreates the consumer after the committed
    // position and catches up exactly.
    let runner = new_runner(&config, inner.clone(), &client);
    let (_stop, shutdown) = watch::channel(false);
    let task = tokio::spawn({
        let (runner, js) = (Arc::clone(&runner), js.clone());
        async move { runner.run(&js, shutdown).await }
    });
    assert!(eventually(WAIT, || async { position(inner.as_ref()) == last }).await, "the restart catches up");
    assert_eq!(day_totals(inner.as_ref()), expected_totals(&messages), "totals after disk faults and a restart");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_delete_re_sends_the_same_entry_once_stored() {
    // Proves that when the delete after a PubAck fails, the outbox keeps the entry and sends it
    // again with the same Nats-Msg-Id and the same bytes; the output stream's duplicate window
    // keeps one copy and the outbox ends empty.
    let nats = NatsServer::start();
    let config = config_for(&nats);
    let (client, js) = jetstream_of(&config).await;

    // A committed outbox entry: the DLQ entry of a garbled input.
    let inner = Arc::new(MemStore::new());
    let retail = Retail::new(config.topology());
    let garbled = vec![(7u64, ("retail.pos.0042".to_string(), b"{garbled".to_vec()))];
    inner.write(&apply_batch(&retail, inner.as_ref(), &garbled, Utc::now())).expect("commit");
    assert_eq!(inner.scan_from(Cf::Outbox, &[], 10).unwrap().len(), 1, "one outbox entry");

    let mut wire = client.subscribe("retail.dlq.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let failing = Arc::new(FailingStore::new(Arc::clone(&inner)).fail_write_number(1));
    let publisher = Publisher {
        store: failing.clone(),
        js: js.clone(),
        health: Arc::new(Health::default()),
        notify: Arc::new(Notify::new()),
        partition: crate::partitions::Partition::WHOLE,
        fence: None,
    };
    let (_stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { publisher.run(shutdown).await });

    let mut sent = Vec::new();
    for _ in 0..2 {
        let message =
            tokio::time::timeout(WAIT, wire.next()).await.expect("a publish on the wire").expect("subscription open");
        sent.push(message);
    }
    assert!(
        eventually(WAIT, || async { inner.scan_from(Cf::Outbox, &[], 10).unwrap().is_empty() }).await,
        "the outbox must end empty"
    );
    task.abort();
    let id = |m: &async_nats::Message| m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string());
    assert_eq!(id(&sent[0]).as_deref(), Some("dlq/7"));
    assert_eq!(id(&sent[0]), id(&sent[1]), "the re-send carries the same id");
    assert_eq!(sent[0].payload, sent[1].payload, "the re-send carries the same bytes");
    assert_eq!(sent[0].subject, sent[1].subject);
    assert_eq!(failing.writes_attempted(), 2, "one failed delete, one that succeeded");
    let mut stream = js.get_stream("RETAIL_DLQ").await.expect("DLQ stream");
    let messages = stream.info().await.expect("DLQ info").state.messages;
    assert_eq!(messages, 1, "the duplicate window keeps one copy");
}
