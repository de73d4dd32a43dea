//! Typed access to the fields of one map, each error naming the field's path.
//!
//! Paths read like jq's: `lines[0].qty` (array indexes count from 0). `null` counts as absent
//! everywhere, so a required field that is `null` is "missing". The reason of a refusal
//! follows the contract: a missing field or a wrong type is `schema`, except that a value
//! where a decimal belongs that is not an exact decimal is `decimal` and one where a timestamp
//! or day belongs that is not one is `timestamp`, whatever its type.

use std::rc::Rc;

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::number::{parse_decimal, NumberError};
use super::value::Value;
use super::{RejectReason, Rejection};

/// One map of the document and where it sits.
pub struct Obj<'v> {
    value: &'v Value<'v>,
    place: Place,
}

/// Where a map sits, kept in parts: its path is text only in a rejection's detail, and
/// writing it for every field of every accepted record was a sixth of decoding a sale.
enum Place {
    Root,
    /// Item `index` of the array at `array` (a path shared by all of its items).
    Item {
        array: Rc<str>,
        index: usize,
    },
}

impl<'v> Obj<'v> {
    /// The top-level map; the caller has checked that it is one.
    pub fn root(value: &'v Value<'v>) -> Obj<'v> {
        Obj { value, place: Place::Root }
    }

    pub fn path_of(&self, key: &str) -> String {
        match &self.place {
            Place::Root => key.to_string(),
            Place::Item { array, index } => format!("{array}[{index}].{key}"),
        }
    }

    /// The field's value, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'v Value<'v>> {
        self.value.get(key).filter(|v| **v != Value::Null)
    }

    fn missing(&self, key: &str) -> Rejection {
        schema(format!("{}: required field is missing", self.path_of(key)))
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> Rejection {
        schema(format!("{}: expected {expected}, got {}", self.path_of(key), got.describe()))
    }

    /// A required non-empty string.
    pub fn req_str(&self, key: &str) -> Result<String, Rejection> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional string; when present it must be non-empty, since an empty id or name
    /// would silently merge unrelated records.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) if s.is_empty() => Err(schema(format!("{}: must not be empty", self.path_of(key)))),
            Some(Value::Str(s)) => Ok(Some(s.to_string())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A required decimal.
    pub fn req_decimal(&self, key: &str) -> Result<Decimal, Rejection> {
        match self.get(key) {
            None => Err(self.missing(key)),
            Some(v) => decimal_of(v, || self.path_of(key)),
        }
    }

    /// An optional decimal.
    pub fn opt_decimal(&self, key: &str) -> Result<Option<Decimal>, Rejection> {
        self.get(key).map(|v| decimal_of(v, || self.path_of(key))).transpose()
    }

    /// An optional decimal, `default` when absent.
    pub fn decimal_or(&self, key: &str, default: Decimal) -> Result<Decimal, Rejection> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => decimal_of(v, || self.path_of(key)),
        }
    }

    /// A required non-negative integer.
    pub fn req_u64(&self, key: &str) -> Result<u64, Rejection> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional non-negative integer. Any number whose exact value is a whole number that
    /// fits 64 bits is accepted (`123`, `123.0`, `1.23e2`); strings are not.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, Rejection> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let whole = match v {
            Value::Number(text) => parse_decimal(text).ok().filter(|d| d.fract().is_zero()).and_then(|d| d.to_u64()),
            _ => None,
        };
        whole.map(Some).ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    /// An optional boolean, `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, Rejection> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong_type(key, "a boolean", other)),
        }
    }

    /// A required RFC 3339 timestamp with an offset, which it keeps.
    pub fn req_timestamp(&self, key: &str) -> Result<DateTime<FixedOffset>, Rejection> {
        let Some(v) = self.get(key) else {
            return Err(self.missing(key));
        };
        match v {
            Value::Str(s) => DateTime::parse_from_rfc3339(s).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            let what = "is not an RFC 3339 timestamp with an offset";
            timestamp(format!("{}: {} {what}", self.path_of(key), v.describe()))
        })
    }

    /// An optional `YYYY-MM-DD` calendar day.
    pub fn opt_day(&self, key: &str) -> Result<Option<NaiveDate>, Rejection> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::Str(s) if is_day_shaped(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
            _ => None,
        }
        .map(Some)
        .ok_or_else(|| timestamp(format!("{}: {} is not a YYYY-MM-DD day", self.path_of(key), v.describe())))
    }

    /// The maps of an optional array field (absent or `null` is empty), at most `max` of them.
    pub fn items(&self, key: &str, max: usize) -> Result<Vec<Obj<'v>>, Rejection> {
        let items = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, "an array", other)),
        };
        let path: Rc<str> = self.path_of(key).into();
        if items.len() > max {
            let detail = format!("{path}: {} items, more than the limit of {max}", items.len());
            return Err(Rejection { reason: RejectReason::TooLarge, detail });
        }
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match item {
                Value::Map(_) => out.push(Obj { value: item, place: Place::Item { array: Rc::clone(&path), index } }),
                other => {
                    let detail = format!("{path}[{index}]: expected a map, got {}", other.describe());
                    return Err(schema(detail));
                }
            }
        }
        Ok(out)
    }
}

/// The largest magnitude tally accepts for any quantity or amount, and for a record's own
/// products and sums: a quadrillion. No retail record comes near it, and it keeps every running
/// total (sums of at most this much per record) far below Decimal's limit of 7.9e28, whose
/// operators panic on overflow.
pub const MAGNITUDE_MAX: Decimal = Decimal::from_parts(
    (1_000_000_000_000_000u64 & 0xFFFF_FFFF) as u32,
    (1_000_000_000_000_000u64 >> 32) as u32,
    0,
    false,
    0,
);

/// A value where a decimal belongs: a decimal string or any number, held exactly, within
/// [`MAGNITUDE_MAX`]. `path` names it in a rejection.
pub fn decimal_of(value: &Value, path: impl Fn() -> String) -> Result<Decimal, Rejection> {
    let parsed = match value {
        Value::Number(text) | Value::Str(text) => parse_decimal(text),
        _ => Err(NumberError::Syntax),
    };
    if let Ok(d) = parsed {
        if d.abs() > MAGNITUDE_MAX {
            return Err(Rejection {
                reason: RejectReason::Decimal,
                detail: format!(
                    "{}: {} does not fit a decimal exactly within ±{MAGNITUDE_MAX}",
                    path(),
                    value.describe()
                ),
            });
        }
    }
    parsed.map_err(|e| {
        let why = match e {
            NumberError::Syntax => "is not a decimal",
            NumberError::OutOfRange => {
                "does not fit a decimal exactly (at most 28 decimal places, magnitude below 7.9e28)"
            }
        };
        let detail = format!("{}: {} {why}", path(), value.describe());
        Rejection { reason: RejectReason::Decimal, detail }
    })
}

/// Exactly `DDDD-DD-DD`: chrono alone would also take "2026-1-5" or "+2026-11-27".
fn is_day_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

pub fn schema(detail: String) -> Rejection {
    Rejection { reason: RejectReason::Schema, detail }
}

fn timestamp(detail: String) -> Rejection {
    Rejection { reason: RejectReason::Timestamp, detail }
}
