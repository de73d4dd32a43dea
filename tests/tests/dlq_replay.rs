//! `tally dlq list|show|replay` (docs/operations.md, "Dead letters: list, inspect, replay")
//! against a real nats-server and tally: the filters, what `show` prints, replaying records
//! after the operator fixed their cause, and re-delivering parked ERP postings.

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tally_tests::fixtures::{example_transaction, line, pos_subject, tender, transaction, DAY};
use tally_tests::{
    wait_for_messages, wait_until, DayTotals, Js, Model, NatsServer, StoredMessage, Tally, DLQ_STREAM, DRAIN_TIMEOUT,
};

const INPUT_STREAM: &str = "RETAIL_IN";
const ERP_STREAM: &str = "RETAIL_ERP";
/// How long one `tally dlq …` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `tally dlq <args>` with the instance's config, to its end.
async fn tally_dlq(tally: &Tally, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(tally.command("dlq"));
    command.args(args).kill_on_drop(true);
    match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => panic!("cannot run `tally dlq {}`: {err}", args.join(" ")),
        Err(_) => panic!("`tally dlq {}` did not finish within {COMMAND_TIMEOUT:?}", args.join(" ")),
    }
}

/// Runs `tally dlq <args>`, asserts it succeeded, and returns its stdout.
async fn tally_dlq_ok(tally: &Tally, args: &[&str]) -> String {
    let output = tally_dlq(tally, args).await;
    assert!(output.status.success(), "`tally dlq {}` failed ({}):\n{}", args.join(" "), output.status, text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The DLQ sequence at the start of each line of a `list`.
/// DLQ sequences in the order `tally dlq list` shows them: the DLQ's.
fn sorted(mut seqs: Vec<u64>) -> Vec<u64> {
    seqs.sort_unstable();
    seqs
}

fn listed(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().next().and_then(|seq| seq.parse().ok()).expect("a DLQ seq first"))
        .collect()
}

/// A transaction with three lines: over `input.max_lines = 2`.
fn three_lines(id: &str) -> Value {
    let lines = vec![line(1, "100234", "1", "10.00"), line(2, "100235", "2", "2.50"), line(3, "100236", "1", "0.99")];
    transaction(id, "0042", DAY, lines, vec![tender("card", "15.99")])
}

/// Rewrites `[input] max_lines` in the instance's config file: the operator's fix.
fn set_max_lines(tally: &Tally, max_lines: i64) {
    let path = tally.config_path();
    let mut config: toml::Table =
        std::fs::read_to_string(path).expect("read the config").parse().expect("config parses");
    let input = config.entry("input").or_insert_with(|| toml::Value::Table(Default::default()));
    input.as_table_mut().expect("[input] is a table").insert("max_lines".into(), toml::Value::Integer(max_lines));
    std::fs::write(path, toml::to_string(&config).expect("config serialises")).expect("write the config");
}

/// Publishes a too-large transaction to a tally with `max_lines = 2`, waits until it is on the
/// DLQ, then restarts tally with `max_lines = 1000`. Returns (record, its bytes, DLQ entry).
async fn dead_letter_then_raise_the_limit(
    tally: &mut Tally,
    js: &Js,
    model: &mut Model,
) -> (Value, Vec<u8>, StoredMessage) {
    let small = example_transaction("T-1", "0042", DAY);
    js.publish_json(&pos_subject("retail", "0042"), &small).await;
    model.apply(&small);
    let big = three_lines("T-big");
    let bytes = serde_json::to_vec(&big).expect("JSON encodes");
    js.publish(&pos_subject("retail", "0042"), bytes.clone(), &[("Content-Type", "application/json")]).await;
    let dlq = wait_for_messages(js, DLQ_STREAM, 1).await;
    tally.wait_drained(js, DRAIN_TIMEOUT).await;
    assert_eq!(dlq[0].header("Tally-Error"), Some("too_large"), "{:?}", dlq[0].headers);
    assert_eq!(
        DayTotals::from_http(&tally.day("0042", DAY).await),
        model.day("0042", DAY),
        "the big one is not counted"
    );

    tally.stop_gracefully();
    set_max_lines(tally, 1000);
    tally.spawn_run().await;
    (big, bytes, dlq[0].clone())
}

// Proves: a record dead-lettered by a too-low max_lines, replayed after the limit was raised,
// is counted once; it reaches the input verbatim with its own Content-Type under
// replay/<DLQ seq>; the DLQ is untouched; the same replay again within the duplicate window is
// dropped by JetStream and reported as skipped, and the totals stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_raising_max_lines_counts_the_record_once() {
    let nats = NatsServer::start();
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_lines = 2\n").await;
    let js = Js::connect(&nats.url()).await;
    let mut model = Model::new();
    let (big, bytes, entry) = dead_letter_then_raise_the_limit(&mut tally, &js, &mut model).await;

    let stdout = tally_dlq_ok(&tally, &["replay", "--reason", "too_large"]).await;
    assert!(
        stdout.contains("1 selected, 1 replayed (1 to the input stream, 0 to the ERP webhook), 0 skipped, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("go back to the DLQ with a new source sequence"), "{stdout}");
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    model.apply(&big);
    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals, model.day("0042", DAY), "the replayed record is counted once");
    assert_eq!(totals.transactions, 2);

    let input = js.messages(INPUT_STREAM).await;
    let replayed = input.last().expect("the replay is on the input stream");
    // Published on the record's subject, stored with its store's partition appended.
    let partition = tally_topologies::partition::of_store("0042", 16);
    assert_eq!(replayed.subject, format!("retail.pos.0042.{partition}"));
    assert!(replayed.payload.as_ref() == bytes.as_slice(), "replayed verbatim");
    assert_eq!(replayed.header("Nats-Msg-Id"), Some(format!("replay/{}", entry.sequence).as_str()));
    assert_eq!(replayed.header("Content-Type"), Some("application/json"));
    assert!(replayed.headers.iter().all(|(name, _)| !name.to_string().starts_with("Tally-")), "{:?}", replayed.headers);
    assert_eq!(js.message_count(DLQ_STREAM).await, 1, "replay leaves the DLQ as it is");

    let again = tally_dlq_ok(&tally, &["replay", "--reason", "too_large"]).await;
    assert!(
        again.contains("1 selected, 0 replayed (0 to the input stream, 0 to the ERP webhook), 1 skipped, 0 failed"),
        "{again}"
    );
    assert!(again.contains("already replayed within the input stream's duplicate window"), "{again}");
    assert_eq!(js.message_count(INPUT_STREAM).await, input.len() as u64, "JetStream dropped the second replay");
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await), totals, "totals unchanged");
    assert_eq!(js.stream_info(DLQ_STREAM).await.state.consumer_count, 0, "no consumer left on the DLQ");
}

// Proves: replayed again after the input stream's duplicate window passed, the record reaches
// tally a second time and is counted as a duplicate, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_the_duplicate_window_is_a_duplicate_not_a_double_count() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    // The operator's own input stream, with a one-second duplicate window; setup keeps it.
    js.context
        .create_stream(async_nats::jetstream::stream::Config {
            name: INPUT_STREAM.into(),
            subjects: vec!["retail.pos.*".into(), "retail.inventory.*".into()],
            duplicate_window: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("create the input stream");
    let mut tally = Tally::start(&nats.url(), "[input]\nmax_lines = 2\n").await;
    let mut model = Model::new();
    let (big, _, _) = dead_letter_then_raise_the_limit(&mut tally, &js, &mut model).await;

    tally_dlq_ok(&tally, &["replay", "--reason", "too_large"]).await;
    model.apply(&big);
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await), model.day("0042", DAY));

    // Replays within the window are dropped; the first one after it goes through.
    let tally_ref = &tally;
    let through = wait_until(DRAIN_TIMEOUT, move || async move {
        tally_dlq_ok(tally_ref, &["replay", "--reason", "too_large"]).await.contains(" 1 replayed ")
    })
    .await;
    assert!(through, "no replay got through after the duplicate window");
    model.apply(&big);
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let totals = DayTotals::from_http(&tally.day("0042", DAY).await);
    assert_eq!(totals, model.day("0042", DAY), "counted once, then a duplicate");
    assert_eq!((totals.transactions, totals.duplicates), (2, 1));
}

/// The DLQ stream's own timestamp of entry `seq`.
async fn stored_at(js: &Js, seq: u64) -> DateTime<Utc> {
    let message = js.stream(DLQ_STREAM).await.get_raw_message(seq).await.expect("read a DLQ entry");
    DateTime::from_timestamp_nanos(message.time.unix_timestamp_nanos() as i64)
}

// Proves: list filters by reason (repeatable), store, limit and time (RFC 3339 and relative),
// prints one line per entry and JSON on request; show prints headers and the payload (pretty
// JSON, escaped text, hex), --raw the exact bytes; nothing is left behind on the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_filter_a_mixed_dlq() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), "").await;
    let js = Js::connect(&nats.url()).await;
    let truncated_json = br#"{"type": "pos.transaction", "id": "#.to_vec();
    let mut no_id = example_transaction("unused", "0043", DAY);
    no_id.as_object_mut().expect("an object").remove("id");
    let mut conflict = example_transaction("T-1", "0042", DAY);
    conflict["lines"][0]["qty"] = json!("3");
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    // First batch: decode (0042), schema (0043), conflict (0042).
    let first = [
        js.publish(&pos_subject("retail", "0042"), truncated_json.clone(), &[]).await,
        js.publish_json(&pos_subject("retail", "0043"), &no_id).await,
        js.publish_json(&pos_subject("retail", "0042"), &conflict).await,
    ];
    let dlq = wait_for_messages(&js, DLQ_STREAM, 3).await;
    let cut = stored_at(&js, dlq[2].sequence).await + chrono::Duration::microseconds(1);
    // Second batch: store_mismatch (0043), decode (0043, binary).
    let mismatch_seq = js.publish_json(&pos_subject("retail", "0043"), &example_transaction("T-9", "0044", DAY)).await;
    let binary_seq = js.publish(&pos_subject("retail", "0043"), vec![0xc1, 0x01, 0x02], &[]).await;
    let dlq = wait_for_messages(&js, DLQ_STREAM, 5).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let seq_of = |source: u64| {
        let source = source.to_string();
        dlq.iter().find(|m| m.header("Tally-Source-Sequence") == Some(source.as_str())).expect("a DLQ entry").sequence
    };
    let (decode, schema, conflict) = (seq_of(first[0]), seq_of(first[1]), seq_of(first[2]));
    let (mismatch, binary) = (seq_of(mismatch_seq), seq_of(binary_seq));

    let all = tally_dlq_ok(&tally, &["list"]).await;
    // In DLQ order: a store's dead letters in its input order, two stores' as their partitions
    // published them (docs/operations.md, "Partitions").
    let in_dlq_order = sorted(vec![decode, schema, conflict, mismatch, binary]);
    assert_eq!(listed(&all), in_dlq_order, "{all}");
    assert!(decode < conflict && mismatch < binary, "one store's dead letters keep their order: {all}");
    let schema_line = all.lines().find(|l| l.contains("schema")).expect("the schema line");
    assert!(schema_line.contains(&format!("retail.pos.0043 #{}", first[1])), "{schema_line}");
    let by = |args: &'static [&'static str]| {
        let tally = &tally;
        async move { listed(&tally_dlq_ok(tally, args).await) }
    };
    assert_eq!(by(&["list", "--reason", "decode"]).await, sorted(vec![decode, binary]));
    assert_eq!(by(&["list", "--reason", "decode", "--reason", "schema"]).await, sorted(vec![decode, schema, binary]));
    assert_eq!(by(&["list", "--store", "0043"]).await, vec![schema, mismatch, binary]);
    assert_eq!(by(&["list", "--store", "0043", "--reason", "decode"]).await, vec![binary]);
    assert_eq!(by(&["list", "--limit", "2"]).await, in_dlq_order[..2]);
    assert_eq!(by(&["list", "--since", "1h"]).await.len(), 5);
    assert_eq!(by(&["list", "--until", "1h"]).await, Vec::<u64>::new());
    let cut = cut.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    assert_eq!(listed(&tally_dlq_ok(&tally, &["list", "--since", &cut]).await), vec![mismatch, binary]);
    assert_eq!(listed(&tally_dlq_ok(&tally, &["list", "--until", &cut]).await), sorted(vec![decode, schema, conflict]));

    let json_lines = tally_dlq_ok(&tally, &["list", "--json", "--reason", "schema"]).await;
    let entry: Value = serde_json::from_str(json_lines.trim()).expect("one JSON object");
    assert_eq!(entry["dlq_seq"], json!(schema));
    assert_eq!(entry["reason"], json!("schema"));
    assert_eq!(entry["store"], json!("0043"));
    assert_eq!(entry["source_subject"], json!("retail.pos.0043"));
    assert_eq!(entry["source_seq"], json!(first[1]));
    assert_eq!(entry["msg_id"], json!(format!("dlq/{}", first[1])));
    assert!(entry["detail"].as_str().is_some_and(|d| d.contains("id")), "{entry}");

    let shown = tally_dlq_ok(&tally, &["show", &schema.to_string()]).await;
    assert!(shown.starts_with(&format!("DLQ entry {schema} on retail.dlq.schema at ")), "{shown}");
    assert!(
        shown.contains("  Tally-Error: schema\n") && shown.contains("  Tally-Source-Subject: retail.pos.0043\n"),
        "{shown}"
    );
    let (_, pretty) = shown.split_once(" bytes, JSON\n").expect("a JSON payload");
    assert_eq!(serde_json::from_str::<Value>(pretty).ok(), Some(no_id.clone()), "{shown}");
    assert!(
        pretty.starts_with("{\n  \"") && pretty.contains("\n  \"lines\": [\n    {\n      \""),
        "indented:\n{shown}"
    );
    let shown = tally_dlq_ok(&tally, &["show", &decode.to_string()]).await;
    assert!(shown.contains("text, not JSON; escaped\n{\\\"type\\\": \\\"pos.transaction\\\", \\\"id\\\": "), "{shown}");
    let shown = tally_dlq_ok(&tally, &["show", &binary.to_string()]).await;
    assert!(shown.contains("3 bytes, binary; hex\n00000000  c1 01 02"), "{shown}");
    let shown = tally_dlq_ok(&tally, &["show", "--reason", "conflict"]).await;
    assert!(
        shown.starts_with(&format!("DLQ entry {conflict} on retail.dlq.conflict"))
            && !shown.contains(&format!("DLQ entry {decode} ")),
        "{shown}"
    );
    let raw = tally_dlq(&tally, &["show", "--raw", &decode.to_string()]).await;
    assert!(raw.status.success() && raw.stdout == truncated_json, "{}", text(&raw));
    let missing = tally_dlq(&tally, &["show", "9999"]).await;
    assert!(
        !missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("9999"),
        "{}",
        text(&missing)
    );

    assert_eq!(js.message_count(DLQ_STREAM).await, 5, "reading leaves the DLQ as it is");
    assert_eq!(js.stream_info(DLQ_STREAM).await.state.consumer_count, 0, "no consumer left on the DLQ");
}

// Proves: --dry-run names what would be replayed and where, and publishes nothing; a conflict
// is skipped (and said why) unless --force; a bare `replay` refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_publishes_nothing_and_conflicts_are_skipped() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), "[input]\nmax_lines = 2\n").await;
    let js = Js::connect(&nats.url()).await;
    let pos = pos_subject("retail", "0042");
    js.publish_json(&pos, &three_lines("T-big")).await;
    js.publish_json(&pos, &transaction("T-1", "0042", DAY, vec![line(1, "100234", "1", "1.00")], vec![])).await;
    js.publish_json(&pos, &transaction("T-1", "0042", DAY, vec![line(1, "100234", "2", "1.00")], vec![])).await;
    let dlq = wait_for_messages(&js, DLQ_STREAM, 2).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    let (too_large, conflict) = (dlq[0].sequence, dlq[1].sequence);
    let input_before = js.message_count(INPUT_STREAM).await;

    let stdout = tally_dlq_ok(&tally, &["replay", "--dry-run", "--reason", "too_large", "--reason", "conflict"]).await;
    assert!(stdout.contains(&format!("publish to retail.pos.0042 as replay/{too_large}")), "{stdout}");
    let conflict_line =
        stdout.lines().find(|l| l.trim_start().starts_with(&conflict.to_string())).expect("the conflict's line");
    assert!(conflict_line.contains("skip: conflict"), "{stdout}");
    assert!(stdout.contains("Dry run: 2 selected, 1 would be replayed, 1 skipped; nothing was sent."), "{stdout}");
    assert_eq!(js.message_count(INPUT_STREAM).await, input_before, "a dry run publishes nothing");

    let bare = tally_dlq(&tally, &["replay"]).await;
    assert!(!bare.status.success() && String::from_utf8_lossy(&bare.stderr).contains("--all"), "{}", text(&bare));

    let skipped = tally_dlq_ok(&tally, &["replay", &conflict.to_string()]).await;
    assert!(skipped.contains("1 selected, 0 replayed") && skipped.contains("skipped 1 (conflict: "), "{skipped}");
    assert_eq!(js.message_count(INPUT_STREAM).await, input_before, "a skipped conflict is not published");

    // Forced, the conflict is published, rejected again, and lands on the DLQ with a new source seq.
    let forced = tally_dlq_ok(&tally, &["replay", "--force", &conflict.to_string()]).await;
    assert!(forced.contains("1 replayed (1 to the input stream"), "{forced}");
    let dlq = wait_for_messages(&js, DLQ_STREAM, 3).await;
    assert_eq!(dlq[2].header("Tally-Error"), Some("conflict"));
    assert_eq!(dlq[2].header("Tally-Source-Sequence"), Some((input_before + 1).to_string().as_str()));
    assert!(dlq[2].payload == dlq[1].payload, "the same record, rejected again");
}

/// A test ERP: rejects every posting (400) until told to accept; then answers 200 after
/// `delay`. Records every request.
#[derive(Default)]
struct ErpState {
    accept: bool,
    delay: Duration,
    requests: Vec<(HeaderMap, Bytes, u16)>,
}

struct Erp {
    url: String,
    state: Arc<Mutex<ErpState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Erp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Erp {
    async fn start() -> Erp {
        let state = Arc::new(Mutex::new(ErpState::default()));
        let app =
            axum::Router::new().route("/erp/postings", axum::routing::post(erp_receive)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test ERP");
        let port = listener.local_addr().expect("the test ERP's address").port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the test ERP serves");
        });
        Erp { url: format!("http://127.0.0.1:{port}/erp/postings"), state, server }
    }

    fn accept_after(&self, delay: Duration) {
        let mut state = self.state.lock().expect("ERP lock");
        state.accept = true;
        state.delay = delay;
    }

    /// (Idempotency-Key, body, Content-Type) of the requests answered `status`.
    fn answered(&self, status: u16) -> Vec<(String, Bytes, String)> {
        let header =
            |headers: &HeaderMap, name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let state = self.state.lock().expect("ERP lock");
        state
            .requests
            .iter()
            .filter(|(_, _, s)| *s == status)
            .map(|(h, body, _)| (header(h, "Idempotency-Key"), body.clone(), header(h, "Content-Type")))
            .collect()
    }
}

async fn erp_receive(State(state): State<Arc<Mutex<ErpState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let (accept, delay) = {
        let mut state = state.lock().expect("ERP lock");
        let status = if state.accept { 200 } else { 400 };
        state.requests.push((headers, body, status));
        (state.accept, state.delay)
    };
    if !accept {
        return (StatusCode::BAD_REQUEST, "unknown cost center").into_response();
    }
    tokio::time::sleep(delay).await;
    StatusCode::OK.into_response()
}

// Proves: postings the ERP rejected are re-delivered by `replay --reason erp_rejected` (same
// Idempotency-Key, body and Content-Type) once the ERP accepts, failing while it still
// rejects; the replay prints plain progress lines off a terminal, and a summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_postings_are_redelivered_once_the_erp_accepts() {
    let erp = Erp::start().await;
    let config = format!("[erp]\ninterval = \"1s\"\n[erp.webhook]\nurl = \"{}\"\ntimeout = \"10s\"\n", erp.url);
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), &config).await;
    let js = Js::connect(&nats.url()).await;
    for (i, id) in ["T-1", "T-2", "T-3"].iter().enumerate() {
        js.publish_json(&pos_subject("retail", "0042"), &example_transaction(id, "0042", DAY)).await;
        wait_for_messages(&js, ERP_STREAM, i as u64 + 1).await;
    }
    let parked = wait_for_messages(&js, DLQ_STREAM, 3).await;
    assert!(parked.iter().all(|m| m.header("Tally-Error") == Some("erp_rejected")), "{parked:?}");
    let postings = js.messages(ERP_STREAM).await;

    let refused = tally_dlq(&tally, &["replay", "--reason", "erp_rejected"]).await;
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "a replay the ERP rejects again fails:\n{}", text(&refused));
    assert!(out.contains("3 selected, 0 replayed") && out.contains("3 failed"), "{}", text(&refused));
    assert!(
        out.contains(&format!("rejected posting {} again: HTTP 400", postings[0].header("Nats-Msg-Id").unwrap_or("?"))),
        "{out}"
    );

    // Three answers of at least 2.6 s each: the replay runs past the 5 s between plain lines.
    erp.accept_after(Duration::from_millis(2600));
    let redelivered = tally_dlq(&tally, &["replay", "--reason", "erp_rejected"]).await;
    assert!(redelivered.status.success(), "{}", text(&redelivered));
    let stdout = String::from_utf8_lossy(&redelivered.stdout);
    let stderr = String::from_utf8_lossy(&redelivered.stderr);
    assert!(
        stdout.contains("3 selected, 3 replayed (0 to the input stream, 3 to the ERP webhook), 0 skipped, 0 failed."),
        "{stdout}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("replay: ") && l.contains(" of 3 entries (")),
        "a plain progress line:\n{stderr}"
    );
    assert!(stderr.lines().any(|l| l.starts_with("replay: 3 entries in ")), "the closing line:\n{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.contains("replay: ")).collect();
    assert!(progress.iter().all(|l| l.starts_with("replay: ")), "no bar, no control codes off a terminal:\n{stderr}");

    let booked = erp.answered(200);
    let expected: Vec<(String, Bytes, String)> = postings
        .iter()
        .map(|p| {
            let id = p.header("Nats-Msg-Id").expect("a posting id").to_string();
            (id, Bytes::from(p.payload.to_vec()), p.header("Content-Type").unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(booked, expected, "each parked posting, once, as it was posted");
    assert_eq!(js.message_count(DLQ_STREAM).await, 3, "replay leaves the DLQ as it is");
}
