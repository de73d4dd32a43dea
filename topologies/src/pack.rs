//! MessagePack written by hand: the writer ([`Packer`]) and the trait ([`Pack`]) that every
//! stored value implements where it is defined. The values written on every record (sku-days,
//! store-days, dedupe entries) pack themselves field by field; the others go through serde.
//!
//! Either way the bytes are what `rmp_serde` writes, so the state's format does not change and
//! values are still read through serde (`pack_tests` compares the two over generated values).
//! Through serde, each field went through `rmp_serde`'s serializer, its `io::Write` wrapper and
//! error plumbing: about 260 instructions per amount, and days and times as text one
//! `fmt::Formatter` call per character (bench/README.md, "Twelfth round"). Here an amount is a
//! few comparisons and pushes into the buffer, and a time is written on the stack.
//!
//! The same writer feeds the fingerprint's hash (`fingerprint`), through [`Sink`].

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// A value as it is stored. Packed through serde unless its type packs itself.
pub trait Pack: Serialize {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.serde(self);
    }
}

/// Where packed bytes go: a buffer, or a hash that reads them as they come (`fingerprint`).
pub trait Sink: std::io::Write {
    fn put(&mut self, byte: u8);
    fn put_all(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, byte: u8) {
        self.push(byte);
    }

    fn put_all(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes MessagePack into a sink, each value in its smallest form, as `rmp` does.
pub struct Packer<'a, S: Sink + ?Sized = Vec<u8>>(pub &'a mut S);

impl<S: Sink + ?Sized> Packer<'_, S> {
    fn marker_then(&mut self, marker: u8, bytes: &[u8]) {
        self.0.put(marker);
        self.0.put_all(bytes);
    }

    /// The header of an array or map: `fix` holds lengths under 16.
    fn header(&mut self, fix: u8, wide16: u8, wide32: u8, len: usize) {
        match len {
            0..16 => self.0.put(fix | len as u8),
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
        self.0.put(0xc0);
    }

    pub fn bool(&mut self, value: bool) {
        self.0.put(if value { 0xc3 } else { 0xc2 });
    }

    pub fn uint(&mut self, value: u64) {
        match value {
            0..128 => self.0.put(value as u8),
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
            -32..0 => self.0.put(value as i8 as u8),
            -128..-32 => self.marker_then(0xd0, &(value as i8).to_be_bytes()),
            -32_768..-128 => self.marker_then(0xd1, &(value as i16).to_be_bytes()),
            -2_147_483_648..-32_768 => self.marker_then(0xd2, &(value as i32).to_be_bytes()),
            _ => self.marker_then(0xd3, &value.to_be_bytes()),
        }
    }

    pub fn str(&mut self, text: &str) {
        let len = text.len();
        match len {
            0..32 => self.0.put(0xa0 | len as u8),
            32..256 => self.marker_then(0xd9, &[len as u8]),
            256..=0xffff => self.marker_then(0xda, &(len as u16).to_be_bytes()),
            _ => self.marker_then(0xdb, &(len as u32).to_be_bytes()),
        }
        self.0.put_all(text.as_bytes());
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

    /// An amount as rust_decimal's serde writes it: its text, `-0.50`.
    pub fn decimal_text(&mut self, amount: &Decimal) {
        let mut text = Digits::default();
        text.decimal(amount);
        self.str(text.as_str());
    }

    pub fn decimal_option(&mut self, amount: &Option<Decimal>) {
        match amount {
            Some(amount) => self.decimal(amount),
            None => self.nil(),
        }
    }

    /// A map of amounts, each key written as the text `name` gives it (a variant's name, a
    /// tender's type).
    pub fn decimal_map<K>(&mut self, amounts: &BTreeMap<K, Decimal>, name: impl Fn(&K) -> &str) {
        self.map(amounts.len());
        for (key, amount) in amounts {
            self.str(name(key));
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

    pub fn str_option(&mut self, text: &Option<String>) {
        match text {
            Some(text) => self.str(text),
            None => self.nil(),
        }
    }

    pub fn uint_option(&mut self, value: Option<u64>) {
        match value {
            Some(value) => self.uint(value),
            None => self.nil(),
        }
    }

    /// A day as chrono's serde writes it, `2026-11-27`.
    pub fn date(&mut self, day: &NaiveDate) {
        let mut text = Digits::default();
        if !text.date(day) {
            return self.serde(day);
        }
        self.str(text.as_str());
    }

    /// A time with its offset as chrono's serde writes it (RFC 3339, the fraction in 3, 6 or 9
    /// digits when there is one, `Z` for UTC).
    pub fn time_text(&mut self, at: &DateTime<FixedOffset>) {
        let mut text = Digits::default();
        if !text.time(at) {
            return self.serde(at);
        }
        self.str(text.as_str());
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

/// The decimal digits of `value` into `digits`, lowest first; how many.
fn write_digits<T>(mut value: T, digits: &mut [u8]) -> usize
where
    T: Copy + PartialEq + From<u8> + std::ops::Rem<Output = T> + std::ops::DivAssign + TryInto<u8>,
    <T as TryInto<u8>>::Error: std::fmt::Debug,
{
    let (zero, ten) = (T::from(0), T::from(10));
    let mut count = 0;
    while value != zero {
        digits[count] = b'0' + (value % ten).try_into().expect("a remainder of a division by 10 is a digit");
        value /= ten;
        count += 1;
    }
    count
}

/// A date or time written as text on the stack: chrono's serde writes them through
/// `fmt::Formatter`, a call per character (and chrono's `format` re-parses its pattern).
pub(crate) struct Digits {
    text: [u8; 40],
    len: usize,
}

impl Default for Digits {
    fn default() -> Self {
        Digits { text: [0; 40], len: 0 }
    }
}

impl Digits {
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("only ASCII digits and signs are written")
    }

    fn byte(&mut self, byte: u8) {
        self.text[self.len] = byte;
        self.len += 1;
    }

    /// `value` in `width` digits, zero-padded; `value` must fit.
    fn number(&mut self, value: u32, width: usize) {
        let mut rest = value;
        for at in (self.len..self.len + width).rev() {
            self.text[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.len += width;
    }

    /// `amount`'s text as rust_decimal writes it: its digits, padded with zeros up to its
    /// scale, the point before the last `scale` of them (after a `0` when none is left before),
    /// `-` when its sign is negative, zero included.
    fn decimal(&mut self, amount: &Decimal) {
        let scale = amount.scale() as usize;
        let mut digits = [b'0'; 29];
        let magnitude = amount.mantissa().unsigned_abs();
        // Divisions of 64 bits where the mantissa fits, as retail amounts do: a division of
        // 128 bits is a call into the runtime, per digit.
        let count = match u64::try_from(magnitude) {
            Ok(small) => write_digits(small, &mut digits),
            Err(_) => write_digits(magnitude, &mut digits),
        };
        // `digits` holds zeros past `count`: the padding.
        let count = count.max(scale);
        if amount.is_sign_negative() {
            self.byte(b'-');
        }
        let whole = count - scale;
        if whole == 0 {
            self.byte(b'0');
        }
        for at in 0..count {
            if at == whole && scale > 0 {
                self.byte(b'.');
            }
            self.byte(digits[count - 1 - at]);
        }
    }

    /// False for a year chrono writes with a sign (before 0 or after 9999): left to chrono.
    pub(crate) fn date(&mut self, day: &NaiveDate) -> bool {
        let Ok(year) = u32::try_from(day.year()) else { return false };
        if year > 9999 {
            return false;
        }
        self.number(year, 4);
        self.byte(b'-');
        self.number(day.month(), 2);
        self.byte(b'-');
        self.number(day.day(), 2);
        true
    }

    /// False for what chrono writes otherwise (a signed year, a leap second, an offset with
    /// seconds): left to chrono.
    fn time(&mut self, at: &DateTime<FixedOffset>) -> bool {
        let local = at.naive_local();
        let offset = at.offset().local_minus_utc();
        let nanos = local.nanosecond();
        if nanos >= 1_000_000_000 || offset % 60 != 0 || !self.date(&local.date()) {
            return false;
        }
        self.byte(b'T');
        self.number(local.hour(), 2);
        self.byte(b':');
        self.number(local.minute(), 2);
        self.byte(b':');
        self.number(local.second(), 2);
        if nanos != 0 {
            self.byte(b'.');
            match (nanos % 1_000_000, nanos % 1_000) {
                (0, _) => self.number(nanos / 1_000_000, 3),
                (_, 0) => self.number(nanos / 1_000, 6),
                _ => self.number(nanos, 9),
            }
        }
        if offset == 0 {
            self.byte(b'Z');
        } else {
            self.byte(if offset < 0 { b'-' } else { b'+' });
            let minutes = offset.unsigned_abs() / 60;
            self.number(minutes / 60, 2);
            self.byte(b':');
            self.number(minutes % 60, 2);
        }
        true
    }
}
