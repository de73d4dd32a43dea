//! Lineage: what tally keeps so that any input record within retention can be traced from its
//! arrival to the outputs it reached (docs/http-api.md, "Trace a record"), without a write per
//! record at posting or alert time.
//!
//! - An accepted record's `Seen` entry carries its [`Arrival`]: stream sequence, processing
//!   time, record type, trace context, and how often it was re-sent.
//! - A rejected record leaves a [`Rejected`] entry per dead-lettered copy.
//! - Each alert revision leaves the ids its `unmatched` listed ([`AlertRevision`]).
//! - Each ERP posting leaves the input stream position it covers ([`PostingCover`]): the
//!   posting that first included a record is the first one of its store-day covering the
//!   record's stream sequence.
//!
//! Everything here belongs to a store-day and is pruned with it (`retention`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tally_state::key::KeyWriter;
use tally_state::{Cf, Overlay};

use crate::codec;
use crate::keys::{TAG_ALERT_REVISION, TAG_POSTING_COVER, TAG_REJECTED};
use crate::model::Event;
use crate::pack::{Pack, Packer, Sink};

/// The trace context an input message carried in its headers (docs/wire-format.md,
/// "Trace context"): a W3C `traceparent`, and the publisher's `Nats-Msg-Id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceContext<'a> {
    pub traceparent: Option<&'a str>,
    pub msg_id: Option<&'a str>,
}

impl TraceContext<'_> {
    /// The headers that outputs caused by the record carry, and DLQ copies of it.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(parent) = self.traceparent {
            headers.push(("traceparent".to_string(), parent.to_string()));
        }
        if let Some(msg_id) = self.msg_id {
            headers.push(("Tally-Source-Msg-Id".to_string(), msg_id.to_string()));
        }
        headers
    }

    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.msg_id.is_none()
    }
}

/// How an accepted record arrived, kept in its `Seen` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Arrival {
    pub stream_seq: u64,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    /// The record's `type` (docs/wire-format.md, "Input records"), as its place in
    /// [`RECORD_TYPES`] plus one: a byte instead of a string in every dedupe entry.
    pub record_type: u8,
    pub traceparent: Option<String>,
    /// The publisher's `Nats-Msg-Id`, when it differs from the record's `id`.
    pub msg_id: Option<String>,
    /// Copies with the same content that arrived later (duplicates), and the last one's sequence.
    pub duplicates: u32,
    pub last_duplicate_seq: Option<u64>,
    /// The transaction a void cancels.
    pub voids: Option<String>,
    /// The accounting period an adjustment movement was booked in (its inventory adjustment
    /// posting's `period`).
    pub booked_period: Option<String>,
}

impl Arrival {
    pub fn new(stream_seq: u64, at: DateTime<Utc>, event: &Event, trace: TraceContext<'_>) -> Self {
        let id = event.id();
        Arrival {
            stream_seq,
            at,
            record_type: record_type_code(event),
            traceparent: trace.traceparent.map(str::to_string),
            msg_id: trace.msg_id.filter(|msg_id| *msg_id != id).map(str::to_string),
            duplicates: 0,
            last_duplicate_seq: None,
            voids: None,
            booked_period: None,
        }
    }

    /// The record's `type`, or `None` for a code this version does not know.
    pub fn record_type(&self) -> Option<&'static str> {
        RECORD_TYPES.get(usize::from(self.record_type).checked_sub(1)?).copied()
    }
}

/// An event's place in [`RECORD_TYPES`] plus one, without comparing strings per record.
fn record_type_code(event: &Event) -> u8 {
    match event {
        Event::Transaction(_) => 1,
        Event::Movement(_) => 2,
        Event::DayClose(_) => 3,
        Event::Order(_) => 4,
    }
}

/// The input record types, in the order of their stored codes: append only.
pub const RECORD_TYPES: [&str; 4] = ["pos.transaction", "inventory.movement", "pos.day_close", "order.fulfillment"];

/// One dead-lettered copy of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub reason: String,
    pub detail: String,
    pub subject: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

impl Pack for Rejected {}

/// The ids one alert revision listed as `unmatched`, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRevision {
    pub state: String,
    pub unmatched: Vec<String>,
}

impl Pack for AlertRevision {}

/// The input stream position an ERP posting covers: every record at or below it that belongs
/// to the posting's store-day is in this posting or an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingCover {
    pub covers: u64,
    pub kind: String,
}

impl Pack for PostingCover {}

/// By id first: a store that only ever sent rejected records has no clock, so a trace that does
/// not name the store finds its copies through the id alone.
pub(crate) fn rejected_key(store: &str, id: &str, stream_seq: u64) -> Vec<u8> {
    KeyWriter::new().tag(TAG_REJECTED).str(id).str(store).u64(stream_seq).finish()
}

pub(crate) fn rejected_prefix(store: &str, id: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_REJECTED).str(id).str(store).finish()
}

/// Every dead-lettered copy of an id, whatever its store.
pub(crate) fn rejected_id_prefix(id: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_REJECTED).str(id).finish()
}

fn alert_revision_key(store: &str, day: NaiveDate, sku: &str, revision: u32) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_REVISION).str(store).str(&day.to_string()).str(sku).u64(revision.into()).finish()
}

pub(crate) fn alert_revisions_prefix(store: &str, day: NaiveDate, sku: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_REVISION).str(store).str(&day.to_string()).str(sku).finish()
}

pub(crate) fn alert_revisions_day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ALERT_REVISION).str(store).str(&day.to_string()).finish()
}

fn posting_cover_key(store: &str, day: NaiveDate, seq: u32) -> Vec<u8> {
    KeyWriter::new().tag(TAG_POSTING_COVER).str(store).str(&day.to_string()).u64(seq.into()).finish()
}

pub(crate) fn posting_covers_day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_POSTING_COVER).str(store).str(&day.to_string()).finish()
}

/// Inventory adjustment postings, by store and booked period: `period/<id>` never reads as a
/// day, so they share the tag with the day postings.
fn period_cover_key(store: &str, period: &str, seq: u32) -> Vec<u8> {
    KeyWriter::new().tag(TAG_POSTING_COVER).str(store).str(&format!("period/{period}")).u64(seq.into()).finish()
}

pub(crate) fn period_covers_prefix(store: &str, period: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_POSTING_COVER).str(store).str(&format!("period/{period}")).finish()
}

/// Keeps a dead-lettered copy's reason. The caller files it in the retention's day index.
pub(crate) fn remember_rejection(txn: &mut Overlay<'_>, store: &str, id: &str, stream_seq: u64, rejected: &Rejected) {
    txn.put(Cf::Aggregates, rejected_key(store, id, stream_seq), codec::encode(rejected));
}

pub(crate) fn remember_alert_revision(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    sku: &str,
    revision: u32,
    entry: &AlertRevision,
) {
    txn.put(Cf::Aggregates, alert_revision_key(store, day, sku, revision), codec::encode(entry));
}

pub(crate) fn remember_posting(txn: &mut Overlay<'_>, store: &str, day: NaiveDate, seq: u32, cover: &PostingCover) {
    txn.put(Cf::Aggregates, posting_cover_key(store, day, seq), codec::encode(cover));
}

/// The same for an inventory adjustment posting of a store's booked period.
pub(crate) fn remember_period_posting(txn: &mut Overlay<'_>, store: &str, period: &str, seq: u32, covers: u64) {
    let cover = PostingCover { covers, kind: crate::adjustment_body::KIND.to_string() };
    txn.put(Cf::Aggregates, period_cover_key(store, period, seq), codec::encode(&cover));
}

// Packed by hand, field by field in declaration order as serde's derive writes them: a field
// added to the struct must be added here too (`pack_tests` fails until it is).

impl Pack for Arrival {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(9);
        out.uint(self.stream_seq);
        out.micros(&self.at);
        out.uint(u64::from(self.record_type));
        out.str_option(&self.traceparent);
        out.str_option(&self.msg_id);
        out.uint(u64::from(self.duplicates));
        out.uint_option(self.last_duplicate_seq);
        out.str_option(&self.voids);
        out.str_option(&self.booked_period);
    }
}
