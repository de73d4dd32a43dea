//! `tally demo` as a user runs it with its output piped (a log, `| tee`, CI): plain periodic
//! lines without terminal escapes, then a summary whose figures are what the output streams
//! and the state say once it is over.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tally_tests::{free_port, tally_bin, Js, NatsServer, StoredMessage, DLQ_STREAM};

/// The demo runs 15 s, then waits for the processor to catch up (30 s at most) and stops it.
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

/// The paragraph of the summary that starts with `heading`, its wrapped lines joined.
fn paragraph(summary: &str, heading: &str) -> String {
    let mut lines = summary.lines().skip_while(|line| !line.starts_with(heading));
    let first = lines.next().unwrap_or_else(|| panic!("no paragraph {heading:?} in the summary:\n{summary}"));
    let rest = lines.take_while(|line| line.starts_with("               "));
    std::iter::once(first).chain(rest).flat_map(str::split_whitespace).collect::<Vec<_>>().join(" ")
}

/// `(total, breakdown)` of a summary paragraph such as
/// `Posted         40 ERP postings on RETAIL_ERP: final 2, interim 38`.
fn figures(summary: &str, heading: &str) -> (u64, BTreeMap<String, u64>) {
    let text = paragraph(summary, heading);
    let rest = text[heading.len()..].trim_start();
    let total = rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no total in {text:?}"));
    let mut breakdown = BTreeMap::new();
    if let Some((_, parts)) = rest.split_once(": ") {
        for part in parts.split(", ") {
            let (name, n) = part.rsplit_once(' ').unwrap_or_else(|| panic!("{part:?} in {text:?}"));
            breakdown.insert(name.to_string(), n.parse().unwrap_or_else(|_| panic!("{n:?} in {text:?}")));
        }
    }
    (total, breakdown)
}

/// The number right before `word` in `line` (`880 transactions` → 880).
fn number_before(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.trim_end_matches([',', ';', ')']) == word);
    at.and_then(|i| i.checked_sub(1))
        .and_then(|i| words[i].trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {line:?}"))
}

/// The number right after `word` in `line` (`sequence 2800);` → 2800).
fn number_after(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == word);
    at.and_then(|i| words.get(i + 1))
        .and_then(|w| w.trim_end_matches([',', ';', ')']).parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

/// Messages counted by `key` (a field of the JSON payload).
fn by_field(messages: &[StoredMessage], key: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for message in messages {
        let value: Value = serde_json::from_slice(&message.payload).expect("JSON output (the demo's output.format)");
        let name = value[key].as_str().unwrap_or_else(|| panic!("no {key} in {value}")).to_string();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

fn inspect(state: &Path, args: &[&str]) -> Value {
    let output = std::process::Command::new(tally_bin())
        .arg("inspect")
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .expect("run tally inspect");
    assert!(output.status.success(), "tally inspect {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("tally inspect prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_demo_prints_plain_lines_and_a_summary_that_agrees_with_the_streams() {
    // The piped demo's output has no escapes and its summary's counts equal the output streams' and the state's.
    let nats = NatsServer::start();
    let state = tempfile::tempdir().expect("a temp dir for the demo's state");
    let http = format!("127.0.0.1:{}", free_port());
    let mut demo = tokio::process::Command::new(tally_bin());
    demo.args(["demo", "--nats-url", &nats.url(), "--http-listen", &http, "--state"])
        .arg(state.path())
        .args(["--duration", "15s", "--refresh-secs", "2", "--stores", "4", "--skus", "60", "--rate", "40"])
        .args(["--speedup", "120", "--drift-share", "0.3", "--malformed-share", "0.02"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DEMO_TIMEOUT, demo.output())
        .await
        .expect("the demo ends within its timeout")
        .expect("run tally demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tally demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "terminal escapes in piped output:\n{stdout:?}");
    let periodic = stdout.lines().filter(|l| l.starts_with("demo ") && l.contains(" published ")).count();
    assert!(periodic >= 3, "expected a plain line every 2 s of a 15 s run:\n{stdout}");
    let summary = &stdout[stdout.find("tally demo done after").unwrap_or_else(|| panic!("no summary:\n{stdout}"))..];

    let js = Js::connect(&nats.url()).await;
    let alerts = js.messages("RETAIL_ALERTS").await;
    let postings = js.messages("RETAIL_ERP").await;
    let dead = js.messages(DLQ_STREAM).await;
    let mut dlq_reasons = BTreeMap::new();
    for message in &dead {
        *dlq_reasons.entry(message.subject.rsplit('.').next().unwrap_or_default().to_string()).or_default() += 1;
    }
    assert_eq!(figures(summary, "Alerted"), (alerts.len() as u64, by_field(&alerts, "state")), "{summary}");
    assert_eq!(figures(summary, "Posted"), (postings.len() as u64, by_field(&postings, "kind")), "{summary}");
    assert_eq!(figures(summary, "Dead-lettered"), (dead.len() as u64, dlq_reasons), "{summary}");
    assert!(
        !alerts.is_empty() && !postings.is_empty() && !dead.is_empty(),
        "a 15 s demo at 120x alerts, posts and dead-letters:\n{summary}"
    );

    let input = js.stream_info("RETAIL_IN").await.state;
    let counted = paragraph(summary, "Counted");
    assert_eq!(number_before(&counted, "input"), input.messages, "{counted}");
    assert_eq!(number_after(&counted, "sequence"), input.last_sequence, "caught up before the summary: {counted}");

    let days = inspect(state.path(), &["summary"])["store_days"].as_array().cloned().unwrap_or_default();
    let (mut transactions, mut lines) = (0, 0);
    for store_day in &days {
        let (store, day) = store_day.as_str().and_then(|s| s.split_once('/')).expect("store/day");
        let report = inspect(state.path(), &["day", store, day]);
        transactions += report["pos"]["transactions"].as_i64().expect("pos.transactions");
        lines += report["pos"]["lines"].as_i64().expect("pos.lines");
    }
    assert!(transactions > 0, "a 15 s demo counts transactions:\n{summary}");
    assert_eq!(number_before(&counted, "transactions") as i64, transactions, "{counted}");
    assert_eq!(number_before(&counted, "lines") as i64, lines, "{counted}");
    assert_eq!(number_before(&counted, "stores"), 4, "{counted}");
}
