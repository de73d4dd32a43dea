//! Several tallies on a NATS cluster (docs/operations.md, "Several instances"): two instances
//! share the 16 partitions of a three-server NATS cluster; one is killed with SIGKILL mid-day,
//! the other takes its partitions over once their leases expire, catches up and goes on. The
//! totals, posting sums, dead letters and latest alert figures must equal those of one instance
//! alone on the same input, and no output id may be stored twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tally_tests::crash::{alert_figures, Outputs, PostingSums, WireTap};
use tally_tests::fixtures::{self, DAY};
use tally_tests::{wait_until, DayTotals, Js, Model, NatsCluster, NatsServer, Tally};

const STORES: [&str; 8] = ["0301", "0302", "0303", "0304", "0305", "0306", "0307", "0308"];
/// The input stream, as `tally setup` makes it.
const INPUT_STREAM: &str = "RETAIL_IN";
/// Records of generated traffic per store.
const PER_STORE: usize = 120;
/// How long the outputs may take to settle after the last input.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Small batches; interim postings every second; drift fires without settling, and a quiet
/// store's event time moves after a second.
const CONFIG: &str = r#"
[input]
batch_max = 20
[erp]
interval = "1s"
[drift]
settle = "0s"
idle_timeout = "1s"
"#;

/// The day's input: generated traffic of every store, interleaved, with undecodable records.
fn inputs() -> (Vec<(String, Vec<u8>)>, Model) {
    let mut model = Model::new();
    let per_store: Vec<Vec<(String, Value)>> = STORES
        .iter()
        .enumerate()
        .map(|(i, store)| fixtures::traffic("retail", store, DAY, "f", PER_STORE, 700 + i as u64))
        .collect();
    let mut inputs = Vec::new();
    for n in 0..PER_STORE {
        for (i, records) in per_store.iter().enumerate() {
            let (subject, record) = &records[n];
            model.apply(record);
            inputs.push((subject.clone(), serde_json::to_vec(record).expect("JSON encodes")));
            if n % 40 == 7 {
                inputs.push((fixtures::pos_subject("retail", STORES[i]), b"{garbled".to_vec()));
            }
        }
    }
    (inputs, model)
}

/// What a run ends with.
#[derive(Debug, PartialEq)]
struct Outcome {
    totals: BTreeMap<String, DayTotals>,
    postings: BTreeMap<(String, String), PostingSums>,
    dlq: BTreeMap<u64, (String, Vec<u8>)>,
    /// alert id → the latest revision's figures.
    alerts: BTreeMap<String, Value>,
    /// The same from `/v1/alerts` of the instance asked (every instance's, merged).
    api_alerts: BTreeMap<String, Value>,
}

/// Waits until `tally` (any instance: requests for stores it does not run are redirected) shows
/// the model's totals for every store, the postings add up to them and every dead letter is
/// out; then reads the outputs back.
async fn settled(tally: &Tally, js: &Js, model: &Model, dead_letters: u64) -> Outcome {
    let totals_match = || async {
        for store in STORES {
            match tally.try_http_get(&format!("/v1/stores/{store}/days/{DAY}")).await {
                Ok((200, body)) if DayTotals::from_http(&body) == model.day(store, DAY) => {}
                _ => return false,
            }
        }
        true
    };
    assert!(wait_until(SETTLE_TIMEOUT, totals_match).await, "the totals did not reach the model\n{}", tally.logs());
    let outputs_match = || async {
        if js.message_count(tally_tests::DLQ_STREAM).await < dead_letters {
            return false;
        }
        let sums = posting_sums(js).await;
        STORES
            .iter()
            .all(|s| sums.get(&(s.to_string(), DAY.to_string())) == Some(&PostingSums::expected(model, s, DAY)))
    };
    assert!(wait_until(SETTLE_TIMEOUT, outputs_match).await, "the postings did not add up\n{}", tally.logs());
    // Alert revisions go out pipelined: one whose publish is retried lands after the next, so
    // the stream is read once it has stopped growing.
    let mut alerts_seen = js.message_count(tally_tests::crash::ALERTS_STREAM).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = js.message_count(tally_tests::crash::ALERTS_STREAM).await;
        if now == alerts_seen {
            break;
        }
        alerts_seen = now;
    }
    let outputs = Outputs::read(js).await;
    let mut totals = BTreeMap::new();
    for store in STORES {
        totals.insert(store.to_string(), DayTotals::from_http(&served_day(tally, store).await));
    }
    let alerts = outputs
        .alerts
        .iter()
        .filter_map(|(id, revisions)| revisions.last().map(|last| (id.clone(), alert_figures(last))))
        .collect();
    let api_alerts = api_alerts(tally).await;
    Outcome { totals, postings: outputs.posting_sums(), dlq: outputs.dlq, alerts, api_alerts }
}

/// `/v1/stores/<store>/days/<DAY>`, once it is answered: a partition moving between the
/// instances (one that rejoined takes its share back) answers `503` meanwhile.
async fn served_day(tally: &Tally, store: &str) -> Value {
    let path = format!("/v1/stores/{store}/days/{DAY}");
    let deadline = std::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let answer = tally.try_http_get(&path).await;
        match answer {
            Ok((200, body)) => return body,
            _ if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => panic!("GET {path} did not answer 200: {answer:?}\n{}", tally.logs()),
        }
    }
}

/// `/v1/alerts` as id → figures, once the instance answers for every partition.
async fn api_alerts(tally: &Tally) -> BTreeMap<String, Value> {
    let answered = || async { matches!(tally.try_http_get("/v1/alerts").await, Ok((200, _))) };
    assert!(wait_until(SETTLE_TIMEOUT, answered).await, "/v1/alerts did not answer 200\n{}", tally.logs());
    let (_, body) = tally.http_get("/v1/alerts").await;
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    alerts.iter().map(|alert| (alert["id"].as_str().unwrap_or_default().to_string(), alert_figures(alert))).collect()
}

/// The sums of each store-day's postings as the postings stream holds them so far.
async fn posting_sums(js: &Js) -> BTreeMap<(String, String), PostingSums> {
    let mut sums: BTreeMap<(String, String), PostingSums> = BTreeMap::new();
    if js.message_count(tally_tests::crash::ERP_STREAM).await == 0 {
        return sums;
    }
    for message in js.messages(tally_tests::crash::ERP_STREAM).await {
        let posting: Value = serde_json::from_slice(&message.payload).expect("postings are JSON");
        if posting["kind"] == "inventory_adjustment" {
            continue;
        }
        let key = (
            posting["store"].as_str().unwrap_or("").to_string(),
            posting["business_day"].as_str().unwrap_or("").to_string(),
        );
        sums.entry(key).or_default().add(&posting);
    }
    sums.into_iter().map(|(key, sums)| (key, sums.normalized())).collect()
}

/// Publishes `inputs`, the day's input from its `first`th record on, as a careful publisher
/// does on a NATS cluster: each with a `Nats-Msg-Id` of its own, tried again when its PubAck does not come (a server died, a leader
/// moved, a frozen client held a server up), so that nothing is lost and nothing stored twice.
async fn publish(js: &Js, inputs: &[(String, Vec<u8>)], first: usize) {
    for (n, (subject, payload)) in inputs.iter().enumerate() {
        // Its place in the day's input: records sent twice on purpose stay two messages.
        let id = format!("input-{}", first + n);
        let mut tries = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let sent = js.context.publish_with_headers(subject.clone(), headers, payload.clone().into()).await;
            let acked = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            tries += 1;
            match acked {
                Ok(()) => break,
                Err(err) if tries < PUBLISH_TRIES => eprintln!("publishing {id} again after: {err}"),
                Err(err) => panic!("publishing {id} failed {tries} times: {err}"),
            }
        }
    }
}

/// How many times one input is published before the test gives up.
const PUBLISH_TRIES: usize = 10;

/// The partitions an instance runs, from its /readyz.
async fn owned(tally: &Tally) -> Option<Vec<u64>> {
    let (_, body) = tally.try_http_get("/readyz").await.ok()?;
    body["partitions"].as_array().map(|p| p.iter().filter_map(Value::as_u64).collect())
}

/// Each test runs three NATS servers and three tallies: one at a time, so that a loaded
/// machine does not turn lease renewals into the thing under test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one instance alone on one server makes of `inputs`.
async fn alone(inputs: &[(String, Vec<u8>)], model: &Model, dead_letters: u64) -> Outcome {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), CONFIG).await;
    let js = Js::connect(&nats.url()).await;
    publish(&js, inputs, 0).await;
    settled(&tally, &js, model, dead_letters).await
}

/// Two instances with a failover made what the model says and what one instance alone made.
fn assert_same(shared: &Outcome, alone: &Outcome, model: &Model) {
    for store in STORES {
        assert_eq!(shared.totals[store], model.day(store, DAY), "store {store} after the failover");
    }
    assert_eq!(shared.totals, alone.totals, "totals: two instances with a failover vs one alone");
    assert_eq!(shared.postings, alone.postings, "posting sums: two instances with a failover vs one alone");
    assert_eq!(shared.dlq, alone.dlq, "dead letters: two instances with a failover vs one alone");
    assert_eq!(shared.alerts, alone.alerts, "latest alert figures: two instances with a failover vs one alone");
    assert_eq!(shared.api_alerts, alone.api_alerts, "/v1/alerts: two instances with a failover vs one alone");
    assert_eq!(shared.api_alerts, shared.alerts, "/v1/alerts vs the latest revisions on RETAIL_ALERTS");
}

/// Two instances, `a` and `b`, on `cluster`, once they have split the partitions; with the
/// partitions `a` runs and the test's stores among them.
async fn two_instances(cluster: &NatsCluster) -> (Tally, Tally, Vec<u64>, Vec<&'static str>) {
    two_instances_with(cluster, "").await
}

/// The same, with `extra` TOML for both.
async fn two_instances_with(cluster: &NatsCluster, extra: &str) -> (Tally, Tally, Vec<u64>, Vec<&'static str>) {
    let urls = cluster.urls().join(",");
    let mut a = Tally::builder(&urls).toml(CONFIG).toml(extra).cluster("a").prepare();
    a.setup_ok();
    let mut b = Tally::builder(&urls).toml(CONFIG).toml(extra).cluster("b").prepare();
    a.spawn_run().await;
    b.spawn_run().await;
    let split = || async {
        let (Some(on_a), Some(on_b)) = (owned(&a).await, owned(&b).await) else { return false };
        !on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == 16
    };
    assert!(wait_until(SETTLE_TIMEOUT, split).await, "the two instances did not split the partitions\n{}", a.logs());
    let on_a = owned(&a).await.unwrap_or_default();
    let moving: Vec<&str> = STORES
        .into_iter()
        .filter(|store| on_a.contains(&u64::from(tally_topologies::partition::of_store(store, 16))))
        .collect();
    assert!(!moving.is_empty(), "a runs none of the stores' partitions ({on_a:?}): nothing would move");
    (a, b, on_a, moving)
}

/// Waits until `tally` has committed input of some partition.
async fn committed_some(tally: &Tally) {
    let committed = || async {
        let (_, body) = tally.try_http_get("/metrics").await.unwrap_or((0, Value::Null));
        body.as_str().is_some_and(|text| text.contains("tally_committed_stream_sequence{partition="))
    };
    assert!(wait_until(SETTLE_TIMEOUT, committed).await, "it committed nothing\n{}", tally.logs());
}

// Proves the failover of issue "Several tallies on a NATS cluster": SIGKILL of an instance
// mid-day moves its partitions to the other, which consumes them again, and what comes out is
// what one instance alone makes of the same input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_an_owner_moves_its_partitions_and_changes_nothing() {
    kill_9_of_an_owner(Standby::Off).await;
}

// Proves the warm standby of issue "Several tallies on a NATS cluster" (item 4): with
// `cluster.standby`, b tails a's partitions while a runs them; after a's SIGKILL, b's takeover
// starts from what its standby committed, not from nothing, and what comes out is still what
// one instance alone makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_a_warm_standby_replays_only_the_rest() {
    kill_9_of_an_owner(Standby::On).await;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Standby {
    Off,
    On,
}

/// a and b split the partitions; half the day's input goes in; a is killed (with `standby`,
/// once b's standbys of a's partitions have applied all a has); the rest goes in; b must take
/// every partition over and end where one instance alone ends.
async fn kill_9_of_an_owner(standby: Standby) {
    let _alone_on_the_machine = ONE_AT_A_TIME.lock().await;
    let (inputs, model) = inputs();
    let dead_letters = inputs.iter().filter(|(_, payload)| payload.starts_with(b"{garbled")).count() as u64;
    let alone = alone(&inputs, &model, dead_letters).await;

    let cluster = NatsCluster::start().await;
    let extra = if standby == Standby::On { "[cluster]\nstandby = true\n" } else { "" };
    let (mut a, b, on_a, moving) = two_instances_with(&cluster, extra).await;
    // Publishers and readers of outputs talk to one server of the cluster.
    let js = Js::connect(&cluster.urls()[0]).await;
    let tap = WireTap::start(&js, "retail").await;
    let (first, second) = inputs.split_at(inputs.len() / 2);
    publish(&js, first, 0).await;
    // Some of a's partitions have committed input when it dies.
    committed_some(&a).await;
    let busy: Vec<u64> =
        moving.iter().map(|store| u64::from(tally_topologies::partition::of_store(store, 16))).collect();
    let stood_by = match standby {
        Standby::On => standbys_caught_up(&a, &b, &busy).await,
        Standby::Off => BTreeMap::new(),
    };
    let read_back_before = readings_back(&b);
    a.kill();
    let killed = std::time::Instant::now();
    publish(&js, second, first.len()).await;
    let all_on_b = || async { owned(&b).await.is_some_and(|p| p.len() == 16) };
    assert!(wait_until(SETTLE_TIMEOUT, all_on_b).await, "b did not take a's partitions {on_a:?} over\n{}", b.logs());
    let taken_over = killed.elapsed();
    let (_, ready) = b.try_http_get("/readyz").await.expect("b's /readyz");
    let taking_over = ready["taking_over"].as_array().expect("/readyz lists the partitions being taken over");
    assert!(taking_over.is_empty(), "b runs all 16 partitions, yet takes some over: {ready}");
    let shared = settled(&b, &js, &model, dead_letters).await;
    // No output id was ever sent with two contents, by either instance.
    let (publishes, resends) = tap.check();

    assert_same(&shared, &alone, &model);
    for (&partition, &position) in &stood_by {
        let from = caught_up_from(&b, partition);
        assert!(
            from.is_none_or(|from| from >= position),
            "partition {partition}: the takeover caught up from {from:?}, behind its standby's {position}\n{}",
            b.logs()
        );
    }
    if standby == Standby::On {
        // The standbys dead-lettered the garbled inputs too, into outboxes they never sent; a
        // taken-over outbox drops those RETAIL_DLQ holds already, rather than sending them again.
        let dropped = b.stderr_text().contains("dead letters already in RETAIL_DLQ dropped from the outbox");
        assert!(dropped, "no takeover dropped dead letters already sent\n{}", b.logs());
        // b read the outputs of the stores of a's partitions ahead, as their standby: the
        // takeover read only what came since.
        let read_ahead = b
            .stderr_text()
            .lines()
            .any(|line| line.contains("Reconciled the partitions taken over") && line.contains("read_ahead=true"));
        assert!(read_ahead, "the takeover read the output streams back from their start\n{}", b.logs());
    }
    let read_back = readings_back(&b) - read_back_before;
    eprintln!(
        "cluster failover (standby {standby:?}): a ran partitions {on_a:?} (stores {moving:?}) until SIGKILL; b \
         ran them {:.1} s later, catching up from {:?} (standbys at {stood_by:?}), reading the outputs back \
         {read_back} times for them; {} inputs, {} alerts, {} dead letters equal; {publishes} publishes on the wire, \
         {resends} re-sends, all byte-identical",
        taken_over.as_secs_f64(),
        busy.iter().map(|p| (p, caught_up_from(&b, *p))).collect::<Vec<_>>(),
        inputs.len(),
        shared.alerts.len(),
        shared.dlq.len()
    );
}

/// How many times `tally` has read the output streams back for partitions it took over: once
/// per group of partitions acquired together.
fn readings_back(tally: &Tally) -> usize {
    tally.stderr_text().matches("Reconciled the partitions taken over").count()
}

/// Waits until b's standbys of `partitions` have committed at least what a has, and returns
/// where they are.
async fn standbys_caught_up(a: &Tally, b: &Tally, partitions: &[u64]) -> BTreeMap<u64, u64> {
    let standing_by = || async {
        for &partition in partitions {
            let on_a = committed(a, partition).await;
            if on_a == 0 || committed(b, partition).await < on_a {
                return false;
            }
        }
        true
    };
    assert!(wait_until(SETTLE_TIMEOUT, standing_by).await, "b's standbys did not follow a's partitions\n{}", b.logs());
    let mut at = BTreeMap::new();
    for &partition in partitions {
        at.insert(partition, committed(b, partition).await);
    }
    at
}

/// The `from` of `tally`'s log line on catching up with `partition` at a takeover: where its
/// state stood; `None` when it had nothing to catch up.
fn caught_up_from(tally: &Tally, partition: u64) -> Option<u64> {
    let log = tally.stderr_text();
    let line = log.lines().rev().find(|line| {
        line.contains("Catching up with a partition taken over")
            && line.split_whitespace().any(|token| token == format!("partition={partition}"))
    })?;
    line.split_whitespace().find_map(|token| token.strip_prefix("from=")).and_then(|from| from.parse().ok())
}

/// The input position `tally` reports committed for `partition` (a standby's too).
async fn committed(tally: &Tally, partition: u64) -> u64 {
    let Ok((_, body)) = tally.try_http_get("/metrics").await else { return 0 };
    let series = format!("tally_committed_stream_sequence{{partition=\"{partition}\"}} ");
    body.as_str()
        .and_then(|text| text.lines().find_map(|line| line.strip_prefix(series.as_str())))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

// Proves the fencing of issue "Several tallies on a NATS cluster": an owner frozen (SIGSTOP)
// past its leases loses its partitions to the other instance; when it runs again (SIGCONT) it
// stops them by itself, before its cluster loop could renew anything, and what comes out is
// still what one instance alone makes: nothing counted twice, no output id with two contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_of_an_owner_past_its_lease_changes_nothing() {
    let _alone_on_the_machine = ONE_AT_A_TIME.lock().await;
    let (inputs, model) = inputs();
    let dead_letters = inputs.iter().filter(|(_, payload)| payload.starts_with(b"{garbled")).count() as u64;
    let alone = alone(&inputs, &model, dead_letters).await;

    let cluster = NatsCluster::start().await;
    let (a, b, on_a, moving) = two_instances(&cluster).await;
    let js = Js::connect(&cluster.urls()[0]).await;
    let tap = WireTap::start(&js, "retail").await;
    let (first, rest) = inputs.split_at(inputs.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    publish(&js, first, 0).await;
    committed_some(&a).await;
    a.pause();
    let paused = std::time::Instant::now();
    publish(&js, second, first.len()).await;
    let all_on_b = || async { owned(&b).await.is_some_and(|p| p.len() == 16) };
    assert!(wait_until(SETTLE_TIMEOUT, all_on_b).await, "b did not take a's partitions {on_a:?} over\n{}", b.logs());
    let taken_over = paused.elapsed();
    a.resume();
    // Its leases ran out while it was frozen: it says so and stops every partition it ran.
    let stopped_by_itself = || async {
        let log = a.stderr_text();
        on_a.iter().all(|p| {
            log.lines().any(|line| {
                line.split_whitespace().any(|token| token == format!("partition={p}"))
                    && (line.contains("No renewal of the lease of a partition succeeded in time")
                        || line.contains("Lost the lease of a partition"))
            })
        })
    };
    assert!(wait_until(SETTLE_TIMEOUT, stopped_by_itself).await, "a did not stop its partitions\n{}", a.logs());
    publish(&js, third, first.len() + second.len()).await;
    let shared = settled(&b, &js, &model, dead_letters).await;
    let (publishes, resends) = tap.check();

    assert_same(&shared, &alone, &model);
    // a, running again, answers /v1/alerts for every instance as b does.
    assert_eq!(api_alerts(&a).await, shared.api_alerts, "/v1/alerts of a vs of b");
    // ... and traces a record of a store whose partition b runs.
    let (store, id) = inputs
        .iter()
        .filter_map(|(_, payload)| serde_json::from_slice::<Value>(payload).ok())
        .map(|record| {
            (record["store"].as_str().unwrap_or("").to_string(), record["id"].as_str().unwrap_or("").to_string())
        })
        .find(|(store, id)| !id.is_empty() && !moving.contains(&store.as_str()))
        .expect("a record of a store of b's");
    let traced = || async { matches!(a.try_http_get(&format!("/v1/trace/{id}")).await, Ok((200, _))) };
    assert!(wait_until(SETTLE_TIMEOUT, traced).await, "a did not trace {id} of b's store {store}\n{}", a.logs());
    let (_, body) = a.http_get(&format!("/v1/trace/{id}")).await;
    let stores: Vec<&str> =
        body["records"].as_array().into_iter().flatten().filter_map(|r| r["store"].as_str()).collect();
    assert_eq!(stores, [store.as_str()], "a's trace of {id}: {body}");
    eprintln!(
        "cluster fencing: a ran partitions {on_a:?} (stores {moving:?}) until SIGSTOP; b ran them {:.1} s later; \
         a stopped them itself after SIGCONT; {publishes} publishes on the wire, {resends} re-sends, all \
         byte-identical",
        taken_over.as_secs_f64(),
    );
}

/// The server leading stream `name` now; none while it has no leader or does not answer (an
/// election is under way).
async fn leader_now(js: &Js, name: &str) -> Option<String> {
    let mut stream = js.context.get_stream(name).await.ok()?;
    stream.info().await.ok()?.cluster.clone()?.leader
}

/// The server leading stream `name` other than `not`, once there is one.
async fn leader_other_than(js: &Js, name: &str, not: &[&str]) -> String {
    let elected = || async { leader_now(js, name).await.filter(|l| !not.contains(&l.as_str())) };
    assert!(wait_until(SETTLE_TIMEOUT, || async { elected().await.is_some() }).await, "{name}: no leader but {not:?}");
    elected().await.unwrap_or_default()
}

// Proves issue "Several tallies on a NATS cluster" against the NATS side failing: while two
// instances run, the server leading the input stream is killed, and later the cluster bucket's
// leader is asked to step down, both while leases are renewed; partitions whose renewals fail
// stop and are acquired again, and what comes out is what one instance alone makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_nats_leaders_changes_nothing() {
    let _alone_on_the_machine = ONE_AT_A_TIME.lock().await;
    let (inputs, model) = inputs();
    let dead_letters = inputs.iter().filter(|(_, payload)| payload.starts_with(b"{garbled")).count() as u64;
    let alone = alone(&inputs, &model, dead_letters).await;

    let mut cluster = NatsCluster::start().await;
    let (a, b, _, _) = two_instances(&cluster).await;
    // A client that knows every server, so that it goes on when one dies.
    let js = Js::connect(&cluster.urls().join(",")).await;
    let tap = WireTap::start(&js, "retail").await;
    let (first, rest) = inputs.split_at(inputs.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    publish(&js, first, 0).await;
    committed_some(&a).await;
    committed_some(&b).await;

    let input_leader = leader_other_than(&js, INPUT_STREAM, &[]).await;
    cluster.node_mut(&input_leader).kill();
    leader_other_than(&js, INPUT_STREAM, &[&input_leader]).await;
    publish(&js, second, first.len()).await;

    let bucket = "KV_tally_cluster";
    let bucket_leader = leader_other_than(&js, bucket, &[&input_leader]).await;
    let answer = js
        .client
        .request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{bucket}"), "".into())
        .await
        .unwrap_or_else(|err| panic!("asking {bucket}'s leader {bucket_leader} to step down: {err}"));
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap_or(Value::Null);
    assert_eq!(answer["success"], Value::Bool(true), "step-down of {bucket}: {answer}");
    leader_other_than(&js, bucket, &[&input_leader, &bucket_leader]).await;
    publish(&js, third, first.len() + second.len()).await;
    let shared = settled(&b, &js, &model, dead_letters).await;
    let wire = tap.check_against_streams(&js).await;
    assert_same(&shared, &alone, &model);
    let lost = |tally: &Tally| tally.stderr_text().matches("it stops now").count();
    let retried = |tally: &Tally| tally.stderr_text().matches("Cannot take a partition over yet").count();
    // Why, the first time: what NATS answered while it lost a server and a leader.
    for tally in [&a, &b] {
        let log = tally.stderr_text();
        let first = log.lines().find(|line| line.contains("Cannot take a partition over yet"));
        if let Some(line) = first {
            eprintln!("a takeover tried again: {line}");
        }
    }
    eprintln!(
        "cluster under NATS failures: killed {input_leader} (leader of {INPUT_STREAM}), stepped {bucket_leader} down \
         (leader of {bucket}); leases lost: a {}, b {}; takeovers tried again: a {}, b {}; {} publishes on \
         the wire, {} re-sends, {} never stored by JetStream before the stored one ({:?}), every re-send of a \
         stored output byte-identical",
        lost(&a),
        lost(&b),
        retried(&a),
        retried(&b),
        wire.publishes,
        wire.resends,
        wire.never_stored,
        wire.never_stored_ids
    );
}
