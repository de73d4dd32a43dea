//! `msgpack_reader` against rmpv (`msgpack::parse_owned`): every document the reader takes,
//! in every encoding width the format allows, reads to the value rmpv reads; damaged payloads
//! the reader still takes read the same way too, and the rest fall back to rmpv.

use super::msgpack::{parse, parse_owned};
use super::msgpack_reader::read;
use super::value::DEPTH_MAX;
use proptest::prelude::*;

/// A MessagePack document, before its encoding widths are chosen.
#[derive(Debug, Clone)]
enum Doc {
    Nil,
    Bool(bool),
    Int(i128),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Ext(i8, Vec<u8>),
    Array(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

fn any_int() -> impl Strategy<Value = i128> {
    prop_oneof![
        -40i128..=200,
        (i64::MIN..=i64::MAX).prop_map(i128::from),
        (0..=u64::MAX).prop_map(i128::from),
        Just(i128::from(u64::MAX)),
        Just(i128::from(i64::MIN)),
    ]
}

fn any_doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Nil),
        any::<bool>().prop_map(Doc::Bool),
        any_int().prop_map(Doc::Int),
        any::<f32>().prop_map(Doc::F32),
        any::<f64>().prop_map(Doc::F64),
        "[a-z0-9é.\\- ]{0,40}".prop_map(Doc::Str),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Doc::Bin),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(t, d)| Doc::Ext(t, d)),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Doc::Array),
            proptest::collection::vec(("[a-z_]{0,12}", inner), 0..8).prop_map(Doc::Map),
        ]
    })
}

/// Encodes `doc`, each length, integer and float in a width `pick` chooses among those that
/// hold it (not only the smallest, as encoders write: a POS need not).
struct Encoder<'p> {
    out: Vec<u8>,
    pick: &'p mut dyn FnMut(usize) -> usize,
}

impl Encoder<'_> {
    fn doc(&mut self, doc: &Doc) {
        match doc {
            Doc::Nil => self.out.push(0xc0),
            Doc::Bool(b) => self.out.push(if *b { 0xc3 } else { 0xc2 }),
            Doc::Int(n) => self.int(*n),
            Doc::F32(f) => {
                self.out.push(0xca);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Doc::F64(f) => {
                self.out.push(0xcb);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Doc::Str(s) => self.str(s),
            Doc::Bin(b) => {
                self.len(b.len(), None, [0xc4, 0xc5, 0xc6]);
                self.out.extend_from_slice(b);
            }
            Doc::Ext(kind, data) => self.ext(*kind, data),
            Doc::Array(items) => {
                self.len(items.len(), Some(0x90), [0, 0xdc, 0xdd]);
                items.iter().for_each(|item| self.doc(item));
            }
            Doc::Map(entries) => {
                self.len(entries.len(), Some(0x80), [0, 0xde, 0xdf]);
                for (key, value) in entries {
                    self.str(key);
                    self.doc(value);
                }
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.len(s.len(), Some(0xa0), [0xd9, 0xda, 0xdb]);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn ext(&mut self, kind: i8, data: &[u8]) {
        let fixed = [1, 2, 4, 8, 16].iter().position(|&n| n == data.len());
        match fixed {
            Some(k) if (self.pick)(2) == 0 => self.out.push(0xd4 + k as u8),
            _ => self.len(data.len(), None, [0xc7, 0xc8, 0xc9]),
        }
        self.out.push(kind as u8);
        self.out.extend_from_slice(data);
    }

    /// A length in its fix form (`fix` marker, when it fits in 4 bits or, for strings, 5) or
    /// after one of the markers of 8, 16 and 32 bits (0 for a width the kind lacks).
    fn len(&mut self, len: usize, fix: Option<u8>, markers: [u8; 3]) {
        let fix_max = if fix == Some(0xa0) { 31 } else { 15 };
        let mut forms: Vec<usize> = Vec::new();
        if fix.is_some() && len <= fix_max {
            forms.push(3);
        }
        for (i, max) in [0xff, 0xffff, 0xffff_ffff].into_iter().enumerate() {
            if markers[i] != 0 && len <= max {
                forms.push(i);
            }
        }
        match forms[(self.pick)(forms.len())] {
            3 => self.out.push(fix.unwrap() | len as u8),
            0 => self.out.extend_from_slice(&[markers[0], len as u8]),
            1 => {
                self.out.push(markers[1]);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(markers[2]);
                self.out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }

    fn int(&mut self, n: i128) {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        if (0..=127).contains(&n) {
            forms.push(vec![n as u8]);
        }
        if (-32..0).contains(&n) {
            forms.push(vec![n as i8 as u8]);
        }
        let mut push = |marker: u8, bytes: &[u8]| forms.push([&[marker], bytes].concat());
        if let Ok(v) = u8::try_from(n) {
            push(0xcc, &v.to_be_bytes());
        }
        if let Ok(v) = u16::try_from(n) {
            push(0xcd, &v.to_be_bytes());
        }
        if let Ok(v) = u32::try_from(n) {
            push(0xce, &v.to_be_bytes());
        }
        if let Ok(v) = u64::try_from(n) {
            push(0xcf, &v.to_be_bytes());
        }
        if let Ok(v) = i8::try_from(n) {
            push(0xd0, &v.to_be_bytes());
        }
        if let Ok(v) = i16::try_from(n) {
            push(0xd1, &v.to_be_bytes());
        }
        if let Ok(v) = i32::try_from(n) {
            push(0xd2, &v.to_be_bytes());
        }
        if let Ok(v) = i64::try_from(n) {
            push(0xd3, &v.to_be_bytes());
        }
        let chosen = (self.pick)(forms.len());
        self.out.extend_from_slice(&forms[chosen]);
    }
}

/// `doc` encoded with widths drawn from `seed`.
fn encode(doc: &Doc, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut pick = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut encoder = Encoder { out: Vec::new(), pick: &mut pick };
    encoder.doc(doc);
    encoder.out
}

/// Whether `payload` reads the same through `parse` as through rmpv, and, when the reader
/// takes it, to the same value.
fn agree(payload: &[u8]) -> Result<(), TestCaseError> {
    let owned = parse_owned(payload);
    if let Some(value) = read(payload) {
        prop_assert_eq!(owned.as_ref(), Ok(&value), "reader took {:?}", payload);
    }
    prop_assert_eq!(parse(payload), owned);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    // Every well-formed document (string keys, within DEPTH_MAX) is taken by the reader, in
    // any encoding width, and reads as rmpv reads it.
    #[test]
    fn the_reader_takes_every_document_and_agrees_with_rmpv(doc in any_doc(), seed in any::<u64>()) {
        let payload = encode(&doc, seed);
        let value = read(&payload);
        prop_assert!(value.is_some(), "reader declined {:?}", payload);
        let owned = parse_owned(&payload);
        prop_assert_eq!(owned.as_ref(), Ok(value.as_ref().unwrap()));
    }

    // A document cut short, with a byte changed or with bytes after it: whatever the reader
    // still takes agrees with rmpv, and every refusal is rmpv's.
    #[test]
    fn damaged_documents_read_as_rmpv_reads_them(
        doc in any_doc(),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let payload = encode(&doc, seed);
        let i = at.index(payload.len());
        agree(&payload[..i])?;
        let mut changed = payload.clone();
        changed[i] = byte;
        agree(&changed)?;
        let mut trailing = payload;
        trailing.push(byte);
        agree(&trailing)?;
    }

    #[test]
    fn arbitrary_bytes_read_as_rmpv_reads_them(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        agree(&bytes)?;
    }
}

// Nesting at the bound is read by the reader; one level more is rmpv's refusal, word for word.
#[test]
fn nesting_past_the_bound_is_refused_as_before() {
    for open in [0x91u8, 0x81] {
        let nest = |levels: usize| {
            let mut payload = Vec::new();
            for _ in 0..levels {
                payload.push(open);
                if open == 0x81 {
                    payload.extend_from_slice(&[0xa1, b'k']);
                }
            }
            payload.push(0xc0);
            payload
        };
        assert!(read(&nest(DEPTH_MAX)).is_some());
        assert!(read(&nest(DEPTH_MAX + 1)).is_none());
        let deep = nest(DEPTH_MAX + 1);
        let refused = parse(&deep);
        assert_eq!(refused, parse_owned(&deep));
        assert_eq!(refused, Err(format!("invalid MessagePack: nesting deeper than {DEPTH_MAX} levels")));
    }
}

// Strings and keys borrow from the payload; integers and floats are text as before.
#[test]
fn strings_borrow_from_the_payload() {
    use super::value::Value;
    use std::borrow::Cow;
    let payload = [
        0x82, 0xa2, b'i', b'd', 0xa3, b'T', b'-', b'1', 0xa1, b'n', 0xcb, 0x40, 0x33, 0xfd, 0x70, 0xa3, 0xd7, 0x0a,
        0x3d,
    ];
    let Some(Value::Map(entries)) = read(&payload) else { panic!("not read as a map") };
    assert!(matches!(&entries[0].0, Cow::Borrowed("id")));
    assert!(matches!(&entries[0].1, Value::Str(Cow::Borrowed("T-1"))));
    assert_eq!(entries[1].1, Value::Number("19.99".into()));
}
