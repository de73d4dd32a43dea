//! The inventory adjustment posting as it goes out on `P.erp.postings.<store>` and to the ERP
//! webhook (docs/wire-format.md, "Inventory adjustment posting"). Amounts are exact decimal
//! text; fields are in alphabetical order, like `posting_body`'s, so JSON and MessagePack
//! maps list them the same way.

use serde::{Deserialize, Serialize};

/// Always the `kind` of an inventory adjustment posting.
pub const KIND: &str = "inventory_adjustment";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentBody {
    /// The closed period whose business days the lines belong to, when they are booked in a
    /// later (open) one; `null` when they belong to `period`.
    pub belongs_to_period: Option<String>,
    pub control: AdjustmentControl,
    /// The booked period's totals over all its adjustment postings so far, this one included.
    pub cumulative: AdjustmentTotals,
    pub currency: String,
    pub id: String,
    /// Always `inventory_adjustment`.
    pub kind: String,
    pub lines: Vec<AdjustmentLine>,
    /// The accounting period the posting is booked in.
    pub period: String,
    /// Its last business day, `YYYY-MM-DD`.
    pub period_end: String,
    /// Its first business day, `YYYY-MM-DD`.
    pub period_start: String,
    /// Gapless from 1 per (store, period).
    pub seq: u32,
    pub store: String,
    /// Always `erp.posting`.
    #[serde(rename = "type")]
    pub record_type: String,
}

/// One sku and reason: the units moved and their value since the previous posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentLine {
    pub reason: String,
    pub sku: String,
    /// Signed stock change: shrink and damage are negative.
    pub units: String,
    /// Of `units`, those whose movement line carried no `unit_cost` (not in `value`).
    pub unvalued_units: String,
    /// Σ qty × unit_cost over the movement lines that carried a cost.
    pub value: String,
}

/// The sums of this posting's lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentControl {
    pub lines: u64,
    pub units: String,
    pub unvalued_units: String,
    pub value: String,
}

/// Running totals of a (store, period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentTotals {
    pub units: String,
    pub unvalued_units: String,
    pub value: String,
}
