//! The ERP webhook (docs/configuration.md, "ERP webhook"; docs/wire-format.md): every posting of
//! `RETAIL_ERP` POSTed with `Idempotency-Key`, in stream order per store with stores side by
//! side, retried until 2xx, or parked on `P.dlq.erp_rejected`.
//!
//! Each test starts a small ERP: an HTTP server on a free port that records every request and
//! answers from a script (one reply per request, then a default reply that the test can change),
//! except for the stores the test marks failing, whose postings it answers 503.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{
    prom, start_all, wait_for_messages, wait_until, Js, NatsServer, StoredMessage, Tally, DLQ_STREAM, DRAIN_TIMEOUT,
};

const ERP_STREAM: &str = "RETAIL_ERP";
const WEBHOOK_CONSUMER: &str = "tally-erp-webhook";
const TOKEN_HEADER: &str = "Bearer t0ken";
/// The webhook's timeout in the test config; a stall lasts well beyond it.
const STALL: Duration = Duration::from_secs(3);

/// How the test ERP answers one request.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Ok,
    Unavailable,
    BadRequest(&'static str),
    /// Answers 200 only after [`STALL`], long after the webhook gave up on the request.
    Stall,
}

#[derive(Debug, Clone)]
struct Recorded {
    headers: HeaderMap,
    body: Bytes,
    reply: Reply,
    /// When the request arrived.
    at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn key(&self) -> &str {
        self.header("Idempotency-Key").unwrap_or("<none>")
    }

    /// The store of the posting: its id reads `<store>/<day>/<seq>`.
    fn store(&self) -> &str {
        self.key().split('/').next().unwrap_or_default()
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Reply>,
    default: Option<Reply>,
    /// Stores whose postings are answered 503, whatever the script says.
    failing: BTreeSet<String>,
    requests: Vec<Recorded>,
}

/// The test ERP. Dropping it stops the server.
struct Erp {
    url: String,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Erp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Erp {
    /// Serves on a free port; answers `script` in order, then `default`.
    async fn start(script: Vec<Reply>, default: Reply) -> Erp {
        let state = Arc::new(Mutex::new(Script { next: script.into(), default: Some(default), ..Script::default() }));
        let app =
            axum::Router::new().route("/erp/postings", axum::routing::post(receive)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test ERP");
        let port = listener.local_addr().expect("the test ERP's address").port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the test ERP serves");
        });
        Erp { url: format!("http://127.0.0.1:{port}/erp/postings"), script: state, server }
    }

    fn set_default(&self, reply: Reply) {
        self.script.lock().expect("script lock").default = Some(reply);
    }

    /// From now on, `store`'s postings are answered 503 (`failing`) or from the script.
    fn set_store_failing(&self, store: &str, failing: bool) {
        let mut script = self.script.lock().expect("script lock");
        if failing {
            script.failing.insert(store.to_string());
        } else {
            script.failing.remove(store);
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.script.lock().expect("script lock").requests.clone()
    }

    /// The requests the ERP answered 200 in time: what it booked.
    fn booked(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.reply == Reply::Ok).collect()
    }

    /// The tally config for this ERP: interim postings every second, a 500 ms webhook timeout.
    fn toml(&self) -> String {
        format!(
            "[erp]\ninterval = \"1s\"\n[erp.webhook]\nurl = \"{}\"\ntimeout = \"500ms\"\nauth_header = \"Authorization: {TOKEN_HEADER}\"\n",
            self.url
        )
    }
}

async fn receive(State(state): State<Arc<Mutex<Script>>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut script = state.lock().expect("script lock");
        let recorded = Recorded { headers, body, reply: Reply::Ok, at: Instant::now() };
        let reply = if script.failing.contains(recorded.store()) {
            Reply::Unavailable
        } else {
            match script.next.pop_front() {
                Some(reply) => reply,
                None => script.default.clone().unwrap_or(Reply::Ok),
            }
        };
        script.requests.push(Recorded { reply: reply.clone(), ..recorded });
        reply
    };
    match reply {
        Reply::Ok => StatusCode::OK.into_response(),
        Reply::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "ERP in maintenance").into_response(),
        Reply::BadRequest(body) => (StatusCode::BAD_REQUEST, body).into_response(),
        Reply::Stall => {
            tokio::time::sleep(STALL).await;
            StatusCode::OK.into_response()
        }
    }
}

fn posting_id(message: &StoredMessage) -> &str {
    message.header("Nats-Msg-Id").expect("every posting carries Nats-Msg-Id")
}

/// Publishes one transaction per id and waits, after each, until RETAIL_ERP holds one posting
/// more: one interim posting per transaction (the tick runs every second). Returns the postings.
async fn publish_one_posting_each(js: &Js, ids: &[&str]) -> Vec<StoredMessage> {
    let start = js.message_count(ERP_STREAM).await;
    for (i, id) in ids.iter().enumerate() {
        js.publish_json(&pos_subject("retail", "0042"), &example_transaction(id, "0042", DAY)).await;
        wait_for_messages(js, ERP_STREAM, start + i as u64 + 1).await;
    }
    js.messages(ERP_STREAM).await
}

/// Waits until the webhook's consumer has acked everything in RETAIL_ERP.
async fn wait_webhook_drained(js: &Js, tally: &Tally) {
    let drained =
        wait_until(DRAIN_TIMEOUT, move || async move { js.consumer_drained(ERP_STREAM, WEBHOOK_CONSUMER).await }).await;
    assert!(
        drained,
        "webhook consumer not drained: {}\n{}",
        js.consumer_summary(ERP_STREAM, WEBHOOK_CONSUMER).await,
        tally.logs()
    );
}

/// Asserts that `booked` is exactly `postings`, one request each, in stream order, with the
/// posting's id as Idempotency-Key, its bytes as body, its Content-Type and the auth header.
fn assert_booked_exactly(booked: &[Recorded], postings: &[StoredMessage]) {
    let keys: Vec<&str> = booked.iter().map(Recorded::key).collect();
    let ids: Vec<&str> = postings.iter().map(posting_id).collect();
    assert_eq!(keys, ids, "the ERP must book every posting once, in stream order");
    for (request, posting) in booked.iter().zip(postings) {
        assert!(request.body == posting.payload, "body of {} differs from RETAIL_ERP's message", posting_id(posting));
        assert_eq!(
            request.header("Content-Type"),
            posting.header("Content-Type"),
            "Content-Type of {}",
            posting_id(posting)
        );
        assert_eq!(request.header("Authorization"), Some(TOKEN_HEADER), "auth header on {}", posting_id(posting));
    }
}

// Proves: postings reach the ERP in seq order, one POST each, with Idempotency-Key = posting id,
// the auth header, the message's Content-Type, and bodies equal to RETAIL_ERP's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_arrive_in_order_with_idempotency_key_and_auth() {
    let erp = Erp::start(Vec::new(), Reply::Ok).await;
    let (_nats, tally, js) = start_all(&erp.toml()).await;
    let postings = publish_one_posting_each(&js, &["T-1", "T-2", "T-3"]).await;
    assert_eq!(postings.len(), 3, "one interim posting per transaction");
    wait_webhook_drained(&js, &tally).await;

    let requests = erp.requests();
    assert_booked_exactly(&requests, &postings);
    for (i, request) in requests.iter().enumerate() {
        let body: Value = serde_json::from_slice(&request.body).expect("a JSON posting");
        assert_eq!(body["id"].as_str(), Some(request.key()), "Idempotency-Key is the posting id");
        assert_eq!(body["seq"].as_u64(), Some(i as u64 + 1), "postings arrive in seq order");
        assert_eq!(request.key(), format!("0042/{DAY}/{:04}", i + 1));
    }
    let (_, metrics) = tally.http_get_text("/metrics").await;
    let samples = prom::parse(&metrics);
    assert_eq!(prom::sum(&samples, "tally_webhook_deliveries_total", &[("outcome", "delivered")]), 3.0, "{metrics}");
    assert!(prom::sum(&samples, "tally_webhook_last_success_timestamp_seconds", &[]) > 1.7e9, "{metrics}");
}

// Proves: while the ERP stalls and answers 503, the same posting is retried (same key, same
// body), nothing behind it is sent and /readyz says so; after recovery the ERP has booked
// exactly RETAIL_ERP's postings, in order, each once, and the auth header never reached the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_then_recovering_loses_and_repeats_nothing() {
    let erp = Erp::start(vec![Reply::Unavailable, Reply::Stall], Reply::Unavailable).await;
    let (_nats, tally, js) = start_all(&erp.toml()).await;
    let postings = publish_one_posting_each(&js, &["T-1", "T-2", "T-3"]).await;
    assert_eq!(postings.len(), 3, "one interim posting per transaction");
    let first = posting_id(&postings[0]).to_string();

    // The ERP keeps failing: at least the 503, the stall and two more 503s, all for posting 1.
    let erp_ref = &erp;
    let retried = wait_until(DRAIN_TIMEOUT, move || async move { erp_ref.requests().len() >= 4 }).await;
    assert!(retried, "the webhook did not retry: {:?}\n{}", erp.requests().len(), tally.logs());
    let (status, body) = tally.http_get("/readyz").await;
    assert_eq!(status, 503, "/readyz while the ERP fails: {body}");
    assert!(body.to_string().contains("webhook"), "/readyz names the webhook: {body}");
    let failing = erp.requests();
    assert!(failing.iter().all(|r| r.key() == first), "only posting 1 is sent while it fails: {:?}", keys(&failing));
    assert!(failing.iter().all(|r| r.body == postings[0].payload), "a retry sends the same bytes");
    assert!(failing.iter().any(|r| r.reply == Reply::Stall), "the stall was exercised");

    erp.set_default(Reply::Ok);
    wait_webhook_drained(&js, &tally).await;
    let all = erp.requests();
    assert_booked_exactly(&erp.booked(), &postings);
    // Every request, failed or not, follows stream order: a run of posting 1, then 2, then 3.
    let order: Vec<usize> =
        all.iter().map(|r| postings.iter().position(|p| posting_id(p) == r.key()).expect("a known key")).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "requests out of stream order: {:?}", keys(&all));
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "nothing is parked for 503s and stalls");

    let tally_ref = &tally;
    let ready = wait_until(DRAIN_TIMEOUT, move || async move { tally_ref.http_get("/readyz").await.0 == 200 }).await;
    assert!(ready, "/readyz after recovery: {:?}", tally.http_get("/readyz").await);
    let (_, metrics) = tally.http_get_text("/metrics").await;
    let samples = prom::parse(&metrics);
    let failed_attempts = all.iter().filter(|r| r.reply != Reply::Ok).count() as f64;
    assert_eq!(
        prom::sum(&samples, "tally_webhook_deliveries_total", &[("outcome", "retried")]),
        failed_attempts,
        "{metrics}"
    );
    assert_eq!(prom::sum(&samples, "tally_webhook_deliveries_total", &[("outcome", "delivered")]), 3.0, "{metrics}");
    // One posting needed retries: from its first failed request to its booking, as the ERP saw
    // them (tally measures from the answers, a few milliseconds later each).
    let of_first: Vec<&Recorded> = all.iter().filter(|r| r.key() == first).collect();
    let failed_at = of_first.iter().filter(|r| r.reply != Reply::Ok).map(|r| r.at).min().expect("failures");
    let booked_at = of_first.iter().find(|r| r.reply == Reply::Ok).expect("booked").at;
    let resolved = (booked_at - failed_at).as_secs_f64();
    let histogram =
        |suffix: &str| prom::sum(&samples, &format!("tally_posting_failure_resolution_seconds_{suffix}"), &[]);
    assert_eq!(histogram("count"), 1.0, "only posting 1 failed before its delivery:\n{metrics}");
    assert!(
        (histogram("sum") - resolved).abs() < 0.5,
        "resolution time {} s, the ERP saw {resolved:.3} s:\n{metrics}",
        histogram("sum")
    );
    assert_eq!(prom::sum(&samples, "tally_postings_parked_total", &[]), 0.0, "{metrics}");
    let logs = tally.full_logs();
    assert!(logs.contains("retrying the same posting"), "a WARN per failed attempt:\n{}", tally.logs());
    assert!(!logs.contains("t0ken"), "the auth header leaked into the log");
}

// Proves: a 400 parks the posting verbatim on retail.dlq.erp_rejected with the DLQ headers,
// logs an ERROR, and the next posting is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_parks_the_posting_and_the_next_one_is_delivered() {
    let answer = "{\"error\": \"unknown cost center\",\n \"field\": \"store\"}\n";
    let erp = Erp::start(vec![Reply::BadRequest(answer)], Reply::Ok).await;
    let (_nats, tally, js) = start_all(&erp.toml()).await;
    let postings = publish_one_posting_each(&js, &["T-1", "T-2"]).await;
    assert_eq!(postings.len(), 2, "one interim posting per transaction");
    wait_webhook_drained(&js, &tally).await;

    let dlq = wait_for_messages(&js, DLQ_STREAM, 1).await;
    assert_eq!(dlq.len(), 1, "exactly one parked posting");
    let parked = &dlq[0];
    let rejected = &postings[0];
    let id = posting_id(rejected);
    assert_eq!(parked.subject, "retail.dlq.erp_rejected");
    assert_eq!(parked.header("Nats-Msg-Id"), Some(format!("dlq/{id}").as_str()));
    assert_eq!(parked.header("Tally-Error"), Some("erp_rejected"));
    assert_eq!(parked.header("Tally-Source-Subject"), Some(rejected.subject.as_str()));
    assert_eq!(parked.header("Tally-Source-Sequence"), Some(rejected.sequence.to_string().as_str()));
    assert_eq!(
        parked.header("Tally-Error-Detail"),
        Some("HTTP 400 Bad Request: {\"error\": \"unknown cost center\", \"field\": \"store\"}"),
        "status and the start of the answer, on one line"
    );
    assert!(parked.payload == rejected.payload, "the posting is parked verbatim");

    let requests = erp.requests();
    assert_eq!(keys(&requests), vec![id, posting_id(&postings[1])], "a rejected posting is not retried");
    assert_booked_exactly(&erp.booked(), &postings[1..]);
    let logs = tally.full_logs();
    assert!(
        logs.lines().any(|l| l.contains("ERROR") && l.contains("ERP rejected the posting") && l.contains(id)),
        "an ERROR naming the posting:\n{}",
        tally.logs()
    );
    let (_, metrics) = tally.http_get_text("/metrics").await;
    let samples = prom::parse(&metrics);
    assert_eq!(prom::sum(&samples, "tally_webhook_deliveries_total", &[("outcome", "rejected")]), 1.0, "{metrics}");
    assert_eq!(prom::sum(&samples, "tally_webhook_deliveries_total", &[("outcome", "delivered")]), 1.0, "{metrics}");
    // Parked as a 400, once; every other reason is exported at 0; no failure was resolved.
    let parked = prom::samples(&samples, "tally_postings_parked_total");
    assert_eq!(parked.len(), 8, "one series per reason: {parked:?}");
    assert_eq!(prom::sum(&samples, "tally_postings_parked_total", &[("reason", "bad_request")]), 1.0, "{metrics}");
    assert_eq!(prom::sum(&samples, "tally_postings_parked_total", &[]), 1.0, "{metrics}");
    assert_eq!(prom::sum(&samples, "tally_posting_failure_resolution_seconds_count", &[]), 0.0, "{metrics}");
}

fn keys(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(Recorded::key).collect()
}

/// The stores of the per-store tests; the first one's endpoint fails.
const STORES: [&str; 4] = ["0001", "0002", "0003", "0004"];
const FAILING: &str = "0001";
/// How long the failing store's endpoint answers 503 while the other stores post.
const OUTAGE: Duration = Duration::from_secs(60);
/// The webhook's window (its consumer's `max_ack_pending`), docs/configuration.md.
const WINDOW: u64 = 4096;

/// Publishes one transaction per store and waits until RETAIL_ERP holds one posting more per
/// store: this round's interim postings (the tick runs every second).
async fn post_round(js: &Js, stores: &[&str], round: usize) {
    let start = js.message_count(ERP_STREAM).await;
    for store in stores {
        let id = format!("T-{store}-{round}");
        js.publish_json(&pos_subject("retail", store), &example_transaction(&id, store, DAY)).await;
    }
    wait_for_messages(js, ERP_STREAM, start + stores.len() as u64).await;
}

/// Publishes a posting of `store` straight onto RETAIL_ERP, as tally's outbox does: the
/// webhook's input, without waiting for tally's ticks.
async fn publish_posting(js: &Js, store: &str, seq: u64) {
    let id = format!("{store}/{DAY}/{seq:04}");
    let body = serde_json::json!({"type": "erp.posting", "id": id, "store": store, "business_day": DAY, "seq": seq});
    let headers = [("Nats-Msg-Id", id.as_str()), ("Content-Type", "application/json")];
    js.publish(&format!("retail.erp.postings.{store}"), serde_json::to_vec(&body).expect("JSON encodes"), &headers)
        .await;
}

/// The postings of `store`, in stream order.
fn postings_of<'a>(postings: &'a [StoredMessage], store: &str) -> Vec<&'a StoredMessage> {
    let subject = format!("retail.erp.postings.{store}");
    postings.iter().filter(|p| p.subject == subject).collect()
}

/// How many of `postings` the ERP has booked (answered 2xx) at least once.
fn booked_count(erp: &Erp, postings: &[&StoredMessage]) -> usize {
    let booked: BTreeSet<String> = erp.booked().iter().map(|r| r.key().to_string()).collect();
    postings.iter().filter(|p| booked.contains(posting_id(p))).count()
}

/// Waits until the ERP has booked every one of `postings`; panics with the picture otherwise.
async fn wait_booked(erp: &Erp, postings: &[&StoredMessage], timeout: Duration, tally: &Tally, what: &str) {
    let all = wait_until(timeout, move || async move { booked_count(erp, postings) == postings.len() }).await;
    assert!(all, "{what}: {} of {} postings booked\n{}", booked_count(erp, postings), postings.len(), tally.logs());
}

/// Asserts that the ERP booked `store`'s postings in stream order, each at least once (a re-send
/// comes right after its first booking) and with the posting's bytes.
fn assert_store_booked_in_order(erp: &Erp, postings: &[StoredMessage], store: &str) {
    let expected = postings_of(postings, store);
    assert!(!expected.is_empty(), "store {store} has postings");
    let booked: Vec<Recorded> = erp.booked().into_iter().filter(|r| r.store() == store).collect();
    let mut order: Vec<&str> = booked.iter().map(Recorded::key).collect();
    order.dedup();
    let ids: Vec<&str> = expected.iter().map(|p| posting_id(p)).collect();
    assert!(order == ids, "store {store}: booked {order:?}, expected every posting once in stream order {ids:?}");
    for request in &booked {
        let posting = expected.iter().find(|p| posting_id(p) == request.key()).expect("a known id");
        assert!(request.body == posting.payload, "body of {} differs from RETAIL_ERP's message", request.key());
    }
}

async fn waiting_gauge(tally: &Tally, store: &str) -> f64 {
    let (_, metrics) = tally.http_get_text("/metrics").await;
    prom::sum(&prom::parse(&metrics), "tally_webhook_postings_waiting", &[("store", store)])
}

// Proves: while one store's endpoint answers 503 for a minute, every posting of the other stores
// reaches the ERP during that minute, in seq order per store, and only the failing store's first
// posting is tried; once it recovers, its postings arrive in seq order, each booked (2xx) at
// least once with its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_holds_up_only_itself() {
    let erp = Erp::start(Vec::new(), Reply::Ok).await;
    erp.set_store_failing(FAILING, true);
    let (_nats, tally, js) = start_all(&erp.toml()).await;
    let outage = Instant::now();
    let mut round = 0;
    while outage.elapsed() < OUTAGE {
        post_round(&js, &STORES, round).await;
        round += 1;
    }
    let postings = js.messages(ERP_STREAM).await;
    let healthy: Vec<&StoredMessage> = postings.iter().filter(|p| !p.subject.ends_with(FAILING)).collect();
    wait_booked(&erp, &healthy, DRAIN_TIMEOUT, &tally, "while one store fails, the others' postings arrive").await;
    for store in &STORES[1..] {
        assert_store_booked_in_order(&erp, &postings, store);
    }
    let failing_postings = postings_of(&postings, FAILING);
    let first = posting_id(failing_postings[0]);
    let tried: Vec<Recorded> = erp.requests().into_iter().filter(|r| r.store() == FAILING).collect();
    assert!(tried.len() >= 2, "the failing store's posting is retried: {:?}", keys(&tried));
    assert!(
        tried.iter().all(|r| r.key() == first),
        "only the failing store's first posting is tried: {:?}",
        keys(&tried)
    );
    assert!(tried.iter().all(|r| r.reply == Reply::Unavailable), "every try of it was answered 503");
    let (status, body) = tally.http_get("/readyz").await;
    assert_eq!(status, 503, "/readyz while a store fails: {body}");
    assert!(body.to_string().contains(FAILING), "/readyz names the failing store: {body}");
    let waiting = waiting_gauge(&tally, FAILING).await;
    assert_eq!(waiting, failing_postings.len() as f64, "tally_webhook_postings_waiting of the failing store");

    erp.set_store_failing(FAILING, false);
    wait_webhook_drained(&js, &tally).await;
    let postings = js.messages(ERP_STREAM).await;
    assert_eq!(postings.len(), round * STORES.len(), "one posting per store and round");
    for store in STORES {
        assert_store_booked_in_order(&erp, &postings, store);
    }
    assert_eq!(js.message_count(DLQ_STREAM).await, 0, "nothing is parked for 503s");
    let tally_ref = &tally;
    let emptied =
        wait_until(DRAIN_TIMEOUT, move || async move { waiting_gauge(tally_ref, FAILING).await == 0.0 }).await;
    assert!(emptied, "tally_webhook_postings_waiting of the recovered store drops to 0");
}

// Proves: after a crash (SIGKILL) while a store's postings wait behind its failing one, the
// restarted webhook sends them in seq order before the store's posting made after the restart,
// although JetStream hands that newer posting out first (the older ones only after their ack
// wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_store_fails_keeps_its_order() {
    let erp = Erp::start(Vec::new(), Reply::Ok).await;
    erp.set_store_failing(FAILING, true);
    let (_nats, mut tally, js) = start_all(&erp.toml()).await;
    for round in 0..3 {
        post_round(&js, &[FAILING, "0002"], round).await;
    }
    let postings = js.messages(ERP_STREAM).await;
    wait_booked(&erp, &postings_of(&postings, "0002"), DRAIN_TIMEOUT, &tally, "the healthy store").await;
    let erp_ref = &erp;
    let tried =
        wait_until(DRAIN_TIMEOUT, move || async move { erp_ref.requests().iter().any(|r| r.store() == FAILING) }).await;
    assert!(tried, "the failing store was tried\n{}", tally.logs());
    tally.kill();

    // While tally is down, one more transaction of the store: the restarted tally posts it.
    js.publish_json(&pos_subject("retail", FAILING), &example_transaction("T-late", FAILING, DAY)).await;
    erp.set_store_failing(FAILING, false);
    tally.spawn_run_no_wait();
    wait_for_messages(&js, ERP_STREAM, postings.len() as u64 + 1).await;
    // The killed run's postings come back within one ack wait (30 s) of its last progress ack.
    let js_ref = &js;
    let drained =
        wait_until(
            DRAIN_TIMEOUT * 3,
            move || async move { js_ref.consumer_drained(ERP_STREAM, WEBHOOK_CONSUMER).await },
        )
        .await;
    assert!(drained, "not drained: {}\n{}", js.consumer_summary(ERP_STREAM, WEBHOOK_CONSUMER).await, tally.logs());
    let postings = js.messages(ERP_STREAM).await;
    assert_eq!(postings_of(&postings, FAILING).len(), 4, "three postings before the crash, one after");
    assert_store_booked_in_order(&erp, &postings, FAILING);
    assert_store_booked_in_order(&erp, &postings, "0002");
    assert!(tally.full_logs().contains("left postings unacked"), "the restart waited for them:\n{}", tally.logs());
}

// Proves: when a failing store's postings fill the webhook's window, the store's later postings
// move to a consumer of its own and the other stores' postings still arrive; once the store
// recovers, all its postings arrive in stream order and its own consumer is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_filling_the_window_moves_aside() {
    const STUCK: &str = "0009";
    let erp = Erp::start(Vec::new(), Reply::Ok).await;
    erp.set_store_failing(STUCK, true);
    let (_nats, tally, js) = start_all(&erp.toml()).await;
    for seq in 1..=WINDOW + 100 {
        publish_posting(&js, STUCK, seq).await;
    }
    for seq in 1..=5 {
        publish_posting(&js, "0002", seq).await;
    }
    let postings = js.messages(ERP_STREAM).await;
    wait_booked(&erp, &postings_of(&postings, "0002"), DRAIN_TIMEOUT, &tally, "behind a full window").await;
    let own = format!("{WEBHOOK_CONSUMER}-store-{STUCK}");
    assert!(consumer_names(&js).await.contains(&own), "{own} exists\n{}", tally.logs());
    assert!(tally.full_logs().contains("moves to a consumer of its own"), "the move is logged:\n{}", tally.logs());

    erp.set_store_failing(STUCK, false);
    wait_booked(&erp, &postings_of(&postings, STUCK), DRAIN_TIMEOUT * 4, &tally, "the recovered store").await;
    let js_ref = &js;
    let own_ref = &own;
    let deleted =
        wait_until(DRAIN_TIMEOUT, move || async move { !consumer_names(js_ref).await.contains(own_ref) }).await;
    assert!(deleted, "{own} is deleted once the store caught up\n{}", tally.logs());
    wait_webhook_drained(&js, &tally).await;
    assert_store_booked_in_order(&erp, &postings, STUCK);
    assert_store_booked_in_order(&erp, &postings, "0002");
}

async fn consumer_names(js: &Js) -> Vec<String> {
    use futures::TryStreamExt;
    js.stream(ERP_STREAM).await.consumer_names().try_collect().await.expect("list RETAIL_ERP's consumers")
}

// Proves: `tally setup` updates the webhook consumer of an earlier version (one posting at a
// time: max_ack_pending 1) in place, keeping its position: the webhook then sends only the
// postings that consumer had not acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_updates_an_earlier_versions_consumer_in_place() {
    use async_nats::jetstream::{consumer, stream};
    use futures::StreamExt;
    let erp = Erp::start(Vec::new(), Reply::Ok).await;
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let config = stream::Config {
        name: ERP_STREAM.into(),
        subjects: vec!["retail.erp.postings.*".into()],
        ..Default::default()
    };
    let erp_stream = js.context.create_stream(config).await.expect("create RETAIL_ERP");
    for seq in 1..=3 {
        publish_posting(&js, "0042", seq).await;
    }
    let old = consumer::pull::Config {
        durable_name: Some(WEBHOOK_CONSUMER.into()),
        filter_subject: "retail.erp.postings.*".into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(45),
        max_ack_pending: 1,
        ..Default::default()
    };
    let old = erp_stream.create_consumer(old).await.expect("the earlier version's consumer");
    for _ in 0..2 {
        let mut batch = old.fetch().max_messages(1).messages().await.expect("fetch");
        let message = batch.next().await.expect("a posting").expect("a posting");
        message.double_ack().await.expect("ack");
    }

    let mut tally = Tally::builder(&nats.url()).toml(&erp.toml()).prepare();
    tally.setup_ok();
    let info = erp_stream.consumer_info(WEBHOOK_CONSUMER).await.expect("the webhook's consumer");
    assert_eq!(info.config.max_ack_pending, WINDOW as i64, "the window of per-store delivery");
    assert_eq!(info.config.ack_wait, Duration::from_secs(30));
    assert_eq!(info.ack_floor.stream_sequence, 2, "the position is kept");
    tally.spawn_run().await;
    wait_webhook_drained(&js, &tally).await;
    assert_eq!(keys(&erp.requests()), vec![format!("0042/{DAY}/0003")], "only the posting not acked before");
}
