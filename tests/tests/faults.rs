//! Backpressure under NATS and disk faults (docs/operations.md, "The guarantees"): tally stops acking what it cannot
//! commit, keeps outputs it cannot publish, says so on `/readyz` and in metrics, and resumes by
//! itself with nothing lost and nothing counted twice.
//!
//! The unreachable-server test waits 10 s by default; `TALLY_FAULT_LONG=1` makes it a minute,
//! and keeps the disk of the disk-full test full past the consumer's 60 s ack wait:
//!
//! ```text
//! TALLY_FAULT_LONG=1 cargo test -p tally-tests --test faults -- --nocapture
//! ```

use std::time::{Duration, Instant};

use async_nats::jetstream::stream::DiscardPolicy;
use serde_json::Value;
use tally_tests::crash::{self, metric, Partition, Tmpfs};
use tally_tests::fixtures::{self, DAY};
use tally_tests::{
    assert_dlq_entry, wait_for_messages, wait_until, DayTotals, Js, Model, NatsServer, Tally, DLQ_STREAM, DRAIN_TIMEOUT,
};

const PREFIX: &str = "retail";
/// How long tally may take to notice a fault or a recovery and say so on /readyz. The outbox
/// publisher backs off up to 5 s between attempts, a pull stream misses heartbeats after 10 s.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(45);
/// How long tally may take to catch up after a fault is gone.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);

/// What was published: the model of the valid records, and the garbage (source seq, payload).
#[derive(Default)]
struct Published {
    model: Model,
    /// Every valid record with its stream sequence, in publish order.
    records: Vec<(u64, Value)>,
    garbage: Vec<(u64, Vec<u8>)>,
    count: u64,
}

impl Published {
    /// Publishes `records`, with a garbled payload after every 50th, in order.
    async fn send(&mut self, js: &Js, records: &[(String, Value)]) {
        for (i, (subject, record)) in records.iter().enumerate() {
            if i % 50 == 49 {
                self.send_garbage(js, subject).await;
            }
            let seq = js.publish_json(subject, record).await;
            self.model.apply(record);
            self.records.push((seq, record.clone()));
            self.count += 1;
        }
    }

    /// Publishes one input that must be dead-lettered with reason `decode`; returns its seq.
    async fn send_garbage(&mut self, js: &Js, subject: &str) -> u64 {
        let payload = format!("{{not json #{}", self.garbage.len()).into_bytes();
        let seq = js.publish(subject, payload.clone(), &[]).await;
        self.garbage.push((seq, payload));
        self.count += 1;
        seq
    }

    /// The model of the valid records up to stream sequence `position`.
    fn model_upto(&self, position: u64) -> Model {
        let mut model = Model::new();
        self.records.iter().filter(|(seq, _)| *seq <= position).for_each(|(_, record)| model.apply(record));
        model
    }

    /// Asserts the day endpoint of every store-day equals the model.
    async fn assert_totals(&self, tally: &Tally, when: &str) {
        for (store, day) in self.model.store_days() {
            let got = DayTotals::from_http(&tally.day(&store, &day).await);
            assert_eq!(got, self.model.day(&store, &day), "{when}: store {store} day {day}\n{}", tally.logs());
        }
    }

    /// Waits until every garbage input is in the DLQ, then asserts each is there exactly once.
    async fn assert_dlq(&self, js: &Js, tally: &Tally) {
        let expected = self.garbage.len() as u64;
        if !wait_until(DRAIN_TIMEOUT, move || async move { js.message_count(DLQ_STREAM).await >= expected }).await {
            let found = js.message_count(DLQ_STREAM).await;
            panic!("the DLQ holds {found} of {expected} rejected inputs\n{}", tally.logs());
        }
        let dlq = wait_for_messages(js, DLQ_STREAM, expected).await;
        assert_eq!(dlq.len(), self.garbage.len(), "one DLQ entry per rejected input");
        for (seq, payload) in &self.garbage {
            let entry = dlq.iter().find(|m| m.header("Tally-Source-Sequence") == Some(seq.to_string().as_str()));
            let subject =
                entry.map(|m| m.header("Tally-Source-Subject").unwrap_or_default().to_string()).unwrap_or_default();
            assert_dlq_entry(&dlq, PREFIX, "decode", &subject, *seq, payload);
        }
    }
}

/// Waits until tally has committed and acked everything in its input stream.
async fn wait_caught_up(tally: &Tally, js: &Js, timeout: Duration) {
    let (stream, consumer) = (tally.input_stream(), tally.consumer());
    let (s, c) = (&stream, &consumer);
    let done = wait_until(timeout, move || async move { crash::consumer_caught_up(js, s, c).await }).await;
    assert!(done, "tally did not catch up within {timeout:?}: {}\n{}", js.consumer_summary(s, c).await, tally.logs());
}

/// Polls /readyz until it is 503 with a reason for `component`; returns the reasons.
async fn wait_unready(tally: &Tally, component: &str) -> Value {
    let t = tally;
    let seen = wait_until(NOTICE_TIMEOUT, move || async move {
        matches!(t.try_http_get("/readyz").await, Ok((503, body)) if body["reasons"].get(component).is_some())
    })
    .await;
    let last = tally.try_http_get("/readyz").await;
    assert!(seen, "/readyz must turn 503 with a `{component}` reason; last: {last:?}\n{}", tally.logs());
    last.expect("/readyz answered").1["reasons"].clone()
}

/// Polls /readyz until it is 200.
async fn wait_ready(tally: &Tally, timeout: Duration) {
    let t = tally;
    let ready =
        wait_until(timeout, move || async move { matches!(t.try_http_get("/readyz").await, Ok((200, _))) }).await;
    let last = tally.try_http_get("/readyz").await;
    assert!(ready, "/readyz must return to 200; last: {last:?}\n{}", tally.logs());
}

fn traffic(stores: &[&str], tag: &str, count: usize, seed: u64) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        all.extend(fixtures::traffic(PREFIX, store, DAY, tag, count, seed + i as u64));
    }
    all
}

/// The highest committed input position tally reports (over its partitions), 0 before its
/// first commit.
async fn committed(tally: &Tally) -> u64 {
    let Ok((200, serde_json::Value::String(text))) = tally.try_http_get("/metrics").await else { return 0 };
    let samples = tally_tests::prom::parse(&text);
    let positions = tally_tests::prom::samples(&samples, "tally_committed_stream_sequence");
    positions.iter().map(|sample| sample.value as u64).max().unwrap_or(0)
}

/// Publishes a backlog while tally is not running, starts it, and waits until it has committed
/// part of it, so that the fault that follows lands mid-stream. Returns the instance.
async fn start_with_backlog(nats: &NatsServer, js: &Js, published: &mut Published) -> Tally {
    let mut tally = Tally::builder(&nats.url()).toml("[input]\nbatch_max = 5\n").prepare();
    tally.setup_ok();
    published.send(js, &traffic(&["0201", "0202", "0203"], "a", 700, 11)).await;
    tally.spawn_run().await;
    let t = &tally;
    assert!(
        wait_until(NOTICE_TIMEOUT, move || async move { committed(t).await > 0 }).await,
        "tally committed nothing\n{}",
        tally.logs()
    );
    tally
}

// Proves a NATS restart (file storage) while tally works through a backlog loses nothing and
// counts nothing twice: totals and DLQ are exact afterwards, also for input published after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_stream_loses_nothing() {
    let mut nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let mut published = Published::default();
    let tally = start_with_backlog(&nats, &js, &mut published).await;
    let at_restart = committed(&tally).await;
    assert!(at_restart < published.count, "the restart must land mid-stream ({at_restart} of {})", published.count);

    nats.restart();
    let js = Js::connect(&nats.url()).await;
    assert_eq!(js.stream_info("RETAIL_IN").await.state.messages, published.count, "the server kept every input");
    published.send(&js, &traffic(&["0201", "0204"], "b", 300, 21)).await;
    wait_caught_up(&tally, &js, CATCH_UP_TIMEOUT).await;
    published.assert_totals(&tally, "after a NATS restart mid-stream").await;
    published.assert_dlq(&js, &tally).await;
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    eprintln!("NATS restarted at committed seq {at_restart} of {}; totals exact", published.count);
}

// Proves a NATS server crash (SIGKILL) while tally works through a backlog loses nothing and
// counts nothing twice, even though deliveries in flight die with the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_crash_mid_stream_loses_nothing() {
    let mut nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let mut published = Published::default();
    let tally = start_with_backlog(&nats, &js, &mut published).await;
    let at_crash = committed(&tally).await;
    assert!(at_crash < published.count, "the crash must land mid-stream ({at_crash} of {})", published.count);

    crash::sigkill_nats_server(&nats);
    nats.restart();
    let js = Js::connect(&nats.url()).await;
    let kept = js.stream_info("RETAIL_IN").await.state.messages;
    assert_eq!(kept, published.count, "the server lost PubAcked input in its own crash; not tally's doing");
    published.send(&js, &traffic(&["0201", "0204"], "b", 300, 21)).await;
    wait_caught_up(&tally, &js, CATCH_UP_TIMEOUT).await;
    published.assert_totals(&tally, "after a NATS crash mid-stream").await;
    published.assert_dlq(&js, &tally).await;
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    eprintln!("NATS SIGKILLed at committed seq {at_crash} of {}; totals exact", published.count);
}

// Proves a network partition between tally and NATS while it works through a backlog loses
// nothing: the deliveries the server sends into the broken path never arrive, and tally must
// not skip them when later messages arrive after the reconnect (it acks with AckAll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_partition_mid_stream_loses_nothing() {
    let nats = NatsServer::start();
    let proxy = Partition::start(nats.port()).await;
    let mut tally = Tally::builder(&proxy.url()).toml("[input]\nbatch_max = 5\n").prepare();
    tally.setup_ok();
    let js = Js::connect(&nats.url()).await;
    let mut published = Published::default();
    published.send(&js, &traffic(&["0801", "0802"], "a", 700, 101)).await;
    tally.spawn_run().await;
    let t = &tally;
    assert!(
        wait_until(NOTICE_TIMEOUT, move || async move { committed(t).await > 0 }).await,
        "tally committed nothing\n{}",
        tally.logs()
    );

    proxy.cut();
    let cut_at = Instant::now();
    let reasons = wait_unready(&tally, "nats").await;
    let at_cut = committed(&tally).await;
    assert!(at_cut < published.count, "the partition must land mid-stream ({at_cut} of {})", published.count);
    let noticed = cut_at.elapsed();
    proxy.heal();
    published.send(&js, &traffic(&["0801", "0803"], "b", 100, 111)).await;
    wait_caught_up(&tally, &js, CATCH_UP_TIMEOUT).await;
    // One process ran throughout, so its event counter says how many inputs it applied.
    let t = &tally;
    let count = published.count as f64;
    wait_until(NOTICE_TIMEOUT, move || async move { metric(t, "tally_events_total").await >= Some(count) }).await;
    let applied = metric(&tally, "tally_events_total").await.unwrap_or(0.0);
    assert_eq!(
        applied,
        count,
        "tally acked every input but applied only {applied} of {count}: it skipped the deliveries lost in the partition"
    );
    published.assert_totals(&tally, "after a network partition mid-stream").await;
    published.assert_dlq(&js, &tally).await;
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    eprintln!(
        "network partition at committed seq {at_cut} of {}: 503 after {:.1}s ({reasons}); totals exact",
        published.count,
        noticed.as_secs_f64()
    );
}

// Proves that while NATS is unreachable for a long while /readyz stays 503 with a `nats` reason
// (and tally_ready is 0), the process stays alive, and afterwards it resumes by itself with
// exact totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_for_a_while_then_resumes() {
    let outage =
        if std::env::var_os("TALLY_FAULT_LONG").is_some() { Duration::from_secs(60) } else { Duration::from_secs(10) };
    let mut nats = NatsServer::start();
    let mut tally = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let mut published = Published::default();
    published.send(&js, &traffic(&["0301", "0302"], "a", 200, 31)).await;
    tally.wait_drained(&js, CATCH_UP_TIMEOUT).await;

    nats.stop();
    let down_at = Instant::now();
    let reasons = wait_unready(&tally, "nats").await;
    let noticed = down_at.elapsed();
    // The fault lasts `outage` from the moment tally noticed it; all along, tally must stay
    // alive and say it is not ready.
    let mut polls = 0;
    while down_at.elapsed() < noticed + outage {
        let (status, body) = tally.http_get("/readyz").await;
        assert_eq!(status, 503, "/readyz while NATS is down: {body}");
        assert!(tally.is_running(), "tally must keep running while NATS is down\n{}", tally.logs());
        assert_eq!(metric(&tally, "tally_ready").await, Some(0.0), "tally_ready while NATS is down");
        assert_eq!(tally.http_get("/healthz").await.0, 200, "/healthz stays 200: the process is alive");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    nats.start_again();
    let up_at = Instant::now();
    let js = Js::connect(&nats.url()).await;
    published.send(&js, &traffic(&["0301", "0303"], "b", 200, 41)).await;
    wait_caught_up(&tally, &js, CATCH_UP_TIMEOUT).await;
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    let recovered = up_at.elapsed();
    published.assert_totals(&tally, "after NATS was unreachable").await;
    published.assert_dlq(&js, &tally).await;
    eprintln!(
        "NATS down {:.0}s: 503 after {:.1}s ({reasons}), {polls} polls all 503; caught up and ready {:.1}s after it returned",
        (noticed + outage).as_secs_f64(),
        noticed.as_secs_f64(),
        recovered.as_secs_f64()
    );
}

// Proves a deleted output stream holds outputs in the durable outbox: /readyz 503 naming the
// outbox, tally_outbox_pending_messages > 0, input still committed; `tally setup` recreates the
// stream and the held entry is delivered once, verbatim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_output_stream_holds_outputs_until_recreated() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    js.context.delete_stream(DLQ_STREAM).await.expect("delete RETAIL_DLQ");

    let mut published = Published::default();
    published.send(&js, &traffic(&["0401"], "a", 30, 51)).await;
    published.send_garbage(&js, "retail.pos.0401").await;
    let reasons = wait_unready(&tally, "outbox").await;
    let t = &tally;
    let held = wait_until(NOTICE_TIMEOUT, move || async move {
        metric(t, "tally_outbox_pending_messages").await.unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(held, "tally_outbox_pending_messages must show the held DLQ entry\n{}", tally.logs());
    // The input itself is committed and acked: only the output waits.
    tally.wait_drained(&js, CATCH_UP_TIMEOUT).await;
    published.assert_totals(&tally, "with the DLQ stream gone").await;

    tally.setup_ok();
    published.assert_dlq(&js, &tally).await;
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    let t = &tally;
    let empty =
        wait_until(
            NOTICE_TIMEOUT,
            move || async move { metric(t, "tally_outbox_pending_messages").await == Some(0.0) },
        )
        .await;
    assert!(empty, "the outbox must drain after the stream is back\n{}", tally.logs());
    eprintln!("DLQ stream deleted: /readyz said {reasons}; entry delivered after `tally setup`");
}

// Proves a full output stream (max_bytes reached, discard new) holds outputs in the outbox:
// /readyz 503 naming the outbox, nothing lost, and all entries delivered once the limit is
// raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_output_stream_holds_outputs_until_raised() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    // Fill the DLQ stream to its byte limit with a message of our own, refusing anything new.
    js.publish("retail.dlq.filler", vec![b'x'; 512], &[("Nats-Msg-Id", "filler")]).await;
    let mut stream = js.stream(DLQ_STREAM).await;
    let info = stream.info().await.expect("DLQ stream info");
    let mut config = info.config.clone();
    config.max_bytes = info.state.bytes as i64;
    config.discard = DiscardPolicy::New;
    js.context.update_stream(&config).await.expect("limit RETAIL_DLQ to its current size");

    let mut published = Published::default();
    published.send(&js, &traffic(&["0501"], "a", 30, 61)).await;
    published.send_garbage(&js, "retail.pos.0501").await;
    published.send_garbage(&js, "retail.pos.0501").await;
    let reasons = wait_unready(&tally, "outbox").await;
    let t = &tally;
    let held = wait_until(NOTICE_TIMEOUT, move || async move {
        metric(t, "tally_outbox_pending_messages").await.unwrap_or(0.0) >= 2.0
    })
    .await;
    assert!(held, "tally_outbox_pending_messages must show both held DLQ entries\n{}", tally.logs());
    tally.wait_drained(&js, CATCH_UP_TIMEOUT).await;
    published.assert_totals(&tally, "with the DLQ stream full").await;
    assert_eq!(js.message_count(DLQ_STREAM).await, 1, "only the filler fits");

    config.max_bytes = -1;
    js.context.update_stream(&config).await.expect("lift the byte limit");
    let dlq = wait_for_messages(&js, DLQ_STREAM, 3).await;
    let entries: Vec<_> = dlq.iter().filter(|m| m.subject != "retail.dlq.filler").cloned().collect();
    assert_eq!(
        entries.len(),
        2,
        "both held entries, once each: {:?}",
        dlq.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    for (seq, payload) in &published.garbage {
        assert_dlq_entry(&entries, PREFIX, "decode", "retail.pos.0501", *seq, payload);
    }
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    eprintln!("DLQ stream full: /readyz said {reasons}; entries delivered after the limit was lifted");
}

// Proves a full disk stops commits without acking: /readyz 503 with a `store` reason, the input
// stays unacked and nothing of it is applied; once the disk is enlarged tally resumes by itself
// and the totals are exact. The state lives on a small tmpfs that the test fills (needs root).
// RocksDB writes its WAL into space it reserved beforehand (1.1 × a memtable, 8.8 MiB by
// default), so after the disk is full the test keeps sending until a commit finds no room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_stops_acking_and_recovers() {
    let disk = match Tmpfs::mount("48m") {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("SKIPPED disk_full_stops_acking_and_recovers: {reason} (the in-process FailingStore tests cover this path)");
            return;
        }
    };
    let nats = NatsServer::start();
    let state = disk.path().join("state");
    // One partition: what is applied while commits fail is checked against the input up to one
    // committed position, which only an unpartitioned input has (each partition's loop is the
    // same loop; the crash test kills tally over many partitions).
    let config = format!("[state]\npath = {:?}\n[input]\npartitions = 1\n", state.display().to_string());
    let tally = Tally::start(&nats.url(), &config).await;
    let js = Js::connect(&nats.url()).await;
    let mut published = Published::default();
    published.send(&js, &traffic(&["0601", "0602"], "a", 200, 71)).await;
    tally.wait_drained(&js, CATCH_UP_TIMEOUT).await;
    published.assert_totals(&tally, "before the disk filled up").await;

    let (_filler, filled) = disk.fill();
    let mut rounds = 0;
    loop {
        let more = traffic(&["0601", "0603"], &format!("b{rounds}"), 100, 81 + rounds);
        published.send(&js, &more).await;
        let t = &tally;
        let failing = wait_until(Duration::from_secs(5), move || async move {
            matches!(t.try_http_get("/readyz").await, Ok((503, body)) if body["reasons"].get("store").is_some())
        })
        .await;
        rounds += 1;
        if failing {
            break;
        }
        assert!(rounds < 60, "commits still succeed after {rounds} rounds of input on a full disk\n{}", tally.logs());
    }
    let reasons = wait_unready(&tally, "store").await;
    let (stream, consumer) = (tally.input_stream(), tally.consumer());
    let stream_last = js.stream_info(&stream).await.state.last_sequence;
    // Commits that still found room (RocksDB may have space reserved) are fine; what matters is
    // that nothing past the last commit is acked or applied while commits fail.
    let position = committed(&tally).await;
    assert!(position < stream_last, "the position must stop moving while commits fail ({position} of {stream_last})");
    let info = js.stream(&stream).await.consumer_info(&consumer).await.expect("consumer info");
    assert!(info.num_ack_pending > 0, "the held batch must stay unacked: {info:?}");
    assert!(info.ack_floor.stream_sequence <= position, "acked past the committed position {position}: {info:?}");
    let upto = published.model_upto(position);
    for (store, day) in upto.store_days() {
        let got = DayTotals::from_http(&tally.day(&store, &day).await);
        assert_eq!(got, upto.day(&store, &day), "only committed input is applied while the disk is full: {store}");
    }
    assert_eq!(committed(&tally).await, position, "the position must not move while the disk is full");
    let failures = metric(&tally, "tally_commit_failures_total").await.unwrap_or(0.0);
    assert!(failures >= 1.0, "tally_commit_failures_total counts the failed commits");
    // With TALLY_FAULT_LONG the disk stays full past the consumer's 60 s ack wait, so the server
    // redelivers the held batch while tally still retries its commit.
    if std::env::var_os("TALLY_FAULT_LONG").is_some() {
        let until = Instant::now() + Duration::from_secs(75);
        while Instant::now() < until {
            let (status, body) = tally.http_get("/readyz").await;
            assert_eq!(status, 503, "/readyz while the disk is full: {body}");
            assert_eq!(committed(&tally).await, position, "the position must not move while the disk is full");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let info = js.stream(&stream).await.consumer_info(&consumer).await.expect("consumer info");
        assert!(info.ack_floor.stream_sequence <= position, "acked past the committed position: {info:?}");
        eprintln!("disk full for 75 s: {} redelivered while held", info.num_redelivered);
    }

    // Space comes back: the disk is enlarged (the filler stays), tally resumes by itself.
    // RocksDB clears a no-space error only once a whole write buffer (64 MiB) is free, so the
    // disk grows well past that.
    disk.resize("256m");
    let freed_at = Instant::now();
    let (s, c, j) = (&stream, &consumer, &js);
    let resumed = wait_until(CATCH_UP_TIMEOUT, move || async move { crash::consumer_caught_up(j, s, c).await }).await;
    assert!(
        resumed,
        "tally did not resume within {CATCH_UP_TIMEOUT:?} after space came back: {}; /readyz {:?}\n\
         RocksDB LOG (error handling):\n{}\n{}",
        js.consumer_summary(s, c).await,
        tally.try_http_get("/readyz").await,
        rocksdb_log_excerpt(&state),
        tally.logs()
    );
    wait_ready(&tally, NOTICE_TIMEOUT).await;
    published.assert_totals(&tally, "after the disk had space again").await;
    published.assert_dlq(&js, &tally).await;
    eprintln!(
        "disk full ({} MiB filler, {rounds} rounds of input until a commit failed): /readyz said {reasons}, \
         {failures} failed commits, batch unacked; resumed {:.1}s after the disk was enlarged, totals exact",
        filled >> 20,
        freed_at.elapsed().as_secs_f64()
    );
}

/// The error-handling lines of a RocksDB `LOG` file, for failure messages.
fn rocksdb_log_excerpt(db: &std::path::Path) -> String {
    let text = std::fs::read_to_string(db.join("LOG")).unwrap_or_else(|e| format!("<no LOG: {e}>"));
    let lines: Vec<&str> =
        text.lines().filter(|l| ["rror", "ecover", "space", "esum", "Stop"].iter().any(|w| l.contains(w))).collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

// Proves the not-ready reason of a full disk names the cause, so that an operator can tell a
// full disk from a broken one (issue 5: "state dir unwritable or full gives a clear error").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_reason_names_the_cause() {
    // Room for the default 16 partitions to open their databases (each writes its options and
    // a WAL at open); 48 MiB was too little under load, and the open failed before the test.
    let disk = match Tmpfs::mount("256m") {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("SKIPPED disk_full_reason_names_the_cause: {reason}");
            return;
        }
    };
    let nats = NatsServer::start();
    let config = format!("[state]\npath = {:?}\n", disk.path().join("state").display().to_string());
    let tally = Tally::start(&nats.url(), &config).await;
    let js = Js::connect(&nats.url()).await;
    disk.fill();
    let mut published = Published::default();
    published.send(&js, &traffic(&["0701"], "a", 20, 91)).await;
    let reasons = wait_unready(&tally, "store").await;
    let reason = reasons["store"].as_str().unwrap_or_default();
    assert!(reason.contains("No space left on device"), "the store reason must name the cause, got {reason:?}");
    disk.resize("512m");
}
