//! Property tests of `decode`: decimals in every wire form, timestamps, and hostile bytes.

use super::tests::{ctx, json_of, msgpack_bytes, msgpack_with, POS, TRANSACTION};
use super::*;
use chrono::{DateTime, FixedOffset, TimeZone};
use proptest::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// Any Decimal: a 96-bit mantissa with any sign and scale.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28)
        .prop_map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(lo, mid, hi, negative, scale))
        // Larger magnitudes are refused by design (fields::MAGNITUDE_MAX).
        .prop_filter("within tally's magnitude bound", |d| d.abs() <= crate::decode::fields::MAGNITUDE_MAX)
}

/// A transaction of one line of qty 1 without discount, so that any unit price's gross and
/// net are exact (a record whose arithmetic overflows is refused: tests_fuzz_regressions).
const ONE_LINE: &str = r#"{"type": "pos.transaction", "id": "T-1", "store": "0042",
  "occurred_at": "2026-11-27T10:15:03-05:00", "lines": [{"sku": "100234", "qty": "1", "unit_price": "19.99"}]}"#;

/// The unit price of a one-line transaction whose unit_price field is `raw`, as JSON.
fn unit_price_from_json(raw: &str) -> Result<Decimal, Rejection> {
    let text = ONE_LINE.replace("\"19.99\"", raw);
    match json_of(POS, &text)? {
        Event::Transaction(t) => Ok(t.lines[0].unit_price),
        other => panic!("not a transaction: {other:?}"),
    }
}

fn unit_price_from_msgpack(value: rmpv::Value) -> Result<Decimal, Rejection> {
    let doc = serde_json::from_str(ONE_LINE).unwrap();
    let payload = msgpack_with(&doc, "lines.0.unit_price", value);
    match decode(POS, None, &payload, &ctx())?.1 {
        Event::Transaction(t) => Ok(t.lines[0].unit_price),
        other => panic!("not a transaction: {other:?}"),
    }
}

/// A timestamp of any instant in years 1000–9999 at any whole-minute offset within ±23:59.
fn any_timestamp() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (-30_610_224_000i64..253_402_214_400, 0u32..1_000_000_000, -1439i32..=1439).prop_map(
        |(secs, nanos, offset_minutes)| {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            offset.timestamp_opt(secs, nanos).unwrap()
        },
    )
}

proptest! {
    // Any Decimal as a JSON string and as a JSON number decodes to itself, scale included;
    // as a MessagePack f64 it does too whenever f64's shortest form is that same decimal.
    #[test]
    fn decimals_round_trip(d in any_decimal()) {
        let text = d.to_string();
        let from_string = unit_price_from_json(&format!("\"{text}\"")).unwrap();
        prop_assert_eq!((from_string, from_string.scale()), (d, d.scale()));
        let from_number = unit_price_from_json(&text).unwrap();
        prop_assert_eq!((from_number, from_number.scale()), (d, d.scale()));
        let f = d.to_f64().unwrap();
        if Decimal::from_str_exact(&format!("{f}")).ok() == Some(d) {
            prop_assert_eq!(unit_price_from_msgpack(rmpv::Value::F64(f)).unwrap(), d);
        }
    }

    // Short decimals (what a POS sends) always survive as MessagePack f64 and f32 floats.
    #[test]
    fn short_decimals_survive_floats(cents in -9_999_999i64..9_999_999) {
        let d = Decimal::new(cents, 2);
        let f64_price = unit_price_from_msgpack(rmpv::Value::F64(d.to_f64().unwrap())).unwrap();
        prop_assert_eq!(f64_price, d);
        if cents.abs() < 100_000 {
            let f32_price = unit_price_from_msgpack(rmpv::Value::F32(d.to_f32().unwrap())).unwrap();
            prop_assert_eq!(f32_price, d);
        }
    }

    // Any RFC 3339 timestamp decodes to the same instant with the same offset.
    #[test]
    fn timestamps_round_trip(t in any_timestamp()) {
        let text = TRANSACTION.replace("2026-11-27T10:15:03-05:00", &t.to_rfc3339());
        let Ok(Event::Transaction(got)) = json_of(POS, &text) else { panic!("{}", t.to_rfc3339()) };
        prop_assert_eq!(got.occurred_at, t);
        prop_assert_eq!(got.occurred_at.offset(), t.offset());
    }

    // Arbitrary bytes, under any content type, never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ct in prop_oneof![Just(None), Just(Some("application/json")), Just(Some("application/msgpack"))],
    ) {
        let _ = decode(POS, ct, &bytes, &ctx());
    }

    // A valid record with bytes overwritten, cut or doubled never panics the decoder.
    #[test]
    fn corrupted_records_never_panic(
        json in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut payload = if json {
            TRANSACTION.as_bytes().to_vec()
        } else {
            msgpack_bytes(&serde_json::from_str(TRANSACTION).unwrap())
        };
        for (at, byte) in edits {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        let _ = decode(POS, None, &payload, &ctx());
        let _ = decode(POS, None, &payload[..cut.index(payload.len())], &ctx());
    }
}
