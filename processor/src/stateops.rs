//! `tally state …`: operations on the state directory — a consistent checkpoint, restoring one,
//! and rebuilding state from the input stream into a fresh directory. Each shows its progress
//! (`crate::progress`): bytes for checkpoint and restore, messages for rebuild.
//!
//! Every commit is one RocksDB write batch holding aggregates, dedupe ids, outbox and the
//! stream position, so any point-in-time copy is consistent with its own position: restored,
//! it resumes reading right after that position.
//!
//! A rebuild publishes nothing and calls nothing: it runs the input loop alone
//! (`app::consume_only`), drops the outputs it recomputed, and sets its posting books and alert
//! revisions from what the output streams hold (`crate::reconcile`). A rebuilt or restored state
//! is marked, so that its first `tally run` reads the output streams again before it publishes:
//! by then the live instance is stopped and has sent its last posting.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tally_state::{Cf, Overlay, RocksStore, Store, WriteBatch};
use tally_topologies::topology;
use tokio::sync::watch;
use tracing::warn;

use crate::config::Config;
use crate::progress::Progress;

/// How often long work looks at how far it got.
const POLL: Duration = Duration::from_millis(200);
/// Bytes copied per read while restoring.
const COPY_CHUNK: usize = 1 << 20;

/// What `checkpoint` wrote.
#[derive(Debug)]
pub struct Checkpointed {
    /// The committed stream sequence the checkpoint holds.
    pub position: u64,
    pub files: usize,
    pub bytes: u64,
    /// Files hard-linked to the live state's rather than copied.
    pub linked: usize,
}

/// Writes a checkpoint of the state at `config.state.path` into `dir` (which must not exist).
///
/// Works while `tally run` holds the state, through a read-only view of it; the checkpoint
/// holds whole commits only, with the position that goes with them. RocksDB hard-links the
/// state's files where it can (same file system) and copies the rest; the progress counts the
/// bytes that appear in the checkpoint either way.
pub fn checkpoint(config: &Config, dir: &Path) -> anyhow::Result<Checkpointed> {
    if dir.exists() {
        bail!("{} already exists; a checkpoint goes into a new directory", dir.display());
    }
    let store = open_any(&config.state.path)?;
    let position = topology::committed_position(&Overlay::new(&store))?;
    let expected = files_of(&config.state.path)?.iter().filter(|f| f.is_data()).map(|f| f.bytes).sum();
    let mut progress = Progress::new("checkpoint", "bytes", Some(expected));
    // RocksDB writes into `<dir>.tmp` and renames it to `dir` when done.
    let staging = PathBuf::from(format!("{}.tmp", dir.display()));
    let written = std::thread::scope(|scope| {
        let worker = scope.spawn(|| store.checkpoint(dir));
        while !worker.is_finished() {
            progress.set(bytes_in(&staging).max(bytes_in(dir)));
            std::thread::sleep(POLL);
        }
        worker.join()
    });
    let written = written.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    written.with_context(|| format!("writing the checkpoint into {}", dir.display()))?;
    let files = files_of(dir)?;
    let bytes = files.iter().map(|f| f.bytes).sum();
    let linked = files.iter().filter(|f| f.links > 1).count();
    progress.set_total(bytes);
    progress.set(bytes);
    progress.finish_with(&format!("{} files, {linked} hard-linked, {} copied", files.len(), files.len() - linked));
    Ok(Checkpointed { position, files: files.len(), bytes, linked })
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

/// A regular file of a state or checkpoint directory.
struct StateFile {
    path: PathBuf,
    bytes: u64,
    /// Hard links to the file (1: it is the only name).
    links: u64,
}

impl StateFile {
    /// Whether a checkpoint takes this file (RocksDB's info logs and lock stay behind).
    fn is_data(&self) -> bool {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        !(name == "LOCK" || name == "LOG" || name.starts_with("LOG.old"))
    }
}

fn files_of(dir: &Path) -> anyhow::Result<Vec<StateFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push(StateFile { path: entry.path(), bytes: meta.len(), links: link_count(&meta) });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(unix)]
fn link_count(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn link_count(_meta: &std::fs::Metadata) -> u64 {
    1
}

/// Bytes in the regular files of `dir`; 0 while it does not exist.
fn bytes_in(dir: &Path) -> u64 {
    files_of(dir).map(|files| files.iter().map(|f| f.bytes).sum()).unwrap_or(0)
}

/// What `restore` copied.
#[derive(Debug)]
pub struct Restored {
    /// The committed stream sequence `tally run` resumes after.
    pub position: u64,
    pub files: usize,
    pub bytes: u64,
}

/// Copies checkpoint `from` into `config.state.path`, which must be absent or empty, so that
/// the next `tally run` resumes after the checkpoint's position. The restored state is marked
/// for reconciliation: its posting books are as old as the checkpoint, and its first run sets
/// them from what the ERP received since.
pub fn restore(config: &Config, from: &Path) -> anyhow::Result<Restored> {
    let target = &config.state.path;
    if !from.join("CURRENT").exists() {
        bail!("{} is not a checkpoint (no RocksDB CURRENT file)", from.display());
    }
    if target.exists() && std::fs::read_dir(target)?.next().is_some() {
        bail!("state.path {} is not empty; move it away first (restore never overwrites state)", target.display());
    }
    let files = files_of(from)?;
    let bytes = files.iter().map(|f| f.bytes).sum();
    std::fs::create_dir_all(target)?;
    let mut progress = Progress::new("restore", "bytes", Some(bytes));
    for file in &files {
        let name = file.path.file_name().context("a listed file has a name")?;
        copy_counting(&file.path, &target.join(name), &mut progress)
            .with_context(|| format!("copying {}", file.path.display()))?;
    }
    progress.finish_with(&format!("{} files", files.len()));
    let store = RocksStore::open(target, &Default::default())?;
    let position = topology::committed_position(&Overlay::new(&store))?;
    crate::reconcile::mark(&store)?;
    Ok(Restored { position, files: files.len(), bytes })
}

/// Copies one file, counting its bytes into `progress`, and syncs it.
fn copy_counting(from: &Path, to: &Path, progress: &mut Progress) -> std::io::Result<()> {
    let mut reader = std::fs::File::open(from)?;
    let mut writer = std::fs::File::options().write(true).create_new(true).open(to)?;
    let mut buffer = vec![0; COPY_CHUNK];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n])?;
        progress.add(n as u64);
    }
    writer.sync_all()
}

/// What `rebuild` did.
#[derive(Debug)]
pub struct Rebuilt {
    /// The last input stream sequence applied.
    pub position: u64,
    /// How the state's books came out of reading the output streams back.
    pub reconciled: crate::reconcile::Summary,
}

/// Rebuilds state from the input stream into `into` with its own consumer, until it has
/// caught up with the stream's last message as of the start; then drops the outputs it
/// recomputed (the live instance sent its own) and sets its books from the output streams.
pub async fn rebuild(config: &Config, into: &Path) -> anyhow::Result<Rebuilt> {
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!("{} is not empty; rebuild writes into a fresh directory", into.display());
    }
    let mut rebuild_config = config.clone();
    rebuild_config.state.path = PathBuf::from(into);
    rebuild_config.input.consumer = format!("{}-rebuild", config.input.consumer);
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(&config.input.stream).await.context("looking up the input stream")?;
    let input = stream.get_info().await.context("reading the input stream's state")?.state;
    let store = crate::app::open_store(&rebuild_config)?;
    let position = replay(&rebuild_config, &store, client.clone(), input.first_sequence, input.last_sequence).await?;
    discard_outbox(store.as_ref())?;
    let mut progress = Progress::new("reading outputs back", "messages", None);
    let reconciled = crate::reconcile::run(store.as_ref(), &js, config, Some(&mut progress)).await?;
    progress.finish();
    crate::reconcile::mark(store.as_ref())?;
    if let Err(err) = stream.delete_consumer(&rebuild_config.input.consumer).await {
        warn!(error = %err, consumer = %rebuild_config.input.consumer, "Cannot delete the rebuild's consumer; delete it by hand.");
    }
    client.flush().await.ok();
    Ok(Rebuilt { position, reconciled })
}

/// Runs the input loop alone over `store` until it has committed `last`, showing progress;
/// returns the position reached.
async fn replay(
    config: &Config,
    store: &Arc<RocksStore>,
    client: async_nats::Client,
    first: u64,
    last: u64,
) -> anyhow::Result<u64> {
    // The stream's messages from `first` to `last`; none when it is empty.
    let read_so_far = |position: u64| (position + 1).saturating_sub(first.max(1));
    let mut progress = Progress::new("rebuild", "messages", Some(read_so_far(last)));
    let (stop, shutdown) = watch::channel(false);
    let mut input = tokio::spawn(crate::app::consume_only(config.clone(), Arc::clone(store), client, shutdown));
    loop {
        let position = topology::committed_position(&Overlay::new(store.as_ref()))?;
        progress.set(read_so_far(position));
        if position >= last {
            break;
        }
        tokio::select! {
            ended = &mut input => {
                ended.context("the rebuild's input loop panicked")??;
                bail!("the rebuild's input loop stopped at {position} of {last}");
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let _ = stop.send(true);
    input.await.context("the rebuild's input loop panicked")??;
    progress.finish();
    Ok(topology::committed_position(&Overlay::new(store.as_ref()))?)
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
