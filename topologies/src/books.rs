//! The posting bookkeeping kept in state: what each sku-day has posted and where each
//! store-day's postings stand. The postings stage (`postings`) reads and advances them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
