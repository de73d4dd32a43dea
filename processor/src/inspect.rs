//! `tally inspect`: reads the state directory offline (read-only, while no processor holds it)
//! and prints JSON, so an operator can look without the HTTP API.

use std::path::Path;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde_json::json;
use tally_state::{Overlay, RocksStore, Store};
use tally_topologies::{report, topology, trace as record_trace};

/// Store-days listed at most by `inspect days`.
const DAYS_MAX: usize = 100_000;

fn open(path: &Path) -> anyhow::Result<RocksStore> {
    RocksStore::open_read_only(path).with_context(|| {
        format!("cannot open the state in {} read-only (is it a tally state directory?)", path.display())
    })
}

/// The committed position, outbox size and store-days held.
pub fn summary(path: &Path) -> anyhow::Result<serde_json::Value> {
    let store = open(path)?;
    let position = topology::committed_position(&Overlay::new(&store))?;
    let outbox = store.scan_from(tally_state::Cf::Outbox, &[], DAYS_MAX)?.len();
    let days = report::store_days(&store, DAYS_MAX)?;
    let stores: std::collections::BTreeSet<&String> = days.iter().map(|(s, _)| s).collect();
    Ok(json!({
        "state_path": path.display().to_string(),
        "committed_stream_sequence": position,
        "outbox_pending": outbox,
        "stores": stores.len(),
        "store_days": days.iter().map(|(s, d)| format!("{s}/{d}")).collect::<Vec<_>>(),
    }))
}

/// One store-day's reconciliation, as `/v1/stores/<store>/days/<day>` shows it.
pub fn day(path: &Path, store_id: &str, day: &str) -> anyhow::Result<serde_json::Value> {
    let day =
        NaiveDate::parse_from_str(day, "%Y-%m-%d").with_context(|| format!("{day:?} is not a day like 2026-11-27"))?;
    let store = open(path)?;
    report::day_report(&store, store_id, day)?.with_context(|| format!("no data for store {store_id:?} on {day}"))
}

/// The trace of the records with this id (in one store, or in every store), as
/// `/v1/trace/<id>` shows it; an error when state holds none.
pub fn trace(path: &Path, id: &str, store_id: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let store = open(path)?;
    let records = record_trace::trace(&store, id, store_id)?;
    if records.is_empty() {
        let place = store_id.map(|s| format!(" in store {s:?}")).unwrap_or_default();
        anyhow::bail!("no record with id {id:?}{place}: never received, or pruned after state.retention");
    }
    Ok(json!({"id": id, "records": records}))
}
