//! A stable fingerprint of a record's content, for the idempotency rule of docs/wire-format.md, "POS transaction": the
//! same id with the same content is a duplicate, with other content a conflict.
//!
//! "Same content" is about values, not bytes: `"2.00"` and `2`, JSON and MessagePack, field
//! order and unknown fields all fingerprint alike. The hash is FNV-1a over the MessagePack form
//! of the normalized record; it is written here rather than taken from `std` because it is
//! stored, and `std`'s hashers may change between Rust releases.
//!
//! The normalized form is packed straight into the hash, field by field as serde's derive
//! would write the record itself (`pack` writes the same bytes), with every amount normalized
//! on the way: no copy of the record and no buffer (this runs for every input record). The
//! fields must stay those of `model`, in order: stored fingerprints are of that form, and the
//! tests below compare with that form serialized by `rmp_serde`.

use rust_decimal::Decimal;

use crate::model::{
    DayClose, Event, InventoryMovement, MovementLine, OrderFulfillment, OrderLine, PosLine, PosTransaction, Tender,
};
use crate::pack::{Packer, Sink, VariantName};

pub fn fingerprint(event: &Event) -> u64 {
    let mut hash = Fnv1a(OFFSET);
    normalized(event, &mut Packer(&mut hash));
    hash.0
}

/// A record's fingerprint with the `sku_system` it named (docs/wire-format.md, "SKU aliases"):
/// the same codes of another system are other content. Without one, the fingerprint is the
/// record's alone, as earlier versions stored it.
pub fn with_sku_system(print: u64, sku_system: Option<&str>) -> u64 {
    let Some(system) = sku_system else { return print };
    let mut hash = Fnv1a(print);
    for bytes in [b"sku_system".as_slice(), system.as_bytes()] {
        hash.put_all(bytes);
    }
    hash.0
}

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over whatever is written to it.
struct Fnv1a(u64);

impl Sink for Fnv1a {
    fn put(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(PRIME);
    }

    fn put_all(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME));
    }
}

/// What `Packer::serde` writes through, for a part too rare to pack by hand.
impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.put_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Out<'a> = Packer<'a, Fnv1a>;

/// An event as serde's derive writes it (an enum variant as a map of its name to its value, a
/// struct as an array of its fields), its amounts normalized and written as text.
fn normalized(event: &Event, out: &mut Out<'_>) {
    out.map(1);
    match event {
        Event::Transaction(tx) => {
            out.str("Transaction");
            transaction(tx, out);
        }
        Event::Movement(movement) => {
            out.str("Movement");
            inventory_movement(movement, out);
        }
        Event::DayClose(close) => {
            out.str("DayClose");
            day_close(close, out);
        }
        Event::Order(order) => {
            out.str("Order");
            order_fulfillment(order, out);
        }
    }
}

fn amount(amount: &Decimal, out: &mut Out<'_>) {
    out.decimal_text(&amount.normalize());
}

fn transaction(tx: &PosTransaction, out: &mut Out<'_>) {
    out.array(10);
    out.str(&tx.id);
    out.str(&tx.store);
    out.str_option(&tx.register);
    out.uint_option(tx.seq);
    out.time_text(&tx.occurred_at);
    out.date(&tx.business_day);
    out.str(&tx.currency);
    out.array(tx.lines.len());
    for line in &tx.lines {
        pos_line(line, out);
    }
    tenders(&tx.tenders, out);
    out.str_option(&tx.voids);
}

fn pos_line(line: &PosLine, out: &mut Out<'_>) {
    out.array(8);
    out.uint_option(line.line);
    out.str(&line.sku);
    for figure in [&line.qty, &line.unit_price, &line.discount, &line.tax] {
        amount(figure, out);
    }
    out.bool(line.restock);
    out.str_option(&line.return_of);
}

fn tenders(tenders: &[Tender], out: &mut Out<'_>) {
    out.array(tenders.len());
    for tender in tenders {
        out.array(2);
        out.str(&tender.kind);
        amount(&tender.amount, out);
    }
}

fn inventory_movement(movement: &InventoryMovement, out: &mut Out<'_>) {
    out.array(7);
    out.str(&movement.id);
    out.str(&movement.store);
    out.time_text(&movement.occurred_at);
    out.date(&movement.business_day);
    out.str(movement.reason.variant_name());
    out.str_option(&movement.reference);
    out.array(movement.lines.len());
    for line in &movement.lines {
        movement_line(line, out);
    }
}

fn movement_line(line: &MovementLine, out: &mut Out<'_>) {
    // A line without `unit_cost` keeps the two fields, and so the fingerprint, that earlier
    // versions stored; a cost is a third field, so re-sending a line with another cost is a conflict.
    out.array(if line.unit_cost.is_some() { 3 } else { 2 });
    out.str(&line.sku);
    amount(&line.qty, out);
    if let Some(cost) = &line.unit_cost {
        amount(cost, out);
    }
}

fn day_close(close: &DayClose, out: &mut Out<'_>) {
    out.array(8);
    out.str(&close.id);
    out.str(&close.store);
    out.date(&close.business_day);
    out.time_text(&close.occurred_at);
    out.uint(close.transaction_count);
    amount(&close.net_sales, out);
    amount(&close.tax, out);
    tenders(&close.tenders, out);
}

fn order_fulfillment(order: &OrderFulfillment, out: &mut Out<'_>) {
    out.array(6);
    out.str(&order.id);
    out.str(&order.store);
    out.time_text(&order.occurred_at);
    out.date(&order.business_day);
    out.str(order.fulfillment.variant_name());
    out.array(order.lines.len());
    for line in &order.lines {
        order_line(line, out);
    }
}

fn order_line(line: &OrderLine, out: &mut Out<'_>) {
    out.array(2);
    out.str(&line.sku);
    amount(&line.qty, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, InventoryMovement, MovementLine, MovementReason};
    use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn movement(qty: &str) -> Event {
        Event::Movement(InventoryMovement {
            id: "INV-1".into(),
            store: "0042".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-27T10:17:40-05:00").unwrap(),
            business_day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            reason: MovementReason::Sale,
            reference: None,
            lines: vec![MovementLine { sku: "100234".into(), qty: Decimal::from_str(qty).unwrap(), unit_cost: None }],
        })
    }

    // Proves equal values with different scales fingerprint alike and different values do not.
    #[test]
    fn fingerprint_compares_values_not_spelling() {
        assert_eq!(fingerprint(&movement("-2")), fingerprint(&movement("-2.00")));
        assert_ne!(fingerprint(&movement("-2")), fingerprint(&movement("-3")));
    }

    fn amount() -> impl Strategy<Value = Decimal> {
        (-(1i64 << 40)..(1i64 << 40), 0u32..=12).prop_map(|(m, scale)| Decimal::new(m, scale))
    }

    fn text() -> impl Strategy<Value = String> {
        "[A-Za-z0-9/_-]{0,12}"
    }

    fn at() -> impl Strategy<Value = DateTime<FixedOffset>> {
        (0i64..4_000_000_000, -1439i32..=1439)
            .prop_map(|(secs, minutes)| FixedOffset::east_opt(minutes * 60).unwrap().timestamp_opt(secs, 0).unwrap())
    }

    fn tenders() -> impl Strategy<Value = Vec<Tender>> {
        proptest::collection::vec((text(), amount()).prop_map(|(kind, amount)| Tender { kind, amount }), 0..3)
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    fn transaction() -> impl Strategy<Value = Event> {
        let line = (
            (proptest::option::of(any::<u64>()), text(), amount(), amount()),
            (amount(), amount(), any::<bool>(), proptest::option::of(text())),
        )
            .prop_map(|((line, sku, qty, unit_price), (discount, tax, restock, return_of))| PosLine {
                line,
                sku,
                qty,
                unit_price,
                discount,
                tax,
                restock,
                return_of,
            });
        (
            (text(), text(), proptest::option::of(text()), proptest::option::of(any::<u64>()), at()),
            (text(), proptest::collection::vec(line, 0..4), tenders(), proptest::option::of(text())),
        )
            .prop_map(|((id, store, register, seq, occurred_at), (currency, lines, tenders, voids))| {
                Event::Transaction(PosTransaction {
                    id,
                    store,
                    register,
                    seq,
                    occurred_at,
                    business_day: day(),
                    currency,
                    lines,
                    tenders,
                    voids,
                })
            })
    }

    fn movement_event() -> impl Strategy<Value = Event> {
        let line = (text(), amount()).prop_map(|(sku, qty)| MovementLine { sku, qty, unit_cost: None });
        (text(), at(), 0usize..9, proptest::option::of(text()), proptest::collection::vec(line, 0..4)).prop_map(
            |(id, occurred_at, reason, reference, lines)| {
                Event::Movement(InventoryMovement {
                    id,
                    store: "S".into(),
                    occurred_at,
                    business_day: day(),
                    reason: MovementReason::ALL[reason],
                    reference,
                    lines,
                })
            },
        )
    }

    fn day_close() -> impl Strategy<Value = Event> {
        (text(), at(), any::<u64>(), amount(), amount(), tenders()).prop_map(
            |(id, occurred_at, transaction_count, net_sales, tax, tenders)| {
                Event::DayClose(DayClose {
                    id,
                    store: "S".into(),
                    business_day: day(),
                    occurred_at,
                    transaction_count,
                    net_sales,
                    tax,
                    tenders,
                })
            },
        )
    }

    fn order_event() -> impl Strategy<Value = Event> {
        let line = (text(), amount()).prop_map(|(sku, qty)| OrderLine { sku, qty });
        (text(), at(), 0usize..3, proptest::collection::vec(line, 0..4)).prop_map(|(id, occurred_at, kind, lines)| {
            Event::Order(OrderFulfillment {
                id,
                store: "S".into(),
                occurred_at,
                business_day: day(),
                fulfillment: crate::model::Fulfillment::ALL[kind],
                lines,
            })
        })
    }

    // Proves two orders that differ only in their fulfillment kind are a conflict, not a duplicate.
    #[test]
    fn an_order_fingerprint_depends_on_its_kind() {
        let order = |fulfillment| {
            Event::Order(OrderFulfillment {
                id: "O-1".into(),
                store: "0042".into(),
                occurred_at: DateTime::parse_from_rfc3339("2026-11-27T10:17:40-05:00").unwrap(),
                business_day: day(),
                fulfillment,
                lines: vec![OrderLine { sku: "100234".into(), qty: Decimal::from(2) }],
            })
        };
        let ship = fingerprint(&order(crate::model::Fulfillment::ShipFromStore));
        assert_eq!(ship, fingerprint(&order(crate::model::Fulfillment::ShipFromStore)));
        assert_ne!(ship, fingerprint(&order(crate::model::Fulfillment::PickupInStore)));
    }

    /// The record types as they were serialized when every stored fingerprint was made: the
    /// derive over the model with amounts as text, normalized. A fingerprint kept in state must
    /// keep matching its record's redelivery after an upgrade.
    mod earlier {
        use chrono::{DateTime, FixedOffset, NaiveDate};
        use rust_decimal::Decimal;
        use serde::Serialize;

        #[derive(Serialize)]
        pub enum Event {
            Transaction(PosTransaction),
            Movement(InventoryMovement),
            DayClose(DayClose),
            /// Orders came later: their fingerprint is the derive over the model, normalized.
            Order(crate::model::OrderFulfillment),
        }
        #[derive(Serialize)]
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
            pub voids: Option<String>,
        }
        #[derive(Serialize)]
        pub struct PosLine {
            pub line: Option<u64>,
            pub sku: String,
            pub qty: Decimal,
            pub unit_price: Decimal,
            pub discount: Decimal,
            pub tax: Decimal,
            pub restock: bool,
            pub return_of: Option<String>,
        }
        #[derive(Serialize)]
        pub struct Tender {
            #[serde(rename = "type")]
            pub kind: String,
            pub amount: Decimal,
        }
        #[derive(Serialize)]
        pub struct InventoryMovement {
            pub id: String,
            pub store: String,
            pub occurred_at: DateTime<FixedOffset>,
            pub business_day: NaiveDate,
            pub reason: crate::model::MovementReason,
            pub reference: Option<String>,
            pub lines: Vec<MovementLine>,
        }
        #[derive(Serialize)]
        pub struct MovementLine {
            pub sku: String,
            pub qty: Decimal,
        }
        #[derive(Serialize)]
        pub struct DayClose {
            pub id: String,
            pub store: String,
            pub business_day: NaiveDate,
            pub occurred_at: DateTime<FixedOffset>,
            pub transaction_count: u64,
            pub net_sales: Decimal,
            pub tax: Decimal,
            pub tenders: Vec<Tender>,
        }
    }

    /// The fingerprint as earlier versions computed it: a normalized copy, serialized, hashed.
    fn earlier_fingerprint(event: &Event) -> u64 {
        let tenders = |tenders: &[Tender]| -> Vec<earlier::Tender> {
            tenders.iter().map(|t| earlier::Tender { kind: t.kind.clone(), amount: t.amount.normalize() }).collect()
        };
        let copy = match event {
            Event::Transaction(tx) => earlier::Event::Transaction(earlier::PosTransaction {
                id: tx.id.clone(),
                store: tx.store.clone(),
                register: tx.register.clone(),
                seq: tx.seq,
                occurred_at: tx.occurred_at,
                business_day: tx.business_day,
                currency: tx.currency.clone(),
                lines: tx
                    .lines
                    .iter()
                    .map(|l| earlier::PosLine {
                        line: l.line,
                        sku: l.sku.clone(),
                        qty: l.qty.normalize(),
                        unit_price: l.unit_price.normalize(),
                        discount: l.discount.normalize(),
                        tax: l.tax.normalize(),
                        restock: l.restock,
                        return_of: l.return_of.clone(),
                    })
                    .collect(),
                tenders: tenders(&tx.tenders),
                voids: tx.voids.clone(),
            }),
            Event::Movement(m) => earlier::Event::Movement(earlier::InventoryMovement {
                id: m.id.clone(),
                store: m.store.clone(),
                occurred_at: m.occurred_at,
                business_day: m.business_day,
                reason: m.reason,
                reference: m.reference.clone(),
                lines: m
                    .lines
                    .iter()
                    .map(|l| earlier::MovementLine { sku: l.sku.clone(), qty: l.qty.normalize() })
                    .collect(),
            }),
            Event::DayClose(c) => earlier::Event::DayClose(earlier::DayClose {
                id: c.id.clone(),
                store: c.store.clone(),
                business_day: c.business_day,
                occurred_at: c.occurred_at,
                transaction_count: c.transaction_count,
                net_sales: c.net_sales.normalize(),
                tax: c.tax.normalize(),
                tenders: tenders(&c.tenders),
            }),
            Event::Order(o) => {
                let mut normal = o.clone();
                normal.lines.iter_mut().for_each(|l| l.qty = l.qty.normalize());
                earlier::Event::Order(normal)
            }
        };
        let bytes = rmp_serde::to_vec(&copy).unwrap();
        bytes.iter().fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
    }

    /// The same record with every amount written with `extra` more trailing zeros.
    fn respelled(event: &Event, extra: u32) -> Event {
        let wider = |d: &mut Decimal| {
            let mut wide = *d;
            wide.rescale(d.scale() + extra);
            *d = wide;
        };
        let mut event = event.clone();
        match &mut event {
            Event::Transaction(tx) => {
                for line in &mut tx.lines {
                    [&mut line.qty, &mut line.unit_price, &mut line.discount, &mut line.tax]
                        .into_iter()
                        .for_each(wider);
                }
                tx.tenders.iter_mut().for_each(|t| wider(&mut t.amount));
            }
            Event::Movement(movement) => movement.lines.iter_mut().for_each(|l| wider(&mut l.qty)),
            Event::Order(order) => order.lines.iter_mut().for_each(|l| wider(&mut l.qty)),
            Event::DayClose(close) => {
                wider(&mut close.net_sales);
                wider(&mut close.tax);
                close.tenders.iter_mut().for_each(|t| wider(&mut t.amount));
            }
        }
        event
    }

    /// The same record with its first amount one unit of its last place larger, if it has one.
    fn nudged(event: &Event) -> Option<Event> {
        let nudge = |d: &mut Decimal| *d += Decimal::new(1, d.scale());
        let mut event = event.clone();
        match &mut event {
            Event::Transaction(tx) => nudge(&mut tx.lines.first_mut()?.unit_price),
            Event::Movement(movement) => nudge(&mut movement.lines.first_mut()?.qty),
            Event::DayClose(close) => nudge(&mut close.net_sales),
            Event::Order(order) => nudge(&mut order.lines.first_mut()?.qty),
        }
        Some(event)
    }

    proptest! {
        // Proves the fingerprint is what earlier versions stored for the same record, and that
        // it is about values: any record fingerprints like itself with
        // its amounts spelled with more trailing zeros (as "2.00" for "2"), and unlike itself
        // with an amount changed.
        #[test]
        fn fingerprint_follows_values_for_every_kind_of_record(
            event in prop_oneof![transaction(), movement_event(), day_close(), order_event()],
            extra in 1u32..6,
        ) {
            prop_assert_eq!(fingerprint(&event), earlier_fingerprint(&event), "a stored fingerprint must still match");
            prop_assert_eq!(fingerprint(&respelled(&event, extra)), fingerprint(&event));
            if let Some(other) = nudged(&event) {
                prop_assert_ne!(fingerprint(&other), fingerprint(&event));
            }
        }
    }
}
