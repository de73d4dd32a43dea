//! Selecting DLQ entries: the filters, an ephemeral consumer over the DLQ stream, and direct
//! gets of given sequences. Nothing here writes to the DLQ or leaves a consumer behind.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream::Stream};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::debug;

use super::{Entry, Filter, DLQ_STREAM};
use crate::config::{parse_duration, Config};

/// Messages asked for per pull request.
const FETCH_MAX: usize = 256;
/// The server deletes the ephemeral consumer after this long without a pull, should the
/// command die before deleting it itself.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);
/// The header a headers-only delivery adds in place of the payload (not part of the entry).
const MSG_SIZE_HEADER: &str = "Nats-Msg-Size";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    #[error("--reason {0:?}: a reason is one subject token (letters, digits, `_`, `-`), e.g. too_large")]
    Reason(String),
    #[error(
        "--{flag} {text:?}: neither an RFC 3339 time (2026-11-27T10:00:00Z) nor a duration back from now (90m, 2h, 3d)"
    )]
    Time { flag: &'static str, text: String },
    #[error("--since {since} is not before --until {until}: nothing can match")]
    EmptyRange { since: DateTime<Utc>, until: DateTime<Utc> },
}

/// The filters, resolved: times parsed against one `now`, reasons checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    reasons: Vec<String>,
    stores: Vec<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<usize>,
    /// Given DLQ sequences; empty means "scan the stream".
    seqs: Vec<u64>,
}

/// Whether entries are read with their payloads (`show`, `replay`) or headers only (`list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payloads {
    Yes,
    No,
}

impl Selection {
    pub fn new(filter: &Filter, seqs: &[u64], now: DateTime<Utc>) -> Result<Selection, SelectionError> {
        if let Some(bad) = filter.reasons.iter().find(|r| !is_token(r)) {
            return Err(SelectionError::Reason(bad.clone()));
        }
        let since = filter.since.as_deref().map(|text| parse_time("since", text, now)).transpose()?;
        let until = filter.until.as_deref().map(|text| parse_time("until", text, now)).transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if since >= until {
                return Err(SelectionError::EmptyRange { since, until });
            }
        }
        Ok(Selection {
            reasons: filter.reasons.clone(),
            stores: filter.stores.clone(),
            since,
            until,
            limit: filter.limit,
            seqs: seqs.to_vec(),
        })
    }

    /// Whether `entry` passes every filter (the sequences are chosen by the reader).
    pub fn matches(&self, entry: &Entry) -> bool {
        let reason_ok = self.reasons.is_empty() || self.reasons.iter().any(|r| r == entry.reason());
        let store_ok =
            self.stores.is_empty() || entry.store().is_some_and(|s| self.stores.iter().any(|want| want == s));
        let since_ok = self.since.is_none_or(|since| entry.time >= since);
        let until_ok = self.until.is_none_or(|until| entry.time < until);
        reason_ok && store_ok && since_ok && until_ok
    }

    fn full(&self, selected: usize) -> bool {
        self.limit.is_some_and(|limit| selected >= limit)
    }
}

/// `[A-Za-z0-9_-]+`: one subject token without wildcards.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 3339, or a duration back from `now`.
fn parse_time(flag: &'static str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SelectionError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(time.to_utc());
    }
    let bad = || SelectionError::Time { flag, text: text.to_string() };
    let back = parse_duration(text).map_err(|_| bad())?;
    let back = chrono::Duration::from_std(back).map_err(|_| bad())?;
    now.checked_sub_signed(back).ok_or_else(bad)
}

/// The entries `selection` picks, oldest first (or in the order the sequences were given).
pub async fn select(
    js: &jetstream::Context,
    config: &Config,
    selection: &Selection,
    payloads: Payloads,
) -> anyhow::Result<Vec<Entry>> {
    let stream = js.get_stream(DLQ_STREAM).await.with_context(|| format!("looking up stream {DLQ_STREAM}"))?;
    if selection.seqs.is_empty() {
        scan(&stream, config, selection, payloads).await
    } else {
        by_seq(&stream, selection).await
    }
}

/// Direct gets of the given sequences; an unknown one is an error, before anything is done.
async fn by_seq(stream: &Stream, selection: &Selection) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for &seq in &selection.seqs {
        let entry = get(stream, seq).await?;
        if selection.matches(&entry) && !selection.full(entries.len()) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// One entry, with its payload, by its DLQ sequence.
pub async fn get(stream: &Stream, seq: u64) -> anyhow::Result<Entry> {
    let message =
        stream.get_raw_message(seq).await.with_context(|| format!("reading DLQ entry {seq} from {DLQ_STREAM}"))?;
    Ok(Entry {
        seq,
        time: to_chrono(message.time.unix_timestamp_nanos()),
        subject: message.subject.to_string(),
        size: message.payload.len(),
        payload: Some(message.payload),
        headers: message.headers,
    })
}

/// Reads the DLQ through an ephemeral consumer filtered on the reasons' subjects and starting
/// at `--since`, up to the last message there was when it started.
async fn scan(
    stream: &Stream,
    config: &Config,
    selection: &Selection,
    payloads: Payloads,
) -> anyhow::Result<Vec<Entry>> {
    let state = stream.cached_info().state.clone();
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let prefix = &config.input.subject_prefix;
    let mut subjects: Vec<String> = selection.reasons.iter().map(|reason| format!("{prefix}.dlq.{reason}")).collect();
    let (filter_subject, filter_subjects) = match subjects.len() {
        0 => (format!("{prefix}.dlq.*"), Vec::new()),
        1 => (subjects.remove(0), Vec::new()),
        _ => (String::new(), subjects),
    };
    let deliver_policy = match selection.since {
        Some(since) => consumer::DeliverPolicy::ByStartTime { start_time: to_nats_time(since)? },
        None => consumer::DeliverPolicy::All,
    };
    let config = consumer::pull::Config {
        description: Some("tally dlq: reading the DLQ (ephemeral)".into()),
        filter_subject,
        filter_subjects,
        deliver_policy,
        ack_policy: consumer::AckPolicy::None,
        headers_only: payloads == Payloads::No,
        inactive_threshold: INACTIVE_THRESHOLD,
        memory_storage: true,
        ..Default::default()
    };
    let mut reader = stream.create_consumer(config).await.context("creating an ephemeral consumer on the DLQ")?;
    let name = reader.cached_info().name.clone();
    let result = read_all(&mut reader, state.last_sequence, selection).await;
    if let Err(err) = stream.delete_consumer(&name).await {
        // The server removes it after INACTIVE_THRESHOLD anyway.
        debug!(error = %err, consumer = %name, "Deleting the ephemeral DLQ consumer failed.");
    }
    result
}

async fn read_all(
    reader: &mut consumer::Consumer<consumer::pull::Config>,
    last_seq: u64,
    selection: &Selection,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    if reader.info().await?.num_pending == 0 {
        return Ok(entries);
    }
    loop {
        let mut batch = reader.fetch().max_messages(FETCH_MAX).messages().await?;
        let mut received = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(anyhow::Error::from_boxed)?;
            received += 1;
            let info = message.info().map_err(anyhow::Error::from_boxed)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > last_seq {
                return Ok(entries);
            }
            let entry = entry_of(&message, seq, to_chrono(info.published.unix_timestamp_nanos()));
            if selection.matches(&entry) {
                entries.push(entry);
                if selection.full(entries.len()) {
                    return Ok(entries);
                }
            }
            if pending == 0 {
                return Ok(entries);
            }
        }
        if received == 0 {
            return Ok(entries);
        }
    }
}

/// An entry from a consumer delivery; a headers-only one keeps its size, not its payload.
fn entry_of(message: &jetstream::Message, seq: u64, time: DateTime<Utc>) -> Entry {
    let mut headers = async_nats::HeaderMap::new();
    let mut size = message.payload.len();
    let mut headers_only = false;
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        if AsRef::<str>::as_ref(name) == MSG_SIZE_HEADER {
            headers_only = true;
            size = values.first().and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    Entry {
        seq,
        time,
        subject: message.subject.to_string(),
        headers,
        payload: (!headers_only).then(|| message.payload.clone()),
        size,
    }
}

fn to_chrono(nanos: i128) -> DateTime<Utc> {
    // A stream timestamp is within i64 nanoseconds (years 1677–2262).
    DateTime::from_timestamp_nanos(nanos.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

fn to_nats_time(time: DateTime<Utc>) -> anyhow::Result<async_nats::datetime::DateTime> {
    let nanos = time.timestamp_nanos_opt().context("--since is out of range")?;
    async_nats::datetime::from_nanos(nanos as i128).map_err(|err| anyhow::anyhow!("--since: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().to_utc()
    }

    fn filter(reasons: &[&str], since: Option<&str>, until: Option<&str>) -> Filter {
        Filter {
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            ..Default::default()
        }
    }

    // Proves --since/--until take RFC 3339 or a duration back from now, and refuse anything else.
    #[test]
    fn times_are_rfc3339_or_relative() {
        let at = |text: &str| parse_time("since", text, now());
        assert_eq!(at("2h"), Ok(DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().to_utc()));
        assert_eq!(at("90m"), Ok(DateTime::parse_from_rfc3339("2026-11-27T10:30:00Z").unwrap().to_utc()));
        assert_eq!(
            at("2026-11-27T10:00:00-05:00"),
            Ok(DateTime::parse_from_rfc3339("2026-11-27T15:00:00Z").unwrap().to_utc())
        );
        assert!(matches!(at("yesterday"), Err(SelectionError::Time { flag: "since", .. })));
        assert!(matches!(at("2026-11-27"), Err(SelectionError::Time { .. })));
    }

    // Proves a reason must be one subject token, and an empty time range is refused.
    #[test]
    fn bad_filters_are_refused() {
        assert_eq!(
            Selection::new(&filter(&["too_large", "a.b"], None, None), &[], now()),
            Err(SelectionError::Reason("a.b".into()))
        );
        assert!(matches!(Selection::new(&filter(&["*"], None, None), &[], now()), Err(SelectionError::Reason(_))));
        assert!(matches!(
            Selection::new(&filter(&[], Some("1h"), Some("2h")), &[], now()),
            Err(SelectionError::EmptyRange { .. })
        ));
        assert!(Selection::new(&filter(&["erp_rejected"], Some("2h"), Some("1h")), &[], now()).is_ok());
    }

    fn entry(reason: &str, source: &str, time: &str) -> Entry {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Tally-Error", reason);
        headers.insert("Tally-Source-Subject", source);
        Entry {
            seq: 1,
            time: DateTime::parse_from_rfc3339(time).unwrap().to_utc(),
            subject: format!("retail.dlq.{reason}"),
            headers,
            payload: None,
            size: 0,
        }
    }

    // Proves the filters combine with AND, repeated values with OR, and --until is exclusive.
    #[test]
    fn filters_combine() {
        let selection = Selection::new(
            &Filter {
                reasons: vec!["too_large".into(), "erp_rejected".into()],
                stores: vec!["0042".into()],
                since: Some("2026-11-27T10:00:00Z".into()),
                until: Some("2026-11-27T11:00:00Z".into()),
                limit: None,
            },
            &[],
            now(),
        )
        .unwrap();
        assert!(selection.matches(&entry("too_large", "retail.pos.0042", "2026-11-27T10:00:00Z")));
        assert!(selection.matches(&entry("erp_rejected", "retail.erp.postings.0042", "2026-11-27T10:30:00Z")));
        assert!(!selection.matches(&entry("schema", "retail.pos.0042", "2026-11-27T10:30:00Z")));
        assert!(!selection.matches(&entry("too_large", "retail.pos.0043", "2026-11-27T10:30:00Z")));
        assert!(!selection.matches(&entry("too_large", "retail.pos.0042", "2026-11-27T09:59:59Z")));
        assert!(!selection.matches(&entry("too_large", "retail.pos.0042", "2026-11-27T11:00:00Z")));
    }
}
