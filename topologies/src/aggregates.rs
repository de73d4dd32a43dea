//! The running aggregates and bookkeeping records that tally keeps in state, and how one
//! accepted record changes them.
//!
//! Values are MessagePack arrays of the fields in declaration order (written by this version),
//! or maps of named fields (written by earlier ones, still read). A field is added at the end,
//! with a default, so that values written before it still decode. Every amount is a `Decimal`;
//! a reversal (post-void) applies the same arithmetic with the opposite sign, so a void
//! followed by its transaction nets to exactly zero.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::books::{PostedLine, PostingBook};
use crate::drift::{AlertState, DriftFigures};
use crate::model::{DayClose, Fulfillment, InventoryMovement, MovementReason, PosTransaction};
use crate::pack::{Pack, Packer, Sink, VariantName};

/// Totals per (store, business_day).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreDay {
    pub currency: Option<String>,
    /// Transactions with lines, after voids (a post-void counts −1).
    pub transactions: i64,
    /// Their lines, after voids.
    pub lines: i64,
    #[serde(with = "crate::stored_decimal::one")]
    pub gross: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub discount: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub net: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
    #[serde(with = "crate::stored_decimal::map")]
    pub tenders: BTreeMap<String, Decimal>,
    /// Per register, the `seq` numbers seen this day.
    pub registers: BTreeMap<String, SeqSet>,
    /// Inventory units per movement reason, all skus together.
    #[serde(with = "crate::stored_decimal::map")]
    pub inventory: BTreeMap<MovementReason, Decimal>,
    pub duplicates: u64,
    pub conflicts: u64,
    /// The POS's own totals, when its day-close arrived.
    pub day_close: Option<DayClose>,
    /// Whether the day was finalized (final posting sent, final alerts evaluated).
    pub finalized: bool,
    /// What was already posted to the ERP.
    pub posting: PostingBook,
    /// Order fulfillments of the day (docs/wire-format.md, "Order fulfillment"); empty in
    /// state written before orders existed.
    pub orders: OrderTotals,
}

/// The order fulfillments of a store-day: how many, and their units per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderTotals {
    pub count: u64,
    #[serde(with = "crate::stored_decimal::map")]
    pub units: BTreeMap<Fulfillment, Decimal>,
}

/// Totals per (store, business_day, sku): the POS side and the inventory side of drift.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkuDay {
    #[serde(with = "crate::stored_decimal::one")]
    pub sold_units: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub returned_units: Decimal,
    /// Returned units with `restock: true`.
    #[serde(with = "crate::stored_decimal::one")]
    pub restocked_units: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub gross: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub discount: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub net: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
    /// Signed stock deltas per movement reason.
    #[serde(with = "crate::stored_decimal::map")]
    pub inventory: BTreeMap<MovementReason, Decimal>,
    /// The drift alert of this key.
    pub alert: AlertState,
    /// POS transactions of this key that no inventory movement referenced yet, newest first.
    pub unmatched: Vec<Unmatched>,
    /// What was already posted to the ERP.
    pub posted: PostedLine,
    /// Units of order fulfillments per kind, positive (docs/wire-format.md, "Order
    /// fulfillment"). Empty when no order touched the key, and in state written before orders
    /// existed; then every figure and output of the key is what it was without orders.
    #[serde(with = "crate::stored_decimal::map")]
    pub orders: BTreeMap<Fulfillment, Decimal>,
}

/// A POS transaction (or an order) awaiting its inventory movement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmatched {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub id: String,
    /// For an order: the units of this key it expects to leave the shelf (shipped or picked
    /// up), which the KPIs count as lag while the order is within the settle time. A
    /// transaction's are read from its dedupe entry instead, so it has none and is stored as
    /// before orders existed. Left out when `None`, so it must stay the last field: values
    /// are stored by position.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::stored_decimal::option")]
    pub order_units: Option<Decimal>,
}

/// Unmatched transactions kept per key. Alerts show the newest 20; more are kept so that late
/// movements for the newest ones still leave 20 to show. Beyond this bound (a key with over
/// 100 transactions awaiting their movement at once) the oldest ids are dropped.
pub const UNMATCHED_KEEP: usize = 100;
pub const UNMATCHED_SHOWN: usize = 20;

impl SkuDay {
    /// What the POS and the orders say left the shelf: sold − returned with restock, plus
    /// shipped and picked-up order units − order units returned to the store
    /// (docs/wire-format.md, "Drift alert").
    pub fn expected_units(&self) -> Decimal {
        self.pos_expected_units() + self.order_expected_units()
    }

    /// The POS's share of `expected_units`: sold − returned with restock.
    pub fn pos_expected_units(&self) -> Decimal {
        self.sold_units - self.restocked_units
    }

    /// The orders' share of `expected_units`.
    pub fn order_expected_units(&self) -> Decimal {
        self.orders.iter().map(|(kind, units)| kind.expected_sign() * *units).sum()
    }

    /// `expected_units` by source, `(pos, orders)`, when an order touched the key; `None`
    /// otherwise, so that outputs of keys without orders stay as they were.
    pub fn expected_by_source(&self) -> Option<(Decimal, Decimal)> {
        (!self.orders.is_empty()).then(|| (self.pos_expected_units(), self.order_expected_units()))
    }

    /// What inventory recorded leaving: − Σ qty of `sale` and `return` movements.
    pub fn recorded_units(&self) -> Decimal {
        -self.inventory.iter().filter(|(reason, _)| reason.is_pos_caused()).map(|(_, units)| *units).sum::<Decimal>()
    }

    pub fn drift_units(&self) -> Decimal {
        self.expected_units() - self.recorded_units()
    }
}

/// The latest unit price of a sku in a store, by event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestPrice {
    #[serde(with = "crate::stored_decimal::one")]
    pub unit_price: Decimal,
    /// Stored as an integer: state values are decoded on every touch, timestamps as text are not cheap.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

impl Pack for LatestPrice {}

/// The `seq` numbers seen for one register in one day, as sorted disjoint inclusive ranges,
/// so a day of thousands of consecutive numbers costs one pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSet(pub Vec<(u64, u64)>);

impl SeqSet {
    pub fn insert(&mut self, seq: u64) {
        let ranges = &mut self.0;
        let at = ranges.partition_point(|&(_, hi)| hi.saturating_add(1) < seq);
        if at < ranges.len() && ranges[at].0 <= seq.saturating_add(1) {
            let range = &mut ranges[at];
            range.0 = range.0.min(seq);
            range.1 = range.1.max(seq);
            // The widened range may now touch the next one.
            if at + 1 < ranges.len() && ranges[at + 1].0 <= ranges[at].1.saturating_add(1) {
                ranges[at].1 = ranges[at].1.max(ranges[at + 1].1);
                ranges.remove(at + 1);
            }
        } else {
            ranges.insert(at, (seq, seq));
        }
    }

    /// The numbers missing between the lowest and the highest seen, capped at `limit`.
    pub fn missing(&self, limit: usize) -> Vec<u64> {
        self.0.windows(2).flat_map(|pair| (pair[0].1 + 1)..pair[1].0).take(limit).collect()
    }
}

/// `Dedupe` value: what tally remembers of an accepted record id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// Fingerprint of the record's normalized content: equal → duplicate, else conflict.
    pub fingerprint: u64,
    pub business_day: NaiveDate,
    /// A transaction with lines, kept so that a later post-void can reverse it.
    pub transaction: Option<PosTransaction>,
    /// The id of the void that cancelled it, once voided.
    pub voided_by: Option<String>,
    /// How it arrived (`lineage`); absent in entries written by earlier versions.
    #[serde(default)]
    pub arrival: Option<crate::lineage::Arrival>,
    /// The skus of an order fulfillment, for its trace (the alerts that listed it); empty for
    /// every other record and then left out, so it must stay the last field: values are stored
    /// by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_skus: Vec<String>,
}

/// A [`Seen`] read only for its business day, skipping the rest (a whole transaction) without
/// decoding it. Its fields are `Seen`'s, in the same order, so it reads either encoding.
#[derive(Debug, Deserialize)]
pub struct SeenDay {
    #[serde(rename = "fingerprint")]
    _fingerprint: serde::de::IgnoredAny,
    pub business_day: NaiveDate,
    #[serde(rename = "transaction")]
    _transaction: serde::de::IgnoredAny,
    #[serde(rename = "voided_by")]
    _voided_by: serde::de::IgnoredAny,
    #[serde(rename = "arrival", default)]
    _arrival: Option<serde::de::IgnoredAny>,
    #[serde(rename = "order_skus", default)]
    _order_skus: Option<serde::de::IgnoredAny>,
}

/// What an output is (docs/wire-format.md, "Outputs" and "The dead-letter queue"); the
/// publisher acks, counts and sizes each kind its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OutputKind {
    Alert,
    Posting,
    Dlq,
}

impl OutputKind {
    /// The `kind` label of `tally_outputs_published_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Alert => "alert",
            OutputKind::Posting => "posting",
            OutputKind::Dlq => "dlq",
        }
    }
}

/// `Outbox` value: one output message waiting for JetStream's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub subject: String,
    pub msg_id: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Always set by this version. `None` only in entries an earlier version left in the outbox
    /// (they had no kind); [`OutboxEntry::kind`] then reads it from the subject.
    #[serde(default)]
    pub kind: Option<OutputKind>,
}

impl Pack for OutboxEntry {}

impl OutboxEntry {
    pub fn kind(&self) -> OutputKind {
        self.kind.unwrap_or_else(|| legacy_kind(&self.subject))
    }
}

/// The kind of an entry from before kinds were stored, by the subject families of
/// docs/wire-format.md ("Subjects and streams").
fn legacy_kind(subject: &str) -> OutputKind {
    if subject.contains(".dlq.") {
        OutputKind::Dlq
    } else if subject.contains(".alerts.") {
        OutputKind::Alert
    } else {
        OutputKind::Posting
    }
}

impl StoreDay {
    /// Adds (`sign` = 1) or reverses (`sign` = −1) a transaction with lines.
    pub fn apply_transaction(&mut self, tx: &PosTransaction, sign: Decimal) {
        self.currency.get_or_insert_with(|| tx.currency.clone());
        let count = if sign.is_sign_negative() { -1 } else { 1 };
        self.transactions += count;
        self.lines += count * tx.lines.len() as i64;
        for line in &tx.lines {
            self.gross += sign * line.gross();
            self.discount += sign * line.discount;
            self.net += sign * line.net();
            self.tax += sign * line.tax;
        }
        for tender in &tx.tenders {
            *self.tenders.entry(tender.kind.clone()).or_default() += sign * tender.amount;
        }
    }

    /// Remembers that a register's `seq` was seen (voids do not unsee it).
    pub fn note_seq(&mut self, tx: &PosTransaction) {
        if let (Some(register), Some(seq)) = (&tx.register, tx.seq) {
            self.registers.entry(register.clone()).or_default().insert(seq);
        }
    }

    pub fn apply_order(&mut self, order: &crate::model::OrderFulfillment) {
        self.orders.count += 1;
        let total: Decimal = order.lines.iter().map(|line| line.qty).sum();
        *self.orders.units.entry(order.fulfillment).or_default() += total;
    }

    pub fn apply_movement(&mut self, movement: &InventoryMovement) {
        let total: Decimal = movement.lines.iter().map(|line| line.qty).sum();
        *self.inventory.entry(movement.reason).or_default() += total;
    }
}

impl SkuDay {
    /// Adds (`sign` = 1) or reverses (`sign` = −1) one POS line of this sku.
    pub fn apply_line(&mut self, line: &crate::model::PosLine, sign: Decimal) {
        let qty = sign * line.qty;
        if line.qty.is_sign_positive() {
            self.sold_units += qty;
        } else {
            self.returned_units -= qty;
            if line.restock {
                self.restocked_units -= qty;
            }
        }
        self.gross += sign * line.gross();
        self.discount += sign * line.discount;
        self.net += sign * line.net();
        self.tax += sign * line.tax;
    }

    pub fn apply_movement_qty(&mut self, reason: MovementReason, qty: Decimal) {
        *self.inventory.entry(reason).or_default() += qty;
    }

    /// Adds one order line's units of this sku.
    pub fn apply_order_qty(&mut self, kind: Fulfillment, qty: Decimal) {
        *self.orders.entry(kind).or_default() += qty;
    }

    /// Remembers a transaction that moved this key's expected units, newest first, bounded.
    pub fn note_unmatched(&mut self, id: &str, at: DateTime<FixedOffset>) {
        self.note_unmatched_with(id, at, None);
    }

    /// The same for an order, with the units of this key it expects to leave the shelf (added
    /// up when the order names the sku on several lines).
    pub fn note_unmatched_order(&mut self, id: &str, at: DateTime<FixedOffset>, units: Decimal) {
        self.note_unmatched_with(id, at, Some(units));
    }

    fn note_unmatched_with(&mut self, id: &str, at: DateTime<FixedOffset>, order_units: Option<Decimal>) {
        let at = at.to_utc();
        if let Some(known) = self.unmatched.iter_mut().find(|u| u.id == id) {
            if let (Some(sum), Some(more)) = (known.order_units.as_mut(), order_units) {
                *sum += more;
            }
            return;
        }
        let position = self.unmatched.partition_point(|u| (u.at, u.id.as_str()) > (at, id));
        self.unmatched.insert(position, Unmatched { at, id: id.to_string(), order_units });
        self.unmatched.truncate(UNMATCHED_KEEP);
    }

    pub fn forget_unmatched(&mut self, id: &str) {
        self.unmatched.retain(|u| u.id != id);
    }

    /// The key's drift figures at `unit_price` (docs/wire-format.md, "Drift alert").
    pub fn drift_figures(&self, unit_price: Option<Decimal>) -> DriftFigures {
        let mut figures = DriftFigures::new(self.expected_units(), self.recorded_units(), unit_price);
        figures.expected_by_source = self.expected_by_source();
        figures
    }

    pub fn unmatched_ids(&self) -> Vec<String> {
        self.unmatched.iter().take(UNMATCHED_SHOWN).map(|u| u.id.clone()).collect()
    }
}

// Packed by hand, field by field in declaration order as serde's derive writes them: a field
// added to the struct must be added here too (`pack_tests` fails until it is).

impl Pack for SkuDay {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(12);
        for amount in [
            &self.sold_units,
            &self.returned_units,
            &self.restocked_units,
            &self.gross,
            &self.discount,
            &self.net,
            &self.tax,
        ] {
            out.decimal(amount);
        }
        out.decimal_map(&self.inventory, |kind| kind.variant_name());
        self.alert.pack(out);
        out.array(self.unmatched.len());
        for unmatched in &self.unmatched {
            unmatched.pack(out);
        }
        self.posted.pack(out);
        out.decimal_map(&self.orders, |kind| kind.variant_name());
    }
}

impl Pack for Unmatched {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(if self.order_units.is_some() { 3 } else { 2 });
        out.micros(&self.at);
        out.str(&self.id);
        if let Some(units) = &self.order_units {
            out.decimal(units);
        }
    }
}

impl Pack for StoreDay {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(16);
        match &self.currency {
            Some(currency) => out.str(currency),
            None => out.nil(),
        }
        out.int(self.transactions);
        out.int(self.lines);
        for amount in [&self.gross, &self.discount, &self.net, &self.tax] {
            out.decimal(amount);
        }
        out.decimal_map(&self.tenders, String::as_str);
        out.map(self.registers.len());
        for (register, seen) in &self.registers {
            out.str(register);
            seen.pack(out);
        }
        out.decimal_map(&self.inventory, |kind| kind.variant_name());
        out.uint(self.duplicates);
        out.uint(self.conflicts);
        match &self.day_close {
            Some(close) => out.serde(close),
            None => out.nil(),
        }
        out.bool(self.finalized);
        self.posting.pack(out);
        self.orders.pack(out);
    }
}

impl Pack for SeqSet {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(self.0.len());
        for &(low, high) in &self.0 {
            out.array(2);
            out.uint(low);
            out.uint(high);
        }
    }
}

impl Pack for OrderTotals {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(2);
        out.uint(self.count);
        out.decimal_map(&self.units, |kind| kind.variant_name());
    }
}

impl Pack for Seen {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(if self.order_skus.is_empty() { 5 } else { 6 });
        out.uint(self.fingerprint);
        out.date(&self.business_day);
        match &self.transaction {
            Some(tx) => tx.pack(out),
            None => out.nil(),
        }
        out.str_option(&self.voided_by);
        match &self.arrival {
            Some(arrival) => arrival.pack(out),
            None => out.nil(),
        }
        if !self.order_skus.is_empty() {
            out.array(self.order_skus.len());
            for sku in &self.order_skus {
                out.str(sku);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use proptest::prelude::*;

    proptest! {
        // Proves SeqSet holds exactly the inserted numbers, whatever the insertion order.
        #[test]
        fn seq_set_holds_exactly_what_was_inserted(seqs in proptest::collection::vec(0u64..200, 0..120)) {
            let mut set = SeqSet::default();
            for &seq in &seqs {
                set.insert(seq);
            }
            let expected: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
            let held: std::collections::BTreeSet<u64> =
                set.0.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
            prop_assert_eq!(&held, &expected);
            for pair in set.0.windows(2) {
                prop_assert!(pair[0].1 + 1 < pair[1].0, "ranges must be disjoint and not touching");
            }
            if let (Some(lo), Some(hi)) = (expected.first(), expected.last()) {
                let missing: Vec<u64> = (*lo..=*hi).filter(|n| !expected.contains(n)).collect();
                prop_assert_eq!(set.missing(usize::MAX), missing);
            }
        }
    }

    // Proves expected and recorded units follow docs/wire-format.md, "Drift alert" and ignore non-POS movements.
    #[test]
    fn drift_counts_only_pos_caused_movements() {
        let mut sku = SkuDay { sold_units: Decimal::from(5), restocked_units: Decimal::from(1), ..Default::default() };
        sku.apply_movement_qty(MovementReason::Sale, Decimal::from(-3));
        sku.apply_movement_qty(MovementReason::Receipt, Decimal::from(100));
        sku.apply_movement_qty(MovementReason::Shrink, Decimal::from(-2));
        assert_eq!(sku.expected_units(), Decimal::from(4));
        assert_eq!(sku.recorded_units(), Decimal::from(3));
        assert_eq!(sku.drift_units(), Decimal::from(1));
    }

    // Proves an outbox entry round-trips through its stored form with the payload intact.
    #[test]
    fn outbox_entry_round_trips() {
        let entry = OutboxEntry {
            subject: "retail.dlq.decode".into(),
            msg_id: "dlq/7".into(),
            headers: vec![("Tally-Error".into(), "decode".into())],
            payload: vec![0, 159, 255, b'{'],
            kind: Some(OutputKind::Dlq),
        };
        assert_eq!(decode::<OutboxEntry>(&encode(&entry)).unwrap(), entry);
    }

    // Proves an entry left in the outbox by a version without kinds still decodes, its kind
    // read from its subject, so an upgrade publishes what the old version had queued.
    #[test]
    fn outbox_entry_of_an_earlier_version_gets_its_kind_from_the_subject() {
        #[derive(Serialize)]
        struct Earlier<'a>(&'a str, &'a str, Vec<(String, String)>, serde_bytes::ByteBuf);
        let old = |subject| {
            rmp_serde::to_vec(&Earlier(subject, "x/1", vec![], serde_bytes::ByteBuf::from(vec![1u8]))).unwrap()
        };
        for (subject, kind) in [
            ("retail.dlq.decode", OutputKind::Dlq),
            ("retail.alerts.drift.0042", OutputKind::Alert),
            ("retail.erp.postings.0042", OutputKind::Posting),
        ] {
            let entry = decode::<OutboxEntry>(&old(subject)).unwrap();
            assert_eq!((entry.kind, entry.kind()), (None, kind), "{subject}");
        }
    }
}
