//! Output messages into the durable outbox: DLQ entries, drift alerts and ERP postings, each
//! with the subject, `Nats-Msg-Id` and headers of docs/wire-format.md, "Subjects and streams", "Outputs" and "The dead-letter queue".
//!
//! An output is enqueued in the same write batch as the state change it reflects; the
//! processor's publisher sends it and deletes it after JetStream's acknowledgement.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use tally_state::key::KeyWriter;
use tally_state::{Cf, Overlay};

use crate::aggregates::{OutboxEntry, OutputKind};
use crate::codec;
use crate::drift::{DriftAlert, Phase};
use crate::error::TopologyError;
use crate::keys::{self, TAG_ALERT_LATEST, TAG_PENDING};

/// Encoding of alerts and postings (`output.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Json,
    Msgpack,
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Msgpack => "application/msgpack",
        }
    }

    pub fn encode(self, value: &impl Serialize) -> Vec<u8> {
        match self {
            // Outputs are maps of strings, numbers and lists: serializing them to memory cannot fail.
            OutputFormat::Json => serde_json::to_vec(value).expect("serializing JSON to memory cannot fail"),
            OutputFormat::Msgpack => {
                rmp_serde::to_vec_named(value).expect("serializing MessagePack to memory cannot fail")
            }
        }
    }
}

/// What one call of the topology emitted, for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub alerts: BTreeMap<&'static str, u64>,
    pub postings: BTreeMap<&'static str, u64>,
    /// Per posting, milliseconds from the first change it carries to its emission
    /// (processing time).
    pub posting_delays_ms: Vec<i64>,
}

impl Emitted {
    pub fn merge(&mut self, other: Emitted) {
        for (state, n) in other.alerts {
            *self.alerts.entry(state).or_default() += n;
        }
        for (kind, n) in other.postings {
            *self.postings.entry(kind).or_default() += n;
        }
        self.posting_delays_ms.extend(other.posting_delays_ms);
    }
}

/// Appends an output message to the durable outbox, in the same batch as the state change.
pub fn enqueue(txn: &mut Overlay<'_>, entry: &OutboxEntry) -> Result<(), TopologyError> {
    let next = crate::codec::read_meta_u64(txn, keys::META_OUTBOX_NEXT)?.unwrap_or(1);
    txn.put(Cf::Outbox, keys::outbox(next), codec::encode(entry));
    txn.put(Cf::Meta, keys::META_OUTBOX_NEXT.to_vec(), (next + 1).to_be_bytes().to_vec());
    Ok(())
}

/// Enqueues an output in the configured format.
pub fn enqueue_value(
    txn: &mut Overlay<'_>,
    format: OutputFormat,
    kind: OutputKind,
    subject: String,
    msg_id: String,
    body: &impl Serialize,
) -> Result<(), TopologyError> {
    enqueue_traced(txn, format, kind, subject, msg_id, body, &[])
}

/// Enqueues an output in the configured format, with the trace headers of the record that
/// caused it (docs/wire-format.md, "Trace context").
pub fn enqueue_traced(
    txn: &mut Overlay<'_>,
    format: OutputFormat,
    kind: OutputKind,
    subject: String,
    msg_id: String,
    body: &impl Serialize,
    trace_headers: &[(String, String)],
) -> Result<(), TopologyError> {
    let mut headers = vec![("Content-Type".to_string(), format.content_type().to_string())];
    headers.extend_from_slice(trace_headers);
    let entry = OutboxEntry { subject, msg_id, headers, payload: format.encode(body), kind: Some(kind) };
    enqueue(txn, &entry)
}

fn alert_latest_key(store: &str, day: NaiveDate, sku: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_LATEST).str(store).str(&day.to_string()).str(sku).finish()
}

pub fn alerts_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_LATEST).finish()
}

/// Keeps the latest revision of each alert, for `/v1/alerts` and Alertmanager.
pub fn remember_alert(txn: &mut Overlay<'_>, store: &str, day: NaiveDate, sku: &str, alert: &DriftAlert) {
    // An alert is strings, numbers and lists: serializing it to memory cannot fail.
    let bytes = serde_json::to_vec(alert).expect("serializing JSON to memory cannot fail");
    txn.put(Cf::Aggregates, alert_latest_key(store, day, sku), bytes);
}

fn pending_key(store: &str, day: NaiveDate, sku: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_PENDING).str(store).str(&day.to_string()).str(sku).finish()
}

pub fn pending_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_PENDING).finish()
}

/// Keeps an index of keys that are over threshold but not yet settled, for the
/// `tally_drift_keys{state="pending"}` gauge; written only when a key enters or leaves pending.
pub fn index_pending(txn: &mut Overlay<'_>, store: &str, day: NaiveDate, sku: &str, before: Phase, after: Phase) {
    match (before == Phase::Pending, after == Phase::Pending) {
        (false, true) => txn.put(Cf::Aggregates, pending_key(store, day, sku), Vec::new()),
        (true, false) => txn.delete(Cf::Aggregates, pending_key(store, day, sku)),
        _ => {}
    }
}

/// Reads the store back from an alert-index or pending-index key.
pub fn store_of_index_key(key: &[u8]) -> Option<String> {
    let mut reader = tally_state::KeyReader::new(key);
    reader.tag().ok()?;
    reader.str().ok()
}

/// The latest alerts of one store-day.
pub fn alert_day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_LATEST).str(store).str(&day.to_string()).finish()
}

/// The pending-index entries of one store-day.
pub fn pending_day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_PENDING).str(store).str(&day.to_string()).finish()
}
