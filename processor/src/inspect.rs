//! `tally inspect`: reads the state directory offline (read-only, while no processor holds it)
//! and prints JSON, so an operator can look without the HTTP API. A partitioned state is read
//! whole, every partition as one (`UnionStore`), or one partition alone with `--partition`
//! (docs/operations.md, "Offline inspection" and "State commands over partitions").

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde_json::json;
use tally_state::{Cf, Overlay, RocksStore, Store};
use tally_topologies::{partition as store_partition, report, topology, trace as record_trace};

use crate::partitions::{Layout, Partition, UnionStore};

/// Store-days listed at most by `inspect days`.
const DAYS_MAX: usize = 100_000;

/// The partitions of a state that one command reads: every one, or the one `--partition` named.
struct Opened {
    layout: Layout,
    parts: Vec<(Partition, Arc<dyn Store>)>,
}

impl Opened {
    /// Opens the state in `root` read-only: the partition `only`, or every one.
    fn at(root: &Path, only: Option<u32>) -> anyhow::Result<Opened> {
        let layout = Layout::existing(root)?;
        let mut parts = Vec::new();
        for partition in layout.select(only)? {
            let store = open_one(&layout.dir(partition.index))?;
            parts.push((partition, Arc::new(store) as Arc<dyn Store>));
        }
        Ok(Opened { layout, parts })
    }

    /// The opened partitions read as one.
    fn union(&self) -> Arc<dyn Store> {
        UnionStore::over(self.parts.iter().map(|(_, store)| Arc::clone(store)).collect())
    }

    /// " in partition N" when one partition of several was opened, with the partition that holds
    /// `store_id` when it is another: for messages about what was not found.
    fn where_not_found(&self, store_id: Option<&str>) -> String {
        let [(partition, _)] = self.parts.as_slice() else { return String::new() };
        if partition.count == 1 {
            return String::new();
        }
        let mut place = format!(" in partition {}", partition.index);
        if let Some(store_id) = store_id {
            let home = store_partition::of_store(store_id, self.layout.count);
            if home != partition.index {
                place.push_str(&format!(" (store {store_id:?} belongs to partition {home} of {})", self.layout.count));
            }
        }
        place
    }
}

fn open_one(path: &Path) -> anyhow::Result<RocksStore> {
    RocksStore::open_read_only(path).with_context(|| {
        format!("cannot open the state in {} read-only (is it a tally state directory?)", path.display())
    })
}

/// What `summary` says of one partition.
struct PartitionSummary {
    partition: Partition,
    path: String,
    position: u64,
    outbox: usize,
    store_days: usize,
}

impl PartitionSummary {
    fn of(layout: &Layout, partition: Partition, store: &dyn Store) -> anyhow::Result<PartitionSummary> {
        Ok(PartitionSummary {
            partition,
            path: layout.dir(partition.index).display().to_string(),
            position: topology::committed_position(&Overlay::new(store))?,
            outbox: store.scan_from(Cf::Outbox, &[], DAYS_MAX)?.len(),
            store_days: report::store_days(store, DAYS_MAX)?.len(),
        })
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "partition": self.partition.index,
            "state_path": self.path,
            "committed_stream_sequence": self.position,
            "outbox_pending": self.outbox,
            "store_days": self.store_days,
        })
    }
}

/// The committed positions, outbox sizes and store-days held: per partition, and over all read.
/// Each partition has a position of its own on the one input stream; the highest is the last
/// message applied anywhere, not a point up to which everything is applied.
pub fn summary(path: &Path, only: Option<u32>) -> anyhow::Result<serde_json::Value> {
    let opened = Opened::at(path, only)?;
    let partitions: Vec<PartitionSummary> = opened
        .parts
        .iter()
        .map(|(partition, store)| PartitionSummary::of(&opened.layout, *partition, store.as_ref()))
        .collect::<anyhow::Result<_>>()?;
    let days = report::store_days(opened.union().as_ref(), DAYS_MAX)?;
    let stores: std::collections::BTreeSet<&String> = days.iter().map(|(s, _)| s).collect();
    Ok(json!({
        "state_path": path.display().to_string(),
        "partition_count": opened.layout.count,
        "committed_stream_sequence": partitions.iter().map(|p| p.position).max().unwrap_or(0),
        "outbox_pending": partitions.iter().map(|p| p.outbox).sum::<usize>(),
        "stores": stores.len(),
        "store_days": days.iter().map(|(s, d)| format!("{s}/{d}")).collect::<Vec<_>>(),
        "partitions": partitions.iter().map(PartitionSummary::json).collect::<Vec<_>>(),
    }))
}

/// One store-day's reconciliation, as `/v1/stores/<store>/days/<day>` shows it.
pub fn day(path: &Path, only: Option<u32>, store_id: &str, day: &str) -> anyhow::Result<serde_json::Value> {
    let day =
        NaiveDate::parse_from_str(day, "%Y-%m-%d").with_context(|| format!("{day:?} is not a day like 2026-11-27"))?;
    let opened = Opened::at(path, only)?;
    report::day_report(opened.union().as_ref(), store_id, day)?
        .with_context(|| format!("no data for store {store_id:?} on {day}{}", opened.where_not_found(Some(store_id))))
}

/// The trace of the records with this id (in one store, or in every store), as
/// `/v1/trace/<id>` shows it; an error when state holds none.
pub fn trace(path: &Path, id: &str, store_id: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let opened = Opened::at(path, None)?;
    let records = record_trace::trace(opened.union().as_ref(), id, store_id)?;
    if records.is_empty() {
        let place = store_id.map(|s| format!(" in store {s:?}")).unwrap_or_default();
        anyhow::bail!("no record with id {id:?}{place}: never received, or pruned after state.retention");
    }
    Ok(json!({"id": id, "records": records}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_state::MemStore;

    // Proves a message about a store not found in one partition names the partition that holds
    // the store, and says nothing of partitions when the whole state was read.
    #[test]
    fn not_found_names_the_partition() {
        let layout = Layout { root: "/state".into(), count: 16 };
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let home = store_partition::of_store("0042", 16);
        let other = (home + 1) % 16;
        let one = |index| Opened {
            layout: layout.clone(),
            parts: vec![(Partition { index, count: 16 }, Arc::clone(&store))],
        };
        assert_eq!(
            one(other).where_not_found(Some("0042")),
            format!(" in partition {other} (store \"0042\" belongs to partition {home} of 16)")
        );
        assert_eq!(one(home).where_not_found(Some("0042")), format!(" in partition {home}"));
        let all =
            Opened { layout: layout.clone(), parts: layout.partitions().map(|p| (p, Arc::clone(&store))).collect() };
        assert_eq!(all.where_not_found(Some("0042")), "");
    }
}
