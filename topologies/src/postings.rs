//! ERP posting summaries (docs/wire-format.md, "ERP posting"): per (store, business_day), a gapless sequence of delta
//! postings whose sum equals the day's totals.
//!
//! Deltas are not accumulated event by event. Each sku-day and store-day keeps what was already
//! posted; a posting carries the difference between the current totals and that, then records
//! the current totals as posted. So the sum of all postings equals the totals at the last
//! posting by construction, whatever the order of transactions, returns and voids.

use chrono::{DateTime, NaiveDate, Utc};
use tally_state::{Cf, Overlay};

use crate::aggregates::{SkuDay, StoreDay};
use crate::books::PostedLine;
use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::keys;
use crate::posting_body::{Audit, Control, Cumulative, MissingSeqs, PostingBody, PostingLine, TenderDelta};
use crate::tenders_audit;

/// Sku-days read per store-day when building a posting (a store's assortment is bounded).
const SKUS_PER_POSTING_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Interim,
    Final,
    Adjustment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Interim => "interim",
            Kind::Final => "final",
            Kind::Adjustment => "adjustment",
        }
    }
}

/// A posting ready to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Posting {
    pub id: String,
    pub kind: Kind,
    pub body: PostingBody,
}

pub fn posting_id(store: &str, day: NaiveDate, seq: u32) -> String {
    format!("{store}/{}/{seq:04}", day.format("%Y-%m-%d"))
}

/// Notes that a store-day changed at processing time `now`, so an interim or adjustment follows.
pub fn mark_dirty(txn: &mut Overlay<'_>, store: &str, day: NaiveDate, totals: &mut StoreDay, now: DateTime<Utc>) {
    if totals.posting.dirty_since.is_none() {
        totals.posting.dirty_since = Some(now);
        txn.put(Cf::Aggregates, keys::dirty_key(store, day), Vec::new());
    }
}

/// Builds the next posting of a store-day from what changed since the last one, and records
/// it as posted. An interim or adjustment with nothing to say (changes that cancelled out) is
/// not sent and takes no `seq`; the final posting is always sent.
pub fn next_posting(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    totals: &mut StoreDay,
    kind: Kind,
    default_currency: &str,
) -> Result<Option<Posting>, TopologyError> {
    let lines = post_lines(txn, store, day)?;
    let book = &mut totals.posting;
    let mut tenders = Vec::new();
    for (kind, amount) in &totals.tenders {
        let posted = book.tenders.entry(kind.clone()).or_default();
        if *amount != *posted {
            tenders.push(TenderDelta { tender: kind.clone(), amount: (*amount - *posted).to_string() });
            *posted = *amount;
        }
    }
    let unchanged = totals.transactions == book.transactions
        && totals.lines == book.lines
        && totals.net == book.net
        && totals.tax == book.tax;
    book.dirty_since = None;
    txn.delete(Cf::Aggregates, keys::dirty_key(store, day));
    if kind != Kind::Final && lines.is_empty() && tenders.is_empty() && unchanged {
        return Ok(None);
    }
    book.seq += 1;
    let control = Control {
        transactions: totals.transactions - book.transactions,
        lines: totals.lines - book.lines,
        net: (totals.net - book.net).to_string(),
        tax: (totals.tax - book.tax).to_string(),
    };
    book.transactions = totals.transactions;
    book.lines = totals.lines;
    book.net = totals.net;
    book.tax = totals.tax;
    if kind == Kind::Final {
        book.final_sent = true;
    }
    let id = posting_id(store, day, book.seq);
    let body = PostingBody {
        record_type: "erp.posting".into(),
        id: id.clone(),
        store: store.into(),
        business_day: day.format("%Y-%m-%d").to_string(),
        seq: totals.posting.seq,
        kind: kind.as_str().into(),
        currency: totals.currency.as_deref().unwrap_or(default_currency).into(),
        lines,
        tenders,
        control,
        cumulative: Cumulative {
            transactions: totals.transactions,
            net: totals.net.to_string(),
            tax: totals.tax.to_string(),
        },
        audit: (kind == Kind::Final).then(|| audit(totals)),
    };
    Ok(Some(Posting { id, kind, body }))
}

/// The per-sku deltas since the last posting; marks them posted.
fn post_lines(txn: &mut Overlay<'_>, store: &str, day: NaiveDate) -> Result<Vec<PostingLine>, TopologyError> {
    let rows = txn.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(store, day), SKUS_PER_POSTING_MAX)?;
    let mut lines = Vec::new();
    for (key, value) in rows {
        let mut sku: SkuDay =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "sku-day totals", source })?;
        let current = postable(&sku);
        if current == sku.posted {
            continue;
        }
        let name = keys::parse_sku_day_sku(&key).unwrap_or_default();
        lines.push(PostingLine {
            sku: name,
            qty: (current.qty - sku.posted.qty).normalize().to_string(),
            gross: (current.gross - sku.posted.gross).to_string(),
            discount: (current.discount - sku.posted.discount).to_string(),
            net: (current.net - sku.posted.net).to_string(),
            tax: (current.tax - sku.posted.tax).to_string(),
        });
        sku.posted = current;
        txn.put(Cf::Aggregates, key, codec::encode(&sku));
    }
    Ok(lines)
}

/// What a sku-day's postings must add up to: its current totals in the posted line's terms.
pub fn postable(sku: &SkuDay) -> PostedLine {
    PostedLine {
        qty: sku.sold_units - sku.returned_units,
        gross: sku.gross,
        discount: sku.discount,
        net: sku.net,
        tax: sku.tax,
    }
}

/// The final posting's comparison with the POS's own day-close (POS minus computed).
pub fn audit(totals: &StoreDay) -> Audit {
    let missing_register_seqs = totals
        .registers
        .iter()
        .filter_map(|(register, seqs)| {
            let gaps = seqs.missing(MISSING_SEQS_MAX);
            (!gaps.is_empty()).then(|| MissingSeqs { register: register.clone(), seqs: gaps })
        })
        .collect();
    let close = totals.day_close.as_ref();
    Audit {
        pos_transaction_count: close.map(|close| close.transaction_count),
        tenders_over_short: close.map(|close| tenders_audit::over_short(close, &totals.tenders)).unwrap_or_default(),
        pos_net_sales: close.map(|close| close.net_sales.to_string()),
        pos_tax: close.map(|close| close.tax.to_string()),
        difference_transactions: close.map(|close| close.transaction_count as i64 - totals.transactions),
        difference_net: close.map(|close| (close.net_sales - totals.net).to_string()),
        difference_tax: close.map(|close| (close.tax - totals.tax).to_string()),
        missing_register_seqs,
    }
}

/// Missing seqs listed per register at most; a register that restarted its numbering would
/// otherwise list millions.
const MISSING_SEQS_MAX: usize = 1000;

/// The store-days with unposted changes, in key order.
pub fn dirty_days(txn: &Overlay<'_>, limit: usize) -> Result<Vec<(String, NaiveDate)>, TopologyError> {
    let rows = txn.scan_prefix(Cf::Aggregates, &keys::dirty_prefix(), limit)?;
    Ok(rows.iter().filter_map(|(key, _)| keys::parse_dirty_key(key)).collect())
}

/// Reads a store-day's totals (present for any day that has a dirty entry).
pub fn load_store_day(txn: &Overlay<'_>, store: &str, day: NaiveDate) -> Result<StoreDay, TopologyError> {
    Ok(read::<StoreDay>(txn, Cf::Aggregates, &keys::store_day(store, day), "store-day totals")?.unwrap_or_default())
}
