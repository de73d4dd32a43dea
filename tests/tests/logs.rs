//! The log as a log shipper reads it (docs/configuration.md#logs): with `log.format = "json"`
//! every stderr line is one JSON object, and the lines about an input record carry its id,
//! store and stream sequence as fields.

use serde_json::Value;
use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{start_all, wait_for_messages, TallyBuilder, DLQ_STREAM, DRAIN_TIMEOUT};

/// The line of `lines` with `message` starting `start` and field `key` equal to `value`.
fn line_with<'a>(lines: &'a [Value], start: &str, key: &str, value: &Value) -> Option<&'a Value> {
    lines
        .iter()
        .find(|line| line["message"].as_str().is_some_and(|m| m.starts_with(start)) && line.get(key) == Some(value))
}

// Proves: with log.format = "json", every line tally writes to stderr parses as a JSON object
// with a timestamp, level and message; a dead-lettered record (schema), a conflict and a
// duplicate each get a line with the record's id, store and stream sequence as top-level fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_name_the_record() {
    let (_nats, mut tally, js) = start_all("[log]\nformat = \"json\"\n").await;
    let subject = pos_subject("retail", "0042");
    let original = example_transaction("T-log-1", "0042", DAY);
    let mut conflicting = original.clone();
    conflicting["register"] = Value::from("R09");
    let mut broken = example_transaction("T-log-bad", "0042", DAY);
    broken["tenders"] = Value::from("not a list");
    js.publish_json(&subject, &original).await;
    let conflict_seq = js.publish_json(&subject, &conflicting).await;
    let broken_seq = js.publish_json(&subject, &broken).await;
    let duplicate_seq = js.publish_json(&subject, &original).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    wait_for_messages(&js, DLQ_STREAM, 2).await;
    let status = tally.stop_gracefully();
    assert!(status.success(), "tally run exited with {status}\n{}", tally.logs());

    let text = tally.stderr_text();
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}\n{text}")))
        .collect();
    assert!(lines.len() > 3, "expected tally's start-up lines too:\n{text}");
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
    }
    let conflict = line_with(&lines, "Conflicting record", "seq", &Value::from(conflict_seq))
        .unwrap_or_else(|| panic!("no line about the conflict (seq {conflict_seq}):\n{text}"));
    let broken_line = line_with(&lines, "Record dead-lettered", "seq", &Value::from(broken_seq))
        .unwrap_or_else(|| panic!("no line about the dead-lettered record (seq {broken_seq}):\n{text}"));
    for (line, id, reason) in [(conflict, "T-log-1", "conflict"), (broken_line, "T-log-bad", "schema")] {
        assert_eq!(line["id"], id, "{line}");
        assert_eq!(line["store"], "0042", "{line}");
        assert_eq!(line["reason"], reason, "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    // Duplicates are at DEBUG, which the harness's RUST_LOG=info hides: none is written.
    assert!(line_with(&lines, "Duplicate record", "seq", &Value::from(duplicate_seq)).is_none(), "{text}");
}

// Proves: with RUST_LOG raising the runner to DEBUG (RUST_LOG wins over log.level), a duplicate
// gets a JSON line with its id, store and stream sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_logged_at_debug() {
    let nats = tally_tests::NatsServer::start();
    let mut tally = TallyBuilder::new(&nats.url())
        .toml("[log]\nformat = \"json\"\nlevel = \"warn\"\n")
        .env("RUST_LOG", "info,tally_processor::runner=debug")
        .start()
        .await;
    let js = tally_tests::Js::connect(&nats.url()).await;
    let subject = pos_subject("retail", "0042");
    let original = example_transaction("T-dup-1", "0042", DAY);
    js.publish_json(&subject, &original).await;
    let duplicate_seq = js.publish_json(&subject, &original).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    tally.stop_gracefully();
    let text = tally.stderr_text();
    let lines: Vec<Value> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let line = line_with(&lines, "Duplicate record", "seq", &Value::from(duplicate_seq))
        .unwrap_or_else(|| panic!("no line about the duplicate (seq {duplicate_seq}):\n{text}"));
    assert_eq!(
        (line["id"].as_str(), line["store"].as_str(), line["level"].as_str()),
        (Some("T-dup-1"), Some("0042"), Some("DEBUG"))
    );
}

// Proves: the text log written to a file (or a pipe, or journald) holds no terminal colour
// codes, so that it reads, greps and ships as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_to_a_file_has_no_colour_codes() {
    let nats = tally_tests::NatsServer::start();
    let mut tally = TallyBuilder::new(&nats.url()).toml("[log]\nformat = \"text\"\n").start().await;
    tally.stop_gracefully();
    let text = tally.stderr_text();
    assert!(text.contains("INFO"), "expected tally's start-up lines:\n{text}");
    assert!(!text.contains('\x1b'), "terminal escape codes in the log file:\n{text:?}");
}
