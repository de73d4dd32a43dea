//! The import file of `tally sku-alias import` (docs/operations.md, "SKU aliases"): one alias
//! per line, `<system>/<code>,<sku>` or `<system>,<code>,<sku>`, an optional header line whose
//! last column is `sku`, blank lines and `#` comments. Every line is checked before anything is
//! written, and every bad line is reported with its number: nothing is skipped unsaid.

use std::collections::HashMap;

use tally_topologies::sku_alias::{is_valid_code, is_valid_system, parse_alias_name, CODE_LEN_MAX};

/// One alias of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub line: usize,
    pub system: String,
    pub code: String,
    pub sku: String,
}

impl Alias {
    /// The bucket key, `<system>/<code>`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.system, self.code)
    }
}

/// A line that cannot be imported, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

/// The aliases of a file, and its bad lines.
#[derive(Debug, Default)]
pub struct Parsed {
    pub aliases: Vec<Alias>,
    pub bad: Vec<BadLine>,
}

/// A canonical sku as a value: 1–256 characters, no control characters, no comma or double
/// quote (so that `tally sku-alias list` prints a file `import` reads back), no spaces around.
pub fn is_valid_sku(sku: &str) -> bool {
    (1..=CODE_LEN_MAX).contains(&sku.len())
        && sku.trim() == sku
        && !sku.chars().any(|c| c.is_control() || c == ',' || c == '"')
}

pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut first_of: HashMap<String, (usize, String)> = HashMap::new();
    let mut header_allowed = true;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = content.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
        if std::mem::take(&mut header_allowed) && fields.last().is_some_and(|f| f.eq_ignore_ascii_case("sku")) {
            continue;
        }
        match alias(line, &fields) {
            Ok(alias) => match first_of.get(&alias.name()) {
                Some((_, sku)) if *sku == alias.sku => {}
                Some((earlier, sku)) => parsed.bad.push(BadLine {
                    line,
                    message: format!("{} is already given on line {earlier} as {sku:?}", alias.name()),
                }),
                None => {
                    first_of.insert(alias.name(), (line, alias.sku.clone()));
                    parsed.aliases.push(alias);
                }
            },
            Err(message) => parsed.bad.push(BadLine { line, message }),
        }
    }
    parsed
}

fn alias(line: usize, fields: &[&str]) -> Result<Alias, String> {
    let (system, code, sku) = match fields {
        [name, sku] => {
            let (system, code) = parse_alias_name(name)?;
            (system, code, *sku)
        }
        [system, code, sku] => {
            if !is_valid_system(system) {
                return Err(format!("system {system:?}: 1-64 of A-Z a-z 0-9 _ -"));
            }
            if !is_valid_code(code) {
                return Err(format!("code {code:?}: 1-256 of A-Z a-z 0-9 _ - = . (not starting or ending with .)"));
            }
            (*system, *code, *sku)
        }
        _ => return Err(format!("{} columns; expected <system>/<code>,<sku> or <system>,<code>,<sku>", fields.len())),
    };
    if !is_valid_sku(sku) {
        return Err(format!("sku {sku:?}: 1-256 characters, no comma, quote or control character"));
    }
    Ok(Alias { line, system: system.into(), code: code.into(), sku: sku.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves both line forms, a header, comments and blank lines read as aliases with their line numbers.
    #[test]
    fn reads_both_forms() {
        let parsed = parse("system,code,sku\n# scanned codes\n\npos,012345678905,100234\n\"pos/4011\",PLU-BANANA\n");
        assert!(parsed.bad.is_empty(), "{:?}", parsed.bad);
        let names: Vec<(usize, String, String)> =
            parsed.aliases.iter().map(|a| (a.line, a.name(), a.sku.clone())).collect();
        assert_eq!(
            names,
            vec![(4, "pos/012345678905".into(), "100234".into()), (5, "pos/4011".into(), "PLU-BANANA".into())]
        );
    }

    // Proves every bad line is reported with its number and reason, and the good ones still read.
    #[test]
    fn reports_bad_lines_by_number() {
        let parsed = parse("pos/1,A\npos 2,B\npos/3\npos/1,C\npos/4,\ninventory,x y,D\npos/1,A\n");
        let bad: Vec<usize> = parsed.bad.iter().map(|b| b.line).collect();
        assert_eq!(bad, vec![2, 3, 4, 5, 6]);
        assert!(parsed.bad[0].message.contains("not <system>/<code>"), "{}", parsed.bad[0].message);
        assert!(parsed.bad[1].message.contains("1 columns"), "{}", parsed.bad[1].message);
        assert!(parsed.bad[2].message.contains("already given on line 1"), "{}", parsed.bad[2].message);
        assert!(parsed.bad[3].message.starts_with("sku"), "{}", parsed.bad[3].message);
        assert!(parsed.bad[4].message.starts_with("code"), "{}", parsed.bad[4].message);
        assert_eq!(parsed.aliases.len(), 1);
    }

    // Proves a header is recognised only on the first line with content.
    #[test]
    fn header_only_first() {
        let parsed = parse("pos/1,A\nalias,sku\n");
        assert_eq!(parsed.bad.len(), 1);
        assert_eq!(parsed.bad[0].line, 2);
    }
}
