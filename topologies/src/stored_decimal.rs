//! How the aggregates keep their amounts in state: a `Decimal` as its integer mantissa and
//! its scale, `[m, s]` for m × 10^−s, instead of its text.
//!
//! Every record decodes and re-encodes the totals it touches, a few dozen amounts each, and
//! writing and parsing their text was a fifth of that work (rust_decimal's `to_str_internal`
//! divides the 96-bit mantissa by ten per digit). A mantissa beyond 64 bits, which no retail
//! amount reaches, is still written as text; values written as text by earlier versions are
//! read as before, so existing state needs no migration.
//!
//! Only the aggregates use this. Input records (`model`) keep their text form: their encoding
//! is what `fingerprint` hashes, and a stored fingerprint must keep matching its redelivery.
//! Outputs are built as JSON values with amounts as text (docs/wire-format.md, "Drift alert") and are not touched.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// A `Decimal` in its stored form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stored(pub Decimal);

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0.mantissa()) {
            Ok(mantissa) => {
                let mut pair = serializer.serialize_tuple(2)?;
                pair.serialize_element(&mantissa)?;
                pair.serialize_element(&self.0.scale())?;
                pair.end()
            }
            Err(_) => serializer.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StoredVisitor).map(Stored)
    }
}

struct StoredVisitor;

impl<'de> Visitor<'de> for StoredVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal as [mantissa, scale] or as text")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Decimal, E> {
        Decimal::from_str(text).map_err(|err| E::custom(format!("decimal {text:?}: {err}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decimal, A::Error> {
        let mantissa: i64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let scale: u32 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Decimal::try_new(mantissa, scale)
            .map_err(|err| de::Error::custom(format!("decimal [{mantissa}, {scale}]: {err}")))
    }
}

/// `#[serde(with = "stored_decimal::one")]` for a `Decimal` field.
pub mod one {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        Stored(*value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        Stored::deserialize(deserializer).map(|stored| stored.0)
    }
}

/// `#[serde(with = "stored_decimal::option")]` for an `Option<Decimal>` field.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(Stored).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        Option::<Stored>::deserialize(deserializer).map(|stored| stored.map(|s| s.0))
    }
}

/// `#[serde(with = "stored_decimal::map")]` for a `BTreeMap<K, Decimal>` field.
pub mod map {
    use super::*;

    pub fn serialize<K: Serialize, S: Serializer>(
        value: &BTreeMap<K, Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(value.iter().map(|(key, amount)| (key, Stored(*amount))))
    }

    pub fn deserialize<'de, K, D>(deserializer: D) -> Result<BTreeMap<K, Decimal>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        D: Deserializer<'de>,
    {
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }

    /// Reads the entries straight into the map of `Decimal`s: these maps are decoded on every
    /// touch of a store-day or sku-day.
    struct MapVisitor<K>(std::marker::PhantomData<K>);

    impl<'de, K: Deserialize<'de> + Ord> Visitor<'de> for MapVisitor<K> {
        type Value = BTreeMap<K, Decimal>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of decimals")
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some((key, amount)) = entries.next_entry::<K, Stored>()? {
                map.insert(key, amount.0);
            }
            Ok(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Amounts {
        #[serde(with = "one")]
        one: Decimal,
        #[serde(with = "option")]
        maybe: Option<Decimal>,
        #[serde(with = "map")]
        by_kind: BTreeMap<String, Decimal>,
    }

    /// The same fields as earlier versions wrote them: amounts as text.
    #[derive(Serialize)]
    struct AmountsAsText {
        one: Decimal,
        maybe: Option<Decimal>,
        by_kind: BTreeMap<String, Decimal>,
    }

    fn decimal(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    // Proves an amount is written as [mantissa, scale], keeping its scale (trailing zeros).
    #[test]
    fn an_amount_is_stored_as_mantissa_and_scale() {
        let bytes = rmp_serde::to_vec(&Stored(decimal("-12.340"))).unwrap();
        let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(value, rmpv::Value::Array(vec![(-12340).into(), 3.into()]));
        let back: Stored = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.0.to_string(), "-12.340");
    }

    // Proves values written by earlier versions, amounts as text, by position or by name,
    // read as the same amounts.
    #[test]
    fn amounts_written_as_text_still_read() {
        let text = AmountsAsText {
            one: decimal("19.990"),
            maybe: Some(decimal("-3")),
            by_kind: [("card".to_string(), decimal("0.01"))].into(),
        };
        for bytes in [rmp_serde::to_vec(&text).unwrap(), rmp_serde::to_vec_named(&text).unwrap()] {
            let read: Amounts = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(read, Amounts { one: text.one, maybe: text.maybe, by_kind: text.by_kind.clone() });
            assert_eq!(read.one.to_string(), "19.990");
        }
    }

    // Proves a mantissa too wide for 64 bits falls back to text, and reads back exactly.
    #[test]
    fn a_mantissa_beyond_64_bits_is_stored_as_text() {
        let wide = decimal("123456789012345678901234.5678");
        let bytes = rmp_serde::to_vec(&Stored(wide)).unwrap();
        assert!(matches!(rmpv::decode::read_value(&mut bytes.as_slice()).unwrap(), rmpv::Value::String(_)));
        assert_eq!(rmp_serde::from_slice::<Stored>(&bytes).unwrap().0, wide);
    }

    // Proves a stored pair that is not a decimal is an error, not a wrong amount.
    #[test]
    fn a_bad_pair_is_an_error() {
        for bad in [
            rmpv::Value::Array(vec![1.into(), 29.into()]),
            rmpv::Value::Array(vec![1.into()]),
            rmpv::Value::Array(vec![1.into(), 2.into(), 3.into()]),
        ] {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &bad).unwrap();
            assert!(rmp_serde::from_slice::<Stored>(&bytes).is_err(), "{bad}");
        }
    }

    proptest! {
        // Proves every amount with a 64-bit mantissa and any scale reads back identical,
        // scale included.
        #[test]
        fn amounts_round_trip(mantissa in any::<i64>(), scale in 0u32..=28, other in any::<i64>()) {
            let amounts = Amounts {
                one: Decimal::new(mantissa, scale),
                maybe: (other % 2 == 0).then(|| Decimal::new(other, scale)),
                by_kind: [("cash".to_string(), Decimal::new(other, 2))].into(),
            };
            let bytes = rmp_serde::to_vec(&amounts).unwrap();
            let back: Amounts = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert_eq!(back.one.to_string(), amounts.one.to_string());
            prop_assert_eq!(&back, &amounts);
        }
    }
}
