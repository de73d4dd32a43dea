//! SKU aliases (docs/wire-format.md, "SKU aliases"): `<system>/<code>` → canonical sku, and
//! which system a record's codes belong to.
//!
//! The table itself is master data that the processor keeps current (it watches a NATS KV
//! bucket); the topology only reads a snapshot of it, taken once per batch, so a batch is
//! applied against one table from its first record to its last and a lookup per line is one
//! hash probe with no allocation. It never reads the bucket, the clock or anything else.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::model::{Event, Source};

/// The longest system name and code accepted (a system is also a metric label value).
pub const SYSTEM_LEN_MAX: usize = 64;
/// The longest code or canonical sku accepted in the table.
pub const CODE_LEN_MAX: usize = 256;

/// Which system a record's codes belong to, and which systems are named on the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuSystems {
    /// The system of `P.pos.<store>` records without `sku_system`. Default `pos`.
    pub pos: String,
    /// The system of `P.inventory.<store>` records without `sku_system`. Default `inventory`.
    pub inventory: String,
    /// The system of `P.orders.<store>` records without `sku_system`. Default `orders`.
    pub orders: String,
    /// A system whose codes are canonical skus: never reported as unmapped. Default: none.
    pub canonical: Option<String>,
    /// Further systems named as themselves on `tally_unmapped_skus_total{system}`; any system
    /// not configured is counted as `other`, so the label stays bounded.
    pub named: Vec<String>,
}

impl Default for SkuSystems {
    fn default() -> Self {
        SkuSystems {
            pos: "pos".into(),
            inventory: "inventory".into(),
            orders: "orders".into(),
            canonical: None,
            named: Vec::new(),
        }
    }
}

impl SkuSystems {
    /// The system of a record: its own `sku_system`, else its subject's default.
    pub fn of<'a>(&'a self, source: Source, record_system: Option<&'a str>) -> &'a str {
        record_system.unwrap_or(match source {
            Source::Pos => &self.pos,
            Source::Inventory => &self.inventory,
            Source::Orders => &self.orders,
        })
    }

    /// The metric label of a system: itself when configured, else `other`.
    pub fn label(&self, system: &str) -> String {
        let configured = system == self.pos
            || system == self.inventory
            || system == self.orders
            || self.canonical.as_deref() == Some(system)
            || self.named.iter().any(|s| s == system);
        if configured {
            system.to_string()
        } else {
            "other".to_string()
        }
    }
}

/// The alias table: per system, code → canonical sku. Immutable once shared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuAliases {
    by_system: HashMap<String, HashMap<String, String>>,
}

impl SkuAliases {
    pub fn insert(&mut self, system: &str, code: &str, sku: &str) {
        self.by_system.entry(system.to_string()).or_default().insert(code.to_string(), sku.to_string());
    }

    pub fn remove(&mut self, system: &str, code: &str) {
        if let Some(codes) = self.by_system.get_mut(system) {
            codes.remove(code);
            if codes.is_empty() {
                self.by_system.remove(system);
            }
        }
    }

    /// The canonical sku of a code, when an alias names it.
    pub fn lookup(&self, system: &str, code: &str) -> Option<&str> {
        self.by_system.get(system)?.get(code).map(String::as_str)
    }

    /// Whether at least one alias is of `system`: only such a system's codes can be unmapped.
    pub fn maps_system(&self, system: &str) -> bool {
        self.by_system.contains_key(system)
    }

    /// Every alias as (system, code, sku), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.by_system.iter().flat_map(|(system, codes)| {
            codes.iter().map(move |(code, sku)| (system.as_str(), code.as_str(), sku.as_str()))
        })
    }

    pub fn len(&self) -> usize {
        self.by_system.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_system.is_empty()
    }
}

/// The table shared between whoever keeps it current and the batches that read it: a batch
/// takes the current snapshot (an `Arc` clone under a read lock) once, at its start.
#[derive(Debug, Default)]
pub struct SharedAliases(RwLock<Arc<SkuAliases>>);

impl SharedAliases {
    pub fn new(aliases: SkuAliases) -> SharedAliases {
        SharedAliases(RwLock::new(Arc::new(aliases)))
    }

    pub fn snapshot(&self) -> Arc<SkuAliases> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn replace(&self, aliases: Arc<SkuAliases>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = aliases;
    }
}

/// A system name: 1–64 of `A-Z a-z 0-9 _ -` (it is a key token and a metric label value).
pub fn is_valid_system(system: &str) -> bool {
    (1..=SYSTEM_LEN_MAX).contains(&system.len())
        && system.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A code or canonical sku in the table: 1–256 of `A-Z a-z 0-9 _ - = .`, not starting or
/// ending with `.` (the characters a NATS KV key may hold after the system's `/`).
pub fn is_valid_code(code: &str) -> bool {
    (1..=CODE_LEN_MAX).contains(&code.len())
        && !code.starts_with('.')
        && !code.ends_with('.')
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'.'))
}

/// Splits an alias name `<system>/<code>` into its parts, checked.
pub fn parse_alias_name(name: &str) -> Result<(&str, &str), String> {
    let Some((system, code)) = name.split_once('/') else {
        return Err(format!("{name:?} is not <system>/<code>"));
    };
    if !is_valid_system(system) {
        return Err(format!("system {system:?}: 1-{SYSTEM_LEN_MAX} of A-Z a-z 0-9 _ -"));
    }
    if !is_valid_code(code) {
        return Err(format!("code {code:?}: 1-{CODE_LEN_MAX} of A-Z a-z 0-9 _ - = . (not starting or ending with .)"));
    }
    Ok((system, code))
}

/// The codes of one record that no alias maps, when its system is mapped and not canonical:
/// each code once, with the number of its lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnmappedCodes {
    pub system: String,
    pub codes: Vec<(String, u64)>,
}

impl UnmappedCodes {
    pub fn lines(&self) -> u64 {
        self.codes.iter().map(|(_, n)| n).sum()
    }

    fn note(&mut self, code: &str) {
        match self.codes.iter_mut().find(|(c, _)| c == code) {
            Some((_, n)) => *n += 1,
            None => self.codes.push((code.to_string(), 1)),
        }
    }
}

/// Rewrites the record's line skus to their canonical skus, and returns the codes that stay
/// themselves although they should have had an alias. Day-closes carry no skus.
pub fn canonicalize(event: &mut Event, system: &str, systems: &SkuSystems, aliases: &SkuAliases) -> UnmappedCodes {
    let mut unmapped = UnmappedCodes::default();
    // No alias at all: every code is itself and none is unmapped (the table of a deployment
    // that does not use aliases; its records pass untouched).
    if aliases.is_empty() {
        return unmapped;
    }
    let reportable = aliases.maps_system(system) && systems.canonical.as_deref() != Some(system);
    let mut one = |sku: &mut String| match aliases.lookup(system, sku) {
        Some(canonical) if canonical != sku.as_str() => *sku = canonical.to_string(),
        Some(_) => {}
        None if reportable => unmapped.note(sku),
        None => {}
    };
    match event {
        Event::Transaction(tx) => tx.lines.iter_mut().for_each(|line| one(&mut line.sku)),
        Event::Movement(movement) => movement.lines.iter_mut().for_each(|line| one(&mut line.sku)),
        Event::Order(order) => order.lines.iter_mut().for_each(|line| one(&mut line.sku)),
        Event::DayClose(_) => {}
    }
    if !unmapped.codes.is_empty() {
        unmapped.system = system.to_string();
    }
    unmapped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str, &str)]) -> SkuAliases {
        let mut aliases = SkuAliases::default();
        for (system, code, sku) in entries {
            aliases.insert(system, code, sku);
        }
        aliases
    }

    // Proves lookups are per system, removal forgets a system with no aliases left.
    #[test]
    fn table_is_per_system() {
        let mut aliases = table(&[("pos", "0123", "A1"), ("inventory", "0123", "B9")]);
        assert_eq!(aliases.lookup("pos", "0123"), Some("A1"));
        assert_eq!(aliases.lookup("inventory", "0123"), Some("B9"));
        assert_eq!(aliases.lookup("erp", "0123"), None);
        aliases.remove("pos", "0123");
        assert!(!aliases.maps_system("pos"));
        assert_eq!(aliases.len(), 1);
    }

    // Proves alias names are checked part by part, with the part named.
    #[test]
    fn alias_names_are_checked() {
        assert_eq!(parse_alias_name("pos/012345678905"), Ok(("pos", "012345678905")));
        assert_eq!(
            parse_alias_name("pos/a/b"),
            Err("code \"a/b\": 1-256 of A-Z a-z 0-9 _ - = . (not starting or ending with .)".into())
        );
        assert!(parse_alias_name("012345678905").unwrap_err().contains("not <system>/<code>"));
        assert!(parse_alias_name("p.s/1").unwrap_err().starts_with("system"));
        assert!(parse_alias_name("pos/").unwrap_err().starts_with("code"));
    }

    // Proves the metric label is the system only when configured.
    #[test]
    fn labels_are_bounded() {
        let systems = SkuSystems { named: vec!["plu".into()], ..SkuSystems::default() };
        assert_eq!(systems.label("pos"), "pos");
        assert_eq!(systems.label("plu"), "plu");
        assert_eq!(systems.label("upc-from-vendor-17"), "other");
    }
}
