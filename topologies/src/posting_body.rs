//! The ERP posting as it goes out on `P.erp.postings.<store>` and to the ERP webhook
//! (docs/wire-format.md, "ERP posting"). Amounts are exact decimal text.
//!
//! Every struct lists its fields in alphabetical order: earlier versions built postings as JSON
//! maps, which serialize their keys sorted, so this order keeps a posting's bytes the same
//! across an upgrade (the ERP may compare a re-sent posting with the one it has).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingBody {
    /// Only on the final posting: the comparison with the POS's own day close.
    pub audit: Option<Audit>,
    pub business_day: String,
    pub control: Control,
    pub cumulative: Cumulative,
    pub currency: String,
    pub id: String,
    /// `interim`, `final` or `adjustment`.
    pub kind: String,
    pub lines: Vec<PostingLine>,
    pub seq: u32,
    pub store: String,
    pub tenders: Vec<TenderDelta>,
    /// Always `erp.posting`.
    #[serde(rename = "type")]
    pub record_type: String,
}

/// One sku's change since the store-day's previous posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingLine {
    pub discount: String,
    pub gross: String,
    pub net: String,
    pub qty: String,
    pub sku: String,
    pub tax: String,
}

/// One tender type's change since the previous posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenderDelta {
    pub amount: String,
    #[serde(rename = "type")]
    pub tender: String,
}

/// The store-day's change since the previous posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub lines: i64,
    pub net: String,
    pub tax: String,
    pub transactions: i64,
}

/// The store-day's totals as of this posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cumulative {
    pub net: String,
    pub tax: String,
    pub transactions: i64,
}

/// POS minus computed; the POS figures are `null` when no day close arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub difference_net: Option<String>,
    pub difference_tax: Option<String>,
    pub difference_transactions: Option<i64>,
    pub missing_register_seqs: Vec<MissingSeqs>,
    pub pos_net_sales: Option<String>,
    pub pos_tax: Option<String>,
    pub pos_transaction_count: Option<u64>,
    /// Per tender type, the day close's amount against the computed one. Only when the day
    /// close listed tenders: absent otherwise, so that such postings keep their bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenders_over_short: Vec<TenderOverShort>,
}

/// One tender type's over/short (docs/wire-format.md, "ERP posting"): what the POS's day close
/// says was tendered minus what tally computed from the day's transactions, voids applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenderOverShort {
    pub computed_amount: String,
    pub over_short: String,
    pub pos_amount: String,
    #[serde(rename = "type")]
    pub tender: String,
}

/// A register's sequence numbers that never arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingSeqs {
    pub register: String,
    pub seqs: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Proves a posting written as a JSON map by an earlier version reads back into the typed
    // body and is written again byte for byte, final (with an audit) and interim (null audit).
    #[test]
    fn postings_keep_their_bytes() {
        let final_posting = json!({
            "type": "erp.posting", "id": "0042/2026-11-27/0003", "store": "0042",
            "business_day": "2026-11-27", "seq": 3, "kind": "final", "currency": "USD",
            "lines": [{"sku": "100234", "qty": "-1", "gross": "-4.99", "discount": "0.00",
                       "net": "-4.99", "tax": "-0.40"}],
            "tenders": [{"type": "cash", "amount": "-5.39"}],
            "control": {"transactions": 1, "lines": 1, "net": "-4.99", "tax": "-0.40"},
            "cumulative": {"transactions": 12, "net": "120.00", "tax": "9.60"},
            "audit": {"pos_transaction_count": 12, "pos_net_sales": "120.00", "pos_tax": "9.60",
                      "difference_transactions": 0, "difference_net": "0.00", "difference_tax": "0.00",
                      "missing_register_seqs": [{"register": "R1", "seqs": [4, 5]}]},
        });
        let mut interim = final_posting.clone();
        interim["kind"] = json!("interim");
        interim["audit"] = json!(null);
        for earlier in [final_posting, interim] {
            let bytes = serde_json::to_vec(&earlier).unwrap();
            let typed: PostingBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(serde_json::to_vec(&typed).unwrap(), bytes);
        }
    }
}
