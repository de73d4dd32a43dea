//! A strict JSON (RFC 8259) reader into [`Value`] that keeps number literals as text.
//!
//! Why not serde_json: its `arbitrary_precision` feature would keep the text, but it changes
//! serde_json for the whole workspace. This reader is small, recursive-descent, bounded to
//! [`DEPTH_MAX`] levels of nesting, and refuses trailing garbage. It never panics.

use std::borrow::Cow;

use super::value::{Value, DEPTH_MAX};

/// Fields a map is given room for before its first: a record has about ten, a line six to eight.
const MAP_FIELDS_USUAL: usize = 12;

/// Parses a whole payload into a value. The error is a human sentence with a byte offset.
pub fn parse(payload: &[u8]) -> Result<Value<'_>, String> {
    let text =
        std::str::from_utf8(payload).map_err(|e| format!("payload is not valid UTF-8 at byte {}", e.valid_up_to()))?;
    let mut parser = Parser { text, bytes: text.as_bytes(), pos: 0 };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("unexpected data after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", byte as char)))
        }
    }

    /// One value; `depth` counts the containers already open around it.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, String> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, String> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), String> {
        if depth > DEPTH_MAX {
            Err(self.error(&format!("nesting deeper than {DEPTH_MAX} levels")))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, String> {
        self.check_depth(depth)?;
        self.pos += 1; // the '{' that value() saw
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Map(Vec::new()));
        }
        // Room for a record's or a line's fields at once: grown from empty, a map of ten
        // fields was allocated and copied three times.
        let mut entries = Vec::with_capacity(MAP_FIELDS_USUAL);
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value = self.value(depth)?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Map(entries));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, String> {
        self.check_depth(depth)?;
        self.pos += 1; // the '[' that value() saw
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A number literal of the JSON grammar `-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?`, kept as text.
    fn number(&mut self) -> Result<Value<'a>, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok(Value::Number(Cow::Borrowed(&self.text[start..self.pos])))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), String> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(self.error("expected a digit"))
        } else {
            Ok(())
        }
    }

    /// A string literal starting at the opening quote, escapes resolved: borrowed from the
    /// payload when it has none, copied only when it does.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        self.plain_run();
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(Cow::Borrowed(&self.text[start..self.pos - 1]));
        }
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
            let run_start = self.pos;
            self.plain_run();
            out.push_str(&self.text[run_start..self.pos]);
        }
    }

    /// Skips characters that stand for themselves in a string. The run stops only at ASCII
    /// bytes (a quote, a backslash, a control character), so both of its ends are char
    /// boundaries.
    fn plain_run(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            self.pos += 1;
        }
    }

    /// The character of an escape sequence, after its backslash.
    fn escape(&mut self) -> Result<char, String> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(self.error("invalid escape sequence")),
        })
    }

    /// `XXXX` after `\u`, combining a UTF-16 surrogate pair into one character.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("unpaired UTF-16 surrogate in \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("unpaired UTF-16 surrogate in \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("unpaired UTF-16 surrogate in \\u escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| (b as char).to_digit(16))
                .ok_or_else(|| self.error("expected four hex digits in \\u escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map<'a>(entries: &[(&'a str, Value<'a>)]) -> Value<'a> {
        Value::Map(entries.iter().map(|(k, v)| (Cow::Borrowed(*k), v.clone())).collect())
    }

    // Every JSON value kind parses, numbers keeping their literal text.
    #[test]
    fn parses_all_kinds() {
        let v = parse(
            br#" {"a": [1, -0.5, 1E+2, 0.30000000000000004], "b": {"c": null},
                          "d": true, "e": false, "f": "x"} "#,
        )
        .unwrap();
        let numbers = ["1", "-0.5", "1E+2", "0.30000000000000004"];
        let expected = map(&[
            ("a", Value::Array(numbers.iter().map(|n| Value::Number(Cow::Borrowed(*n))).collect())),
            ("b", map(&[("c", Value::Null)])),
            ("d", Value::Bool(true)),
            ("e", Value::Bool(false)),
            ("f", Value::Str("x".into())),
        ]);
        assert_eq!(v, expected);
    }

    // All escapes resolve, including a surrogate pair into one astral character.
    #[test]
    fn string_escapes() {
        let v = parse(br#"{"s": "q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00 caf\u00C9"}"#).unwrap();
        assert_eq!(v.get("s"), Some(&Value::Str("q\" b\\ s/ \u{8}\u{c}\n\r\t é 😀 cafÉ".into())));
        let raw = parse("{\"s\": \"naïve 😀\"}".as_bytes()).unwrap();
        assert_eq!(raw.get("s"), Some(&Value::Str("naïve 😀".into())));
    }

    // Malformed documents are refused, each with a sentence.
    #[test]
    fn refuses_malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"{",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1} x",
            b"{a:1}",
            b"[1,]",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":.5}",
            b"{\"a\":-}",
            b"{\"a\":1e}",
            b"{\"a\":+1}",
            b"{\"a\":tru}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\udc00\"}",
            b"{\"a\":\"\\ud800\\u0041\"}",
            b"{\"a\":\"\\u12\"}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":NaN}",
            b"{\"a\" 1}",
        ];
        for doc in bad {
            assert!(parse(doc).is_err(), "{:?}", String::from_utf8_lossy(doc));
        }
    }

    // The last of duplicate keys wins.
    #[test]
    fn duplicate_keys_keep_last() {
        let v = parse(br#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Number("2".into())));
    }

    // Exactly DEPTH_MAX levels parse; one more, or 100k brackets, is an error, not a crash.
    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(DEPTH_MAX + 1), "]".repeat(DEPTH_MAX + 1));
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nesting"));
        assert!(parse("[".repeat(100_000).as_bytes()).is_err());
        assert!(parse(format!("{{\"a\":{}", "{\"a\":".repeat(100_000)).as_bytes()).is_err());
    }

    proptest! {
        // Any string survives serde_json's escaping and this reader's unescaping.
        #[test]
        fn strings_round_trip(s in any::<String>()) {
            let doc = format!("{{\"s\": {}}}", serde_json::to_string(&s).unwrap());
            let parsed = parse(doc.as_bytes()).unwrap();
            prop_assert_eq!(parsed.get("s"), Some(&Value::Str(s.into())));
        }

        // Arbitrary bytes never panic the reader.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        // JSON-ish text (mostly valid tokens) never panics the reader.
        #[test]
        fn jsonish_never_panics(text in r#"[\[\]{}",:0-9eE.+\-a-z\\ ]{0,64}"#) {
            let _ = parse(text.as_bytes());
        }
    }
}
