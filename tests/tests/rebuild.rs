//! `tally state rebuild` next to a live instance (issue 13, bug 3): the rebuild publishes
//! nothing and calls nothing, its day reports equal the live instance's, and a tally run on the
//! rebuilt state continues every posting sequence the live instance started, never sending a
//! posting id or alert revision again with other content.
//!
//! The live instance has every output: NATS, an ERP webhook (a small HTTP server here that
//! records each request) and a real Alertmanager. During the rebuild, core NATS subscriptions
//! on the output subjects count every publish (they also see the publishes that JetStream's
//! duplicate window would drop), the ERP counts requests and Alertmanager counts the alerts it
//! received.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use tally_tests::crash::{metric, Outputs, PostingSums, WireTap, ALERTS_STREAM, ERP_STREAM};
use tally_tests::fixtures::{line, pos_subject, tender, traffic, transaction};
use tally_tests::{prom, tally_bin, wait_until, Alertmanager, Js, Model, NatsServer, Tally, DLQ_STREAM};

const PREFIX: &str = "retail";
const STORES: [&str; 2] = ["0042", "0043"];
const WEBHOOK_CONSUMER: &str = "tally-erp-webhook";
/// How long the live instance may take to send everything it owes.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The requests the test ERP received: (Idempotency-Key, body), in arrival order.
type Requests = Arc<Mutex<Vec<(String, Bytes)>>>;

/// The ERP: answers 200 to every posting and records (Idempotency-Key, body).
struct Erp {
    url: String,
    requests: Requests,
    server: tokio::task::JoinHandle<()>,
}

impl Erp {
    async fn start() -> Erp {
        let requests: Requests = Arc::default();
        let app =
            axum::Router::new().route("/postings", axum::routing::post(receive)).with_state(Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test ERP");
        let port = listener.local_addr().expect("the test ERP's address").port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("the test ERP serves") });
        Erp { url: format!("http://127.0.0.1:{port}/postings"), requests, server }
    }

    fn requests(&self) -> Vec<(String, Bytes)> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for Erp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(requests): State<Requests>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let key = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_string();
    requests.lock().expect("requests lock").push((key, body));
    StatusCode::OK
}

/// Core subscriptions on `P.alerts.>`, `P.erp.>` and `P.dlq.>`: every publish on an output
/// subject, by subject.
struct Tap {
    js: Js,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Not an output subject (no stream holds it): the tap's own marker.
const SENTINEL: &str = "retail.erp.tap-sentinel";

impl Tap {
    async fn start(url: &str) -> Tap {
        let js = Js::connect(url).await;
        let mut subscriptions = Vec::new();
        for pattern in ["alerts.>", "erp.>", "dlq.>"] {
            let subject = format!("{PREFIX}.{pattern}");
            subscriptions.push(
                js.client.subscribe(subject.clone()).await.unwrap_or_else(|e| panic!("subscribe {subject}: {e}")),
            );
        }
        js.client.flush().await.expect("flush the subscriptions");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let mut all = futures::stream::select_all(subscriptions);
        let task = tokio::spawn(async move {
            while let Some(message) = all.next().await {
                sink.lock().expect("tap lock").push(message.subject.to_string());
            }
        });
        Tap { js, seen, task }
    }

    /// The output publishes seen so far, after every publish the server handled before this
    /// call has reached the tap: a marker published now arrives after all of them.
    async fn outputs(&self) -> Vec<String> {
        let before = self.seen.lock().expect("tap lock").iter().filter(|s| *s == SENTINEL).count();
        self.js.client.publish(SENTINEL, "".into()).await.expect("publish the marker");
        self.js.client.flush().await.expect("flush the marker");
        let seen = &self.seen;
        let arrived = wait_until(Duration::from_secs(10), move || async move {
            seen.lock().expect("tap lock").iter().filter(|s| *s == SENTINEL).count() > before
        })
        .await;
        assert!(arrived, "the tap's marker did not come back");
        self.seen.lock().expect("tap lock").iter().filter(|s| *s != SENTINEL).cloned().collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `count` records of `store`'s `day` (fixtures::traffic: sales, returns, voids, movements,
/// duplicates), each id at its own event time from 08:00, two minutes apart, so that drift keys
/// settle on event time; a re-sent record keeps its first time, so it stays a duplicate.
fn day_traffic(store: &str, day: NaiveDate, tag: &str, count: usize, seed: u64) -> Vec<(String, Value)> {
    let mut times: BTreeMap<String, String> = BTreeMap::new();
    let start = day.and_hms_opt(8, 0, 0).expect("08:00 exists").and_utc();
    let mut records = traffic(PREFIX, store, &day.to_string(), tag, count, seed);
    for (_, record) in records.iter_mut() {
        let id = record["id"].as_str().expect("records have ids").to_string();
        let next = times.len() as i64;
        let at = times.entry(id).or_insert_with(|| (start + chrono::Duration::minutes(2 * next)).to_rfc3339());
        record["occurred_at"] = json!(at);
    }
    records
}

fn day_close(store: &str, day: NaiveDate) -> (String, Value) {
    let record = json!({"type": "pos.day_close", "id": format!("CLOSE-{store}-{day}"), "store": store,
        "business_day": day.to_string(), "occurred_at": format!("{day}T21:00:00Z"), "transaction_count": 1,
        "net_sales": "1.00", "tax": "0", "tenders": [{"type": "card", "amount": "1.00"}]});
    (pos_subject(PREFIX, store), record)
}

async fn publish(js: &Js, model: &mut Model, records: &[(String, Value)]) {
    for (subject, record) in records {
        model.apply(record);
        js.publish_json(subject, record).await;
    }
}

/// The posting sums of every store-day of `days` on RETAIL_ERP equal the model's.
async fn postings_complete(js: &Js, model: &Model, days: &[NaiveDate]) -> bool {
    if js.message_count(ERP_STREAM).await == 0 {
        return false;
    }
    let outputs = Outputs::read(js).await;
    let sums = outputs.posting_sums();
    STORES.iter().all(|store| {
        days.iter().all(|day| {
            let key = (store.to_string(), day.to_string());
            sums.get(&key) == Some(&PostingSums::expected(model, store, &day.to_string()))
        })
    })
}

async fn wait_postings_complete(js: &Js, model: &Model, days: &[NaiveDate], tally: &Tally) {
    let done = wait_until(SETTLE_TIMEOUT, move || async move { postings_complete(js, model, days).await }).await;
    assert!(done, "the postings on {ERP_STREAM} do not add up to the model's totals\n{}", tally.logs());
}

/// Alertmanager's count of alerts it received, over all states.
async fn am_received(am: &Alertmanager) -> f64 {
    let text = reqwest::get(format!("{}/metrics", am.url())).await.expect("GET Alertmanager's /metrics");
    let samples = prom::parse(&text.text().await.expect("Alertmanager's metrics"));
    prom::sum(&samples, "alertmanager_alerts_received_total", &[])
}

/// (alert id, revision) of every alert tally holds active (firing, or final with drift).
async fn active_alerts(tally: &Tally) -> Vec<(String, String)> {
    let (_, body) = tally.http_get("/v1/alerts").await;
    let mut active: Vec<(String, String)> = body["alerts"]
        .as_array()
        .expect("/v1/alerts lists alerts")
        .iter()
        .filter(|a| a["state"] == "firing" || (a["state"] == "final" && a["drift_units"] != "0"))
        .map(|a| (a["id"].as_str().unwrap_or_default().to_string(), a["revision"].to_string()))
        .collect();
    active.sort();
    active
}

/// (alert id, revision) of every alert Alertmanager shows active.
async fn am_active(am: &Alertmanager) -> Vec<(String, String)> {
    let mut shown: Vec<(String, String)> = am
        .alerts()
        .await
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .map(|a| {
            let note = |key: &str| a["annotations"][key].as_str().unwrap_or_default().to_string();
            (note("alert_id"), note("revision"))
        })
        .collect();
    shown.sort();
    shown.dedup();
    shown
}

/// Waits until the live instance has sent everything it owes: input committed, every posting
/// and alert revision on its stream, the outbox empty, the webhook's consumer drained and
/// Alertmanager showing exactly tally's active alerts at their latest revision. After that it
/// has nothing to send until new input arrives (its resend interval is an hour).
async fn wait_quiet(live: &Tally, js: &Js, am: &Alertmanager) {
    live.wait_drained(js, SETTLE_TIMEOUT).await;
    let quiet = wait_until(SETTLE_TIMEOUT, move || async move {
        let (_, alerts) = live.http_get("/v1/alerts").await;
        let revisions: u64 =
            alerts["alerts"].as_array().map(|a| a.iter().filter_map(|x| x["revision"].as_u64()).sum()).unwrap_or(0);
        js.message_count(ALERTS_STREAM).await == revisions
            && metric(live, "tally_outbox_pending_messages").await == Some(0.0)
            && js.consumer_drained(ERP_STREAM, WEBHOOK_CONSUMER).await
            && am_active(am).await == active_alerts(live).await
    })
    .await;
    assert!(
        quiet,
        "the live instance did not settle: Alertmanager {:?}, tally {:?}\n{}",
        am_active(am).await,
        active_alerts(live).await,
        live.logs()
    );
}

/// `tally state --progress-every 0s rebuild --config <config> <into>`; returns stdout and stderr.
fn rebuild(config: &Path, into: &Path) -> (String, String) {
    let out = Command::new(tally_bin())
        .args(["state", "--progress-every", "0s", "rebuild", "--config"])
        .arg(config)
        .arg(into)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tally state rebuild");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "tally state rebuild failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `tally inspect --state <dir> day <store> <day>`.
fn inspect_day(state: &Path, store: &str, day: NaiveDate) -> Value {
    let out = Command::new(tally_bin())
        .args(["inspect", "--state"])
        .arg(state)
        .args(["day", store, &day.to_string()])
        .output()
        .expect("run tally inspect");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

fn config(erp: &Erp, am: &Alertmanager) -> String {
    format!(
        "[erp]\ninterval = \"1s\"\nclose_grace = \"1m\"\n[erp.webhook]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [alertmanager]\nurl = \"{}\"\nresend_interval = \"1h\"\n\
         [drift]\nsettle = \"5m\"\nidle_timeout = \"1h\"\n",
        erp.url,
        am.url()
    )
}

// Proves that a rebuild next to a live instance publishes nothing on any output subject, sends
// nothing to the ERP or Alertmanager, reproduces the live day reports, and that tally on the
// rebuilt state continues each posting sequence after the live instance's last posting, with
// deltas that complete the day's totals and no id ever sent with two contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_publishes_nothing_and_continues_the_live_postings() {
    let nats = NatsServer::start();
    let am = Alertmanager::start().await;
    let erp = Erp::start().await;
    let js = Js::connect(&nats.url()).await;
    let toml = config(&erp, &am);
    let mut live = Tally::start(&nats.url(), &toml).await;
    let wire = WireTap::start(&js, PREFIX).await;
    let day1 = Utc::now().date_naive();
    let day2 = day1.succ_opt().expect("a next day");

    // A day of traffic in four parts, each posted as an interim posting; a broken record for
    // the DLQ; the day-close, and the next day's first records, which finalize day 1.
    let mut model = Model::new();
    let traffic1: Vec<Vec<(String, Value)>> =
        STORES.iter().enumerate().map(|(i, s)| day_traffic(s, day1, "A", 120, 11 + i as u64)).collect();
    for part in 0..4 {
        for records in &traffic1 {
            publish(&js, &mut model, &records[part * 30..(part + 1) * 30]).await;
        }
        wait_postings_complete(&js, &model, &[day1], &live).await;
    }
    js.publish(&pos_subject(PREFIX, STORES[0]), "{\"type\": \"pos.transaction\", broken", &[]).await;
    let closes: Vec<_> = STORES.iter().map(|s| day_close(s, day1)).collect();
    publish(&js, &mut model, &closes).await;
    let traffic2: Vec<Vec<(String, Value)>> =
        STORES.iter().enumerate().map(|(i, s)| day_traffic(s, day2, "B", 60, 21 + i as u64)).collect();
    for records in &traffic2 {
        publish(&js, &mut model, &records[..30]).await;
    }
    wait_postings_complete(&js, &model, &[day1, day2], &live).await;
    wait_quiet(&live, &js, &am).await;
    let before = Outputs::read(&js).await;
    for store in STORES {
        let kinds = before.kinds(store, &day1.to_string());
        assert!(kinds.iter().filter(|k| *k == "interim").count() >= 3, "{store}: interim postings first: {kinds:?}");
        assert_eq!(kinds.last().map(String::as_str), Some("final"), "{store}: day 1 is final: {kinds:?}");
    }
    assert!(!before.alerts.is_empty(), "the traffic raised drift alerts");
    assert_eq!(before.dlq.len(), 1, "the broken record is on the DLQ");

    // The rebuild, next to the live instance, with every output counted.
    let tap = Tap::start(&nats.url()).await;
    let (erp_before, am_before) = (erp.requests().len(), am_received(&am).await);
    assert!(am_before > 0.0, "the live instance pushed its alerts");
    let work = tempfile::tempdir().expect("a temp dir");
    let rebuilt = work.path().join("rebuilt");
    let (said, progress) = rebuild(live.config_path(), &rebuilt);
    assert!(said.contains("Rebuilt state"), "{said}");
    assert_eq!(tap.outputs().await, Vec::<String>::new(), "the rebuild published outputs");
    assert_eq!(erp.requests().len(), erp_before, "the rebuild called the ERP webhook");
    assert_eq!(am_received(&am).await, am_before, "the rebuild pushed alerts to Alertmanager");
    assert!(
        progress.lines().any(|l| l.starts_with("rebuild: ") && l.contains(" messages (") && l.contains("/s, ETA ")),
        "a progress line with rate and ETA: {progress}"
    );
    let summary =
        progress.lines().find(|l| l.starts_with("rebuild: ") && l.contains(" messages in ")).unwrap_or_default();
    assert!(summary.ends_with("/s)"), "the rebuild's closing line: {progress}");
    for store in STORES {
        for day in [day1, day2] {
            let live_day = live.day(store, &day.to_string()).await;
            assert_eq!(
                inspect_day(&rebuilt, store, day),
                live_day,
                "{store}/{day}: the rebuilt report equals the live one"
            );
        }
    }

    // Switch: the live instance stops, tally runs on the rebuilt state; a late sale of day 1
    // and more of day 2 arrive.
    live.stop_gracefully();
    let mut switched = Tally::builder(&nats.url())
        .toml(&toml)
        .toml(&format!("[state]\npath = {:?}\n", rebuilt.display().to_string()))
        .prepare();
    switched.spawn_run().await;
    let late = transaction(
        "L-1",
        STORES[0],
        &day1.to_string(),
        vec![line(1, "100001", "2", "5.00")],
        vec![tender("cash", "10.00")],
    );
    let mut after = vec![(pos_subject(PREFIX, STORES[0]), late)];
    for records in &traffic2 {
        after.extend_from_slice(&records[30..]);
    }
    publish(&js, &mut model, &after).await;
    switched.wait_drained(&js, SETTLE_TIMEOUT).await;
    wait_postings_complete(&js, &model, &[day1, day2], &switched).await;
    let erp_done =
        wait_until(SETTLE_TIMEOUT, || async { js.consumer_drained(ERP_STREAM, WEBHOOK_CONSUMER).await }).await;
    assert!(erp_done, "the webhook delivered every posting\n{}", switched.logs());

    // No id was ever published with two contents (the wire saw every attempt), each store-day's
    // postings run 1, 2, … (Outputs::read checks), day 1 has one final then the adjustment.
    wire.check();
    let outputs = Outputs::read(&js).await;
    for store in STORES {
        let kinds = outputs.kinds(store, &day1.to_string());
        assert_eq!(kinds.iter().filter(|k| *k == "final").count(), 1, "{store}: one final posting: {kinds:?}");
        let continued = outputs.postings[&(store.to_string(), day2.to_string())].len()
            > before.postings[&(store.to_string(), day2.to_string())].len();
        assert!(continued, "{store}: day 2 was posted on after the switch");
    }
    assert_eq!(outputs.kinds(STORES[0], &day1.to_string()).last().map(String::as_str), Some("adjustment"));
    assert_eq!(outputs.dlq.len(), 1, "the DLQ entry is not repeated");
    // The ERP booked each posting of RETAIL_ERP, with its bytes, and nothing else.
    let stream: BTreeMap<String, Bytes> = js
        .messages(ERP_STREAM)
        .await
        .into_iter()
        .map(|m| (m.header("Nats-Msg-Id").unwrap_or_default().to_string(), m.payload))
        .collect();
    let requests = erp.requests();
    for (key, body) in &requests {
        assert_eq!(
            stream.get(key),
            Some(body),
            "the ERP got {key} with other bytes than RETAIL_ERP holds, or not from it"
        );
    }
    let booked: std::collections::BTreeSet<&String> = requests.iter().map(|(key, _)| key).collect();
    assert_eq!(booked, stream.keys().collect(), "the ERP holds every posting of RETAIL_ERP");
    assert_eq!(js.message_count(DLQ_STREAM).await, 1);
}
