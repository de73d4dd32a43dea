//! Setting a state's output bookkeeping from what was actually published, for a state that did
//! not publish its own outputs: one rebuilt from the input stream, or a restored checkpoint.
//!
//! Such a state holds ERP posting books (the last `seq`, what was posted per sku and tender)
//! and alert revision counters of its own making. Interim postings follow processing time, so a
//! rebuilt book disagrees with what the ERP received: continuing from it would send a posting
//! id that the ERP already holds with other content, and deltas that no longer sum to the day
//! (docs/wire-format.md, ERP postings). Here each store-day's book is set from the postings the
//! processor read back from the postings stream, so that the next posting continues the ERP's
//! sequence and carries the difference between the totals and what the ERP received; and each
//! alert's revision counter is raised to the highest revision published, so that no alert id is
//! sent again with other content (docs/operations.md, rebuilding state).
//!
//! Pure: the processor reads the streams and passes what it read in.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use tally_state::{Cf, Overlay};

use crate::aggregates::{SkuDay, StoreDay};
use crate::books::{PostedLine, PostingBook};
use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::keys;
use crate::postings;

/// `Meta` key present while the state's books still need reconciling with the output streams;
/// `tally run` does it before it publishes anything.
pub const META_RECONCILE: &[u8] = b"reconcile_outputs";
/// Sku-days read per store-day (a store's assortment is bounded).
const SKUS_PER_DAY_MAX: usize = 1_000_000;

/// Notes that the state's books must be reconciled before it publishes.
pub fn mark(txn: &mut Overlay<'_>) {
    txn.put(Cf::Meta, META_RECONCILE.to_vec(), Vec::new());
}

pub fn is_marked(txn: &Overlay<'_>) -> Result<bool, TopologyError> {
    Ok(txn.get(Cf::Meta, META_RECONCILE)?.is_some())
}

pub fn clear_mark(txn: &mut Overlay<'_>) {
    txn.delete(Cf::Meta, META_RECONCILE.to_vec());
}

/// Why a published output could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a JSON output")]
    Json(#[source] serde_json::Error),
    #[error("not a MessagePack output")]
    Msgpack(#[source] rmp_serde::decode::Error),
}

/// Decodes a published alert or posting, JSON or MessagePack (`output.format`), by its
/// `Content-Type` when present, else by its first byte.
pub fn read_output<T: DeserializeOwned>(content_type: Option<&str>, payload: &[u8]) -> Result<T, ReadError> {
    let json = match content_type {
        Some(kind) => kind.contains("json"),
        None => payload.first() == Some(&b'{'),
    };
    if json {
        serde_json::from_slice(payload).map_err(ReadError::Json)
    } else {
        rmp_serde::from_slice(payload).map_err(ReadError::Msgpack)
    }
}

/// An amount as outputs carry it: decimal text.
pub(crate) fn text_decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)?;
    Decimal::from_str(&text).map_err(|err| serde::de::Error::custom(format!("amount {text:?}: {err}")))
}

/// The parts of a published ERP posting that add up (docs/wire-format.md).
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedPosting {
    pub store: String,
    pub business_day: NaiveDate,
    pub seq: u32,
    pub kind: String,
    #[serde(default)]
    pub lines: Vec<ReceivedLine>,
    #[serde(default)]
    pub tenders: Vec<ReceivedTender>,
    pub control: ReceivedControl,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedLine {
    pub sku: String,
    #[serde(deserialize_with = "text_decimal")]
    pub qty: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub gross: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub discount: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub net: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub tax: Decimal,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedTender {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "text_decimal")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedControl {
    pub transactions: i64,
    pub lines: i64,
    #[serde(deserialize_with = "text_decimal")]
    pub net: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub tax: Decimal,
}

/// The key of a published drift alert revision.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedAlert {
    pub store: String,
    pub business_day: NaiveDate,
    pub sku: String,
    pub revision: u32,
}

/// What the output streams hold, folded per store-day.
#[derive(Debug, Default)]
pub struct Received {
    pub days: BTreeMap<(String, NaiveDate), ReceivedDay>,
    /// Whether the postings stream still holds every message ever published to it (none aged
    /// out or deleted), so that a store-day without postings there was never posted.
    pub postings_complete: bool,
}

/// One store-day's postings and alert revisions as published.
#[derive(Debug, Default)]
pub struct ReceivedDay {
    /// The posting seqs read, each once.
    seqs: BTreeSet<u32>,
    /// The sums of the postings read; `seq` is the highest read.
    book: PostingBook,
    skus: BTreeMap<String, PostedLine>,
    /// The highest revision published per sku.
    alert_revisions: BTreeMap<String, u32>,
}

impl Received {
    /// The highest revision published of the alert of (store, day, sku), if any.
    pub fn alert_revision(&self, store: &str, day: NaiveDate, sku: &str) -> Option<u32> {
        self.days.get(&(store.to_string(), day))?.alert_revisions.get(sku).copied()
    }

    /// Adds one published posting. A seq read before (a re-publish after the duplicate window,
    /// same id and so same content) is skipped; returns whether it was new.
    pub fn add_posting(&mut self, posting: ReceivedPosting) -> bool {
        let day = self.days.entry((posting.store, posting.business_day)).or_default();
        if !day.seqs.insert(posting.seq) {
            return false;
        }
        let book = &mut day.book;
        book.seq = book.seq.max(posting.seq);
        book.final_sent |= posting.kind == postings::Kind::Final.as_str();
        book.transactions += posting.control.transactions;
        book.lines += posting.control.lines;
        book.net += posting.control.net;
        book.tax += posting.control.tax;
        for tender in posting.tenders {
            *book.tenders.entry(tender.kind).or_default() += tender.amount;
        }
        for line in posting.lines {
            let sum = day.skus.entry(line.sku).or_default();
            sum.qty += line.qty;
            sum.gross += line.gross;
            sum.discount += line.discount;
            sum.net += line.net;
            sum.tax += line.tax;
        }
        true
    }

    /// Adds one published alert revision.
    pub fn add_alert(&mut self, alert: ReceivedAlert) {
        let day = self.days.entry((alert.store, alert.business_day)).or_default();
        let revision = day.alert_revisions.entry(alert.sku).or_default();
        *revision = (*revision).max(alert.revision);
    }
}

impl ReceivedDay {
    /// Whether every posting from seq 1 to the last is there, so their sums are what the ERP
    /// received in all.
    fn postings_whole(&self) -> bool {
        self.seqs.first() == Some(&1) && self.seqs.len() == self.book.seq as usize
    }
}

/// How one store-day's posting book came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookOutcome {
    /// Set from the postings the ERP received; the next posting continues after them.
    Matched,
    /// The postings stream holds none of this day and lost nothing: nothing was received, so
    /// everything is posted again from seq 1.
    Reset,
    /// The postings stream lost the day's first postings (retention): the next seq continues
    /// after the last one there, but the deltas may not sum to what the ERP received in all.
    Partial,
    /// The postings stream lost messages and holds none of this day: the state's own book is
    /// kept as it is, unchecked.
    Unverified,
    /// Nothing posted on either side; nothing to do.
    Unposted,
}

/// What to do with a book, decided from what was received.
enum Book<'r> {
    Set(&'r ReceivedDay),
    AtLeast(&'r ReceivedDay),
    Keep,
}

/// Reconciles one store-day: its posting book from `received` and its alert revisions, and
/// marks it for a posting when the ERP lacks part of its totals. `None` when state does not
/// hold the day (pruned, or before the input stream's first message).
pub fn reconcile_day(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    received: Option<&ReceivedDay>,
    postings_complete: bool,
    now: DateTime<Utc>,
) -> Result<Option<BookOutcome>, TopologyError> {
    let store_key = keys::store_day(store, day);
    let Some(mut totals) = read::<StoreDay>(txn, Cf::Aggregates, &store_key, "store-day totals")? else {
        return Ok(None);
    };
    let empty = ReceivedDay::default();
    let (book, outcome) = match received.filter(|r| !r.seqs.is_empty()) {
        Some(r) if r.postings_whole() => (Book::Set(r), BookOutcome::Matched),
        Some(r) => (Book::AtLeast(r), BookOutcome::Partial),
        None if totals.posting.seq == 0 && !totals.posting.final_sent => (Book::Keep, BookOutcome::Unposted),
        None if postings_complete => (Book::Set(&empty), BookOutcome::Reset),
        None => (Book::Keep, BookOutcome::Unverified),
    };
    let alerts = received.map(|r| &r.alert_revisions);
    let unposted_skus = reconcile_skus(txn, store, day, &book, alerts)?;
    let owes_posting = match book {
        Book::Set(r) => {
            set_book(&mut totals, r);
            unposted_skus || book_behind(&totals)
        }
        Book::AtLeast(r) => {
            totals.posting.seq = totals.posting.seq.max(r.book.seq);
            totals.posting.final_sent |= r.book.final_sent;
            totals.posting.dirty_since.is_some()
        }
        Book::Keep => totals.posting.dirty_since.is_some(),
    };
    // A finalized day whose final posting the ERP does not have still owes it (the tick sends
    // a final posting for it).
    let owes_final = totals.finalized && !totals.posting.final_sent;
    if owes_posting || owes_final {
        postings::mark_dirty(txn, store, day, &mut totals, now);
    } else {
        totals.posting.dirty_since = None;
        txn.delete(Cf::Aggregates, keys::dirty_key(store, day));
    }
    txn.put(Cf::Aggregates, store_key, codec::encode(&totals));
    bump_generation(txn)?;
    Ok(Some(outcome))
}

/// Sets each sku-day's posted line (for `Book::Set`) and raises its alert revision to the
/// highest published; returns whether some sku has totals not yet posted.
fn reconcile_skus(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    book: &Book<'_>,
    alerts: Option<&BTreeMap<String, u32>>,
) -> Result<bool, TopologyError> {
    let received_skus = match book {
        Book::Set(r) => Some(&r.skus),
        _ => None,
    };
    if received_skus.is_none() && alerts.is_none_or(BTreeMap::is_empty) {
        return Ok(false);
    }
    let mut unposted = false;
    let mut seen = BTreeSet::new();
    for (key, value) in txn.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(store, day), SKUS_PER_DAY_MAX)? {
        let Some(sku_name) = keys::parse_sku_day_sku(&key) else { continue };
        let mut sku: SkuDay =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "sku-day totals", source })?;
        let before = sku.clone();
        if let Some(skus) = received_skus {
            sku.posted = skus.get(&sku_name).cloned().unwrap_or_default();
        }
        if let Some(&revision) = alerts.and_then(|a| a.get(&sku_name)) {
            sku.alert.revision = sku.alert.revision.max(revision);
        }
        unposted |= postings::postable(&sku) != sku.posted;
        if sku != before {
            txn.put(Cf::Aggregates, key, codec::encode(&sku));
        }
        seen.insert(sku_name);
    }
    // A sku the ERP received that state does not hold (nothing in the input says so today)
    // gets a record of its own, so that the next posting takes it back out.
    for (sku_name, posted) in received_skus.into_iter().flatten().filter(|(name, _)| !seen.contains(*name)) {
        let sku = SkuDay { posted: posted.clone(), ..SkuDay::default() };
        unposted |= postings::postable(&sku) != sku.posted;
        txn.put(Cf::Aggregates, keys::sku_day(store, day, sku_name), codec::encode(&sku));
    }
    Ok(unposted)
}

/// Takes the received sums as the state's book: what was posted, by seq, in all.
fn set_book(totals: &mut StoreDay, received: &ReceivedDay) {
    let dirty_since = totals.posting.dirty_since;
    totals.posting = PostingBook { dirty_since, ..received.book.clone() };
    // The next posting walks the totals' tenders: one the ERP received and the totals lack
    // must be there (at zero) to be taken back out.
    for kind in received.book.tenders.keys() {
        totals.tenders.entry(kind.clone()).or_default();
    }
}

/// Whether the day's totals differ from what its book says was posted.
fn book_behind(totals: &StoreDay) -> bool {
    let book = &totals.posting;
    totals.transactions != book.transactions
        || totals.lines != book.lines
        || totals.net != book.net
        || totals.tax != book.tax
        || totals.tenders.iter().any(|(kind, amount)| book.tenders.get(kind).copied().unwrap_or_default() != *amount)
}

/// Counts a rewrite of the aggregates outside a batch, so that no batch trusts a working set
/// kept from before it (`working_set`).
fn bump_generation(txn: &mut Overlay<'_>) -> Result<(), TopologyError> {
    let generation = crate::codec::read_meta_u64(txn, keys::META_GENERATION)?.unwrap_or(0);
    txn.put(Cf::Meta, keys::META_GENERATION.to_vec(), (generation + 1).to_be_bytes().to_vec());
    Ok(())
}
