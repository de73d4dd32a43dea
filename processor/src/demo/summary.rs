//! What the demo says when it is over: what was counted, alerted, posted and dead-lettered, and
//! where to look next. A pure function of a [`Summary`] (`read` fills it from the state and the
//! output streams), tested with the screen in `screen_tests`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;

use super::screen::{by, clock, server_flag, total};

/// What the demo did, read when it is over: the state for what was counted, the output streams
/// for what went out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub elapsed: Duration,
    pub interrupted: bool,
    pub baskets: u64,
    pub generated: u64,
    pub malformed: u64,
    pub drift_injected: u64,
    /// Input messages on the input stream, and the committed position.
    pub input_messages: u64,
    pub committed: u64,
    pub transactions: i64,
    pub lines: i64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub stores: usize,
    pub days: Vec<NaiveDate>,
    pub alerts_by_state: BTreeMap<String, u64>,
    pub alert_ids: usize,
    pub postings_by_kind: BTreeMap<String, u64>,
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// Outputs committed but not yet published when the processor stopped.
    pub outbox: usize,
    pub next: LookNext,
}

/// Where to look next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookNext {
    pub http: String,
    pub nats_url: String,
    /// Whether the NATS server and the state outlive the demo (`--nats-url`, `--state`).
    pub nats_kept: bool,
    pub state: Option<PathBuf>,
    pub subject_prefix: String,
    pub alerts_stream: String,
    pub erp_stream: String,
    pub dlq_stream: String,
    /// A store-day to show as the example URL: the one with the most transactions.
    pub example: Option<(String, NaiveDate)>,
}

/// Summary lines are wrapped at this width (a command stays whole).
const SUMMARY_WIDTH: usize = 80;
/// Where a summary paragraph's text starts, after its heading.
const INDENT: usize = 15;

/// The summary printed after the screen is left (and at the end of plain output).
pub fn summary(s: &Summary) -> Vec<String> {
    let n = &s.next;
    let days = match (s.days.first(), s.days.last()) {
        (Some(first), Some(last)) if first != last => format!(" ({first} to {last})"),
        (Some(day), _) => format!(" ({day})"),
        _ => String::new(),
    };
    let mut out = vec![
        format!("tally demo {} after {}.", if s.interrupted { "stopped (ctrl-c)" } else { "done" }, clock(s.elapsed)),
        String::new(),
    ];
    let mut counted = format!(
        "{} transactions, {} lines, {} stores, {} business days{days}, from {} input messages \
         (committed up to stream sequence {}); {} duplicates skipped, {} conflicts.",
        s.transactions,
        s.lines,
        s.stores,
        s.days.len(),
        s.input_messages,
        s.committed,
        s.duplicates,
        s.conflicts
    );
    if s.outbox > 0 {
        counted.push_str(&format!(
            " {} outputs were still in the outbox; tally publishes them when it starts again.",
            s.outbox
        ));
    }
    paragraph(&mut out, "Counted", &counted);
    let alerted = format!(
        "{} revisions of {} drift alerts on {}{}",
        total(&s.alerts_by_state),
        s.alert_ids,
        n.alerts_stream,
        by(&s.alerts_by_state)
    );
    paragraph(&mut out, "Alerted", &alerted);
    let posted = format!("{} ERP postings on {}{}", total(&s.postings_by_kind), n.erp_stream, by(&s.postings_by_kind));
    paragraph(&mut out, "Posted", &posted);
    let dead = format!(
        "{} input messages on {}{}",
        total(&s.dead_letters_by_reason),
        n.dlq_stream,
        by(&s.dead_letters_by_reason)
    );
    paragraph(&mut out, "Dead-lettered", &dead);
    let generated = format!(
        "{} baskets, {} messages ({} malformed on purpose, {} sales with injected drift)",
        s.baskets, s.generated, s.malformed, s.drift_injected
    );
    paragraph(&mut out, "Generated", &generated);
    out.push(String::new());
    look_next(&mut out, s);
    out
}

/// `heading` and `text`, the text wrapped at [`SUMMARY_WIDTH`] and indented to [`INDENT`].
fn paragraph(out: &mut Vec<String>, heading: &str, text: &str) {
    let mut line = format!("{heading:<INDENT$}");
    let mut empty = true;
    for word in text.split(' ') {
        if !empty && line.chars().count() + 1 + word.chars().count() > SUMMARY_WIDTH {
            out.push(std::mem::replace(&mut line, " ".repeat(INDENT)));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push(line);
}

fn look_next(out: &mut Vec<String>, s: &Summary) {
    let n = &s.next;
    out.push(if n.nats_kept && n.state.is_some() {
        "Look next (the HTTP API answers while tally runs on this state):".to_string()
    } else {
        "Look next, while a demo runs:".to_string()
    });
    let (store, day) = n.example.clone().unwrap_or_else(|| ("0001".into(), chrono::Utc::now().date_naive()));
    let server = server_flag(&n.nats_url);
    let state = n.state.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "DIR".into());
    let items = [
        (format!("curl http://{}/v1/stores/{store}/days/{day}", n.http), "a store-day's reconciliation"),
        (format!("curl 'http://{}/v1/alerts?state=firing'", n.http), "the firing alerts"),
        (format!("curl http://{}/metrics", n.http), "Prometheus metrics"),
        (format!("nats{server} sub '{}.alerts.drift.>'", n.subject_prefix), "alerts as they go out"),
        (format!("nats{server} sub '{}.erp.postings.>'", n.subject_prefix), "postings as they go out"),
        (format!("nats{server} stream view {}", n.dlq_stream), "dead letters and why"),
        (format!("tally inspect --state {state} day {store} {day}"), "the reconciliation, offline"),
    ];
    let width = items.iter().map(|(cmd, _)| cmd.chars().count()).max().unwrap_or(0);
    for (cmd, what) in items {
        let mut line = String::new();
        let _ = write!(line, "  {cmd:<width$}  # {what}");
        out.push(line);
    }
    match (n.nats_kept, n.state.is_some()) {
        (true, true) => {}
        (true, false) => out.push("(The streams are kept on the server; --state DIR keeps the state too.)".into()),
        (false, true) => out.push("(The state is kept; --nats-url URL keeps the streams too.)".into()),
        (false, false) => out.push("(Temporary server and state: --nats-url URL and --state DIR keep them.)".into()),
    }
}
