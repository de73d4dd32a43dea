//! Effectively once under SIGKILL (docs/operations.md, "The guarantees"): a business day of several stores is processed
//! once without faults on one partition, and once on 16 partitions (the default; the stores
//! spread over several, which commit side by side) while tally is killed with SIGKILL at random
//! moments (during start-up, during commits, while outputs are in flight, during finalization)
//! and restarted each time. Aggregates, final drift alerts, posting sums and DLQ entries must
//! come out equal, no output id may be published with two different payloads, and nothing may
//! be missing (docs/operations.md, "Partitions").
//!
//! The default run kills tally 6 times; the full run is one flag away:
//!
//! ```text
//! TALLY_CRASH_KILLS=25 cargo test -p tally-tests --test crash -- --nocapture
//! ```
//!
//! `TALLY_CRASH_SEED` picks another kill schedule (default 20261127); a failure prints it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_tests::crash::{self, all_sent, env_usize, Outputs, PostingSums, WireTap};
use tally_tests::fixtures::{self, line, line_full, return_line, tender, transaction, Rng, DAY};
use tally_tests::{wait_until, DayTotals, Js, Model, NatsServer, Tally};

const PREFIX: &str = "retail";
const STORES: [&str; 4] = ["0101", "0102", "0103", "0104"];
/// Records of generated traffic per store, besides the hand-made ones.
const TRAFFIC_PER_STORE: usize = 800;
/// How long a run may take to process everything and send every output.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// Small batches, so that a backlog takes many commits and kills land in them; interim
/// postings every second; a day finalizes as soon as its day-close is processed; drift fires
/// without settling, so alerts are in flight all the time.
const CONFIG: &str = r#"
[input]
batch_max = 20
[erp]
interval = "1s"
close_grace = "0s"
[drift]
settle = "0s"
idle_timeout = "1s"
"#;

/// One input message: what is published, and the record the model applies (none for input
/// that must be dead-lettered before it counts).
#[derive(Clone)]
struct Input {
    subject: String,
    payload: Vec<u8>,
    record: Option<Value>,
    /// The DLQ reason this input must get, if any.
    dlq: Option<&'static str>,
}

impl Input {
    fn json(subject: String, record: Value, dlq: Option<&'static str>) -> Input {
        let payload = serde_json::to_vec(&record).expect("JSON encodes");
        let record = if dlq.is_some() && dlq != Some("conflict") { None } else { Some(record) };
        Input { subject, payload, record, dlq }
    }
}

/// A business day of four stores: generated traffic (baskets, returns, voids, exact
/// duplicates, decrements that rarely match the sales) interleaved across stores, plus per
/// store: sales of one sku that are never decremented (a certain final drift alert), a sale
/// decremented exactly (no drift), a restocked return, a sale voided later, a conflicting
/// re-use of an id, a garbled payload, a record whose store differs from its subject; and last
/// the day-close of each store, agreeing with what was sent. Rejected input of rotating kinds
/// is spread through the whole day.
fn business_day() -> Vec<Input> {
    let mut per_store: Vec<Vec<Input>> = Vec::new();
    for (i, store) in STORES.iter().enumerate() {
        let pos = fixtures::pos_subject(PREFIX, store);
        let inventory = fixtures::inventory_subject(PREFIX, store);
        let mut inputs: Vec<Input> = fixtures::traffic(PREFIX, store, DAY, "C", TRAFFIC_PER_STORE, 500 + i as u64)
            .into_iter()
            .map(|(subject, record)| Input::json(subject, record, None))
            .collect();
        let mut extra = Vec::new();
        for n in 1..=3 {
            let tx = transaction(
                &format!("X-{store}-ND{n}"),
                store,
                DAY,
                vec![line(1, "900001", "2", "12.50")],
                vec![tender("card", "25.00")],
            );
            extra.push(Input::json(pos.clone(), tx, None));
        }
        let matched = transaction(
            &format!("X-{store}-M1"),
            store,
            DAY,
            vec![line_full(1, "900002", "3", "4.00", "0.50", "0.92")],
            vec![tender("cash", "12.42")],
        );
        extra.push(Input::json(pos.clone(), matched.clone(), None));
        let mut decrement = fixtures::movement(&format!("X-{store}-MV1"), store, DAY, "sale", &[("900002", "-3")]);
        decrement["ref"] = json!(format!("X-{store}-M1"));
        extra.push(Input::json(inventory.clone(), decrement, None));
        let ret = transaction(
            &format!("X-{store}-R1"),
            store,
            DAY,
            vec![return_line(1, "900003", "-1", "30.00", "-2.40", true)],
            vec![tender("card", "-32.40")],
        );
        extra.push(Input::json(pos.clone(), ret, None));
        let voided = transaction(
            &format!("X-{store}-V1"),
            store,
            DAY,
            vec![line(1, "900004", "5", "9.99")],
            vec![tender("cash", "49.95")],
        );
        extra.push(Input::json(pos.clone(), voided, None));
        extra.push(Input::json(
            pos.clone(),
            fixtures::void(&format!("X-{store}-VOID1"), store, DAY, &format!("X-{store}-V1")),
            None,
        ));
        let mut conflicting = matched.clone();
        conflicting["lines"][0]["qty"] = json!("4");
        extra.push(Input::json(pos.clone(), conflicting, Some("conflict")));
        extra.push(Input { subject: pos.clone(), payload: b"{not json".to_vec(), record: None, dlq: Some("decode") });
        let other = if *store == STORES[0] { STORES[1] } else { STORES[0] };
        let mismatch = transaction(&format!("X-{store}-MM"), other, DAY, vec![line(1, "900005", "1", "1.00")], vec![]);
        extra.push(Input::json(pos.clone(), mismatch, Some("store_mismatch")));
        // Spread the hand-made records through the store's day, each after the one it needs.
        let step = inputs.len() / (extra.len() + 1);
        for (k, input) in extra.into_iter().enumerate() {
            inputs.insert((k + 1) * step + k, input);
        }
        per_store.push(inputs);
    }

    let mut day = Vec::new();
    let longest = per_store.iter().map(Vec::len).max().unwrap_or(0);
    for n in 0..longest {
        for inputs in &per_store {
            if let Some(input) = inputs.get(n) {
                day.push(input.clone());
            }
        }
    }
    // Rejected input all through the day, so that DLQ entries are in flight at any moment.
    let mut spread = Vec::with_capacity(day.len() + day.len() / GARBAGE_EVERY);
    for (n, input) in day.into_iter().enumerate() {
        if n % GARBAGE_EVERY == GARBAGE_EVERY / 2 {
            spread.push(garbage(n));
        }
        spread.push(input);
    }
    let mut day = spread;
    let mut model = Model::new();
    day.iter().filter_map(|i| i.record.as_ref()).for_each(|r| model.apply(r));
    for store in STORES {
        let totals = model.day(store, DAY);
        let close = json!({"type": "pos.day_close", "id": format!("CLOSE-{store}-{DAY}"), "store": store,
            "business_day": DAY, "occurred_at": format!("{DAY}T22:05:00Z"),
            "transaction_count": totals.transactions, "net_sales": totals.net.to_string(), "tax": totals.tax.to_string()});
        day.push(Input::json(fixtures::pos_subject(PREFIX, store), close, None));
    }
    day
}

/// One rejected input among the generated traffic: one in this many.
const GARBAGE_EVERY: usize = 40;

/// A rejected input of a rotating kind, for store `STORES[n % 4]`.
fn garbage(n: usize) -> Input {
    let store = STORES[n % STORES.len()];
    let subject = fixtures::pos_subject(PREFIX, store);
    let mut tx = transaction(&format!("G-{store}-{n}"), store, DAY, vec![line(1, "900009", "1", "1.00")], vec![]);
    match (n / GARBAGE_EVERY) % 3 {
        0 => Input {
            subject,
            payload: format!("{{\"type\": \"pos.transaction\", \"id\": {n}").into_bytes(),
            record: None,
            dlq: Some("decode"),
        },
        1 => {
            tx["lines"][0]["unit_price"] = json!("1.0.0");
            Input::json(subject, tx, Some("decimal"))
        }
        _ => {
            tx["type"] = json!("pos.refund");
            Input::json(subject, tx, Some("unknown_type"))
        }
    }
}

fn model_of(inputs: &[Input]) -> Model {
    let mut model = Model::new();
    inputs.iter().filter_map(|i| i.record.as_ref()).for_each(|r| model.apply(r));
    model
}

/// Everything one run ends with.
struct Snapshot {
    /// store → the day's totals from `GET /v1/stores/<s>/days/<d>`.
    totals: BTreeMap<String, DayTotals>,
    /// store → the day's drift rows (sku, expected, recorded, drift units, state).
    drift: BTreeMap<String, Value>,
    /// store → the day's audit.
    audit: BTreeMap<String, Value>,
    outputs: Outputs,
}

async fn snapshot(tally: &Tally, js: &Js) -> Snapshot {
    let mut totals = BTreeMap::new();
    let mut drift = BTreeMap::new();
    let mut audit = BTreeMap::new();
    for store in STORES {
        let day = tally.day(store, DAY).await;
        totals.insert(store.to_string(), DayTotals::from_http(&day));
        drift.insert(store.to_string(), day["drift"].clone());
        audit.insert(store.to_string(), day["audit"].clone());
    }
    let outputs = Outputs::read(js).await;
    // Within one run, the stream holds what state says was sent: the latest revision of every
    // alert in /v1/alerts is in the stream with the same content.
    let (_, api) = tally.http_get("/v1/alerts").await;
    for alert in api["alerts"].as_array().expect("alerts array") {
        let id = alert["id"].as_str().expect("alert id");
        let sent = outputs.alerts.get(id).and_then(|revs| revs.last());
        assert_eq!(sent, Some(alert), "alert {id}: the stream's latest revision must be the one in state");
    }
    Snapshot { totals, drift, audit, outputs }
}

/// Waits until tally has acked every input and sent every output it committed.
async fn wait_finished(tally: &Tally, js: &Js, dlq_expected: u64) {
    let store_days: Vec<(String, String)> = STORES.iter().map(|s| (s.to_string(), DAY.to_string())).collect();
    let (stream, consumer) = (tally.input_stream(), tally.consumer());
    let (days, stream, consumer) = (&store_days, &stream, &consumer);
    let finished = wait_until(FINISH_TIMEOUT, move || async move {
        crash::consumer_caught_up(js, stream, consumer).await && all_sent(tally, js, days, dlq_expected).await
    })
    .await;
    if !finished {
        let mut days = Vec::new();
        for store in STORES {
            days.push(
                tally.try_http_get(&format!("/v1/stores/{store}/days/{DAY}")).await.map(|(_, b)| b["postings"].clone()),
            );
        }
        panic!(
            "tally did not finish within {FINISH_TIMEOUT:?}: consumer {}, postings {days:?}, ERP {} ALERTS {} DLQ {} (want {dlq_expected})\n{}",
            js.consumer_summary(stream, consumer).await,
            js.message_count(crash::ERP_STREAM).await,
            js.message_count(crash::ALERTS_STREAM).await,
            js.message_count(tally_tests::DLQ_STREAM).await,
            tally.logs()
        );
    }
}

/// Publishes `inputs` in order, each awaiting its PubAck; returns their stream sequences.
async fn publish(js: &Js, inputs: &[Input]) -> Vec<u64> {
    publish_paced(js, inputs, Duration::ZERO).await
}

/// `publish` with a pause after each input, so that input keeps arriving for a while.
async fn publish_paced(js: &Js, inputs: &[Input], pause: Duration) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(inputs.len());
    for input in inputs {
        seqs.push(js.publish(&input.subject, input.payload.clone(), &[]).await);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    seqs
}

/// A kill comes up to this long after tally starts (or answers HTTP).
const KILL_DELAY_MAX_MS: u64 = 300;

/// The pause between inputs published while tally runs towards a kill: a chunk is spread over
/// the whole window in which the kill may come. tally applies and commits a burst of a few
/// hundred inputs within milliseconds, so unpaced input was nearly always committed when the
/// kill came (1 kill of 100 with input uncommitted); paced, kills land with batches being
/// applied and committed.
fn kill_phase_pause(chunk_len: usize) -> Duration {
    Duration::from_millis(KILL_DELAY_MAX_MS / chunk_len.max(1) as u64).max(Duration::from_millis(1))
}

/// The run without faults, on one partition: the reference the partitioned run must equal.
async fn run_clean(inputs: &[Input]) -> (Snapshot, Vec<u64>) {
    let nats = NatsServer::start();
    let one_partition = CONFIG.replace("[input]\n", "[input]\npartitions = 1\n");
    let tally = Tally::start(&nats.url(), &one_partition).await;
    let js = Js::connect(&nats.url()).await;
    assert!(js.stream_info("RETAIL_IN").await.config.subject_transform.is_none(), "the reference is unpartitioned");
    let seqs = publish(&js, inputs).await;
    let dlq_expected = inputs.iter().filter(|i| i.dlq.is_some()).count() as u64;
    wait_finished(&tally, &js, dlq_expected).await;
    (snapshot(&tally, &js).await, seqs)
}

/// What the kills interrupted, as far as `/metrics` showed just before each one.
#[derive(Debug, Default)]
struct KillStats {
    kills: usize,
    /// Killed before its HTTP server answered (during start-up or recovery).
    before_http: usize,
    /// Killed after start-up but before this process committed anything.
    before_first_commit: usize,
    /// Killed while published input was not yet committed.
    mid_input: usize,
    /// Killed while the outbox held outputs not yet acknowledged by JetStream.
    outputs_pending: usize,
}

/// The run with `kills` SIGKILLs at random moments, input published in chunks meanwhile.
async fn run_with_kills(inputs: &[Input], kills: usize, seed: u64) -> (Snapshot, Vec<u64>, KillStats, (usize, usize)) {
    let nats = NatsServer::start();
    let mut tally = Tally::builder(&nats.url()).toml(CONFIG).prepare();
    tally.setup_ok();
    let js = Js::connect(&nats.url()).await;
    let transform = js.stream_info("RETAIL_IN").await.config.subject_transform.expect("a partitioned input stream");
    assert!(transform.destination.ends_with("{{partition(16,2)}}"), "16 partitions by default: {transform:?}");
    let tap = WireTap::start(&js, PREFIX).await;
    let mut rng = Rng::new(seed);

    // Two thirds of the kills while input is still arriving, the rest while tally catches up,
    // finalizes the days and drains its outbox.
    let chunk_count = (kills - kills / 3).max(1);
    let chunk_len = inputs.len().div_ceil(chunk_count);
    let mut chunks = inputs.chunks(chunk_len).map(<[Input]>::to_vec);
    let mut seqs = Vec::with_capacity(inputs.len());
    let mut stats = KillStats::default();
    for _ in 0..kills {
        tally.spawn_run_no_wait();
        let publisher = chunks.next().map(|chunk| {
            let js = js.clone();
            tokio::spawn(async move { publish_paced(&js, &chunk, kill_phase_pause(chunk.len())).await })
        });
        // Every third kill counts from the spawn, so it often lands in start-up and recovery;
        // the others count from the moment the HTTP server answers, so they land in
        // consuming, committing and publishing.
        if stats.kills % 3 != 0 {
            let up = &tally;
            wait_until(Duration::from_secs(10), move || async move { up.try_http_get("/healthz").await.is_ok() }).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(KILL_DELAY_MAX_MS))).await;
        assert!(tally.is_running(), "tally exited by itself (seed {seed})\n{}", tally.logs());
        match tally.try_http_get("/metrics").await {
            Ok((200, Value::String(text))) => {
                let samples = tally_tests::prom::parse(&text);
                let last = js.stream_info(&tally.input_stream()).await.state.last_sequence as f64;
                let outbox = tally_tests::prom::sum(&samples, "tally_outbox_pending_messages", &[]);
                stats.outputs_pending += usize::from(outbox > 0.0);
                // A partition's position gauge appears with its first commit in this process;
                // while none has reached the stream's last message, the input is mid-way.
                let positions = tally_tests::prom::samples(&samples, "tally_committed_stream_sequence");
                match positions.iter().map(|p| p.value).reduce(f64::max) {
                    Some(highest) => stats.mid_input += usize::from(highest < last),
                    None => stats.before_first_commit += 1,
                }
            }
            _ => stats.before_http += 1,
        }
        tally.kill();
        stats.kills += 1;
        if let Some(publisher) = publisher {
            seqs.extend(publisher.await.expect("the publisher task"));
        }
    }
    for chunk in chunks {
        seqs.extend(publish(&js, &chunk).await);
    }
    tally.spawn_run().await;
    let dlq_expected = inputs.iter().filter(|i| i.dlq.is_some()).count() as u64;
    wait_finished(&tally, &js, dlq_expected).await;
    let snapshot = snapshot(&tally, &js).await;
    let wire = tap.check();
    (snapshot, seqs, stats, wire)
}

// Proves that SIGKILL at random moments, restarted each time, changes nothing: aggregates, final
// drift alerts, posting sums, audits and DLQ entries equal a crash-free run and the model, and
// no output id is ever published twice with different bytes or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_changes_nothing() {
    let kills = env_usize("TALLY_CRASH_KILLS", 6).max(1);
    let seed = env_usize("TALLY_CRASH_SEED", 20_261_127) as u64;
    let inputs = business_day();
    let model = model_of(&inputs);
    let partitions: std::collections::BTreeSet<u32> =
        STORES.iter().map(|store| tally_topologies::partition::of_store(store, 16)).collect();
    assert!(partitions.len() >= 3, "the stores must spread over several of the 16 partitions: {partitions:?}");
    eprintln!("crash test: {} inputs over {} stores, {kills} kills, seed {seed}", inputs.len(), STORES.len());

    let started = Instant::now();
    let (clean, clean_seqs) = run_clean(&inputs).await;
    let clean_time = started.elapsed();
    let started = Instant::now();
    let (crashed, crashed_seqs, stats, (publishes, resends)) = run_with_kills(&inputs, kills, seed).await;
    let crashed_time = started.elapsed();
    let context = format!("seed {seed}, {kills} kills");
    assert_eq!(clean_seqs, crashed_seqs, "both runs must see the same input stream");

    // Aggregates: equal to the crash-free run and to the independent model.
    for store in STORES {
        let expected = model.day(store, DAY);
        assert_eq!(clean.totals[store], expected, "crash-free run vs model, store {store}");
        assert_eq!(crashed.totals[store], clean.totals[store], "store {store}: totals after kills ({context})");
        assert_eq!(crashed.drift[store], clean.drift[store], "store {store}: drift rows after kills ({context})");
        assert_eq!(crashed.audit[store], clean.audit[store], "store {store}: audit after kills ({context})");
    }

    // Final drift alerts: same ids, same figures; and the never-decremented sku is among them.
    let finals = clean.outputs.final_alerts();
    assert_eq!(crashed.outputs.final_alerts(), finals, "final drift alerts after kills ({context})");
    for store in STORES {
        let id = format!("drift/{store}/{DAY}/900001");
        let alert = finals.get(&id).unwrap_or_else(|| panic!("no final alert {id}; finals: {:?}", finals.keys()));
        assert_eq!(alert["drift_units"], "6", "three sales of 2 units never decremented: {alert}");
    }

    // Postings: per store-day the deltas sum to the same totals, which are the model's; one
    // final posting, interim ones before it, nothing after (no input arrives after the close).
    let clean_sums = clean.outputs.posting_sums();
    let crashed_sums = crashed.outputs.posting_sums();
    for store in STORES {
        let key = (store.to_string(), DAY.to_string());
        assert_eq!(
            clean_sums.get(&key),
            Some(&PostingSums::expected(&model, store, DAY)),
            "crash-free postings vs model, {store}"
        );
        assert_eq!(crashed_sums.get(&key), clean_sums.get(&key), "{store}: posting sums after kills ({context})");
        for (run, outputs) in [("crash-free", &clean.outputs), ("crashed", &crashed.outputs)] {
            let kinds = outputs.kinds(store, DAY);
            assert_eq!(kinds.last().map(String::as_str), Some("final"), "{run} {store}: {kinds:?}");
            assert!(kinds[..kinds.len() - 1].iter().all(|k| k == "interim"), "{run} {store}: {kinds:?}");
        }
        let audit = |o: &Outputs| o.final_posting(store, DAY).map(|p| p["audit"].clone());
        assert_eq!(audit(&crashed.outputs), audit(&clean.outputs), "{store}: final posting audit ({context})");
    }
    assert_eq!(crashed_sums.len(), STORES.len(), "postings only for the day's stores: {:?}", crashed_sums.keys());

    // DLQ: one entry per rejected input, the same in both runs, each with its reason, verbatim.
    let expected_dlq: BTreeMap<u64, (String, Vec<u8>)> = inputs
        .iter()
        .zip(&clean_seqs)
        .filter_map(|(input, seq)| input.dlq.map(|reason| (*seq, (reason.to_string(), input.payload.clone()))))
        .collect();
    assert_eq!(clean.outputs.dlq, expected_dlq, "crash-free DLQ");
    assert_eq!(crashed.outputs.dlq, expected_dlq, "DLQ after kills ({context})");

    let alert_revisions_same = clean.outputs.alerts.len() == crashed.outputs.alerts.len();
    eprintln!(
        "crash test: survived {} kills ({} before HTTP was up, {} before the first commit, {} with input uncommitted, \
         {} with outputs pending); \
         {publishes} output publishes on the wire, {resends} re-sends of an id after a crash, all byte-identical; \
         {} postings / {} alert ids ({} final) / {} DLQ entries; crash-free run {:.1}s, crashed run {:.1}s; \
         all alert ids identical too: {alert_revisions_same}",
        stats.kills,
        stats.before_http,
        stats.before_first_commit,
        stats.mid_input,
        stats.outputs_pending,
        crashed.outputs.postings.values().map(Vec::len).sum::<usize>(),
        crashed.outputs.alerts.len(),
        finals.len(),
        crashed.outputs.dlq.len(),
        clean_time.as_secs_f64(),
        crashed_time.as_secs_f64(),
    );
    assert_eq!(stats.kills, kills);
    assert!(
        stats.mid_input >= 1,
        "at least one kill must land while input was uncommitted, else the test proves little: {stats:?}"
    );
}
