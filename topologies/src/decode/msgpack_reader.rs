//! MessagePack read straight into a [`Value`] whose strings borrow from the payload.
//!
//! Going through rmpv built an owned tree (a `String` per key and string, a `Vec` per map) and
//! then converted it: a MessagePack record cost about 28 000 instructions to parse against
//! 16 000 for the same record in JSON (bench/README.md, "Eleventh round").
//!
//! This reader takes only the well-formed documents it can read completely. On anything else
//! (a truncated or trailing value, invalid UTF-8, a key that is not a string, nesting past
//! [`DEPTH_MAX`], the reserved marker `0xc1`) it gives up with `None`, and `msgpack::parse`
//! reads the payload again through rmpv, whose refusals and leniency stay what the DLQ has
//! always recorded. What this reader accepts, rmpv reads to the same value: property tests
//! check it (`tests_msgpack`), and under `cfg(fuzzing)` every accepted payload is also read
//! through rmpv and compared.

use std::borrow::Cow;

use super::value::{Value, DEPTH_MAX};

/// The whole payload as one value, or `None` when it is not one well-formed value that this
/// reader takes.
pub(super) fn read(payload: &[u8]) -> Option<Value<'_>> {
    let mut reader = Reader { rest: payload };
    let value = reader.value(0)?;
    reader.rest.is_empty().then_some(value)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// One value; `depth` counts the containers open around it.
    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        let marker = self.byte()?;
        let value = match marker {
            0x00..=0x7f => number(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => Value::Str(self.str(usize::from(marker & 0x1f))?),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            // bin 8, 16, 32
            0xc4..=0xc6 => {
                let len = self.len(marker - 0xc4)?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            // ext 8, 16, 32: the length, the type, the data
            0xc7..=0xc9 => {
                let len = self.len(marker - 0xc7)?;
                self.byte()?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xca => float(f32::from_be_bytes(self.array_of()?)),
            0xcb => float(f64::from_be_bytes(self.array_of()?)),
            0xcc => number(self.byte()?),
            0xcd => number(u16::from_be_bytes(self.array_of()?)),
            0xce => number(u32::from_be_bytes(self.array_of()?)),
            0xcf => number(u64::from_be_bytes(self.array_of()?)),
            0xd0 => number(i8::from_be_bytes(self.array_of()?)),
            0xd1 => number(i16::from_be_bytes(self.array_of()?)),
            0xd2 => number(i32::from_be_bytes(self.array_of()?)),
            0xd3 => number(i64::from_be_bytes(self.array_of()?)),
            // fixext 1, 2, 4, 8, 16: the type, then 2^k bytes of data
            0xd4..=0xd8 => {
                self.byte()?;
                Value::Bytes(self.take(1 << (marker - 0xd4))?.to_vec())
            }
            // str 8, 16, 32
            0xd9..=0xdb => {
                let len = self.len(marker - 0xd9)?;
                Value::Str(self.str(len)?)
            }
            // array 16, 32
            0xdc | 0xdd => {
                let len = self.len(marker - 0xdc + 1)?;
                self.array(len, depth)?
            }
            // map 16, 32
            0xde | 0xdf => {
                let len = self.len(marker - 0xde + 1)?;
                self.map(len, depth)?
            }
            0xe0..=0xff => number(marker as i8),
            // Never used by the format; rmpv reads it as nil (`msgpack`'s module comment).
            0xc1 => return None,
        };
        Some(value)
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<Value<'a>> {
        if depth + 1 > DEPTH_MAX {
            return None;
        }
        // Every item takes at least a byte: a length the payload cannot hold allocates nothing.
        let mut items = Vec::with_capacity(len.min(self.rest.len()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Some(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<Value<'a>> {
        if depth + 1 > DEPTH_MAX {
            return None;
        }
        let mut entries = Vec::with_capacity(len.min(self.rest.len() / 2));
        for _ in 0..len {
            let key = self.key()?;
            entries.push((key, self.value(depth + 1)?));
        }
        Some(Value::Map(entries))
    }

    /// A map key: a string in any of its four forms.
    fn key(&mut self) -> Option<Cow<'a, str>> {
        let marker = self.byte()?;
        let len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9..=0xdb => self.len(marker - 0xd9)?,
            _ => return None,
        };
        self.str(len)
    }

    fn str(&mut self, len: usize) -> Option<Cow<'a, str>> {
        std::str::from_utf8(self.take(len)?).ok().map(Cow::Borrowed)
    }

    /// A big-endian length of 1, 2 or 4 bytes (`width_code` 0, 1 or 2).
    fn len(&mut self, width_code: u8) -> Option<usize> {
        Some(match width_code {
            0 => usize::from(self.byte()?),
            1 => usize::from(u16::from_be_bytes(self.array_of()?)),
            _ => u32::from_be_bytes(self.array_of()?) as usize,
        })
    }

    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(byte)
    }

    fn array_of<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.rest.len() < len {
            return None;
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(head)
    }
}

/// An integer as its exact digits.
fn number(n: impl ToString) -> Value<'static> {
    Value::Number(n.to_string().into())
}

/// A float as its shortest round-trip text, or its name when it is not finite: for this
/// reader and rmpv's path in `msgpack` alike.
pub(super) fn float<F: std::fmt::Display + Into<f64> + Copy>(f: F) -> Value<'static> {
    if f.into().is_finite() {
        Value::Number(format!("{f}").into())
    } else {
        Value::NonFinite(format!("{f}"))
    }
}
