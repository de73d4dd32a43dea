//! `TALLY_*` environment variables over the file (docs/configuration.md).
//!
//! Every key of the declarations can be set: `TALLY_<SECTION>_<KEY>`, nested tables joined the
//! same way (`TALLY_ERP_WEBHOOK_URL`), and the per-store tables as `TALLY_STORES_<ID>_<KEY>`.
//! Kubernetes puts `TALLY_SERVICE_HOST`, `TALLY_PORT_9464_TCP_ADDR`, … into every pod of a
//! namespace with a Service named `tally`, so a variable whose first token names no section is
//! not tally's: it is handed back to be logged, never fatal. In a known section an unknown key
//! is a typo and an error naming the variable, except the names Kubernetes gives a Service
//! called `tally-<section>` (`TALLY_NATS_SERVICE_HOST` for `tally-nats`), which no key has.

use super::{Config, ConfigError, StoreConfig};

/// Every key path of the declarations (`["erp", "webhook", "url"]`) with a value of its type.
/// The per-store tables are not here: their first level is a store id.
pub(super) fn key_paths() -> Vec<(Vec<String>, toml::Value)> {
    let mut paths = Vec::new();
    if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(Config::every_key()) {
        for (section, body) in sections.into_iter().filter(|(section, _)| section != "stores") {
            collect(vec![section], body, &mut paths);
        }
    }
    paths
}

/// The keys of one store's table (`timezone`, `drift.min_units`, …) as paths.
fn store_key_paths() -> Vec<Vec<String>> {
    let store = StoreConfig { timezone: Some("UTC".into()), drift: Some(Default::default()) };
    let mut paths = Vec::new();
    if let Ok(toml::Value::Table(mut table)) = toml::Value::try_from(store) {
        // Every override is optional, so the sample's drift table is empty: list `[drift]`'s keys.
        let drift =
            toml::Value::try_from(super::DriftConfig::default()).unwrap_or(toml::Value::Table(Default::default()));
        if let toml::Value::Table(mut drift) = drift {
            // `idle_timeout` is a property of the whole process, not of a store.
            drift.remove("idle_timeout");
            table.insert("drift".into(), toml::Value::Table(drift));
        }
        for (key, value) in table {
            collect(vec![key], value, &mut paths);
        }
    }
    paths.into_iter().map(|(path, _)| path).collect()
}

fn collect(path: Vec<String>, value: toml::Value, out: &mut Vec<(Vec<String>, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let mut deeper = path.clone();
                deeper.push(key);
                collect(deeper, value, out);
            }
        }
        value => out.push((path, value)),
    }
}

/// The variable that sets the key at `path`.
pub(super) fn var_name(path: &[String]) -> String {
    format!("TALLY_{}", path.join("_").to_ascii_uppercase())
}

/// Applies `vars` (all beginning `TALLY_`) to the file's `table`; returns the names of those
/// that are not tally's, to be logged by the caller.
pub(super) fn apply(table: &mut toml::Table, vars: &[(String, String)]) -> Result<Vec<String>, ConfigError> {
    let keys = key_paths();
    let mut ignored = Vec::new();
    for (var, value) in vars {
        if !apply_one(table, &keys, var, value)? {
            ignored.push(var.clone());
        }
    }
    ignored.sort();
    Ok(ignored)
}

/// Sets the key `var` names; false when `var` is not tally's.
fn apply_one(
    table: &mut toml::Table,
    keys: &[(Vec<String>, toml::Value)],
    var: &str,
    value: &str,
) -> Result<bool, ConfigError> {
    let env_error = |message: String| ConfigError::Env { var: var.into(), message };
    let Some(rest) = var.strip_prefix("TALLY_") else {
        return Ok(false);
    };
    let name = rest.to_ascii_lowercase();
    if let Some((path, sample)) = keys.iter().find(|(path, _)| path.join("_") == name) {
        insert(table, path, typed(sample, value).map_err(env_error)?).map_err(env_error)?;
        return Ok(true);
    }
    // Section names hold no `_`, so the first token decides whose variable it is.
    let section = name.split('_').next().unwrap_or_default();
    let sections: Vec<&str> = keys.iter().map(|(path, _)| path[0].as_str()).chain(["stores"]).collect();
    if !sections.contains(&section) {
        return Ok(false);
    }
    if section == "stores" {
        if let Some((path, value)) = store_key(rest, value) {
            insert(table, &path, value).map_err(env_error)?;
            return Ok(true);
        }
    }
    if is_service_link(&name) {
        return Ok(false);
    }
    if name == section {
        let upper = section.to_ascii_uppercase();
        return Err(env_error(format!("names the section [{section}] but no key; expected TALLY_{upper}_<KEY>")));
    }
    let expected: Vec<String> = if section == "stores" {
        vec!["TALLY_STORES_<ID>_TIMEZONE".into(), "TALLY_STORES_<ID>_DRIFT_<KEY>".into()]
    } else {
        keys.iter().filter(|(path, _)| path[0] == section).map(|(path, _)| var_name(path)).collect()
    };
    Err(env_error(format!("[{section}] has no such key; expected one of {}", expected.join(", "))))
}

/// `TALLY_STORES_<ID>_<KEY>` (without `TALLY_`): the path in `[stores]` and the value. The id is
/// taken as written (ids are case-sensitive); `DEFAULT` means `[stores.default]`.
fn store_key(rest: &str, value: &str) -> Option<(Vec<String>, toml::Value)> {
    let after = rest.get("stores_".len()..)?;
    let lower = after.to_ascii_lowercase();
    store_key_paths().into_iter().find_map(|key| {
        let suffix = format!("_{}", key.join("_"));
        let id = after.get(..lower.strip_suffix(&suffix)?.len()).filter(|id| !id.is_empty())?;
        let id = if id.eq_ignore_ascii_case("default") { "default" } else { id };
        let mut path = vec!["stores".to_string(), id.to_string()];
        path.extend(key);
        Some((path, toml::Value::String(value.to_string())))
    })
}

/// Whether `name` (lower case, without `tally_`) has the shape of a variable Kubernetes sets for
/// a Service `<svc>`: `<svc>_service_host`, `<svc>_service_port`, `<svc>_service_port_<port
/// name>`, `<svc>_port`, `<svc>_port_<n>_<protocol>` and that with `_addr`, `_port` or `_proto`.
pub(super) fn is_service_link(name: &str) -> bool {
    if name.ends_with("_service_host") || name.ends_with("_service_port") || name.contains("_service_port_") {
        return true;
    }
    let tokens: Vec<&str> = name.split('_').collect();
    let is_protocol = |token: &str| matches!(token, "tcp" | "udp" | "sctp");
    let is_number = |token: &str| !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    match tokens.as_slice() {
        // Also `…_port_<n>_<protocol>_port`.
        [.., _, "port"] => true,
        [.., _, "port", number, protocol] => is_number(number) && is_protocol(protocol),
        [.., _, "port", number, protocol, "addr" | "proto"] => is_number(number) && is_protocol(protocol),
        _ => false,
    }
}

/// `value` read with the type of the key's default: a whole number, a boolean or a string.
fn typed(sample: &toml::Value, value: &str) -> Result<toml::Value, String> {
    Ok(match sample {
        toml::Value::Integer(_) => {
            toml::Value::Integer(value.parse().map_err(|_| format!("{value:?} is not a whole number"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(value.parse().map_err(|_| format!("{value:?} is not true or false"))?)
        }
        _ => toml::Value::String(value.to_string()),
    })
}

/// Puts `value` at `path`, creating the tables on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut at = table;
    for (depth, name) in parents.iter().enumerate() {
        at = at
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("[{}] in the file is not a table", path[..=depth].join(".")))?;
    }
    at.insert(last.clone(), value);
    Ok(())
}
