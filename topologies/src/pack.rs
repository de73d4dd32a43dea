//! The values written on every record (sku-days, store-days), packed as MessagePack by hand:
//! byte for byte what `rmp_serde` writes for them, at a fraction of the cost.
//!
//! Through serde, each field of a stored value went through `rmp_serde`'s serializer, its
//! `io::Write` wrapper and error plumbing: about 260 instructions per amount, 13 800 per message
//! for the sku-days alone (bench/README.md, "Twelfth round"). Here each amount is a few
//! comparisons and pushes into the buffer. The bytes are the same, so the state's format does
//! not change and values are still read through serde; `tests_pack` checks the equality over
//! generated values. A value packed here keeps its serde derive: it is what reads it, what the
//! tests compare with, and what packs its rare parts (a day-close).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::aggregates::{OrderTotals, SeqSet, SkuDay, StoreDay, Unmatched};
use crate::books::{PostedLine, PostingBook};
use crate::drift::{AlertState, Phase};
use crate::model::{Fulfillment, MovementReason};

/// A value as it is stored. Packed through serde unless its type packs itself.
pub trait Pack: Serialize {
    fn pack(&self, out: &mut Packer<'_>) {
        out.serde(self);
    }
}

/// Writes MessagePack into a buffer, each value in its smallest form, as `rmp` does.
pub struct Packer<'a>(pub &'a mut Vec<u8>);

impl Packer<'_> {
    fn marker_then(&mut self, marker: u8, bytes: &[u8]) {
        self.0.push(marker);
        self.0.extend_from_slice(bytes);
    }

    /// The header of an array or map: `fix` holds lengths under 16.
    fn header(&mut self, fix: u8, wide16: u8, wide32: u8, len: usize) {
        match len {
            0..16 => self.0.push(fix | len as u8),
            16..=0xffff => self.marker_then(wide16, &(len as u16).to_be_bytes()),
            _ => self.marker_then(wide32, &(len as u32).to_be_bytes()),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.header(0x90, 0xdc, 0xdd, len);
    }

    pub fn map(&mut self, len: usize) {
        self.header(0x80, 0xde, 0xdf, len);
    }

    pub fn nil(&mut self) {
        self.0.push(0xc0);
    }

    pub fn bool(&mut self, value: bool) {
        self.0.push(if value { 0xc3 } else { 0xc2 });
    }

    pub fn uint(&mut self, value: u64) {
        match value {
            0..128 => self.0.push(value as u8),
            128..256 => self.marker_then(0xcc, &[value as u8]),
            256..65_536 => self.marker_then(0xcd, &(value as u16).to_be_bytes()),
            65_536..4_294_967_296 => self.marker_then(0xce, &(value as u32).to_be_bytes()),
            _ => self.marker_then(0xcf, &value.to_be_bytes()),
        }
    }

    /// A signed integer: non-negative ones as unsigned, as `rmp::encode::write_sint` does.
    pub fn int(&mut self, value: i64) {
        match value {
            0.. => self.uint(value as u64),
            -32..0 => self.0.push(value as i8 as u8),
            -128..-32 => self.marker_then(0xd0, &(value as i8).to_be_bytes()),
            -32_768..-128 => self.marker_then(0xd1, &(value as i16).to_be_bytes()),
            -2_147_483_648..-32_768 => self.marker_then(0xd2, &(value as i32).to_be_bytes()),
            _ => self.marker_then(0xd3, &value.to_be_bytes()),
        }
    }

    pub fn str(&mut self, text: &str) {
        let len = text.len();
        match len {
            0..32 => self.0.push(0xa0 | len as u8),
            32..256 => self.marker_then(0xd9, &[len as u8]),
            256..=0xffff => self.marker_then(0xda, &(len as u16).to_be_bytes()),
            _ => self.marker_then(0xdb, &(len as u32).to_be_bytes()),
        }
        self.0.extend_from_slice(text.as_bytes());
    }

    /// An amount as `stored_decimal` stores it: `[mantissa, scale]`, or its text when the
    /// mantissa needs more than 64 bits.
    pub fn decimal(&mut self, amount: &Decimal) {
        match i64::try_from(amount.mantissa()) {
            Ok(mantissa) => {
                self.array(2);
                self.int(mantissa);
                self.uint(u64::from(amount.scale()));
            }
            Err(_) => self.str(&amount.to_string()),
        }
    }

    pub fn decimal_option(&mut self, amount: &Option<Decimal>) {
        match amount {
            Some(amount) => self.decimal(amount),
            None => self.nil(),
        }
    }

    pub fn decimal_map<K: VariantName>(&mut self, amounts: &BTreeMap<K, Decimal>) {
        self.map(amounts.len());
        for (key, amount) in amounts {
            self.str(key.variant_name());
            self.decimal(amount);
        }
    }

    pub fn decimals_by_name(&mut self, amounts: &BTreeMap<String, Decimal>) {
        self.map(amounts.len());
        for (name, amount) in amounts {
            self.str(name);
            self.decimal(amount);
        }
    }

    /// A time as `chrono::serde::ts_microseconds` stores it.
    pub fn micros(&mut self, at: &DateTime<Utc>) {
        self.int(at.timestamp_micros());
    }

    pub fn micros_option(&mut self, at: &Option<DateTime<Utc>>) {
        match at {
            Some(at) => self.micros(at),
            None => self.nil(),
        }
    }

    /// A part too rare to be worth packing by hand, through `rmp_serde`.
    pub fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        rmp_serde::encode::write(self.0, value).expect("serializing a state value to memory cannot fail");
    }
}

/// A unit variant's name, as serde writes it.
pub trait VariantName {
    fn variant_name(&self) -> &'static str;
}

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

impl VariantName for Phase {
    fn variant_name(&self) -> &'static str {
        match self {
            Phase::Ok => "Ok",
            Phase::Pending => "Pending",
            Phase::Firing => "Firing",
            Phase::Resolved => "Resolved",
            Phase::Final => "Final",
        }
    }
}

// Each `pack` below writes the fields in declaration order, as the derive does: a field added
// to one of these structs must be added here too (`tests_pack` fails until it is).

impl Pack for SkuDay {
    fn pack(&self, out: &mut Packer<'_>) {
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
        out.decimal_map(&self.inventory);
        self.alert.pack(out);
        out.array(self.unmatched.len());
        for unmatched in &self.unmatched {
            unmatched.pack(out);
        }
        self.posted.pack(out);
        out.decimal_map(&self.orders);
    }
}

impl Pack for AlertState {
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(4);
        out.str(self.phase.variant_name());
        out.micros_option(&self.over_since);
        out.uint(u64::from(self.revision));
        out.decimal_option(&self.sent_drift_units);
    }
}

impl Pack for Unmatched {
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(if self.order_units.is_some() { 3 } else { 2 });
        out.micros(&self.at);
        out.str(&self.id);
        if let Some(units) = &self.order_units {
            out.decimal(units);
        }
    }
}

impl Pack for PostedLine {
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(5);
        for amount in [&self.qty, &self.gross, &self.discount, &self.net, &self.tax] {
            out.decimal(amount);
        }
    }
}

impl Pack for StoreDay {
    fn pack(&self, out: &mut Packer<'_>) {
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
        out.decimals_by_name(&self.tenders);
        out.map(self.registers.len());
        for (register, seen) in &self.registers {
            out.str(register);
            seen.pack(out);
        }
        out.decimal_map(&self.inventory);
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
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(self.0.len());
        for &(low, high) in &self.0 {
            out.array(2);
            out.uint(low);
            out.uint(high);
        }
    }
}

impl Pack for PostingBook {
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(8);
        out.uint(u64::from(self.seq));
        out.bool(self.final_sent);
        out.micros_option(&self.dirty_since);
        out.int(self.transactions);
        out.int(self.lines);
        out.decimal(&self.net);
        out.decimal(&self.tax);
        out.decimals_by_name(&self.tenders);
    }
}

impl Pack for OrderTotals {
    fn pack(&self, out: &mut Packer<'_>) {
        out.array(2);
        out.uint(self.count);
        out.decimal_map(&self.units);
    }
}
