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
//! What waits to be posted is kept per line (store, booked period, belonging period, sku,
//! reason) and deleted when posted, in the same batch that enqueues the posting; a period's
//! book keeps its last `seq` and running totals. The stage never reads the clock: the tick
//! passes processing time in. It must never post a line twice nor skip a `seq`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_state::key::{KeyReader, KeyWriter};
use tally_state::{Cf, Overlay};

use crate::adjustment_body::{AdjustmentBody, AdjustmentControl, AdjustmentLine, AdjustmentTotals, KIND};
use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::fiscal::Period;
use crate::keys::{TAG_ADJ_BOOK, TAG_ADJ_DIRTY, TAG_ADJ_PENDING};
use crate::model::InventoryMovement;

/// Lines posted per store and tick at most; the rest follow at the next tick.
const LINES_PER_STORE_MAX: usize = 50_000;

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
    fn add(&mut self, other: &Amounts) {
        self.units += other.units;
        self.value += other.value;
        self.unvalued_units += other.unvalued_units;
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

/// Adds an adjustment movement's lines to what waits to be posted, and notes the store as
/// having adjustments to post since processing time `now`.
pub fn record(
    txn: &mut Overlay<'_>,
    store: &str,
    booked: &Period,
    belongs: &Period,
    movement: &InventoryMovement,
    now: DateTime<Utc>,
) -> Result<(), TopologyError> {
    assert!(movement.reason.is_adjustment(), "only adjustment movements are booked");
    for line in &movement.lines {
        let key = pending_key(store, &booked.id, &belongs.id, &line.sku, movement.reason.as_str());
        let mut pending = read::<Amounts>(txn, Cf::Aggregates, &key, "pending adjustment")?.unwrap_or_default();
        pending.units += line.qty;
        match line.unit_cost {
            Some(cost) => pending.value += line.qty * cost,
            None => pending.unvalued_units += line.qty,
        }
        txn.put(Cf::Aggregates, key, codec::encode(&pending));
    }
    let book_key = book_key(store, &booked.id);
    if txn.get(Cf::Aggregates, &book_key)?.is_none() {
        let book = PeriodBook { first: Some(booked.first), last: Some(booked.last), ..PeriodBook::default() };
        txn.put(Cf::Aggregates, book_key, codec::encode(&book));
    }
    let dirty = dirty_key(store);
    if txn.get(Cf::Aggregates, &dirty)?.is_none() {
        txn.put(Cf::Aggregates, dirty, now.timestamp_micros().to_be_bytes().to_vec());
    }
    Ok(())
}

/// The stores whose oldest unposted adjustment is at least `interval` old at `now`, at most
/// `limit` of them.
pub fn due_stores(
    txn: &Overlay<'_>,
    now: DateTime<Utc>,
    interval: chrono::Duration,
    limit: usize,
) -> Result<Vec<(String, DateTime<Utc>)>, TopologyError> {
    let prefix = KeyWriter::new().tag(TAG_ADJ_DIRTY).finish();
    let mut due = Vec::new();
    for (key, value) in txn.scan_prefix(Cf::Aggregates, &prefix, usize::MAX)? {
        let store = KeyReader::new(&key[prefix.len()..]).str().map_err(|e| corrupt(format!("dirty key: {e}")))?;
        let micros: [u8; 8] = value.as_slice().try_into().map_err(|_| corrupt("dirty value".into()))?;
        let since = DateTime::from_timestamp_micros(i64::from_be_bytes(micros))
            .ok_or_else(|| corrupt("dirty time".into()))?;
        if since + interval <= now {
            due.push((store, since));
            if due.len() == limit {
                break;
            }
        }
    }
    Ok(due)
}

/// Builds the store's postings from what waits, one per (booked period, belonging period), in
/// period order, and records them as posted: the waiting lines are deleted and each period's
/// book takes the next `seq`. Lines that cancelled out are not posted, and a posting whose
/// lines all did is not sent and takes no `seq`.
pub fn post_store(
    txn: &mut Overlay<'_>,
    store: &str,
    currency: &str,
) -> Result<Vec<AdjustmentPosting>, TopologyError> {
    let prefix = KeyWriter::new().tag(TAG_ADJ_PENDING).str(store).finish();
    let rows = txn.scan_prefix(Cf::Aggregates, &prefix, LINES_PER_STORE_MAX)?;
    if rows.len() < LINES_PER_STORE_MAX {
        txn.delete(Cf::Aggregates, dirty_key(store));
    }
    let mut groups: Vec<((String, String), Vec<(String, String, Amounts)>)> = Vec::new();
    for (key, value) in rows {
        let mut reader = KeyReader::new(&key[prefix.len()..]);
        let mut next = || reader.str().map_err(|e| corrupt(format!("pending adjustment key: {e}")));
        let (booked, belongs, sku, reason) = (next()?, next()?, next()?, next()?);
        let amounts: Amounts =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "pending adjustment", source })?;
        txn.delete(Cf::Aggregates, key);
        if amounts.is_zero() {
            continue;
        }
        match groups.last_mut() {
            Some((group, lines)) if group.0 == booked && group.1 == belongs => lines.push((sku, reason, amounts)),
            _ => groups.push(((booked, belongs), vec![(sku, reason, amounts)])),
        }
    }
    let mut postings = Vec::new();
    for ((booked, belongs), lines) in groups {
        postings.push(post_group(txn, store, currency, &booked, &belongs, lines)?);
    }
    Ok(postings)
}

fn post_group(
    txn: &mut Overlay<'_>,
    store: &str,
    currency: &str,
    booked: &str,
    belongs: &str,
    lines: Vec<(String, String, Amounts)>,
) -> Result<AdjustmentPosting, TopologyError> {
    let book_key = book_key(store, booked);
    let mut book = read::<PeriodBook>(txn, Cf::Aggregates, &book_key, "adjustment book")?.unwrap_or_default();
    let mut sum = Amounts::default();
    let lines: Vec<AdjustmentLine> = lines
        .into_iter()
        .map(|(sku, reason, amounts)| {
            sum.add(&amounts);
            let totals = amounts.totals();
            AdjustmentLine { reason, sku, units: totals.units, unvalued_units: totals.unvalued_units, value: totals.value }
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

fn pending_key(store: &str, booked: &str, belongs: &str, sku: &str, reason: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_PENDING).str(store).str(booked).str(belongs).str(sku).str(reason).finish()
}

fn book_key(store: &str, period: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_BOOK).str(store).str(period).finish()
}

fn dirty_key(store: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_ADJ_DIRTY).str(store).finish()
}

/// A (store, period)'s book, for reports and tests.
pub fn book(txn: &Overlay<'_>, store: &str, period: &str) -> Result<Option<PeriodBook>, TopologyError> {
    read(txn, Cf::Aggregates, &book_key(store, period), "adjustment book")
}

fn corrupt(detail: String) -> TopologyError {
    tally_state::StateError::Corrupt { cf: Cf::Aggregates, detail }.into()
}
