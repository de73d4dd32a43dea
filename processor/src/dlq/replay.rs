//! `tally dlq replay`: each selected entry back where it came from, once its cause is fixed.
//!
//! A rejected input record goes back to its original subject (`Tally-Source-Subject`) on the
//! input stream, byte for byte, with its own headers (the `Tally-*` ones and JetStream's
//! `Nats-*` ones removed) and `Nats-Msg-Id: replay/<DLQ sequence>`. The id is deliberate: the
//! original's id would be dropped by the input stream's duplicate window if it is still open;
//! `replay/<DLQ sequence>` makes a second run of the same replay within the window a no-op
//! (JetStream answers "duplicate", reported as skipped), and outside it tally's own dedupe on
//! the record id and content counts it as a duplicate, never twice.
//!
//! A parked ERP posting (`erp_rejected`) is POSTed to the configured webhook again, through the
//! webhook's own [`Erp`], with the posting id as `Idempotency-Key`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, stream::Stream};
use chrono::{SecondsFormat, Utc};

use super::read::{self, Payloads, Selection};
use super::{Entry, DLQ_STREAM};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::progress::Progress;
use crate::webhook::erp::{Attempt, Erp, Posting};

/// Attempts per entry for errors that may pass (a publish timeout, an ERP answering 5xx).
const ATTEMPTS: u32 = 3;
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(8);
/// Skipped or failed DLQ sequences listed per cause in the summary; the rest are counted.
const SEQS_SHOWN: usize = 20;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
}

/// What replaying one entry means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Publish the record to `subject` on the input stream.
    Input {
        subject: String,
    },
    /// POST the posting to the ERP webhook.
    Erp {
        posting_id: String,
    },
    Skip(Skip),
}

/// Why an entry is not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    Conflict,
    Truncated,
    NoSource,
    NotInput,
    NoWebhook,
    /// Found out when publishing: JetStream dropped it within the duplicate window.
    AlreadyReplayed,
}

impl Skip {
    fn why(self) -> &'static str {
        match self {
            Skip::Conflict => {
                "conflict: the same id with other content conflicts again while tally holds the accepted record; \
                 publish a corrected record under a new id (--force replays it anyway)"
            }
            Skip::Truncated => "the DLQ holds only the start of the record (Tally-Payload-Truncated); it cannot be replayed",
            Skip::NoSource => "no Tally-Source-Subject header: not a tally DLQ entry",
            Skip::NotInput => {
                "its source subject is not one of the input stream's (P.pos.<store>, P.inventory.<store>, P.orders.<store>)"
            }
            Skip::NoWebhook => "a parked ERP posting, and no erp.webhook is configured to deliver it to",
            Skip::AlreadyReplayed => {
                "already replayed within the input stream's duplicate window: JetStream dropped it (Nats-Msg-Id replay/<seq>)"
            }
        }
    }
}

/// How a replay went, entry by entry.
#[derive(Debug, Default)]
struct Summary {
    selected: usize,
    to_input: usize,
    to_erp: usize,
    skipped: BTreeMap<Skip, Vec<u64>>,
    failed: Vec<(u64, String)>,
}

/// How replaying one entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    ToInput,
    ToErp,
    Skipped(Skip),
    /// What went wrong, in words.
    Failed(String),
}

impl Summary {
    fn record(&mut self, seq: u64, outcome: Outcome) {
        match outcome {
            Outcome::ToInput => self.to_input += 1,
            Outcome::ToErp => self.to_erp += 1,
            Outcome::Skipped(skip) => self.skipped.entry(skip).or_default().push(seq),
            Outcome::Failed(error) => self.failed.push((seq, error)),
        }
    }

    fn skipped(&self) -> usize {
        self.skipped.values().map(Vec::len).sum()
    }
}

/// The plan for one entry, from its headers alone.
fn plan(entry: &Entry, prefix: &str, has_webhook: bool, force: bool) -> Plan {
    if entry.header("Tally-Payload-Truncated").is_some() {
        return Plan::Skip(Skip::Truncated);
    }
    let Some(source) = entry.source_subject() else { return Plan::Skip(Skip::NoSource) };
    match entry.reason() {
        "erp_rejected" => {
            let Some(posting_id) = entry.header("Nats-Msg-Id").and_then(|id| id.strip_prefix("dlq/")) else {
                return Plan::Skip(Skip::NoSource);
            };
            if !has_webhook {
                return Plan::Skip(Skip::NoWebhook);
            }
            Plan::Erp { posting_id: posting_id.to_string() }
        }
        "conflict" if !force => Plan::Skip(Skip::Conflict),
        _ if is_input_subject(source, prefix) => Plan::Input { subject: source.to_string() },
        _ => Plan::Skip(Skip::NotInput),
    }
}

/// `P.pos.<store>`, `P.inventory.<store>` or `P.orders.<store>`.
fn is_input_subject(subject: &str, prefix: &str) -> bool {
    let Some(rest) = subject.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('.')) else { return false };
    let store =
        rest.strip_prefix("pos.").or_else(|| rest.strip_prefix("inventory.")).or_else(|| rest.strip_prefix("orders."));
    store.is_some_and(|store| !store.is_empty() && !store.contains('.'))
}

/// The headers a replayed record is published with: its own, without tally's `Tally-*` and
/// JetStream's `Nats-*` (id, expectations), plus the replay's id and the expected stream.
fn replay_headers(entry: &Entry, input_stream: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in entry.headers.iter() {
        let lower = name.to_string().to_ascii_lowercase();
        if lower.starts_with("tally-") || lower.starts_with("nats-") {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert("Nats-Msg-Id", format!("replay/{}", entry.seq));
    // The publish fails, instead of landing elsewhere, if the subject is not the input stream's.
    headers.insert("Nats-Expected-Stream", input_stream);
    headers
}

/// Replays what `selection` picks (headers first, each payload read just before it is sent).
pub async fn run(
    js: &jetstream::Context,
    config: &Config,
    selection: &Selection,
    options: Options,
) -> anyhow::Result<()> {
    let started = Utc::now();
    let entries = read::select(js, config, selection, Payloads::No).await?;
    let erp = Erp::from_config(config)?;
    let prefix = &config.input.subject_prefix;
    let plans: Vec<(Entry, Plan)> = entries
        .into_iter()
        .map(|entry| {
            let plan = plan(&entry, prefix, erp.is_some(), options.force);
            (entry, plan)
        })
        .collect();
    if options.dry_run {
        print_dry_run(&plans);
        return Ok(());
    }
    let stream = js.get_stream(DLQ_STREAM).await.with_context(|| format!("looking up stream {DLQ_STREAM}"))?;
    let mut summary = Summary { selected: plans.len(), ..Default::default() };
    let mut progress = Progress::new("replay", "entries", Some(plans.len() as u64));
    for (entry, plan) in &plans {
        let outcome = match (plan, &erp) {
            (Plan::Skip(skip), _) => Outcome::Skipped(*skip),
            (Plan::Input { subject }, _) => republish(js, &stream, config, entry, subject).await,
            (Plan::Erp { posting_id }, Some(erp)) => redeliver(erp, &stream, entry, posting_id).await,
            (Plan::Erp { .. }, None) => Outcome::Skipped(Skip::NoWebhook),
        };
        summary.record(entry.seq, outcome);
        progress.add(1);
    }
    progress.finish();
    print_summary(&summary, started, &mut std::io::stdout().lock())?;
    if !summary.failed.is_empty() {
        anyhow::bail!("{} of {} DLQ entries failed to replay (listed above)", summary.failed.len(), summary.selected);
    }
    Ok(())
}

/// Publishes the record to its subject on the input stream, retrying a timeout.
async fn republish(js: &jetstream::Context, stream: &Stream, config: &Config, entry: &Entry, subject: &str) -> Outcome {
    let full = match read::get(stream, entry.seq).await {
        Ok(full) => full,
        Err(err) => return Outcome::Failed(format!("{err:#}")),
    };
    let payload = full.payload.clone().unwrap_or_default();
    let headers = replay_headers(&full, &config.input.stream);
    let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_LAST);
    for attempt in 1..=ATTEMPTS {
        let published =
            async { js.publish_with_headers(subject.to_string(), headers.clone(), payload.clone()).await?.await };
        match published.await {
            Ok(ack) if ack.duplicate => return Outcome::Skipped(Skip::AlreadyReplayed),
            Ok(_) => return Outcome::ToInput,
            Err(err)
                if attempt < ATTEMPTS
                    && matches!(err.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe) =>
            {
                tokio::time::sleep(backoff.failed()).await;
            }
            Err(err) => return Outcome::Failed(format!("publishing to {subject} on {}: {err}", config.input.stream)),
        }
    }
    unreachable!("the last attempt returns")
}

/// POSTs the parked posting to the ERP, retrying answers that may pass (408, 429, 5xx,
/// timeouts) a few times. A new rejection is a failure; the posting stays parked.
async fn redeliver(erp: &Erp, stream: &Stream, entry: &Entry, posting_id: &str) -> Outcome {
    let full = match read::get(stream, entry.seq).await {
        Ok(full) => full,
        Err(err) => return Outcome::Failed(format!("{err:#}")),
    };
    let posting = Posting {
        id: posting_id.to_string(),
        content_type: full.header("Content-Type").unwrap_or("application/json").to_string(),
        subject: full.subject.clone(),
        stream_seq: full.seq,
        payload: full.payload.clone().unwrap_or_default(),
    };
    let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_LAST);
    for attempt in 1..=ATTEMPTS {
        match erp.post(&posting).await {
            Attempt::Delivered => return Outcome::ToErp,
            Attempt::Rejected { detail, .. } => {
                return Outcome::Failed(format!("the ERP rejected posting {posting_id} again: {detail}"));
            }
            Attempt::Retry(reason) if attempt == ATTEMPTS => {
                return Outcome::Failed(format!(
                    "the ERP did not take posting {posting_id} in {ATTEMPTS} attempts: {reason}"
                ));
            }
            Attempt::Retry(_) => {
                tokio::time::sleep(backoff.failed()).await;
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn print_dry_run(plans: &[(Entry, Plan)]) {
    let mut would = 0;
    for (entry, plan) in plans {
        let what = match plan {
            Plan::Input { subject } => {
                would += 1;
                format!("publish to {subject} as replay/{}", entry.seq)
            }
            Plan::Erp { posting_id } => {
                would += 1;
                format!("POST posting {posting_id} to the ERP webhook")
            }
            Plan::Skip(skip) => format!("skip: {}", skip.why()),
        };
        println!("{:>6}  {:<14}  {what}", entry.seq, entry.reason());
    }
    println!(
        "Dry run: {} selected, {would} would be replayed, {} skipped; nothing was sent.",
        plans.len(),
        plans.len() - would
    );
}

fn print_summary(
    summary: &Summary,
    started: chrono::DateTime<Utc>,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let replayed = summary.to_input + summary.to_erp;
    writeln!(
        out,
        "Replay: {} selected, {replayed} replayed ({} to the input stream, {} to the ERP webhook), {} skipped, {} failed.",
        summary.selected,
        summary.to_input,
        summary.to_erp,
        summary.skipped(),
        summary.failed.len()
    )?;
    for (skip, seqs) in &summary.skipped {
        writeln!(out, "  skipped {} ({}): DLQ seq {}", seqs.len(), skip.why(), seq_list(seqs))?;
    }
    for (seq, error) in summary.failed.iter().take(SEQS_SHOWN) {
        writeln!(out, "  failed: DLQ seq {seq}: {error}")?;
    }
    if summary.failed.len() > SEQS_SHOWN {
        writeln!(out, "  … and {} more failed", summary.failed.len() - SEQS_SHOWN)?;
    }
    if summary.to_input > 0 {
        writeln!(
            out,
            "Records that tally rejects again go back to the DLQ with a new source sequence: \
             `tally dlq list --since {}` shows them.",
            started.to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
    }
    Ok(())
}

fn seq_list(seqs: &[u64]) -> String {
    let shown: Vec<String> = seqs.iter().take(SEQS_SHOWN).map(u64::to_string).collect();
    match seqs.len().saturating_sub(SEQS_SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str, headers: &[(&str, &str)]) -> Entry {
        let mut map = async_nats::HeaderMap::new();
        map.insert("Tally-Error", reason);
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        Entry {
            seq: 17,
            time: Utc::now(),
            subject: format!("retail.dlq.{reason}"),
            headers: map,
            payload: None,
            size: 0,
        }
    }

    // Proves which entries are replayed where, and which are skipped, and that --force
    // replays conflicts only.
    #[test]
    fn plans_follow_the_reason() {
        let input = [("Tally-Source-Subject", "retail.pos.0042"), ("Nats-Msg-Id", "dlq/5")];
        let to_input = Plan::Input { subject: "retail.pos.0042".into() };
        assert_eq!(plan(&entry("too_large", &input), "retail", false, false), to_input);
        assert_eq!(plan(&entry("schema", &input), "retail", false, false), to_input);
        assert_eq!(plan(&entry("conflict", &input), "retail", false, false), Plan::Skip(Skip::Conflict));
        assert_eq!(plan(&entry("conflict", &input), "retail", false, true), to_input);
        let truncated = [input[0], input[1], ("Tally-Payload-Truncated", "1048576")];
        assert_eq!(plan(&entry("too_large", &truncated), "retail", true, true), Plan::Skip(Skip::Truncated));
        assert_eq!(plan(&entry("decode", &[]), "retail", true, true), Plan::Skip(Skip::NoSource));
        let foreign = [("Tally-Source-Subject", "other.pos.0042")];
        assert_eq!(plan(&entry("decode", &foreign), "retail", true, true), Plan::Skip(Skip::NotInput));
        let parked =
            [("Tally-Source-Subject", "retail.erp.postings.0042"), ("Nats-Msg-Id", "dlq/0042/2026-11-27/0001")];
        assert_eq!(
            plan(&entry("erp_rejected", &parked), "retail", true, false),
            Plan::Erp { posting_id: "0042/2026-11-27/0001".into() }
        );
        assert_eq!(plan(&entry("erp_rejected", &parked), "retail", false, false), Plan::Skip(Skip::NoWebhook));
    }

    // Proves input subjects are exactly P.pos.<store>, P.inventory.<store> and P.orders.<store>.
    #[test]
    fn input_subjects() {
        assert!(is_input_subject("retail.pos.0042", "retail"));
        assert!(is_input_subject("retail.orders.0042", "retail"));
        assert!(!is_input_subject("retail.orders.a.b", "retail"));
        assert!(is_input_subject("acme.retail.inventory.S-1", "acme.retail"));
        assert!(!is_input_subject("retail.erp.postings.0042", "retail"));
        assert!(!is_input_subject("retail.pos.", "retail"));
        assert!(!is_input_subject("retail.pos.a.b", "retail"));
        assert!(!is_input_subject("retailx.pos.0042", "retail"));
    }

    // Proves a replayed record keeps its own headers and loses tally's and JetStream's, and is
    // published under replay/<DLQ seq> to the input stream only.
    #[test]
    fn replay_headers_are_the_originals_plus_the_replay_id() {
        let dlq = entry(
            "too_large",
            &[
                ("Tally-Source-Subject", "retail.pos.0042"),
                ("Tally-Error-Detail", "too many lines"),
                ("Nats-Msg-Id", "dlq/5"),
                ("Content-Type", "application/json"),
                ("X-Register", "R03"),
            ],
        );
        let headers = replay_headers(&dlq, "RETAIL_IN");
        let mut names: Vec<String> = headers.iter().map(|(name, _)| name.to_string()).collect();
        names.sort();
        assert_eq!(names, ["Content-Type", "Nats-Expected-Stream", "Nats-Msg-Id", "X-Register"]);
        assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("replay/17"));
        assert_eq!(headers.get("Nats-Expected-Stream").map(|v| v.as_str()), Some("RETAIL_IN"));
        assert_eq!(headers.get("Content-Type").map(|v| v.as_str()), Some("application/json"));
    }

    // Proves the summary counts each outcome and names each skipped cause and failure.
    #[test]
    fn summary_names_every_outcome() {
        let summary = Summary {
            selected: 5,
            to_input: 2,
            to_erp: 1,
            skipped: BTreeMap::from([(Skip::Conflict, vec![12])]),
            failed: vec![(15, "the ERP rejected posting p again: HTTP 400".into())],
        };
        let mut out = Vec::new();
        print_summary(&summary, Utc::now(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "Replay: 5 selected, 3 replayed (2 to the input stream, 1 to the ERP webhook), 1 skipped, 1 failed.\n"
            ),
            "{text}"
        );
        assert!(text.contains("  skipped 1 (conflict: "), "{text}");
        assert!(text.contains("DLQ seq 12\n"), "{text}");
        assert!(text.contains("  failed: DLQ seq 15: the ERP rejected posting p again: HTTP 400\n"), "{text}");
        assert!(text.contains("go back to the DLQ with a new source sequence"), "{text}");
    }
}
