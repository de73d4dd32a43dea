//! Sales audit of tenders (docs/wire-format.md, "ERP posting"; docs/http-api.md): per tender
//! type, the POS's own day-close amount against the amount tally computed from the day's
//! transactions, voids applied. Over/short = day close − computed, exact; positive is over.
//!
//! Pure arithmetic over a store-day's totals; it reads and writes no state.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::model::DayClose;
use crate::posting_body::TenderOverShort;

/// Over/short per tender type, in type order. Empty when the day close lists no tenders (a POS
/// that does not report them has nothing to audit). Otherwise every type the day close names
/// (its entries of one type summed), and every type computed with a non-zero amount that the
/// day close leaves out, at 0 on the side that lacks it.
pub fn over_short(close: &DayClose, computed: &BTreeMap<String, Decimal>) -> Vec<TenderOverShort> {
    if close.tenders.is_empty() {
        return Vec::new();
    }
    // Decoding bounds every amount to a quadrillion and a record's tenders to `max_lines`, so
    // these sums and differences stay far below Decimal's limit (its operators panic beyond).
    let mut pos: BTreeMap<&str, Decimal> = BTreeMap::new();
    for tender in &close.tenders {
        *pos.entry(tender.kind.as_str()).or_default() += tender.amount;
    }
    let mut kinds: Vec<&str> = pos.keys().copied().collect();
    kinds.extend(computed.iter().filter(|(_, amount)| !amount.is_zero()).map(|(kind, _)| kind.as_str()));
    kinds.sort_unstable();
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| {
            let pos_amount = pos.get(kind).copied().unwrap_or_default();
            let computed_amount = computed.get(kind).copied().unwrap_or_default();
            TenderOverShort {
                computed_amount: computed_amount.to_string(),
                over_short: (pos_amount - computed_amount).to_string(),
                pos_amount: pos_amount.to_string(),
                tender: kind.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tender;

    fn close(tenders: &[(&str, &str)]) -> DayClose {
        DayClose {
            id: "CLOSE-0042-2026-11-27".into(),
            store: "0042".into(),
            business_day: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            occurred_at: chrono::DateTime::parse_from_rfc3339("2026-11-27T22:05:00-05:00").unwrap(),
            transaction_count: 3,
            net_sales: Decimal::ZERO,
            tax: Decimal::ZERO,
            tenders: tenders
                .iter()
                .map(|(kind, amount)| Tender { kind: kind.to_string(), amount: amount.parse().unwrap() })
                .collect(),
        }
    }

    fn computed(amounts: &[(&str, &str)]) -> BTreeMap<String, Decimal> {
        amounts.iter().map(|(kind, amount)| (kind.to_string(), amount.parse().unwrap())).collect()
    }

    fn rows(list: &[TenderOverShort]) -> Vec<(&str, &str, &str, &str)> {
        list.iter()
            .map(|r| (r.tender.as_str(), r.pos_amount.as_str(), r.computed_amount.as_str(), r.over_short.as_str()))
            .collect()
    }

    // Proves over/short is day close minus computed per type, exactly (no float rounding on
    // 0.1 + 0.2), with a type's day-close entries summed, a type missing on either side at 0,
    // and a computed type netted to zero by voids left out unless the day close names it.
    #[test]
    fn over_short_is_day_close_minus_computed_per_type() {
        let close = close(&[("card", "100.10"), ("cash", "0.1"), ("cash", "0.2"), ("gift", "5.00")]);
        let computed = computed(&[("card", "100.00"), ("cash", "0.30"), ("check", "12.50"), ("voucher", "0.00")]);
        assert_eq!(
            rows(&over_short(&close, &computed)),
            vec![
                ("card", "100.10", "100.00", "0.10"),
                ("cash", "0.3", "0.30", "0.00"),
                ("check", "0", "12.50", "-12.50"),
                ("gift", "5.00", "0", "5.00"),
            ]
        );
    }

    // Proves a day close without tenders audits nothing, whatever was computed, so postings of
    // such days keep the bytes they had before this audit existed.
    #[test]
    fn no_day_close_tenders_no_rows() {
        assert!(over_short(&close(&[]), &computed(&[("card", "10.00")])).is_empty());
    }
}
