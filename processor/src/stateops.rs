//! `tally state …`: operations on the state directory — a consistent checkpoint, restoring one,
//! and rebuilding state from the input stream into a fresh directory.
//!
//! Every commit is one RocksDB write batch holding aggregates, dedupe ids, outbox and the
//! stream position, so any point-in-time copy is consistent with its own position: restored,
//! it resumes reading right after that position.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tally_state::{Cf, Overlay, RocksStore, Store, WriteBatch};
use tally_topologies::topology;
use tokio::sync::watch;

use crate::config::Config;

/// Writes a checkpoint of the state at `config.state.path` into `dir` (which must not exist).
///
/// Works while `tally run` holds the state, through a read-only view of it; the checkpoint
/// holds whole commits only, with the position that goes with them.
pub fn checkpoint(config: &Config, dir: &Path) -> anyhow::Result<u64> {
    if dir.exists() {
        bail!("{} already exists; a checkpoint goes into a new directory", dir.display());
    }
    let store = open_any(&config.state.path)?;
    let position = topology::committed_position(&Overlay::new(&store))?;
    store.checkpoint(dir).with_context(|| format!("writing the checkpoint into {}", dir.display()))?;
    Ok(position)
}

/// Opens the state read-write when nothing else holds it, else read-only.
fn open_any(path: &Path) -> anyhow::Result<RocksStore> {
    if !path.join("CURRENT").exists() {
        bail!("{} holds no tally state (no RocksDB CURRENT file)", path.display());
    }
    match RocksStore::open(path, &Default::default()) {
        Ok(store) => Ok(store),
        Err(_) => RocksStore::open_read_only(path)
            .with_context(|| format!("opening the state in {} (read-write and read-only both failed)", path.display())),
    }
}

/// Copies checkpoint `from` into `config.state.path`, which must be absent or empty, so that
/// the next `tally run` resumes after the checkpoint's position.
pub fn restore(config: &Config, from: &Path) -> anyhow::Result<u64> {
    let target = &config.state.path;
    if !from.join("CURRENT").exists() {
        bail!("{} is not a checkpoint (no RocksDB CURRENT file)", from.display());
    }
    if target.exists() && std::fs::read_dir(target)?.next().is_some() {
        bail!("state.path {} is not empty; move it away first (restore never overwrites state)", target.display());
    }
    std::fs::create_dir_all(target)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), target.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    let store = RocksStore::open(target, &Default::default())?;
    Ok(topology::committed_position(&Overlay::new(&store))?)
}

/// Rebuilds state from the input stream into `into` with its own consumer, until it has
/// caught up with the stream's last message; then drops the outputs it produced (the live
/// instance already sent them). Returns the position reached.
pub async fn rebuild(config: &Config, into: &Path, metrics: metrics_exporter_prometheus::PrometheusHandle) -> anyhow::Result<u64> {
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!("{} is not empty; rebuild writes into a fresh directory", into.display());
    }
    let mut rebuild_config = config.clone();
    rebuild_config.state.path = PathBuf::from(into);
    rebuild_config.input.consumer = format!("{}-rebuild", config.input.consumer);
    // The rebuild serves no HTTP and must not collide with the live instance's port.
    rebuild_config.http.listen = "127.0.0.1:0".into();
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(&config.input.stream).await.context("looking up the input stream")?;
    let last = stream.info().await?.state.last_sequence;
    let store = crate::app::open_store(&rebuild_config)?;
    let (stop, shutdown) = watch::channel(false);
    let runner = tokio::spawn(crate::app::run_with_store(rebuild_config.clone(), Arc::clone(&store), metrics, shutdown));
    let mut reported = 0;
    loop {
        let position = topology::committed_position(&Overlay::new(store.as_ref()))?;
        if position >= last {
            break;
        }
        if position >= reported + 10_000 || reported == 0 {
            eprintln!("rebuild: {position} of {last} messages");
            reported = position.max(1);
        }
        if runner.is_finished() {
            bail!("the rebuild stopped before catching up at {position} of {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(true);
    runner.await.context("rebuild panicked")??;
    let position = topology::committed_position(&Overlay::new(store.as_ref()))?;
    discard_outbox(store.as_ref())?;
    if let Ok(stream) = js.get_stream(&config.input.stream).await {
        let _ = stream.delete_consumer(&rebuild_config.input.consumer).await;
    }
    Ok(position)
}

fn discard_outbox(store: &dyn Store) -> anyhow::Result<()> {
    loop {
        let rows = store.scan_from(Cf::Outbox, &[], 10_000)?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, _) in rows {
            batch.delete(Cf::Outbox, key);
        }
        store.write(&batch)?;
    }
}
