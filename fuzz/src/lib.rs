//! The checks behind tally's fuzz targets, shared by the libFuzzer binaries (`fuzz_targets/`)
//! and the deterministic fallback loop (`tests/mutation_loop.rs`, for machines without a
//! nightly toolchain). Each check takes raw fuzzer bytes and panics when an invariant breaks;
//! returning normally means the input was handled, accepted or refused.
//!
//! - [`check_decode_input`]: subject, content type and payload through `decode::decode`.
//! - [`check_decode_state`]: bytes as every stored value type through `codec::decode`.
//! - [`check_apply_input`]: a few messages through the whole topology over an in-memory store.
//! - [`Flags`]: how the first byte of an input picks the subject, content type and limits.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use tally_state::{Cf, MemStore, Overlay, Store};
use tally_topologies::codec;
use tally_topologies::aggregates::{LatestPrice, OutboxEntry, Seen, SkuDay, StoreDay};
use tally_topologies::clock::StoreClock;
use tally_topologies::decode::{self, DecodeContext};
use tally_topologies::fingerprint::fingerprint;
use tally_topologies::model::Event;
use tally_topologies::topology::{InputMessage, Retail, Tick, TopologyConfig};

/// The payload limit the checks decode under; fuzz inputs are far smaller, so the size check
/// is exercised through [`Flags::max_message_bytes`] instead.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// The longest subject taken from an input's bytes.
pub const SUBJECT_CHARS_MAX: usize = 256;
/// A rejection detail longer than this would not fit a NATS header comfortably.
pub const DETAIL_CHARS_MAX: usize = 4096;

/// The first byte of a decode input:
/// bits 0–1 subject (`retail.pos.0042`, `retail.inventory.0042`, `retail.pos.S-1`, or the visible
/// ASCII up to the first newline of the rest), bits 2–3 content type (none, JSON, MessagePack,
/// `application/x-msgpack; v=1`), bits 4–6 the line limit (0 → the default 1000, else 1–7),
/// bit 7 a tiny byte limit (64) so that `too_large` is reached too.
#[derive(Debug, Clone, Copy)]
pub struct Flags(pub u8);

impl Flags {
    /// Splits an input into (subject, content type, payload, limits).
    pub fn split(data: &[u8]) -> Option<(String, Option<&'static str>, &[u8], Flags)> {
        let (&first, rest) = data.split_first()?;
        let flags = Flags(first);
        let (subject, payload) = match first & 0b11 {
            0 => ("retail.pos.0042".to_string(), rest),
            1 => ("retail.inventory.0042".to_string(), rest),
            2 => ("retail.pos.S-1".to_string(), rest),
            _ => {
                // NATS subjects are printable ASCII without spaces, and short in practice.
                let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                let subject: String = rest[..cut]
                    .iter()
                    .filter(|b| b.is_ascii_graphic())
                    .take(SUBJECT_CHARS_MAX)
                    .map(|&b| char::from(b))
                    .collect();
                (subject, rest.get(cut + 1..).unwrap_or_default())
            }
        };
        let content_type = match (first >> 2) & 0b11 {
            0 => None,
            1 => Some("application/json"),
            2 => Some("application/msgpack"),
            _ => Some("Application/X-MsgPack; v=1"),
        };
        Some((subject, content_type, payload, flags))
    }

    pub fn max_lines(self) -> usize {
        match (self.0 >> 4) & 0b111 {
            0 => 1000,
            n => usize::from(n),
        }
    }

    pub fn max_message_bytes(self) -> usize {
        if self.0 & 0x80 != 0 {
            64
        } else {
            MESSAGE_BYTES_MAX
        }
    }
}

fn timezone_of(store: &str) -> chrono_tz::Tz {
    // Two zones, so the business-day default is computed away from UTC too.
    if store.len().is_multiple_of(2) {
        chrono_tz::America::New_York
    } else {
        chrono_tz::Asia::Kolkata
    }
}

/// `decode::decode` never panics, is deterministic, and what it accepts is consistent with the
/// message and safe for the topology's arithmetic (the same sums the aggregates compute).
pub fn check_decode_input(data: &[u8]) {
    let Some((subject, content_type, payload, flags)) = Flags::split(data) else {
        return;
    };
    let ctx = DecodeContext {
        subject_prefix: "retail",
        default_currency: "USD",
        timezone_of: &timezone_of,
        max_message_bytes: flags.max_message_bytes(),
        max_lines: flags.max_lines(),
    };
    let first = decode::decode(&subject, content_type, payload, &ctx);
    let again = decode::decode(&subject, content_type, payload, &ctx);
    assert_eq!(
        first, again,
        "decoding the same message twice gave different results"
    );
    match first {
        Err(rejection) => {
            assert!(
                !rejection.detail.trim().is_empty(),
                "a rejection must say why: {rejection:?}"
            );
            // The detail may quote the subject (NATS bounds its length), never much of the payload.
            let chars = rejection.detail.chars().count();
            assert!(
                chars <= DETAIL_CHARS_MAX + subject.chars().count(),
                "a rejection detail of {chars} characters echoes the payload"
            );
        }
        Ok((source, event)) => {
            assert!(
                payload.len() <= ctx.max_message_bytes,
                "accepted a payload over the byte limit"
            );
            let (subject_source, token) = decode::parse_input_subject("retail", &subject)
                .expect("an accepted message has a valid subject");
            assert_eq!(source, subject_source, "source differs from the subject's");
            assert_eq!(
                event.store(),
                token,
                "store differs from the subject's store token"
            );
            check_event_arithmetic(&event, ctx.max_lines);
            let _ = fingerprint(&event);
        }
    }
}

/// What the topology computes for an accepted event must not overflow or break its shape.
fn check_event_arithmetic(event: &Event, max_lines: usize) {
    match event {
        Event::Transaction(tx) => {
            assert!(
                tx.lines.len() <= max_lines && tx.tenders.len() <= max_lines,
                "over the line limit"
            );
            assert!(tx.lines.is_empty() != tx.voids.is_none(), "lines xor voids");
            let mut day = StoreDay::default();
            day.apply_transaction(tx, Decimal::ONE);
            day.note_seq(tx);
            day.apply_transaction(tx, Decimal::NEGATIVE_ONE);
            assert!(
                day.gross.is_zero() && day.net.is_zero() && day.tax.is_zero(),
                "a reversal must net to zero"
            );
            for line in &tx.lines {
                assert!(!line.qty.is_zero(), "a zero qty was accepted");
                let mut sku = SkuDay::default();
                sku.apply_line(line, Decimal::ONE);
                let _ = sku.drift_units();
                sku.apply_line(line, Decimal::NEGATIVE_ONE);
                assert!(sku.net.is_zero(), "a line reversal must net to zero");
            }
            let _ = codec::encode(tx);
        }
        Event::Movement(movement) => {
            assert!(
                !movement.lines.is_empty() && movement.lines.len() <= max_lines,
                "movement lines out of bounds"
            );
            let mut day = StoreDay::default();
            day.apply_movement(movement);
            let mut sku = SkuDay::default();
            for line in &movement.lines {
                sku.apply_movement_qty(movement.reason, line.qty);
            }
            let _ = sku.drift_units();
        }
        Event::DayClose(close) => {
            assert!(close.tenders.len() <= max_lines, "over the tender limit");
        }
        Event::Order(order) => {
            assert!(!order.lines.is_empty() && order.lines.len() <= max_lines, "order lines out of bounds");
            let mut day = StoreDay::default();
            day.apply_order(order);
            let mut sku = SkuDay::default();
            for line in &order.lines {
                assert!(line.qty > Decimal::ZERO, "an order line with no positive units was accepted");
                sku.apply_order_qty(order.fulfillment, line.qty);
            }
            let _ = sku.drift_units();
        }
    }
}

/// Every stored value type decodes any bytes without panicking, and what decodes re-encodes
/// to a value that decodes equal (so a rewrite of state cannot change it), in the bytes serde
/// writes for it (the values packed by hand, `codec::Pack`, must not differ).
pub fn check_decode_state(data: &[u8]) {
    round_trip::<StoreDay>(data);
    round_trip::<SkuDay>(data);
    round_trip::<Seen>(data);
    round_trip::<OutboxEntry>(data);
    round_trip::<LatestPrice>(data);
    round_trip::<StoreClock>(data);
}

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + codec::Pack + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = codec::decode::<T>(data) {
        let bytes = codec::encode(&value);
        let by_serde = rmp_serde::to_vec(&value).expect("serializing a state value to memory cannot fail");
        assert_eq!(bytes, by_serde, "{} packed otherwise than serde writes it: {value:?}", std::any::type_name::<T>());
        let back: T = codec::decode(&bytes).unwrap_or_else(|err| {
            panic!(
                "{} re-encoded from {value:?} does not decode: {err}",
                std::any::type_name::<T>()
            )
        });
        assert_eq!(
            back,
            value,
            "{} changed through encode/decode",
            std::any::type_name::<T>()
        );
    }
}

/// The separator between messages in an [`check_apply_input`] input.
pub const MESSAGE_SEPARATOR: &[u8] = b"\n~~\n";
/// Messages applied per input at most; more make an execution slow without finding more.
pub const MESSAGES_MAX: usize = 8;

/// Up to [`MESSAGES_MAX`] messages (split on [`MESSAGE_SEPARATOR`], each with its own
/// [`Flags`] byte) through `Retail::apply_batch`, one batch each, over a fresh in-memory store, then ticks that
/// finalize and prune the days: nothing panics, nothing fails, and every output's headers are
/// one bounded line, as NATS requires.
pub fn check_apply_input(data: &[u8]) {
    let store = run_topology(data);
    for (_, value) in store
        .scan_from(Cf::Outbox, &[], usize::MAX)
        .expect("MemStore scans cannot fail")
    {
        let entry: OutboxEntry =
            codec::decode(&value).expect("the topology wrote this outbox entry");
        for (name, value) in &entry.headers {
            assert!(
                !value.chars().any(char::is_control),
                "header {name} has a control character: {value:?}"
            );
            assert!(
                value.len() <= 4 * DETAIL_CHARS_MAX,
                "header {name} is {} bytes",
                value.len()
            );
        }
    }
}

/// Every value the topology stored after [`check_apply_input`]'s messages and ticks: real
/// encodings, the best seeds for `decode_state`.
pub fn stored_values_after(data: &[u8]) -> Vec<Vec<u8>> {
    let store = run_topology(data);
    let mut values = Vec::new();
    for cf in Cf::ALL {
        for (_, value) in store
            .scan_from(cf, &[], usize::MAX)
            .expect("MemStore scans cannot fail")
        {
            values.push(value);
        }
    }
    values
}

fn run_topology(data: &[u8]) -> MemStore {
    let store = MemStore::new();
    let config = TopologyConfig {
        store_timezones: [("0042".to_string(), chrono_tz::America::New_York)]
            .into_iter()
            .collect(),
        ..TopologyConfig::default()
    };
    let retail = Retail::new(config);
    let mut now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-27T15:00:00Z")
        .expect("a literal")
        .to_utc();
    for (i, chunk) in split_messages(data)
        .into_iter()
        .take(MESSAGES_MAX)
        .enumerate()
    {
        let Some((subject, content_type, payload, _)) = Flags::split(chunk) else {
            continue;
        };
        let msg = InputMessage::new(&subject, content_type, payload, i as u64 + 1);
        apply_batch(&store, &retail, &[msg], now, Tick::Skip);
        now += Duration::minutes(1);
    }
    for elapsed in [Duration::hours(2), Duration::days(3), Duration::days(60)] {
        now += elapsed;
        apply_batch(&store, &retail, &[], now, Tick::Run);
    }
    store
}

/// One batch through `Retail::apply_batch`, as the run loop applies it, committed.
fn apply_batch(
    store: &MemStore,
    retail: &Retail,
    messages: &[InputMessage<'_>],
    now: DateTime<Utc>,
    tick: Tick,
) {
    let mut txn = Overlay::new(store);
    retail
        .apply_batch(&mut txn, messages, now, tick)
        .unwrap_or_else(|err| panic!("a batch failed on an in-memory store: {err:?}"));
    store
        .write(&txn.into_batch())
        .expect("MemStore writes cannot fail");
}

fn split_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest
        .windows(MESSAGE_SEPARATOR.len())
        .position(|w| w == MESSAGE_SEPARATOR)
    {
        out.push(&rest[..at]);
        rest = &rest[at + MESSAGE_SEPARATOR.len()..];
    }
    out.push(rest);
    out
}
