//! MessagePack → [`Value`]: by `msgpack_reader`, which borrows strings from the payload, and
//! through `rmpv` for whatever that reader does not take, so that every refusal is worded as
//! rmpv words it.
//!
//! Integers keep their exact digits. Floats become their shortest round-trip decimal text
//! (Rust's `Display` for `f32`/`f64` is shortest round-trip and never uses an exponent), so a
//! POS that sends `19.99` as a float gets 19.99, not 19.989999999999998.
//!
//! One leniency is rmpv's: the reserved marker `0xc1` reads as nil. Where it stands for a
//! required field the record is still refused (the field is missing); where it stands for an
//! optional one it counts as absent, as `null` does.

use super::msgpack_reader::float;
use super::value::{Value, DEPTH_MAX};

/// rmpv spends about two units of its depth budget per nesting level (plus a few for a leaf);
/// this lets every document within [`DEPTH_MAX`] through, and the exact limit is enforced
/// while converting.
const RMPV_DEPTH_MAX: usize = 2 * DEPTH_MAX + 8;

/// Decodes a whole payload; trailing bytes after the first value are an error.
pub fn parse(payload: &[u8]) -> Result<Value<'_>, String> {
    let Some(value) = super::msgpack_reader::read(payload) else {
        return parse_owned(payload);
    };
    // The fuzz targets hold the two readers to one result on every payload they try.
    #[cfg(fuzzing)]
    assert_eq!(parse_owned(payload).as_ref(), Ok(&value), "msgpack_reader and rmpv differ on {payload:?}");
    Ok(value)
}

/// [`parse`] through rmpv's owned tree: the reference `msgpack_reader` is held to, and what
/// words its refusals.
pub(super) fn parse_owned(payload: &[u8]) -> Result<Value<'static>, String> {
    let mut rest = payload;
    let raw = rmpv::decode::read_value_with_max_depth(&mut rest, RMPV_DEPTH_MAX)
        .map_err(|e| format!("invalid MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("invalid MessagePack: {} unexpected bytes after the value", rest.len()));
    }
    convert(raw, 0)
}

/// Converts one value; `depth` counts the containers already open around it.
fn convert(raw: rmpv::Value, depth: usize) -> Result<Value<'static>, String> {
    use rmpv::Value as R;
    Ok(match raw {
        R::Nil => Value::Null,
        R::Boolean(b) => Value::Bool(b),
        R::Integer(i) => Value::Number(i.to_string().into()),
        R::F32(f) => float(f),
        R::F64(f) => float(f),
        R::String(s) => Value::Str(utf8(s)?.into()),
        R::Binary(b) => Value::Bytes(b),
        R::Ext(_, b) => Value::Bytes(b),
        R::Array(items) => {
            check_depth(depth + 1)?;
            let items = items.into_iter().map(|v| convert(v, depth + 1));
            Value::Array(items.collect::<Result<_, _>>()?)
        }
        R::Map(entries) => {
            check_depth(depth + 1)?;
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    R::String(s) => utf8(s)?.into(),
                    _ => return Err("invalid MessagePack: a map key is not a string".to_string()),
                };
                out.push((key, convert(v, depth + 1)?));
            }
            Value::Map(out)
        }
    })
}

fn check_depth(depth: usize) -> Result<(), String> {
    if depth > DEPTH_MAX {
        Err(format!("invalid MessagePack: nesting deeper than {DEPTH_MAX} levels"))
    } else {
        Ok(())
    }
}

fn utf8(s: rmpv::Utf8String) -> Result<String, String> {
    s.into_str().ok_or_else(|| "invalid MessagePack: a string is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmpv::Value as R;

    fn encode(v: &R) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn number_of(v: R) -> Value<'static> {
        let doc = encode(&R::Map(vec![(R::from("n"), v)]));
        let owned = parse_owned(&doc).unwrap().get("n").cloned().unwrap();
        assert_eq!(parse(&doc).unwrap().get("n"), Some(&owned));
        owned
    }

    // Floats become shortest round-trip text; integers stay exact at both extremes.
    #[test]
    fn numbers_are_exact_text() {
        assert_eq!(number_of(R::F64(19.99)), Value::Number("19.99".into()));
        assert_eq!(number_of(R::F32(19.99)), Value::Number("19.99".into()));
        assert_eq!(number_of(R::F64(0.1 + 0.2)), Value::Number("0.30000000000000004".into()));
        assert_eq!(number_of(R::F64(1e21)), Value::Number("1000000000000000000000".into()));
        assert_eq!(number_of(R::from(u64::MAX)), Value::Number(u64::MAX.to_string().into()));
        assert_eq!(number_of(R::from(i64::MIN)), Value::Number(i64::MIN.to_string().into()));
        assert_eq!(number_of(R::F64(f64::NAN)), Value::NonFinite("NaN".into()));
        assert_eq!(number_of(R::F32(f32::NEG_INFINITY)), Value::NonFinite("-inf".into()));
    }

    // Non-string keys, invalid UTF-8, trailing bytes and truncation are all errors.
    #[test]
    fn refuses_malformed() {
        assert!(parse(&encode(&R::Map(vec![(R::from(1), R::Nil)]))).is_err());
        assert!(parse(&[0x81, 0xa1, 0xff, 0xc0]).is_err()); // key "\xff"
        let mut trailing = encode(&R::Map(vec![]));
        trailing.push(0xc0);
        assert!(parse(&trailing).is_err());
        let full = encode(&R::Map(vec![(R::from("a"), R::from("abcdef"))]));
        assert!(parse(&full[..full.len() - 1]).is_err());
        assert!(parse(&[]).is_err());
        // rmpv reads the never-used marker 0xc1 as nil (see the module comment).
        assert_eq!(parse(&[0xc1]), Ok(Value::Null));
        // An array32 header that claims 4 billion items and ends: an error, not an allocation.
        assert!(parse(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    // bin and ext data survive as bytes, for the schema to refuse where a string is expected.
    #[test]
    fn bin_and_ext_are_bytes() {
        assert_eq!(number_of(R::Binary(vec![1, 2])), Value::Bytes(vec![1, 2]));
        assert_eq!(number_of(R::Ext(5, vec![3])), Value::Bytes(vec![3]));
    }

    // Exactly DEPTH_MAX levels decode; one more is an error, and 100k levels do not crash.
    #[test]
    fn depth_is_bounded() {
        let nest = |levels: usize| {
            let mut v = R::Map(vec![(R::from("leaf"), R::from("x"))]);
            for _ in 1..levels {
                v = R::Map(vec![(R::from("k"), v)]);
            }
            encode(&v)
        };
        assert!(parse(&nest(DEPTH_MAX)).is_ok());
        assert!(parse(&nest(DEPTH_MAX + 1)).is_err());
        assert!(parse(&[0x91; 100_000]).is_err()); // 100k nested one-item arrays
    }

    proptest! {
        // Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
