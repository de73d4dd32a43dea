//! The demo's text (the screen, the plain line and the summary), checked as a new user reads it: what each part must show, that the screen
//! fits the terminal it is drawn on, and that none of it carries terminal escapes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;
use crate::demo::summary::{summary, LookNext, Summary};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 27).unwrap_or_default()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(name, n)| (name.to_string(), *n)).collect()
}

/// 30 store-days (store 0001 has the smallest net, 0030 the largest), 40 alert revisions and
/// 40 postings numbered in the order they went out.
fn busy() -> Snapshot {
    Snapshot {
        elapsed: Duration::from_secs(75),
        duration: Some(Duration::from_secs(120)),
        published: 12_345,
        published_rate: 301.4,
        committed: 12_300,
        committed_rate: 299.6,
        outbox: 3,
        stores: (1..=30)
            .map(|i| StoreRow {
                store: format!("{i:04}"),
                day: Some(day()),
                transactions: i,
                net: Decimal::new(i * 1000 + 5, 2),
                postings: 2,
                ..StoreRow::default()
            })
            .collect(),
        alerts: (1..=40)
            .map(|i| AlertLine {
                store: "0007".into(),
                day: "2026-11-27".into(),
                sku: format!("sku{i}"),
                state: "firing".into(),
                severity: "warning".into(),
                revision: 1,
                drift_units: "3".into(),
                drift_value: "59.97".into(),
            })
            .collect(),
        postings: (1..=40)
            .map(|i| PostingLine {
                id: format!("0007/2026-11-27/{i:04}"),
                kind: "interim".into(),
                transactions: 17,
                net: "312.40".into(),
            })
            .collect(),
        alerts_by_state: counts(&[("firing", 30), ("resolved", 10)]),
        postings_by_kind: counts(&[("interim", 38), ("final", 2)]),
        dead_letters_by_reason: counts(&[("decode", 2), ("schema", 3)]),
        http: "127.0.0.1:9464".into(),
        nats_url: "nats://127.0.0.1:4222".into(),
        subject_prefix: "retail".into(),
    }
}

/// The lines as one line, runs of spaces as one: wrapped paragraphs read as written.
fn flat(lines: &[String]) -> String {
    lines.join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn no_escapes(lines: &[String]) {
    for line in lines {
        assert!(!line.contains('\x1b'), "an escape sequence in {line:?}");
    }
}

#[test]
fn the_screen_fits_the_terminal_and_shows_the_newest_alerts_and_postings() {
    // The screen is cut to the terminal it is drawn on, ranks stores by net and keeps the newest feed items.
    for (height, width) in [(24, 80), (40, 120), (60, 200)] {
        let lines = screen(&busy(), height, width);
        assert!(lines.len() <= height, "{} lines on a {height}-row terminal", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() <= width), "a line wider than {width}: {lines:#?}");
        no_escapes(&lines);
        let text = lines.join("\n");
        assert!(text.contains("1:15 of 2:00"), "elapsed of duration:\n{text}");
        let first_row = lines.iter().position(|l| l.starts_with("store ")).map(|i| &lines[i + 1]);
        assert!(first_row.is_some_and(|row| row.starts_with("0030")), "the largest net first:\n{text}");
        assert!(text.contains("sku40 "), "the newest alert is shown:\n{text}");
        assert!(!text.contains("sku1 "), "the oldest alert is not:\n{text}");
        assert!(text.contains("0007/2026-11-27/0040"), "the newest posting is shown:\n{text}");
        assert!(text.contains("DRIFT ALERTS  40 revisions: firing 30, resolved 10"), "{text}");
        assert!(text.contains("ERP POSTINGS  40 sent: final 2, interim 38"), "{text}");
        assert!(text.contains("DEAD-LETTERED 5: decode 2, schema 3"), "{text}");
    }
    let tall = screen(&busy(), 60, 200);
    assert!(tall.iter().filter(|l| l.contains("/2026-11-27/")).count() == 6, "six postings on a tall terminal");
    assert!(tall.iter().any(|l| l.starts_with("0021")), "more store rows on a tall terminal: {tall:#?}");
}

#[test]
fn an_empty_screen_says_what_will_appear() {
    // Before the first alert or posting, the screen tells a new user what to wait for.
    let lines = screen(&Snapshot { http: "127.0.0.1:9464".into(), ..Snapshot::default() }, 24, 100);
    let text = lines.join("\n");
    assert!(text.contains("none yet: a key alerts after drift.settle"), "{text}");
    assert!(text.contains("none yet: interim postings go out every erp.interval"), "{text}");
    assert!(text.contains("http://127.0.0.1:9464/v1/alerts"), "{text}");
}

#[test]
fn the_plain_line_has_the_throughput_and_the_counts() {
    // The non-terminal report is one line with rates and counts by state, kind and reason.
    let text = line(&busy());
    assert!(!text.contains('\n') && !text.contains('\x1b'), "{text:?}");
    assert_eq!(
        text,
        "demo 1:15: published 12345 (301/s), committed 12300 (300/s), outbox 3; alerts 40: firing 30, \
         resolved 10; postings 40: final 2, interim 38; dead-lettered 5: decode 2, schema 3"
    );
}

fn finished() -> Summary {
    Summary {
        elapsed: Duration::from_secs(3725),
        baskets: 900,
        generated: 2_800,
        malformed: 6,
        drift_injected: 20,
        input_messages: 2_800,
        committed: 2_800,
        transactions: 880,
        lines: 2_400,
        duplicates: 3,
        stores: 20,
        days: vec![day(), day().succ_opt().unwrap_or_default()],
        alerts_by_state: counts(&[("firing", 7), ("resolved", 2)]),
        alert_ids: 7,
        postings_by_kind: counts(&[("interim", 40)]),
        dead_letters_by_reason: counts(&[("decode", 6)]),
        next: LookNext {
            http: "127.0.0.1:9464".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "retail".into(),
            alerts_stream: "RETAIL_ALERTS".into(),
            erp_stream: "RETAIL_ERP".into(),
            dlq_stream: "RETAIL_DLQ".into(),
            example: Some(("0004".into(), day())),
            ..LookNext::default()
        },
        ..Summary::default()
    }
}

#[test]
fn the_summary_says_what_was_counted_alerted_posted_and_dead_lettered() {
    // Each figure of the summary appears with its breakdown, and where to look next names the busiest store-day.
    let lines = summary(&finished());
    no_escapes(&lines);
    let text = lines.join("\n");
    let flat = flat(&lines);
    for expected in [
        "tally demo done after 1:02:05.",
        "Counted 880 transactions, 2400 lines, 20 stores, 2 business days (2026-11-27 to 2026-11-28), from 2800 \
         input messages (committed up to stream sequence 2800); 3 duplicates skipped, 0 conflicts.",
        "Alerted 9 revisions of 7 drift alerts on RETAIL_ALERTS: firing 7, resolved 2",
        "Posted 40 ERP postings on RETAIL_ERP: interim 40",
        "Dead-lettered 6 input messages on RETAIL_DLQ: decode 6",
        "Generated 900 baskets, 2800 messages (6 malformed on purpose, 20 sales with injected drift)",
        "--nats-url URL and --state DIR keep them",
    ] {
        assert!(flat.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for command in [
        "  curl http://127.0.0.1:9464/v1/stores/0004/days/2026-11-27 ",
        "  curl 'http://127.0.0.1:9464/v1/alerts?state=firing' ",
        "  curl http://127.0.0.1:9464/metrics ",
        "  nats sub 'retail.alerts.drift.>' ",
        "  nats stream view RETAIL_DLQ ",
        "  tally inspect --state DIR day 0004 2026-11-27 ",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(command)), "no line starting {command:?}:\n{text}");
    }
    let prose = lines.iter().filter(|l| !l.starts_with("  ") && !l.starts_with('('));
    assert!(prose.clone().all(|l| l.chars().count() <= 80), "a summary line wider than 80:\n{text}");
    assert!(!text.contains("outbox"), "no outbox line when it was empty:\n{text}");
}

#[test]
fn a_kept_server_and_state_are_named_in_the_commands() {
    // With --nats-url and --state the commands point at them, and an unpublished outbox is reported.
    let mut kept = finished();
    kept.interrupted = true;
    kept.outbox = 2;
    kept.next.nats_url = "nats://127.0.0.1:5222".into();
    kept.next.nats_kept = true;
    kept.next.state = Some("/tmp/demo-state".into());
    let lines = summary(&kept);
    let (text, flat) = (lines.join("\n"), flat(&lines));
    assert!(text.contains("tally demo stopped (ctrl-c) after"), "{text}");
    assert!(flat.contains("2 outputs were still in the outbox"), "{text}");
    assert!(text.contains("nats -s nats://127.0.0.1:5222 sub 'retail.erp.postings.>'"), "{text}");
    assert!(text.contains("tally inspect --state /tmp/demo-state day 0004 2026-11-27"), "{text}");
    assert!(!text.contains("keep them"), "{text}");
}
