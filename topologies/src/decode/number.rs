//! Exact decimal text → `Decimal`, without ever going through a binary float.
//!
//! One grammar serves JSON number literals, decimal strings (`"19.99"`) and the shortest
//! round-trip text of MessagePack floats: `[+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?`. A value is
//! accepted only when `Decimal` holds it exactly: no rounding, ever. Trailing fractional
//! zeros beyond Decimal's 28 places are dropped (that loses nothing); anything else that does
//! not fit is an error, so that a POS never has an amount silently changed.

use rust_decimal::Decimal;

/// Why a text is not an exact decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Not of the decimal grammar at all.
    Syntax,
    /// A decimal, but not one that `Decimal` can hold exactly.
    OutOfRange,
}

/// The largest mantissa `Decimal` holds: 2^96 − 1.
pub(super) const MANTISSA_MAX: u128 = (1u128 << 96) - 1;
/// 2^96 − 1 has 29 digits; a longer digit string cannot fit.
const MANTISSA_DIGITS_MAX: usize = 29;

/// Consumes an optional `-` or `+` at `pos`; true for `-`.
fn take_sign(bytes: &[u8], pos: &mut usize) -> bool {
    match bytes.get(*pos) {
        Some(b'-') => {
            *pos += 1;
            true
        }
        Some(b'+') => {
            *pos += 1;
            false
        }
        _ => false,
    }
}

/// Parses `text` exactly. The scale of the text is kept (`"2.00"` has scale 2), except that
/// an exponent is applied to it and a zero loses its sign.
pub fn parse_decimal(text: &str) -> Result<Decimal, NumberError> {
    match parse_plain(text.as_bytes()) {
        Some(decimal) => Ok(decimal),
        None => parse_any(text),
    }
}

/// Digits a `u64` always holds: 10^18 < 2^64.
const PLAIN_DIGITS_MAX: usize = 18;

/// The usual amount, `-?d*(.d*)?` with at most 18 digits and no exponent, read straight into
/// its mantissa and scale; `None` for anything else, which [`parse_any`] reads. The same value
/// as `parse_any`'s, without building a digit string for every amount.
fn parse_plain(bytes: &[u8]) -> Option<Decimal> {
    let (negative, rest) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (int_digits, frac_digits) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let digits = int_digits.len() + frac_digits.len();
    if digits == 0 || digits > PLAIN_DIGITS_MAX {
        return None;
    }
    let mut mantissa: u64 = 0;
    for &b in int_digits.iter().chain(frac_digits) {
        if !b.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa * 10 + u64::from(b - b'0');
    }
    // At most 18 fraction digits: within Decimal's 28 places.
    let scale = frac_digits.len() as u32;
    if mantissa == 0 {
        return Some(Decimal::new(0, scale));
    }
    let signed = if negative { -(mantissa as i64) } else { mantissa as i64 };
    Some(Decimal::new(signed, scale))
}

/// [`parse_decimal`] for any text of the grammar: signs, exponents, long digit strings.
fn parse_any(text: &str) -> Result<Decimal, NumberError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let negative = take_sign(bytes, &mut pos);
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &bytes[int_start..pos];
    let mut frac_digits: &[u8] = &[];
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &bytes[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(NumberError::Syntax);
    }
    let mut exponent: i64 = 0;
    if pos < bytes.len() && (bytes[pos] == b'e' || bytes[pos] == b'E') {
        pos += 1;
        let exp_negative = take_sign(bytes, &mut pos);
        let exp_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            // Saturate: any exponent this large is out of range unless the mantissa is zero,
            // and saturation keeps that answer while avoiding overflow.
            exponent = (exponent * 10 + i64::from(bytes[pos] - b'0')).min(1_000_000_000);
            pos += 1;
        }
        if pos == exp_start {
            return Err(NumberError::Syntax);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if pos != bytes.len() {
        return Err(NumberError::Syntax);
    }

    // The value is digits × 10^-scale, digits being the integer and fraction digits together.
    let mut scale = i64::try_from(frac_digits.len()).map_err(|_| NumberError::OutOfRange)? - exponent;
    let all = int_digits.iter().chain(frac_digits).copied();
    let mut digits: Vec<u8> = all.skip_while(|d| *d == b'0').collect();
    if digits.is_empty() {
        let zero_scale = scale.clamp(0, i64::from(Decimal::MAX_SCALE));
        // The clamp keeps the scale within 0..=28, which Decimal::new accepts.
        return Ok(Decimal::new(0, zero_scale as u32));
    }
    while scale > i64::from(Decimal::MAX_SCALE) && digits.last() == Some(&b'0') {
        digits.pop();
        scale -= 1;
    }
    if scale > i64::from(Decimal::MAX_SCALE) {
        return Err(NumberError::OutOfRange);
    }
    if scale < 0 {
        if digits.len() as i64 - scale > MANTISSA_DIGITS_MAX as i64 {
            return Err(NumberError::OutOfRange);
        }
        digits.extend(std::iter::repeat_n(b'0', (-scale) as usize));
        scale = 0;
    }
    if digits.len() > MANTISSA_DIGITS_MAX {
        return Err(NumberError::OutOfRange);
    }
    let mantissa = digits.iter().fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    if mantissa > MANTISSA_MAX {
        return Err(NumberError::OutOfRange);
    }
    // The mantissa is below 2^96, so it and its negation fit an i128.
    let signed = if negative { -(mantissa as i128) } else { mantissa as i128 };
    // 0 <= scale <= 28 was checked above.
    Decimal::try_from_i128_with_scale(signed, scale as u32).map_err(|_| NumberError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    // Proves the plain path reads the usual amounts, and leaves the rest to the general one.
    #[test]
    fn the_plain_path_reads_usual_amounts_only() {
        assert_eq!(parse_plain(b"19.99"), Some(d("19.99")));
        assert_eq!(parse_plain(b"-3"), Some(d("-3")));
        assert_eq!(parse_plain(b"2.00").map(|v| v.scale()), Some(2));
        assert_eq!(parse_plain(b"-0.0"), Some(Decimal::new(0, 1)));
        assert_eq!(parse_plain(b"999999999999999999"), Some(d("999999999999999999")));
        for other in ["1e2", "+1", "1.2.3", ".", "-", "", "1234567890123456789", "1_0"] {
            assert_eq!(parse_plain(other.as_bytes()), None, "{other}");
        }
    }

    proptest! {
        // Proves the plain path gives what the general one gives, wherever it answers.
        #[test]
        fn the_plain_path_agrees_with_the_general_one(
            text in r"-?[0-9]{0,12}(\.[0-9]{0,10})?",
            noise in r"[-+.0-9eE]{0,24}",
        ) {
            for text in [text, noise] {
                if let Some(plain) = parse_plain(text.as_bytes()) {
                    let general = parse_any(&text).unwrap();
                    prop_assert_eq!(plain, general);
                    prop_assert_eq!(plain.scale(), general.scale());
                    prop_assert_eq!(plain.is_sign_negative(), general.is_sign_negative());
                }
            }
        }
    }

    // Plain decimals keep their value and their scale.
    #[test]
    fn plain_decimals_keep_scale() {
        assert_eq!(parse_decimal("19.99"), Ok(d("19.99")));
        assert_eq!(parse_decimal("2.00").unwrap().scale(), 2);
        assert_eq!(parse_decimal("-1"), Ok(d("-1")));
        assert_eq!(parse_decimal("+7"), Ok(d("7")));
        assert_eq!(parse_decimal(".5"), Ok(d("0.5")));
        assert_eq!(parse_decimal("5."), Ok(d("5")));
        assert_eq!(parse_decimal("0.30000000000000004"), Ok(d("0.30000000000000004")));
    }

    // Exponent forms are applied exactly to the mantissa.
    #[test]
    fn exponents_are_exact() {
        assert_eq!(parse_decimal("1e2"), Ok(d("100")));
        assert_eq!(parse_decimal("1.5E-3"), Ok(d("0.0015")));
        assert_eq!(parse_decimal("1.5e+3"), Ok(d("1500")));
        assert_eq!(parse_decimal("-2.5e-28"), Err(NumberError::OutOfRange));
        assert_eq!(parse_decimal("2.5e-27"), Ok(d("0.0000000000000000000000000025")));
        assert_eq!(parse_decimal("0e999999999999999999"), Ok(Decimal::ZERO));
    }

    // Values Decimal cannot hold exactly are refused, never rounded.
    #[test]
    fn out_of_range_is_refused() {
        assert_eq!(parse_decimal("1e30"), Err(NumberError::OutOfRange));
        assert_eq!(parse_decimal("1e-29"), Err(NumberError::OutOfRange));
        assert_eq!(parse_decimal("79228162514264337593543950336"), Err(NumberError::OutOfRange));
        assert_eq!(parse_decimal("79228162514264337593543950335"), Ok(Decimal::MAX));
        assert_eq!(parse_decimal("1.00000000000000000000000000001"), Err(NumberError::OutOfRange));
        assert_eq!(parse_decimal("1e999999999999999999999"), Err(NumberError::OutOfRange));
        // Trailing zeros past 28 places lose nothing, so they are dropped instead.
        assert_eq!(parse_decimal("1.000000000000000000000000000000000"), Ok(d("1")));
    }

    // Texts outside the grammar are syntax errors.
    #[test]
    fn syntax_errors() {
        for bad in ["", "-", ".", "abc", "1e", "1e+", "1.2.3", " 1", "1 ", "0x10", "1_000", "NaN", "inf"] {
            assert_eq!(parse_decimal(bad), Err(NumberError::Syntax), "{bad:?}");
        }
    }

    proptest! {
        // Any Decimal's own text parses back to the same value and scale.
        #[test]
        fn decimal_text_round_trips(m in any::<i128>(), scale in 0u32..=28) {
            let value = Decimal::from_i128_with_scale(m % (MANTISSA_MAX as i128), scale);
            let parsed = parse_decimal(&value.to_string()).unwrap();
            prop_assert_eq!(parsed, value);
            prop_assert_eq!(parsed.scale(), value.scale());
        }

        // Scientific notation of a Decimal parses back to the same value.
        #[test]
        fn scientific_round_trips(m in any::<i64>(), scale in 0u32..=18, shift in 0i64..10) {
            let value = Decimal::new(m, scale);
            let text = format!("{}e{}", value * Decimal::from(10i64.pow(shift as u32)), -shift);
            prop_assert_eq!(parse_decimal(&text).unwrap(), value);
        }

        // No text makes the parser panic.
        #[test]
        fn never_panics(text in "[-+0-9.eE]{0,40}") {
            let _ = parse_decimal(&text);
        }
    }
}
