//! `[sku]`: SKU aliases (docs/configuration.md, "[sku]"; docs/wire-format.md, "SKU aliases").

use serde::{Deserialize, Serialize};
use tally_topologies::sku_alias::{is_valid_system, SkuSystems};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkuConfig {
    /// The NATS KV bucket holding the aliases (`<system>/<code>` → canonical sku); `tally setup`
    /// creates it, `tally run` watches it. Default `tally_sku_aliases`.
    pub aliases_bucket: String,
    /// The system of the codes on `P.pos.<store>` records without `sku_system`. Default `pos`.
    pub pos_system: String,
    /// The system of the codes on `P.inventory.<store>` records without `sku_system`. Default
    /// `inventory`.
    pub inventory_system: String,
    /// The system of the codes on `P.orders.<store>` records without `sku_system`. Default
    /// `orders`.
    pub orders_system: String,
    /// A system whose codes are canonical skus, never reported as unmapped; empty = none.
    /// Default empty.
    pub canonical_system: String,
    /// Further systems, comma-separated, that `tally_unmapped_skus_total{system}` names as
    /// themselves (the three above always are); any other system is counted as `other`.
    /// Default empty.
    pub systems: String,
}

impl Default for SkuConfig {
    fn default() -> Self {
        SkuConfig {
            aliases_bucket: "tally_sku_aliases".into(),
            pos_system: "pos".into(),
            inventory_system: "inventory".into(),
            orders_system: "orders".into(),
            canonical_system: String::new(),
            systems: String::new(),
        }
    }
}

impl SkuConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        let bucket_ok = !self.aliases_bucket.is_empty()
            && self.aliases_bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !bucket_ok {
            return Err(invalid("sku.aliases_bucket", "a bucket name is letters, digits, _ or -".into()));
        }
        let system_rule = "a system is 1-64 of A-Z a-z 0-9 _ -";
        for (key, system) in [
            ("sku.pos_system", &self.pos_system),
            ("sku.inventory_system", &self.inventory_system),
            ("sku.orders_system", &self.orders_system),
        ] {
            if !is_valid_system(system) {
                return Err(invalid(key, format!("{system:?}: {system_rule}")));
            }
        }
        if !self.canonical_system.is_empty() && !is_valid_system(&self.canonical_system) {
            return Err(invalid("sku.canonical_system", format!("{:?}: {system_rule}", self.canonical_system)));
        }
        if let Some(bad) = self.named().into_iter().find(|s| !is_valid_system(s)) {
            return Err(invalid("sku.systems", format!("{bad:?}: {system_rule}")));
        }
        Ok(())
    }

    fn named(&self) -> Vec<String> {
        self.systems.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// What the topology needs: which system a record's codes belong to.
    pub fn systems(&self) -> SkuSystems {
        SkuSystems {
            pos: self.pos_system.clone(),
            inventory: self.inventory_system.clone(),
            orders: self.orders_system.clone(),
            canonical: Some(self.canonical_system.clone()).filter(|s| !s.is_empty()),
            named: self.named(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    // Proves `[sku]` defaults keep today's systems, and bad values are refused naming the key.
    #[test]
    fn sku_section_is_checked_by_key() {
        let systems = Config::default().topology().sku_systems;
        assert_eq!((systems.pos.as_str(), systems.inventory.as_str(), systems.canonical), ("pos", "inventory", None));
        for (text, key) in [
            ("[sku]\npos_system = \"p/s\"\n", "sku.pos_system"),
            ("[sku]\ncanonical_system = \"a b\"\n", "sku.canonical_system"),
            ("[sku]\nsystems = \"plu, ok,no.pe\"\n", "sku.systems"),
            ("[sku]\naliases_bucket = \"a.b\"\n", "sku.aliases_bucket"),
        ] {
            match Config::from_parts("test", text, &[]) {
                Err(ConfigError::Invalid { key: named, .. }) => assert_eq!(named, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let vars = [("TALLY_SKU_ALIASES_BUCKET".to_string(), "other_bucket".to_string())];
        let config = Config::from_parts("test", "[sku]\nsystems = \"plu, scale\"\n", &vars).unwrap();
        assert_eq!(config.sku.aliases_bucket, "other_bucket");
        assert_eq!(config.topology().sku_systems.named, vec!["plu".to_string(), "scale".to_string()]);
    }
}
