//! Setting the inventory adjustment books of a state that did not publish its own outputs (a
//! rebuilt or restored one) from the `inventory_adjustment` postings the postings stream holds,
//! as `reconcile` does for store-days (docs/operations.md, "Reading the outputs back").
//!
//! Per (store, period): the book takes the stream's last `seq` and running totals, and each
//! line takes what the stream posted of it as posted, so that the next posting continues the
//! ERP's sequence and carries exactly what the ERP has not received. Pure: the processor reads
//! the stream and passes what it read in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use tally_state::{Cf, Overlay};

use crate::adjustments::{self, Amounts, LineBook, PeriodBook};
use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::reconcile::{text_decimal, BookOutcome};

/// Periods read per reconciliation at most (stores × periods kept).
const PERIODS_MAX: usize = 10_000_000;
/// Lines read per (store, period) at most.
const LINES_PER_PERIOD_MAX: usize = 1_000_000;

/// The parts of a published inventory adjustment posting that add up (docs/wire-format.md).
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedAdjustment {
    pub store: String,
    pub period: String,
    #[serde(default)]
    pub period_start: Option<NaiveDate>,
    #[serde(default)]
    pub period_end: Option<NaiveDate>,
    #[serde(default)]
    pub belongs_to_period: Option<String>,
    pub seq: u32,
    #[serde(default)]
    pub lines: Vec<ReceivedAdjustmentLine>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedAdjustmentLine {
    pub sku: String,
    pub reason: String,
    #[serde(deserialize_with = "text_decimal")]
    pub units: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub value: Decimal,
    #[serde(deserialize_with = "text_decimal")]
    pub unvalued_units: Decimal,
}

/// What the postings stream holds, folded per (store, period).
#[derive(Debug, Default)]
pub struct ReceivedAdjustments {
    periods: BTreeMap<(String, String), ReceivedPeriod>,
}

#[derive(Debug, Default)]
struct ReceivedPeriod {
    seqs: BTreeSet<u32>,
    first: Option<NaiveDate>,
    last: Option<NaiveDate>,
    posted: Amounts,
    /// (belonging period, sku, reason) → what was posted.
    lines: BTreeMap<(String, String, String), Amounts>,
}

impl ReceivedPeriod {
    fn last_seq(&self) -> u32 {
        self.seqs.last().copied().unwrap_or(0)
    }

    /// Whether every posting from seq 1 to the last is there.
    fn whole(&self) -> bool {
        self.seqs.first() == Some(&1) && self.seqs.len() == self.last_seq() as usize
    }
}

impl ReceivedAdjustments {
    /// Adds one published posting; a seq read before (a re-publish) is skipped. Returns whether
    /// it was new.
    pub fn add(&mut self, posting: ReceivedAdjustment) -> bool {
        let period = self.periods.entry((posting.store, posting.period.clone())).or_default();
        if !period.seqs.insert(posting.seq) {
            return false;
        }
        period.first = period.first.or(posting.period_start);
        period.last = period.last.or(posting.period_end);
        let belongs = posting.belongs_to_period.unwrap_or(posting.period);
        for line in posting.lines {
            let amounts = Amounts { units: line.units, value: line.value, unvalued_units: line.unvalued_units };
            period.posted.add(&amounts);
            period.lines.entry((belongs.clone(), line.sku, line.reason)).or_default().add(&amounts);
        }
        true
    }
}

/// Reconciles every (store, period) that the state holds; returns how each came out. A period
/// whose lines the ERP lacks in part is marked for a posting at `now`. A period only the stream
/// holds (pruned here, or booked before the input stream's first message) is left alone, as
/// `reconcile` leaves such store-days: reconciling it would take back what the ERP rightly has.
/// The stores that have an adjustment book in the state: with the store-days, what a
/// reconciliation of this state needs to read back (`crate::report::store_days`).
pub fn stores_with_books(txn: &Overlay<'_>) -> Result<BTreeSet<String>, TopologyError> {
    let mut stores = BTreeSet::new();
    for (key, _) in txn.scan_prefix(Cf::Aggregates, &adjustments::books_prefix(), PERIODS_MAX)? {
        stores.insert(adjustments::parse_book_key(&key)?.0);
    }
    Ok(stores)
}

pub fn reconcile(
    txn: &mut Overlay<'_>,
    received: &ReceivedAdjustments,
    postings_complete: bool,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String, BookOutcome)>, TopologyError> {
    let mut periods = BTreeSet::new();
    for (key, _) in txn.scan_prefix(Cf::Aggregates, &adjustments::books_prefix(), PERIODS_MAX)? {
        periods.insert(adjustments::parse_book_key(&key)?);
    }
    let mut outcomes = Vec::new();
    for (store, period) in periods {
        let got = received.periods.get(&(store.clone(), period.clone()));
        let outcome = reconcile_period(txn, &store, &period, got, postings_complete, now)?;
        outcomes.push((store, period, outcome));
    }
    Ok(outcomes)
}

fn reconcile_period(
    txn: &mut Overlay<'_>,
    store: &str,
    period: &str,
    received: Option<&ReceivedPeriod>,
    postings_complete: bool,
    now: DateTime<Utc>,
) -> Result<BookOutcome, TopologyError> {
    let book_key = adjustments::book_key(store, period);
    let mut book = read::<PeriodBook>(txn, Cf::Aggregates, &book_key, "adjustment book")?.unwrap_or_default();
    let empty = ReceivedPeriod::default();
    let (set_from, outcome) = match received.filter(|r| !r.seqs.is_empty()) {
        Some(r) if r.whole() => (Some(r), BookOutcome::Matched),
        Some(r) => {
            book.seq = book.seq.max(r.last_seq());
            (None, BookOutcome::Partial)
        }
        None if book.seq == 0 => (Some(&empty), BookOutcome::Unposted),
        None if postings_complete => (Some(&empty), BookOutcome::Reset),
        None => (None, BookOutcome::Unverified),
    };
    if let Some(r) = set_from {
        book.seq = r.last_seq();
        book.posted = r.posted.clone();
        book.first = book.first.or(r.first);
        book.last = book.last.or(r.last);
    }
    let unposted = reconcile_lines(txn, store, period, set_from.map(|r| &r.lines))?;
    txn.put(Cf::Aggregates, book_key, codec::encode(&book));
    if unposted {
        adjustments::mark_dirty(txn, store, period, now)?;
    } else {
        adjustments::clear_dirty(txn, store, period);
    }
    Ok(outcome)
}

/// Sets each line's posted amounts from `received` (when the book is set from it); returns
/// whether some line has amounts not yet posted.
fn reconcile_lines(
    txn: &mut Overlay<'_>,
    store: &str,
    period: &str,
    received: Option<&BTreeMap<(String, String, String), Amounts>>,
) -> Result<bool, TopologyError> {
    let prefix = adjustments::lines_prefix(store, period);
    let mut unposted = false;
    let mut seen = BTreeSet::new();
    for (key, value) in txn.scan_prefix(Cf::Aggregates, &prefix, LINES_PER_PERIOD_MAX)? {
        let line = adjustments::parse_line_key(&key[prefix.len()..])?;
        let mut book: LineBook =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "adjustment line", source })?;
        if let Some(received) = received {
            let posted = received.get(&line).cloned().unwrap_or_default();
            if posted != book.posted {
                book.posted = posted;
                txn.put(Cf::Aggregates, key, codec::encode(&book));
            }
        }
        unposted |= !book.is_posted();
        seen.insert(line);
    }
    // A line the ERP received that this state does not hold (it booked the movement in another
    // period, having seen the store's clock otherwise) gets a record, so the next posting takes
    // it back out.
    for (line, posted) in received.into_iter().flatten().filter(|(line, _)| !seen.contains(*line)) {
        let (belongs, sku, reason) = line;
        let book = LineBook { total: Amounts::default(), posted: posted.clone() };
        unposted |= !book.is_posted();
        txn.put(Cf::Aggregates, adjustments::line_key(store, period, belongs, sku, reason), codec::encode(&book));
    }
    Ok(unposted)
}
