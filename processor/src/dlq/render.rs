//! How DLQ entries read on a screen: one line each (`list`), one JSON object each
//! (`list --json`), or whole (`show`): every header and the payload, pretty when it is JSON.

use std::io::Write;

use chrono::SecondsFormat;
use serde_json::json;

use super::Entry;

/// Characters of `Tally-Error-Detail` shown in a listing line.
const DETAIL_CHARS: usize = 72;
/// Bytes per line of a hex dump.
const HEX_WIDTH: usize = 16;

/// `list`: one line per entry, or one JSON object per line with `json`.
pub fn list(entries: &[Entry], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    for entry in entries {
        if json {
            writeln!(out, "{}", json_line(entry))?;
        } else {
            writeln!(out, "{}", line(entry))?;
        }
    }
    if entries.is_empty() {
        eprintln!("No DLQ entries match.");
    }
    Ok(())
}

/// `17  2026-11-27T10:15:03Z  too_large  retail.pos.0042 #5  record has 3 lines, more than …`
fn line(entry: &Entry) -> String {
    let source = match (entry.source_subject(), entry.source_seq()) {
        (Some(subject), Some(seq)) => format!("{subject} #{seq}"),
        (Some(subject), None) => subject.to_string(),
        _ => "-".into(),
    };
    format!(
        "{:>6}  {}  {:<14}  {:<28}  {}",
        entry.seq,
        entry.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        entry.reason(),
        source,
        shorten(entry.detail(), DETAIL_CHARS)
    )
}

fn json_line(entry: &Entry) -> serde_json::Value {
    json!({
        "dlq_seq": entry.seq,
        "time": entry.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "reason": entry.reason(),
        "store": entry.store(),
        "source_subject": entry.source_subject(),
        "source_seq": entry.source_seq(),
        "detail": entry.detail(),
        "msg_id": entry.header("Nats-Msg-Id"),
        "size": entry.size,
        "truncated_from": entry.header("Tally-Payload-Truncated").and_then(|n| n.parse::<u64>().ok()),
    })
}

/// The first `max` characters, with `…` when there was more.
fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// `show`: each entry whole, headers sorted by name, then the payload.
pub fn show(entries: &[Entry], out: &mut impl Write) -> std::io::Result<()> {
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "DLQ entry {} on {} at {}",
            entry.seq,
            entry.subject,
            entry.time.to_rfc3339_opts(SecondsFormat::Millis, true)
        )?;
        let mut headers: Vec<(String, &str)> = entry
            .headers
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |value| (name.to_string(), value.as_str())))
            .collect();
        headers.sort();
        for (name, value) in headers {
            writeln!(out, "  {name}: {value}")?;
        }
        let payload = entry.payload.as_deref().unwrap_or_default();
        let (kind, text) = payload_text(payload, entry.header("Content-Type"));
        writeln!(out, "payload: {} bytes, {kind}", payload.len())?;
        writeln!(out, "{text}")?;
    }
    if entries.is_empty() {
        eprintln!("No DLQ entries match.");
    }
    Ok(())
}

/// `show --raw`: the one entry's payload, byte for byte.
pub fn raw(entries: &[Entry], out: &mut impl Write) -> anyhow::Result<()> {
    let [entry] = entries else {
        anyhow::bail!("--raw writes one payload; {} entries are selected (give one DLQ sequence)", entries.len());
    };
    out.write_all(entry.payload.as_deref().unwrap_or_default())?;
    out.flush()?;
    Ok(())
}

/// The payload for a reader: JSON re-indented (its text kept exactly: numbers are not
/// re-printed), MessagePack as JSON-like text, other UTF-8 escaped, anything else as hex.
fn payload_text(payload: &[u8], content_type: Option<&str>) -> (&'static str, String) {
    let says_msgpack = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("msgpack"));
    if !says_msgpack && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
        // Valid JSON is valid UTF-8.
        return ("JSON", indent_json(&String::from_utf8_lossy(payload)));
    }
    if let Some(value) = msgpack_value(payload, says_msgpack) {
        return ("MessagePack, shown as JSON-like text", indent_json(&value.to_string()));
    }
    match std::str::from_utf8(payload) {
        Ok(text) => ("text, not JSON; escaped", text.escape_debug().to_string()),
        Err(_) => ("binary; hex", hex_dump(payload)),
    }
}

/// A whole MessagePack value, when the payload is one: announced by its content type, or
/// starting with a map marker (as every MessagePack record does).
fn msgpack_value(payload: &[u8], announced: bool) -> Option<rmpv::Value> {
    let map_marker = matches!(payload.first(), Some(0x80..=0x8f | 0xde | 0xdf));
    if !announced && !map_marker {
        return None;
    }
    let mut rest = payload;
    let value = rmpv::decode::read_value(&mut rest).ok()?;
    rest.is_empty().then_some(value)
}

/// Re-indents JSON text two spaces per level without parsing its values, so that what is
/// shown is exactly what was sent (a number keeps its digits).
fn indent_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    // An empty object or array stays on one line.
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `00000000  c1 01 02 …  |...|`
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(HEX_WIDTH).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{:08x}  {:<width$}  |{ascii}|",
            i * HEX_WIDTH,
            hex.join(" "),
            width = HEX_WIDTH * 3 - 1
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves JSON is re-indented with its text intact: numbers, strings with brackets and
    // escaped quotes, empty arrays.
    #[test]
    fn json_is_indented_verbatim() {
        let text = r#"{"qty": 0.10000000000000000001, "note": "a \"{[,:\" b", "lines": [], "t": {"x":1}}"#;
        let shown = indent_json(text);
        assert_eq!(
            shown,
            "{\n  \"qty\": 0.10000000000000000001,\n  \"note\": \"a \\\"{[,:\\\" b\",\n  \"lines\": [],\n  \"t\": {\n    \"x\": 1\n  }\n}"
        );
        let reparsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<serde_json::Value>(text).unwrap());
    }

    // Proves each kind of payload is named and shown readably.
    #[test]
    fn payload_kinds() {
        assert_eq!(payload_text(b"{\"a\":1}", None).0, "JSON");
        let msgpack = [0x81, 0xa1, b'a', 0x01];
        assert_eq!(
            payload_text(&msgpack, Some("application/msgpack")),
            ("MessagePack, shown as JSON-like text", "{\n  \"a\": 1\n}".into())
        );
        assert_eq!(payload_text(&msgpack, None).0, "MessagePack, shown as JSON-like text");
        assert_eq!(payload_text(b"{\"type\": \n", None), ("text, not JSON; escaped", "{\\\"type\\\": \\n".into()));
        assert_eq!(
            payload_text(&[0xc1, 0x01, 0x02], None),
            ("binary; hex", format!("00000000  c1 01 02{}  |...|", " ".repeat(39)))
        );
    }

    // Proves the listing's detail is cut at a character boundary and marked.
    #[test]
    fn detail_is_shortened() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten(&"é".repeat(12), 10), format!("{}…", "é".repeat(10)));
    }
}
