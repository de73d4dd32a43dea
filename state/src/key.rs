//! Order-preserving binary keys. A composite key written with [`KeyWriter`] compares, byte for
//! byte, exactly as its tuple of components does, and a key built from the first components of
//! a tuple is a byte prefix of the full key. That is what makes "every entry of one store-day"
//! a single prefix scan.
//!
//! Encoding, per component:
//! - `str`: UTF-8 bytes with each 0x00 escaped as 0x00 0xFF, then the terminator 0x00 0x01.
//!   The terminator sorts below every escaped or ordinary byte, so "a" < "a\0" < "ab".
//! - `u64`: 8 bytes big-endian.
//! - `i64`: 8 bytes big-endian with the sign bit flipped, so negatives sort first.
//! - `tag`: one byte, for a key's kind or version.
//!
//! Components carry no type marker: a reader must read them in the order they were written.

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;
const SIGN_BIT: u64 = 1 << 63;

/// Why a key could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key ends inside a {what} component at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("invalid escape 0x00 0x{byte:02X} at byte {at}")]
    BadEscape { byte: u8, at: usize },
    #[error("string component at byte {at} is not UTF-8")]
    NotUtf8 { at: usize },
}

/// Builds a key component by component.
#[derive(Debug, Default, Clone)]
pub struct KeyWriter {
    buf: Vec<u8>,
}

impl KeyWriter {
    pub fn new() -> Self {
        // Room for the usual key (a tag, a store, a day, a sku or an id), so that building one
        // allocates once instead of growing byte by byte.
        Self { buf: Vec::with_capacity(64) }
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        let bytes = s.as_bytes();
        // Text almost never holds a 0x00 byte: copy it whole, and escape only when it does.
        if bytes.contains(&ESCAPE) {
            for &byte in bytes {
                self.buf.push(byte);
                if byte == ESCAPE {
                    self.buf.push(ESCAPED_ZERO);
                }
            }
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.buf.extend_from_slice(&[ESCAPE, TERMINATOR]);
        self
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.buf.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub fn i64(&mut self, n: i64) -> &mut Self {
        self.u64((n as u64) ^ SIGN_BIT)
    }

    pub fn tag(&mut self, tag: u8) -> &mut Self {
        self.buf.push(tag);
        self
    }

    /// The key written so far; the writer is left empty for reuse.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a key's components back, in the order they were written.
#[derive(Debug, Clone)]
pub struct KeyReader<'k> {
    key: &'k [u8],
    at: usize,
}

impl<'k> KeyReader<'k> {
    pub fn new(key: &'k [u8]) -> Self {
        Self { key, at: 0 }
    }

    pub fn str(&mut self) -> Result<String, KeyError> {
        let start = self.at;
        let mut bytes = Vec::new();
        loop {
            let byte = self.byte("str", start)?;
            if byte != ESCAPE {
                bytes.push(byte);
                continue;
            }
            match self.byte("str", start)? {
                ESCAPED_ZERO => bytes.push(ESCAPE),
                TERMINATOR => break,
                other => return Err(KeyError::BadEscape { byte: other, at: self.at - 1 }),
            }
        }
        String::from_utf8(bytes).map_err(|_| KeyError::NotUtf8 { at: start })
    }

    pub fn u64(&mut self) -> Result<u64, KeyError> {
        Ok(u64::from_be_bytes(self.array("u64")?))
    }

    pub fn i64(&mut self) -> Result<i64, KeyError> {
        Ok((u64::from_be_bytes(self.array("i64")?) ^ SIGN_BIT) as i64)
    }

    pub fn tag(&mut self) -> Result<u8, KeyError> {
        let start = self.at;
        self.byte("tag", start)
    }

    /// True once every byte of the key has been read.
    pub fn is_empty(&self) -> bool {
        self.at == self.key.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'k [u8] {
        &self.key[self.at..]
    }

    fn byte(&mut self, what: &'static str, start: usize) -> Result<u8, KeyError> {
        let byte = *self.key.get(self.at).ok_or(KeyError::Truncated { what, at: start })?;
        self.at += 1;
        Ok(byte)
    }

    fn array(&mut self, what: &'static str) -> Result<[u8; 8], KeyError> {
        let truncated = KeyError::Truncated { what, at: self.at };
        let bytes = self.rest().first_chunk::<8>().ok_or(truncated)?;
        self.at += 8;
        Ok(*bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str, n: u64) -> Vec<u8> {
        KeyWriter::new().str(s).u64(n).finish()
    }

    #[test]
    fn known_encodings() {
        // Proves the byte layout is the documented one, so stored keys stay readable.
        assert_eq!(KeyWriter::new().str("a\0").finish(), vec![b'a', 0, 0xFF, 0, 1]);
        assert_eq!(KeyWriter::new().i64(-1).finish(), vec![0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(KeyWriter::new().i64(0).finish(), vec![0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(KeyWriter::new().tag(7).u64(1).finish(), vec![7, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn malformed_keys_are_errors() {
        // Proves a reader reports truncation, bad escapes and bad UTF-8 instead of guessing.
        assert_eq!(KeyReader::new(b"ab").str(), Err(KeyError::Truncated { what: "str", at: 0 }));
        assert_eq!(KeyReader::new(&[b'a', 0, 7]).str(), Err(KeyError::BadEscape { byte: 7, at: 2 }));
        assert_eq!(KeyReader::new(&[0xC3, 0, 1]).str(), Err(KeyError::NotUtf8 { at: 0 }));
        assert_eq!(KeyReader::new(&[1, 2, 3]).u64(), Err(KeyError::Truncated { what: "u64", at: 0 }));
        assert_eq!(KeyReader::new(&[]).tag(), Err(KeyError::Truncated { what: "tag", at: 0 }));
    }

    #[test]
    fn finish_leaves_writer_empty() {
        // Proves a writer can be reused after `finish` without carrying old bytes.
        let mut writer = KeyWriter::new();
        writer.tag(1);
        assert_eq!(writer.finish(), vec![1]);
        assert_eq!(writer.tag(2).finish(), vec![2]);
    }

    proptest! {
        #[test]
        fn round_trip(s in ".*", t in any::<u8>(), u in any::<u64>(), i in any::<i64>(), s2 in "\\PC*") {
            // Proves every component reads back as written and the reader ends at the key's end.
            let key = KeyWriter::new().str(&s).tag(t).u64(u).i64(i).str(&s2).finish();
            let mut reader = KeyReader::new(&key);
            prop_assert_eq!(reader.str()?, s);
            prop_assert_eq!(reader.tag()?, t);
            prop_assert_eq!(reader.u64()?, u);
            prop_assert_eq!(reader.i64()?, i);
            prop_assert_eq!(reader.str()?, s2);
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn byte_order_equals_tuple_order(
            a in ("[a\\x00\\xFF\u{100}]{0,4}", any::<u64>()),
            b in ("[a\\x00\\xFF\u{100}]{0,4}", any::<u64>()),
        ) {
            // Proves (String, u64) tuples and their keys sort the same way, including strings
            // with embedded zeros and strings that are prefixes of one another.
            prop_assert_eq!(a.cmp(&b), key(&a.0, a.1).cmp(&key(&b.0, b.1)));
        }

        #[test]
        fn signed_order_is_kept(a in any::<i64>(), b in any::<i64>()) {
            // Proves i64 keys sort numerically, negatives before positives.
            let ka = KeyWriter::new().i64(a).finish();
            let kb = KeyWriter::new().i64(b).finish();
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }

        #[test]
        fn leading_components_are_a_byte_prefix(
            s in "[a\\x00]{0,4}", n in any::<u64>(), other in "[a\\x00]{0,4}", m in any::<u64>()
        ) {
            // Proves the key of (s) prefixes every key of (s, n) and no key of another string,
            // so one prefix scan finds exactly the keys that start with that component.
            let prefix = KeyWriter::new().str(&s).finish();
            prop_assert!(key(&s, n).starts_with(&prefix));
            prop_assert_eq!(key(&other, m).starts_with(&prefix), other == s);
        }
    }
}
