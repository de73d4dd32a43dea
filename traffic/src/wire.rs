//! Bytes on the wire: JSON or MessagePack encoding of a record, decimal and quantity values as
//! the contract allows them, and the malformed variants that must land in tally's DLQ. Pure: no
//! I/O, randomness only from the caller's generator.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use rand::rngs::SmallRng;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::Value;

pub const CONTENT_JSON: &str = "application/json";
pub const CONTENT_MSGPACK: &str = "application/msgpack";

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct WireMessage {
    pub subject: String,
    /// `application/json` or `application/msgpack`, for the `Content-Type` header.
    pub content_type: &'static str,
    pub payload: Vec<u8>,
    /// The event time at which the message is meant to be published.
    pub due: DateTime<Utc>,
}

impl WireMessage {
    pub fn is_msgpack(&self) -> bool {
        self.content_type == CONTENT_MSGPACK
    }
}

/// Money on the wire: always a string with its scale ("19.99", "-0.40").
pub(super) fn money(d: Decimal) -> Value {
    Value::String(d.to_string())
}

/// A whole quantity: a string, or an integer when `as_number` (to exercise the decoder).
pub(super) fn units(q: i64, as_number: bool) -> Value {
    if as_number {
        Value::from(q)
    } else {
        Value::String(q.to_string())
    }
}

/// RFC 3339 with the store's local offset, e.g. "2026-11-27T10:15:03-05:00".
pub(super) fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Serializes a record as a JSON object or a MessagePack map with string keys.
pub(super) fn encode(value: &Value, msgpack: bool) -> (&'static str, Vec<u8>) {
    if msgpack {
        // Writing a serde_json::Value into a Vec cannot fail: every key is a string and the
        // writer is infallible.
        let bytes = rmp_serde::to_vec_named(value).unwrap_or_default();
        (CONTENT_MSGPACK, bytes)
    } else {
        // Same reasoning: a Value always serializes to JSON.
        (CONTENT_JSON, serde_json::to_vec(value).unwrap_or_default())
    }
}

/// The kinds of bad input a real fleet produces, named by the DLQ reason tally must give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A decimal written with a comma or two points.
    Decimal,
    /// A timestamp without an offset or in a local format.
    Timestamp,
    /// A record type tally does not know.
    UnknownType,
    /// Bytes that are not a JSON object or a MessagePack map (truncated, or a log line).
    Garbage,
    /// A `store` field that differs from the subject's store token.
    StoreMismatch,
}

impl Malformed {
    const ALL: [Malformed; 5] = [
        Malformed::Decimal,
        Malformed::Timestamp,
        Malformed::UnknownType,
        Malformed::Garbage,
        Malformed::StoreMismatch,
    ];

    /// The DLQ reason (docs/wire-format.md, "The dead-letter queue") tally should give this message.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::Decimal => "decimal",
            Malformed::Timestamp => "timestamp",
            Malformed::UnknownType => "unknown_type",
            Malformed::Garbage => "decode",
            Malformed::StoreMismatch => "store_mismatch",
        }
    }

    pub(super) fn pick(rng: &mut SmallRng) -> Self {
        Self::ALL[rng.random_range(0..Self::ALL.len())]
    }
}

fn choose<'a>(rng: &mut SmallRng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

/// Encodes `value` after damaging it the `kind` way. `other_store` is a real store id different
/// from the record's own, for a mismatch.
pub(super) fn encode_malformed(
    mut value: Value,
    kind: Malformed,
    msgpack: bool,
    other_store: &str,
    rng: &mut SmallRng,
) -> (&'static str, Vec<u8>) {
    match kind {
        Malformed::Decimal => {
            let bad = choose(rng, &["12,50", "1.2.3", "19.99 USD", "NaN", ""]);
            if let Some(line) = value.get_mut("lines").and_then(|l| l.get_mut(0)) {
                let field = if line.get("unit_price").is_some() { "unit_price" } else { "qty" };
                line[field] = Value::from(bad);
            }
        }
        Malformed::Timestamp => {
            let bad = choose(rng, &["2026-11-27 10:15:03", "27/11/2026 10:15", "2026-13-45T10:00:00Z", "yesterday"]);
            value["occurred_at"] = Value::from(bad);
        }
        Malformed::UnknownType => {
            let bad = choose(rng, &["pos.refund", "pos.transaction.v2", "inventory.snapshot"]);
            value["type"] = Value::from(bad);
        }
        Malformed::StoreMismatch => value["store"] = Value::from(other_store),
        Malformed::Garbage => {
            let (content_type, mut bytes) = encode(&value, msgpack);
            if !msgpack && rng.random_bool(0.3) {
                bytes = b"ERROR register offline: queued sale lost\n".to_vec();
            } else {
                // A write cut short by a crashing publisher: a valid start, no end.
                bytes.truncate(bytes.len() / 2);
            }
            return (content_type, bytes);
        }
    }
    encode(&value, msgpack)
}
