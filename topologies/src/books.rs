//! The posting bookkeeping kept in state: what each sku-day has posted and where each
//! store-day's postings stand. The postings stage (`postings`) reads and advances them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pack::{Pack, Packer, Sink};

/// What a sku-day has already posted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostedLine {
    #[serde(with = "crate::stored_decimal::one")]
    pub qty: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub gross: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub discount: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub net: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
}

/// The posting bookkeeping of a store-day, kept in its `StoreDay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostingBook {
    /// The last posting's `seq`; 0 before the first.
    pub seq: u32,
    pub final_sent: bool,
    /// Processing time of the first change not yet posted.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub dirty_since: Option<DateTime<Utc>>,
    pub transactions: i64,
    pub lines: i64,
    #[serde(with = "crate::stored_decimal::one")]
    pub net: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
    #[serde(with = "crate::stored_decimal::map")]
    pub tenders: BTreeMap<String, Decimal>,
}

// Packed by hand, field by field in declaration order as serde's derive writes them: a field
// added to the struct must be added here too (`pack_tests` fails until it is).

impl Pack for PostedLine {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(5);
        for amount in [&self.qty, &self.gross, &self.discount, &self.net, &self.tax] {
            out.decimal(amount);
        }
    }
}

impl Pack for PostingBook {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(8);
        out.uint(u64::from(self.seq));
        out.bool(self.final_sent);
        out.micros_option(&self.dirty_since);
        out.int(self.transactions);
        out.int(self.lines);
        out.decimal(&self.net);
        out.decimal(&self.tax);
        out.decimal_map(&self.tenders, String::as_str);
    }
}
