//! Input decoding (docs/wire-format.md): the bytes of one NATS message become a typed [`Event`], or
//! a [`Rejection`] whose reason names the DLQ subject (docs/wire-format.md, "The dead-letter queue").
//!
//! Pure and total: no I/O, no clock, no panics on any input. Amounts never pass through a
//! binary float. Checks run in this order, and the first failure is the reason:
//! size (`too_large`), subject (`schema`), bytes (`decode`), `type` (`schema` or
//! `unknown_type`), `store` (`schema` or `store_mismatch`), then the record's fields.
//!
//! - `value`: the untyped document both formats decode into.
//! - `json`: a strict JSON reader that keeps number literals as text.
//! - `msgpack`: MessagePack, floats as their shortest round-trip text; `msgpack_reader` reads
//!   well-formed documents without an owned tree, rmpv the rest.
//! - `number`: exact decimal text → `Decimal`.
//! - `fields`: typed field access with paths for the rejection details.
//! - `records`: the three POS and inventory records of the contract.
//! - `arithmetic`: the exactness of a record's products and sums.
//! - `order`: the order management system's `order.fulfillment`.

mod arithmetic;
mod fields;
mod json;
mod msgpack;
mod msgpack_reader;
mod number;
mod order;
mod records;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz_regressions;
#[cfg(test)]
mod tests_msgpack;
#[cfg(test)]
mod tests_order;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_reasons;
#[cfg(test)]
mod tests_schema;

use crate::model::{Event, Source};
use fields::{schema, Obj};
use value::Value;

/// What decoding needs to know besides the message.
#[derive(Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The subject prefix `P` (default `retail`).
    pub subject_prefix: &'a str,
    /// The currency of a transaction that names none (`erp.default_currency`).
    pub default_currency: &'a str,
    /// The store's IANA time zone, for the default `business_day`.
    pub timezone_of: &'a dyn Fn(&str) -> chrono_tz::Tz,
    /// A larger payload is refused as `too_large`.
    pub max_message_bytes: usize,
    /// More lines, or more tenders, in one record is refused as `too_large`.
    pub max_lines: usize,
}

/// Why an input was refused; each is a DLQ subject suffix (docs/wire-format.md, "The dead-letter queue").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not a JSON object or MessagePack map with string keys.
    Decode,
    /// A bad subject, a missing field, a wrong type, a `type` on the wrong subject.
    Schema,
    /// A value where a decimal belongs that is not an exact decimal.
    Decimal,
    /// A value where a timestamp or day belongs that is not one.
    Timestamp,
    /// A `type` that tally does not know.
    UnknownType,
    /// The `store` field differs from the subject's store token.
    StoreMismatch,
    /// A known id with different content (detected after decoding, not here).
    Conflict,
    /// A payload over the byte limit, or a record over the line limit.
    TooLarge,
    /// A transaction in another currency than its store-day's (detected after decoding, not
    /// here): a day's totals are never summed across currencies.
    Currency,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::Decode,
        RejectReason::Schema,
        RejectReason::Decimal,
        RejectReason::Timestamp,
        RejectReason::UnknownType,
        RejectReason::StoreMismatch,
        RejectReason::Conflict,
        RejectReason::TooLarge,
        RejectReason::Currency,
    ];

    /// The contract's name: the `Tally-Error` header and the `P.dlq.<reason>` token.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Decode => "decode",
            RejectReason::Schema => "schema",
            RejectReason::Decimal => "decimal",
            RejectReason::Timestamp => "timestamp",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::StoreMismatch => "store_mismatch",
            RejectReason::Conflict => "conflict",
            RejectReason::TooLarge => "too_large",
            RejectReason::Currency => "currency",
        }
    }
}

/// A refused input: the reason, and a sentence naming the field (`Tally-Error-Detail`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Rejection {
        Rejection { reason, detail: detail.into() }
    }
}

/// Decodes one input message. `subject` is the NATS subject it arrived on.
///
/// The format is JSON when `content_type` is `application/json`, MessagePack when it is
/// `application/msgpack` or `application/x-msgpack` (parameters after `;` and letter case are
/// ignored); with no or another content type, a payload whose first non-whitespace byte is
/// `{` is JSON and anything else MessagePack.
pub fn decode(
    subject: &str,
    content_type: Option<&str>,
    payload: &[u8],
    ctx: &DecodeContext,
) -> Result<(Source, Event), Rejection> {
    decode_with_system(subject, content_type, payload, ctx).map(|(source, event, _)| (source, event))
}

/// [`decode`], with the record's own `sku_system` when it names one (docs/wire-format.md, "SKU
/// aliases"): the system its codes belong to, instead of its subject's default.
pub fn decode_with_system(
    subject: &str,
    content_type: Option<&str>,
    payload: &[u8],
    ctx: &DecodeContext,
) -> Result<(Source, Event, Option<String>), Rejection> {
    if payload.len() > ctx.max_message_bytes {
        let detail = format!("payload is {} bytes, more than the limit of {}", payload.len(), ctx.max_message_bytes);
        return Err(Rejection::new(RejectReason::TooLarge, detail));
    }
    let (source, token) = parse_input_subject(ctx.subject_prefix, subject).ok_or_else(|| {
        let p = ctx.subject_prefix;
        schema(format!("subject {subject:?} is not {p}.pos.<store>, {p}.inventory.<store> or {p}.orders.<store>"))
    })?;
    let parsed = if is_json(content_type, payload) { json::parse(payload) } else { msgpack::parse(payload) };
    let doc = parsed.map_err(|detail| Rejection::new(RejectReason::Decode, detail))?;
    if !matches!(doc, Value::Map(_)) {
        let detail = format!("the top level is {}, not a map", doc.describe());
        return Err(Rejection::new(RejectReason::Decode, detail));
    }
    let root = Obj::root(&doc);

    let kind = match root.get("type") {
        None => return Err(schema("type: required field is missing".to_string())),
        Some(Value::Str(kind)) => kind.as_ref(),
        Some(other) => return Err(schema(format!("type: expected a string, got {}", other.describe()))),
    };
    let allowed_on = match kind {
        "pos.transaction" | "pos.day_close" => Source::Pos,
        "inventory.movement" => Source::Inventory,
        "order.fulfillment" => Source::Orders,
        _ => {
            let known = "pos.transaction, pos.day_close, inventory.movement, order.fulfillment";
            let detail = format!("type: {} is not one of {known}", Value::Str(kind.into()).describe());
            return Err(Rejection::new(RejectReason::UnknownType, detail));
        }
    };
    if allowed_on != source {
        let detail = format!("type: {kind:?} does not belong on subject {subject:?}");
        return Err(schema(detail));
    }

    let store = root.req_str("store")?;
    if store != token {
        let detail = format!("store: {store:?} differs from the subject's store {token:?}");
        return Err(Rejection::new(RejectReason::StoreMismatch, detail));
    }
    let event = match kind {
        "pos.transaction" => Event::Transaction(records::transaction(&root, store, ctx)?),
        "pos.day_close" => Event::DayClose(records::day_close(&root, store, ctx)?),
        "order.fulfillment" => Event::Order(order::fulfillment(&root, store, ctx)?),
        _ => Event::Movement(records::movement(&root, store, ctx)?),
    };
    let sku_system = root.opt_str("sku_system")?;
    if let Some(system) = &sku_system {
        if !crate::sku_alias::is_valid_system(system) {
            return Err(schema(format!("sku_system: {system:?} is not 1-64 of A-Z a-z 0-9 _ -")));
        }
    }
    Ok((source, event, sku_system))
}

/// The record id a message names, as far as it can be read: the string `id` at the top level
/// of a JSON object or MessagePack map of at most `max_message_bytes`. For log lines about a
/// record that was refused or skipped, where [`decode`] gave no event; never a reason to
/// accept anything.
pub fn record_id(content_type: Option<&str>, payload: &[u8], max_message_bytes: usize) -> Option<String> {
    if payload.len() > max_message_bytes {
        return None;
    }
    let parsed = if is_json(content_type, payload) { json::parse(payload) } else { msgpack::parse(payload) };
    match parsed.ok()?.get("id")? {
        Value::Str(id) => Some(id.to_string()),
        _ => None,
    }
}

fn is_json(content_type: Option<&str>, payload: &[u8]) -> bool {
    let media = content_type.and_then(|ct| ct.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => true,
        Some("application/msgpack" | "application/x-msgpack") => false,
        _ => payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

/// The store token of an input subject `P.pos.<store>` / `P.inventory.<store>` /
/// `P.orders.<store>`, with its
/// Source. `None` for any other subject, including one whose store token is not valid.
pub fn parse_input_subject<'s>(prefix: &str, subject: &'s str) -> Option<(Source, &'s str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (family, store) = rest.split_once('.')?;
    let source = match family {
        "pos" => Source::Pos,
        "inventory" => Source::Inventory,
        "orders" => Source::Orders,
        _ => return None,
    };
    is_valid_store_id(store).then_some((source, store))
}

/// A store id is a token of `[A-Za-z0-9_-]{1,64}` (docs/wire-format.md, "Subjects and streams").
pub fn is_valid_store_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
