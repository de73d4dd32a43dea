//! What the demo shows while it runs, as text: the live screen and the one-line report for a
//! pipe or a log. Pure functions of a [`Snapshot`], so they are tested without a terminal, a
//! server or a clock; `terminal` puts the lines on the screen.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// One store-day of the per-store table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreRow {
    pub store: String,
    pub day: Option<NaiveDate>,
    pub transactions: i64,
    pub net: Decimal,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Sku-days whose |drift| is at least `drift.min_units` (mostly normal inventory lag).
    pub lagging: usize,
    /// Over threshold, settling.
    pub pending: usize,
    /// Firing or final.
    pub firing: usize,
    /// Postings sent so far (the last posting seq).
    pub postings: u32,
}

/// One drift alert revision as it went out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertLine {
    pub store: String,
    pub day: String,
    pub sku: String,
    pub state: String,
    pub severity: String,
    pub revision: u64,
    pub drift_units: String,
    pub drift_value: String,
}

/// One ERP posting as it went out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostingLine {
    pub id: String,
    pub kind: String,
    pub transactions: i64,
    pub net: String,
}

/// Everything one frame shows, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// The run's `--duration`, when it has one.
    pub duration: Option<Duration>,
    /// Input messages on the input stream (its last sequence), and per second.
    pub published: u64,
    pub published_rate: f64,
    /// The committed input stream sequence, and per second.
    pub committed: u64,
    pub committed_rate: f64,
    pub outbox: usize,
    /// Every store-day, in any order; the screen sorts by net.
    pub stores: Vec<StoreRow>,
    /// The latest alert revisions and postings, oldest first.
    pub alerts: Vec<AlertLine>,
    pub postings: Vec<PostingLine>,
    pub alerts_by_state: BTreeMap<String, u64>,
    pub postings_by_kind: BTreeMap<String, u64>,
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// `http.listen` and `nats.url`, for the footer.
    pub http: String,
    pub nats_url: String,
    pub subject_prefix: String,
}

/// Lines the screen always takes besides the table rows, alerts and postings.
const FIXED_LINES: usize = 14;
/// Alerts and postings shown at most each; the store table takes the rest of the height.
const FEED_MAX: usize = 6;
/// Store rows shown at least, even on a short terminal.
const ROWS_MIN: usize = 3;

/// The live screen for a terminal of `height` × `width`: at most `height` lines, each cut to
/// `width`. The store table gets what the other parts leave (at least 3 rows).
pub fn screen(s: &Snapshot, height: usize, width: usize) -> Vec<String> {
    let room = height.saturating_sub(FIXED_LINES);
    let feed = (room / 4).clamp(1, FEED_MAX);
    let rows = room.saturating_sub(2 * feed).max(ROWS_MIN);
    let mut out = Vec::new();
    out.push(format!(
        "tally demo · {}{} · ctrl-c stops it and prints a summary",
        clock(s.elapsed),
        s.duration.map(|d| format!(" of {}", clock(d))).unwrap_or_default()
    ));
    out.push(format!(
        "input: {} published ({:.0}/s) · {} committed ({:.0}/s) · outbox {}",
        s.published, s.published_rate, s.committed, s.committed_rate, s.outbox
    ));
    out.push(String::new());
    store_table(&mut out, s, rows);
    out.push(String::new());
    out.push(format!("DRIFT ALERTS  {} revisions{}", total(&s.alerts_by_state), by(&s.alerts_by_state)));
    feed_lines(&mut out, &s.alerts, feed, "(none yet: a key alerts after drift.settle of event time)", alert_line);
    out.push(format!("ERP POSTINGS  {} sent{}", total(&s.postings_by_kind), by(&s.postings_by_kind)));
    feed_lines(&mut out, &s.postings, feed, "(none yet: interim postings go out every erp.interval)", posting_line);
    out.push(format!("DEAD-LETTERED {}{}", total(&s.dead_letters_by_reason), by(&s.dead_letters_by_reason)));
    out.push(String::new());
    out.push(format!("open: http://{0}/v1/alerts · http://{0}/metrics", s.http));
    out.push(format!(
        "      nats{} sub '{}.alerts.drift.>'  (alerts as they go out)",
        server_flag(&s.nats_url),
        s.subject_prefix
    ));
    out.truncate(height);
    out.into_iter().map(|line| cut(line, width)).collect()
}

/// One plain line per refresh, for a pipe or a log: no escapes, no table.
pub fn line(s: &Snapshot) -> String {
    format!(
        "demo {}: published {} ({:.0}/s), committed {} ({:.0}/s), outbox {}; alerts {}{}; postings {}{}; dead-lettered {}{}",
        clock(s.elapsed),
        s.published,
        s.published_rate,
        s.committed,
        s.committed_rate,
        s.outbox,
        total(&s.alerts_by_state),
        by(&s.alerts_by_state),
        total(&s.postings_by_kind),
        by(&s.postings_by_kind),
        total(&s.dead_letters_by_reason),
        by(&s.dead_letters_by_reason)
    )
}

fn store_table(out: &mut Vec<String>, s: &Snapshot, rows: usize) {
    let mut sorted: Vec<&StoreRow> = s.stores.iter().collect();
    sorted.sort_by(|a, b| b.net.cmp(&a.net).then_with(|| a.store.cmp(&b.store)));
    out.push(format!("STORES  top {} of {} store-days by net sales", rows.min(sorted.len()), sorted.len()));
    out.push(format!(
        "{:<5} {:<10} {:>6} {:>11} {:>5} {:>5} {:>7} {:>7} {:>6} {:>8}",
        "store", "day", "txns", "net", "dupes", "confl", "lagging", "pending", "firing", "postings"
    ));
    for row in sorted.iter().take(rows) {
        out.push(format!(
            "{:<5} {:<10} {:>6} {:>11} {:>5} {:>5} {:>7} {:>7} {:>6} {:>8}",
            row.store,
            row.day.map(|d| d.to_string()).unwrap_or_default(),
            row.transactions,
            row.net.round_dp(2),
            row.duplicates,
            row.conflicts,
            row.lagging,
            row.pending,
            row.firing,
            row.postings
        ));
    }
    let transactions: i64 = s.stores.iter().map(|r| r.transactions).sum();
    let net: Decimal = s.stores.iter().map(|r| r.net).sum();
    let pending: usize = s.stores.iter().map(|r| r.pending).sum();
    let firing: usize = s.stores.iter().map(|r| r.firing).sum();
    out.push(format!(
        "all: {transactions} transactions, net {} · drift keys: {pending} pending, {firing} firing or final",
        net.round_dp(2)
    ));
    out.push("lagging: sku-days with |drift| >= drift.min_units, mostly normal inventory lag".into());
}

fn feed_lines<T>(out: &mut Vec<String>, items: &[T], max: usize, empty: &str, show: fn(&T) -> String) {
    if items.is_empty() {
        out.push(format!("  {empty}"));
    }
    let skip = items.len().saturating_sub(max);
    out.extend(items.iter().skip(skip).map(|item| format!("  {}", show(item))));
}

fn alert_line(a: &AlertLine) -> String {
    format!(
        "{:<8} {:<8} {} {} sku {:<7} drift {:>4} ({}) rev {}",
        a.state, a.severity, a.store, a.day, a.sku, a.drift_units, a.drift_value, a.revision
    )
}

fn posting_line(p: &PostingLine) -> String {
    format!("{:<22} {:<10} {:>4} txns  net {:>10}", p.id, p.kind, p.transactions, p.net)
}

/// The sum of a count map.
pub fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// `: firing 3, resolved 1`, or nothing for an empty map.
pub(super) fn by(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {n}")).collect();
    format!(": {}", parts.join(", "))
}

/// `1:05` (minutes:seconds), `1:02:05` past an hour.
pub(super) fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    match secs / 3600 {
        0 => format!("{}:{:02}", secs / 60, secs % 60),
        hours => format!("{hours}:{:02}:{:02}", secs / 60 % 60, secs % 60),
    }
}

/// ` -s <url>` for the NATS CLI, or nothing for its default server.
pub(super) fn server_flag(url: &str) -> String {
    match url {
        "" | "nats://127.0.0.1:4222" | "nats://localhost:4222" => String::new(),
        url => format!(" -s {url}"),
    }
}

/// `line` cut to `width` characters (not bytes: the screen has `·` and `—`).
fn cut(line: String, width: usize) -> String {
    match line.char_indices().nth(width) {
        Some((at, _)) => line[..at].to_string(),
        None => line,
    }
}

#[cfg(test)]
#[path = "screen_tests.rs"]
mod tests;
