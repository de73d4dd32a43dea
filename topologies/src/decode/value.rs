//! The untyped document that both wire formats decode into, before the schema is applied.
//!
//! Numbers stay text here so that no amount ever passes through a binary float: a JSON
//! literal keeps its characters, a MessagePack integer its exact digits and a MessagePack
//! float its shortest round-trip form.
//!
//! Text borrows from the payload where it can (a JSON string without escapes, a number, every
//! usual key): building the tree allocated for every key and string of every message, and the
//! record keeps only some of them.

use std::borrow::Cow;

/// How deep maps and arrays may nest; the top-level map is level 1. The contract's records
/// need 3 levels; the bound keeps a hostile payload from exhausting the stack.
pub const DEPTH_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A finite number as exact decimal text (`"19.99"`, `"1e2"`, `"-3"`).
    Number(Cow<'a, str>),
    /// A MessagePack float that is NaN or infinite, by its name (`"NaN"`, `"inf"`).
    NonFinite(String),
    Str(Cow<'a, str>),
    /// MessagePack `bin` or `ext` data: never valid where the schema expects a value.
    Bytes(Vec<u8>),
    Array(Vec<Value<'a>>),
    /// Keys in wire order; a repeated key may occur, and `get` returns its last value.
    Map(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `key` in a map; with duplicate keys, the last one wins as in most JSON
    /// readers. `None` for a non-map.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short rendering of the value for a rejection detail: strings quoted, numbers as
    /// sent, containers by their kind, and nothing longer than a few dozen characters.
    pub fn describe(&self) -> String {
        const TEXT_MAX: usize = 40;
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(text) => shorten(text, TEXT_MAX),
            Value::NonFinite(text) => shorten(text, TEXT_MAX),
            Value::Str(s) => format!("{:?}", shorten(s, TEXT_MAX)),
            Value::Bytes(b) => format!("binary data ({} bytes)", b.len()),
            Value::Array(items) => format!("an array of {}", items.len()),
            Value::Map(_) => "a map".to_string(),
        }
    }
}

/// The first `max` characters of `text`, with an ellipsis when it was longer.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The last of duplicate keys wins, and non-maps have no fields.
    #[test]
    fn get_takes_last_duplicate() {
        let map = Value::Map(vec![("a".into(), Value::Bool(false)), ("a".into(), Value::Bool(true))]);
        assert_eq!(map.get("a"), Some(&Value::Bool(true)));
        assert_eq!(map.get("b"), None);
        assert_eq!(Value::Null.get("a"), None);
    }

    // Descriptions stay short even for long strings, and quote strings.
    #[test]
    fn describe_is_short() {
        assert_eq!(Value::Str("abc".into()).describe(), "\"abc\"");
        let long = Value::Str("é".repeat(100).into()).describe();
        assert!(long.chars().count() < 50, "{long}");
        assert_eq!(Value::Array(vec![Value::Null]).describe(), "an array of 1");
    }
}
