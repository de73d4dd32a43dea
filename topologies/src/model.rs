//! The input records of docs/wire-format.md, "Input records", as typed values after decoding.
//!
//! Every amount and quantity is a `Decimal`; timestamps keep the offset they were sent with.
//! These types are also what tally stores for transactions it may later have to reverse (a
//! post-void) and for the day-close it keeps, so they derive serde; changing a field is a state
//! format change. Their amounts are stored as integer mantissa and scale (`stored_decimal`), not
//! as text: every transaction is stored once, and writing a decimal's text costs a division per
//! digit. (The fingerprint does not depend on this: `fingerprint` writes the amounts' text itself.)

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pack::{Pack, Packer, Sink, VariantName};

/// Where an input came from: the input subject families of docs/wire-format.md, "Subjects and streams".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    Pos,
    Inventory,
    /// `P.orders.<store>`: the order management system's fulfillments.
    Orders,
}

impl Source {
    /// The label value used in metrics (`tally_events_total{source}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pos => "pos",
            Source::Inventory => "inventory",
            Source::Orders => "orders",
        }
    }
}

/// One decoded input record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Transaction(PosTransaction),
    Movement(InventoryMovement),
    DayClose(DayClose),
    Order(OrderFulfillment),
}

impl Event {
    pub fn id(&self) -> &str {
        match self {
            Event::Transaction(t) => &t.id,
            Event::Movement(m) => &m.id,
            Event::DayClose(c) => &c.id,
            Event::Order(o) => &o.id,
        }
    }

    pub fn store(&self) -> &str {
        match self {
            Event::Transaction(t) => &t.store,
            Event::Movement(m) => &m.store,
            Event::DayClose(c) => &c.store,
            Event::Order(o) => &o.store,
        }
    }

    pub fn business_day(&self) -> NaiveDate {
        match self {
            Event::Transaction(t) => t.business_day,
            Event::Movement(m) => m.business_day,
            Event::DayClose(c) => c.business_day,
            Event::Order(o) => o.business_day,
        }
    }

    pub fn occurred_at(&self) -> DateTime<FixedOffset> {
        match self {
            Event::Transaction(t) => t.occurred_at,
            Event::Movement(m) => m.occurred_at,
            Event::DayClose(c) => c.occurred_at,
            Event::Order(o) => o.occurred_at,
        }
    }

    /// The contract's `type` string of this record.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Transaction(_) => "pos.transaction",
            Event::Movement(_) => "inventory.movement",
            Event::DayClose(_) => "pos.day_close",
            Event::Order(_) => "order.fulfillment",
        }
    }
}

/// docs/wire-format.md, "POS transaction". `business_day` and `currency` are already resolved from their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosTransaction {
    pub id: String,
    pub store: String,
    pub register: Option<String>,
    pub seq: Option<u64>,
    pub occurred_at: DateTime<FixedOffset>,
    pub business_day: NaiveDate,
    pub currency: String,
    pub lines: Vec<PosLine>,
    pub tenders: Vec<Tender>,
    /// The id of the earlier transaction that this record post-voids. A void carries no lines.
    pub voids: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosLine {
    pub line: Option<u64>,
    pub sku: String,
    /// Positive for a sale, negative for a return.
    #[serde(with = "crate::stored_decimal::one")]
    pub qty: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub unit_price: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub discount: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
    /// Whether a returned unit goes back on the shelf (default true).
    pub restock: bool,
    pub return_of: Option<String>,
}

impl PosLine {
    /// `qty × unit_price`, signed like `qty`.
    pub fn gross(&self) -> Decimal {
        self.qty * self.unit_price
    }

    /// `gross − discount`; tax is kept apart.
    pub fn net(&self) -> Decimal {
        self.gross() - self.discount
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tender {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "crate::stored_decimal::one")]
    pub amount: Decimal,
}

/// docs/wire-format.md, "Inventory movement".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryMovement {
    pub id: String,
    pub store: String,
    pub occurred_at: DateTime<FixedOffset>,
    pub business_day: NaiveDate,
    pub reason: MovementReason,
    /// The POS transaction that caused this movement, when known.
    pub reference: Option<String>,
    pub lines: Vec<MovementLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovementLine {
    pub sku: String,
    /// The signed stock delta: a sale decrement is negative.
    pub qty: Decimal,
    /// What one unit is worth to finance, when the publisher sends it (docs/wire-format.md,
    /// "Inventory movement"); it values inventory adjustments. Absent in earlier versions.
    #[serde(default)]
    pub unit_cost: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MovementReason {
    Sale,
    Return,
    Adjustment,
    Shrink,
    Damage,
    Count,
    Receipt,
    TransferIn,
    TransferOut,
}

impl MovementReason {
    pub const ALL: [MovementReason; 9] = [
        MovementReason::Sale,
        MovementReason::Return,
        MovementReason::Adjustment,
        MovementReason::Shrink,
        MovementReason::Damage,
        MovementReason::Count,
        MovementReason::Receipt,
        MovementReason::TransferIn,
        MovementReason::TransferOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MovementReason::Sale => "sale",
            MovementReason::Return => "return",
            MovementReason::Adjustment => "adjustment",
            MovementReason::Shrink => "shrink",
            MovementReason::Damage => "damage",
            MovementReason::Count => "count",
            MovementReason::Receipt => "receipt",
            MovementReason::TransferIn => "transfer_in",
            MovementReason::TransferOut => "transfer_out",
        }
    }

    pub fn parse(text: &str) -> Option<MovementReason> {
        MovementReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this movement is an inventory adjustment that finance books (docs/wire-format.md,
    /// "Inventory adjustment posting"): stock found, lost or written off in the store.
    pub fn is_adjustment(self) -> bool {
        matches!(
            self,
            MovementReason::Adjustment | MovementReason::Shrink | MovementReason::Damage | MovementReason::Count
        )
    }

    /// Whether the POS causes this movement, so that it counts as `recorded_units` in drift.
    pub fn is_pos_caused(self) -> bool {
        matches!(self, MovementReason::Sale | MovementReason::Return)
    }
}

/// docs/wire-format.md, "Day close": the POS's own totals for a business day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayClose {
    pub id: String,
    pub store: String,
    pub business_day: NaiveDate,
    pub occurred_at: DateTime<FixedOffset>,
    pub transaction_count: u64,
    #[serde(with = "crate::stored_decimal::one")]
    pub net_sales: Decimal,
    #[serde(with = "crate::stored_decimal::one")]
    pub tax: Decimal,
    pub tenders: Vec<Tender>,
}

/// docs/wire-format.md, "Order fulfillment": units of an online order that a store's shelf
/// gave or took back without a POS sale there. Only their units count (in drift); money stays
/// with the order management system, so orders change no POS total and no ERP posting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFulfillment {
    /// The order id (the wire's `id`): the idempotency key, in the same namespace per store as
    /// the other records' ids.
    pub id: String,
    pub store: String,
    pub occurred_at: DateTime<FixedOffset>,
    pub business_day: NaiveDate,
    pub fulfillment: Fulfillment,
    pub lines: Vec<OrderLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    /// Units, always positive: the fulfillment kind says which way they went.
    pub qty: Decimal,
}

impl OrderFulfillment {
    /// The skus its lines name, each once, in order.
    pub fn skus(&self) -> Vec<String> {
        let skus: std::collections::BTreeSet<&str> = self.lines.iter().map(|line| line.sku.as_str()).collect();
        skus.into_iter().map(str::to_string).collect()
    }
}

/// How an order's units moved through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Fulfillment {
    /// Picked from the shelf and shipped to the customer: an expected decrement.
    ShipFromStore,
    /// Bought online, handed over at the store: an expected decrement.
    PickupInStore,
    /// Bought online, returned at the store and put back on the shelf: an expected increment.
    ReturnedToStore,
}

impl Fulfillment {
    pub const ALL: [Fulfillment; 3] =
        [Fulfillment::ShipFromStore, Fulfillment::PickupInStore, Fulfillment::ReturnedToStore];

    pub fn as_str(self) -> &'static str {
        match self {
            Fulfillment::ShipFromStore => "ship_from_store",
            Fulfillment::PickupInStore => "pickup_in_store",
            Fulfillment::ReturnedToStore => "returned_to_store",
        }
    }

    pub fn parse(text: &str) -> Option<Fulfillment> {
        Fulfillment::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The sign of its units in `expected_units` (units expected to leave the shelf).
    pub fn expected_sign(self) -> Decimal {
        match self {
            Fulfillment::ShipFromStore | Fulfillment::PickupInStore => Decimal::ONE,
            Fulfillment::ReturnedToStore => Decimal::NEGATIVE_ONE,
        }
    }
}

// Packed by hand, field by field in declaration order as serde's derive writes them: a field
// added to the struct must be added here too (`pack_tests` fails until it is).

impl VariantName for MovementReason {
    fn variant_name(&self) -> &'static str {
        match self {
            MovementReason::Sale => "Sale",
            MovementReason::Return => "Return",
            MovementReason::Adjustment => "Adjustment",
            MovementReason::Shrink => "Shrink",
            MovementReason::Damage => "Damage",
            MovementReason::Count => "Count",
            MovementReason::Receipt => "Receipt",
            MovementReason::TransferIn => "TransferIn",
            MovementReason::TransferOut => "TransferOut",
        }
    }
}

impl VariantName for Fulfillment {
    fn variant_name(&self) -> &'static str {
        match self {
            Fulfillment::ShipFromStore => "ShipFromStore",
            Fulfillment::PickupInStore => "PickupInStore",
            Fulfillment::ReturnedToStore => "ReturnedToStore",
        }
    }
}

impl Pack for PosTransaction {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(10);
        out.str(&self.id);
        out.str(&self.store);
        out.str_option(&self.register);
        out.uint_option(self.seq);
        out.time_text(&self.occurred_at);
        out.date(&self.business_day);
        out.str(&self.currency);
        out.array(self.lines.len());
        for line in &self.lines {
            line.pack(out);
        }
        out.array(self.tenders.len());
        for tender in &self.tenders {
            tender.pack(out);
        }
        out.str_option(&self.voids);
    }
}

impl Pack for PosLine {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(8);
        out.uint_option(self.line);
        out.str(&self.sku);
        for amount in [&self.qty, &self.unit_price, &self.discount, &self.tax] {
            out.decimal(amount);
        }
        out.bool(self.restock);
        out.str_option(&self.return_of);
    }
}

impl Pack for Tender {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(2);
        out.str(&self.kind);
        out.decimal(&self.amount);
    }
}
