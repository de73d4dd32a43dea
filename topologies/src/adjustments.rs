//! Inventory adjustments to finance (docs/wire-format.md, "Inventory adjustment posting"):
//! `adjustment`, `shrink`, `damage` and `count` movements summed per store, accounting period,
//! sku and reason, and posted as `inventory_adjustment` postings with a gapless `seq` per
//! (store, period).
//!
//! Where a movement is booked is decided when it is applied, on the store's event time, so a
//! replay books it alike: in the period its business day belongs to while that period is
//! open, else in the earliest open period, naming the one it belongs to. A period is closed
//! once the store's watermark passes its end (the local midnight after its last business day)
//! plus `fiscal.close_grace`.
//!
//! Each line (store, booked period, belonging period, sku, reason) keeps its total and what of
//! it was posted; a posting carries the differences and records them as posted, in the same
//! batch that enqueues it, so the sum of a line's postings is its total by construction (as
//! `postings` does for store-days), and a rebuilt state can take what was posted from the
//! postings stream (`adjustments_reconcile`). A period's book keeps its last `seq` and running
//! totals. The stage never reads the clock: the tick passes processing time in. It must never
//! post a line twice nor skip a `seq`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_state::key::{KeyReader, KeyWriter};
use tally_state::{Cf, Overlay};

use crate::adjustment_body::{AdjustmentBody, AdjustmentControl, AdjustmentLine, AdjustmentTotals, KIND};
use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::fiscal::Period;
use crate::keys::{TAG_ADJ_BOOK, TAG_ADJ_DIRTY, TAG_ADJ_LINE};
use crate::model::InventoryMovement;

/// Lines read per (store, period) and tick at most; the rest follow at the next tick.
const LINES_PER_PERIOD_MAX: usize = 100_000;

/// Units and value of adjustment lines: waiting to be posted, or a period's running total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Amounts {
    #[serde(with = "crate::stored_decimal::one")]
    pub units: Decimal,
    /// Σ qty × unit_cost of the lines that carried a cost.
    #[serde(with = "crate::stored_decimal::one")]
    pub value: Decimal,
    /// Units of the lines that carried none.
    #[serde(with = "crate::stored_decimal::one")]
    pub unvalued_units: Decimal,
}

impl Amounts {
    pub(crate) fn add(&mut self, other: &Amounts) {
        self.units += other.units;
        self.value += other.value;
        self.unvalued_units += other.unvalued_units;
    }

    fn minus(&self, other: &Amounts) -> Amounts {
        Amounts {
            units: self.units - other.units,
            value: self.value - other.value,
            unvalued_units: self.unvalued_units - other.unvalued_units,
        }
    }

    fn is_zero(&self) -> bool {
        self.units.is_zero() && self.value.is_zero() && self.unvalued_units.is_zero()
    }

    fn totals(&self) -> AdjustmentTotals {
        AdjustmentTotals {
            units: self.units.normalize().to_string(),
            unvalued_units: self.unvalued_units.normalize().to_string(),
            value: self.value.to_string(),
        }
    }
}

/// One line's total and what of it was posted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineBook {
    pub total: Amounts,
    pub posted: Amounts,
}

impl crate::pack::Pack for LineBook {}

impl LineBook {
    pub fn is_posted(&self) -> bool {
        self.total == self.posted
    }
}

/// Where a (store, period)'s adjustment postings stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodBook {
    /// The last posting's `seq`; 0 before the first.
    pub seq: u32,
    pub first: Option<chrono::NaiveDate>,
    pub last: Option<chrono::NaiveDate>,
    /// Everything posted in this period so far.
    pub posted: Amounts,
}

impl crate::pack::Pack for PeriodBook {}

/// One line's unposted difference: (sku, reason, amounts).
type Delta = (String, String, Amounts);

/// An adjustment posting ready to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct AdjustmentPosting {
    pub id: String,
    pub body: AdjustmentBody,
}

pub fn posting_id(store: &str, period: &str, seq: u32) -> String {
    format!("{store}/period/{period}/{seq:04}")
}

/// The period a movement is booked in: the one it belongs to while open, else `open`, the
/// earliest period still open at the store's event time.
pub fn booked<'p>(belongs: &'p Period, open: &'p Period) -> &'p Period {
    if open.first > belongs.first {
        open
    } else {
        belongs
    }
}

/// Adds an adjustment movement's lines to their totals, and notes the booked period as having
/// adjustments to post since processing time `now`. Returns whether the period's book is new
/// (its first adjustment in this store).
pub fn record(
    txn: &mut Overlay<'_>,
    store: &str,
    booked: &Period,
    belongs: &Period,
    movement: &InventoryMovement,
    now: DateTime<Utc>,
) -> Result<bool, TopologyError> {
    assert!(movement.reason.is_adjustment(), "only adjustment movements are booked");
    for line in &movement.lines {
        let key = line_key(store, &booked.id, &belongs.id, &line.sku, movement.reason.as_str());
        let mut book = read::<LineBook>(txn, Cf::Aggregates, &key, "adjustment line")?.unwrap_or_default();
        book.total.units += line.qty;
        match line.unit_cost {
            Some(cost) => book.total.value += line.qty * cost,
            None => book.total.unvalued_units += line.qty,
        }
        txn.put(Cf::Aggregates, key, codec::encode(&book));
    }
    let book_key = book_key(store, &booked.id);
    let new = txn.get(Cf::Aggregates, &book_key)?.is_none();
    if new {
        let book = PeriodBook { first: Some(booked.first), last: Some(booked.last), ..PeriodBook::default() };
        txn.put(Cf::Aggregates, book_key, codec::encode(&book));
    }
    mark_dirty(txn, store, &booked.id, now)?;
    Ok(new)
}

/// Removes the books and lines of the store's periods that ended by `day` and have nothing
/// left to post: nothing books in a period once it closed, and the retention is long past
/// its close. A period with lines still unposted is kept.
pub fn prune(txn: &mut Overlay<'_>, store: &str, day: chrono::NaiveDate) -> Result<(), TopologyError> {
    let prefix = KeyWriter::new().tag(TAG_ADJ_BOOK).str(store).finish();
    for (key, value) in txn.scan_prefix(Cf::Aggregates, &prefix, usize::MAX)? {
        let book: PeriodBook =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "adjustment book", source })?;
        let (_, period) = parse_book_key(&key)?;
        if book.last.is_none_or(|last| last > day) || txn.get(Cf::Aggregates, &dirty_key(store, &period))?.is_some() {
            continue;
        }
        for (line, _) in txn.scan_prefix(Cf::Aggregates, &lines_prefix(store, &period), usize::MAX)? {
            txn.delete(Cf::Aggregates, line);
        }
        for (cover, _) in
            txn.scan_prefix(Cf::Aggregates, &crate::lineage::period_covers_prefix(store, &period), usize::MAX)?
        {
            txn.delete(Cf::Aggregates, cover);
        }
        txn.delete(Cf::Aggregates, key);
    }
    Ok(())
}

/// Notes that a (store, period) has lines not yet posted, since processing time `now`.
pub fn mark_dirty(txn: &mut Overlay<'_>, store: &str, period: &str, now: DateTime<Utc>) -> Result<(), TopologyError> {
    let dirty = dirty_key(store, period);
    if txn.get(Cf::Aggregates, &dirty)?.is_none() {
        txn.put(Cf::Aggregates, dirty, now.timestamp_micros().to_be_bytes().to_vec());
    }
    Ok(())
}

/// The (store, period)s whose oldest unposted adjustment is at least `interval` old at `now`,
/// with that time, at most `limit` of them.
pub fn due_periods(
    txn: &Overlay<'_>,
    now: DateTime<Utc>,
    interval: chrono::Duration,
    limit: usize,
) -> Result<Vec<(String, String, DateTime<Utc>)>, TopologyError> {
    let prefix = KeyWriter::new().tag(TAG_ADJ_DIRTY).finish();
    let mut due = Vec::new();
    for (key, value) in txn.scan_prefix(Cf::Aggregates, &prefix, usize::MAX)? {
        let mut reader = KeyReader::new(&key[prefix.len()..]);
        let mut next = || reader.str().map_err(|e| corrupt(format!("adjustment dirty key: {e}")));
        let (store, period) = (next()?, next()?);
        let micros: [u8; 8] = value.as_slice().try_into().map_err(|_| corrupt("adjustment dirty value".into()))?;
        let since = DateTime::from_timestamp_micros(i64::from_be_bytes(micros))
            .ok_or_else(|| corrupt("adjustment dirty time".into()))?;
        if since + interval <= now {
            due.push((store, period, since));
            if due.len() == limit {
                break;
            }
        }
    }
    Ok(due)
}

/// Builds a (store, period)'s postings from its lines' unposted differences, one per
/// belonging period in id order (so late lines of earlier periods come before the period's
/// own), and records them as posted. Differences that are zero are
/// not posted, and a posting without lines is not sent and takes no `seq`.
pub fn post_period(
    txn: &mut Overlay<'_>,
    store: &str,
    period: &str,
    currency: &str,
) -> Result<Vec<AdjustmentPosting>, TopologyError> {
    let prefix = lines_prefix(store, period);
    let rows = txn.scan_prefix(Cf::Aggregates, &prefix, LINES_PER_PERIOD_MAX)?;
    if rows.len() < LINES_PER_PERIOD_MAX {
        txn.delete(Cf::Aggregates, dirty_key(store, period));
    }
    let mut groups: Vec<(String, Vec<Delta>)> = Vec::new();
    for (key, value) in rows {
        let (belongs, sku, reason) = parse_line_key(&key[prefix.len()..])?;
        let mut book: LineBook =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "adjustment line", source })?;
        if book.is_posted() {
            continue;
        }
        let delta = book.total.minus(&book.posted);
        book.posted = book.total.clone();
        txn.put(Cf::Aggregates, key, codec::encode(&book));
        if delta.is_zero() {
            continue;
        }
        match groups.last_mut() {
            Some((group, lines)) if *group == belongs => lines.push((sku, reason, delta)),
            _ => groups.push((belongs, vec![(sku, reason, delta)])),
        }
    }
    let mut postings = Vec::new();
    for (belongs, lines) in groups {
        postings.push(post_group(txn, store, currency, period, &belongs, lines)?);
    }
    Ok(postings)
}

fn post_group(
    txn: &mut Overlay<'_>,
    store: &str,
    currency: &str,
    booked: &str,
    belongs: &str,
    lines: Vec<Delta>,
) -> Result<AdjustmentPosting, TopologyError> {
    let book_key = book_key(store, booked);
    let mut book = read::<PeriodBook>(txn, Cf::Aggregates, &book_key, "adjustment book")?.unwrap_or_default();
    let mut sum = Amounts::default();
    let lines: Vec<AdjustmentLine> = lines
        .into_iter()
        .map(|(sku, reason, amounts)| {
            sum.add(&amounts);
            let totals = amounts.totals();
            AdjustmentLine {
                reason,
                sku,
                units: totals.units,
                unvalued_units: totals.unvalued_units,
                value: totals.value,
            }
        })
        .collect();
    book.seq += 1;
    book.posted.add(&sum);
    txn.put(Cf::Aggregates, book_key, codec::encode(&book));
    let id = posting_id(store, booked, book.seq);
    let control = sum.totals();
    let day = |day: Option<chrono::NaiveDate>| day.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
    let body = AdjustmentBody {
        belongs_to_period: (belongs != booked).then(|| belongs.to_string()),
        control: AdjustmentControl {
            lines: lines.len() as u64,
            units: control.units,
            unvalued_units: control.unvalued_units,
            value: control.value,
        },
        cumulative: book.posted.totals(),
        currency: currency.to_string(),
        id: id.clone(),
        kind: KIND.to_string(),
        lines,
        period: booked.to_string(),
        period_end: day(book.last),
        period_start: day(book.first),
        seq: book.seq,
        store: store.to_string(),
        record_type: "erp.posting".to_string(),
    };
    Ok(AdjustmentPosting { id, body })
}

pub(crate) fn line_key(store: &str, booked: &str, belongs: &str, sku: &str, reason: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_LINE).str(store).str(booked).str(belongs).str(sku).str(reason).finish()
}

/// Every line booked in one (store, period).
pub(crate) fn lines_prefix(store: &str, period: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_LINE).str(store).str(period).finish()
}

/// (belonging period, sku, reason) from what follows `lines_prefix` in a line key.
pub(crate) fn parse_line_key(rest: &[u8]) -> Result<(String, String, String), TopologyError> {
    let mut reader = KeyReader::new(rest);
    let mut next = || reader.str().map_err(|e| corrupt(format!("adjustment line key: {e}")));
    Ok((next()?, next()?, next()?))
}

pub(crate) fn book_key(store: &str, period: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_BOOK).str(store).str(period).finish()
}

/// Every period book of every store.
pub(crate) fn books_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_BOOK).finish()
}

/// (store, period) from a `book_key`.
pub(crate) fn parse_book_key(key: &[u8]) -> Result<(String, String), TopologyError> {
    let mut reader = KeyReader::new(&key[books_prefix().len()..]);
    let mut next = || reader.str().map_err(|e| corrupt(format!("adjustment book key: {e}")));
    Ok((next()?, next()?))
}

/// Notes that a (store, period) has nothing left to post.
pub(crate) fn clear_dirty(txn: &mut Overlay<'_>, store: &str, period: &str) {
    txn.delete(Cf::Aggregates, dirty_key(store, period));
}

fn dirty_key(store: &str, period: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_DIRTY).str(store).str(period).finish()
}

/// A (store, period)'s book, for reports and tests.
pub fn book(txn: &Overlay<'_>, store: &str, period: &str) -> Result<Option<PeriodBook>, TopologyError> {
    read(txn, Cf::Aggregates, &book_key(store, period), "adjustment book")
}

pub(crate) fn corrupt(detail: String) -> TopologyError {
    tally_state::StateError::Corrupt { cf: Cf::Aggregates, detail }.into()
}
