//! `tally state …`: operations on the state directory — a consistent checkpoint, restoring one,
//! and rebuilding state from the input stream into a fresh directory. Each shows its progress
//! (`crate::progress`): bytes for checkpoint and restore, messages for rebuild. Each works on
//! every partition of the state, or on one with `--partition` (docs/operations.md, "State
//! commands over partitions").
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
use tally_topologies::{report, topology};
use tokio::sync::watch;
use tracing::warn;

use crate::config::Config;
use crate::partitions::{self, Layout, Partition};
use crate::progress::Progress;

/// How often long work looks at how far it got.
const POLL: Duration = Duration::from_millis(200);
/// Bytes copied per read while restoring.
const COPY_CHUNK: usize = 1 << 20;

/// What `checkpoint` wrote.
#[derive(Debug)]
pub struct Checkpointed {
    /// Each partition checkpointed, with the committed stream sequence its checkpoint holds.
    pub positions: Vec<(Partition, u64)>,
    pub files: usize,
    pub bytes: u64,
    /// Files hard-linked to the live state's rather than copied.
    pub linked: usize,
}

/// Writes a checkpoint of the state at `config.state.path` into `dir` (which must not exist):
/// every partition, in the state's layout (`dir/PARTITIONS`, `dir/partition-<n>`), or with
/// `only` the one partition named, as a single database in `dir`.
///
/// Works while `tally run` holds the state, through a read-only view of each partition; each
/// partition's checkpoint holds whole commits only, with the position that goes with them
/// (partitions hold disjoint stores and positions of their own, so each is consistent alone).
/// RocksDB hard-links the state's files where it can (same file system) and copies the rest;
/// the progress counts the bytes that appear in the checkpoint either way.
pub fn checkpoint(config: &Config, dir: &Path, only: Option<u32>) -> anyhow::Result<Checkpointed> {
    if dir.exists() {
        bail!("{} already exists; a checkpoint goes into a new directory", dir.display());
    }
    let layout = Layout::existing(&config.state.path)?;
    let chosen = layout.select(only)?;
    // Several partitions are written beside `dir` and renamed to it once whole, so that `dir`
    // only ever holds a whole checkpoint (RocksDB does the same for one database, in `<dir>.tmp`).
    let whole = layout.count > 1 && only.is_none();
    let staging = if whole { suffixed(dir, "partial") } else { dir.to_path_buf() };
    if whole && staging.exists() {
        bail!("{} exists, left by a checkpoint that did not finish; remove it first", staging.display());
    }
    let written = Layout { root: staging.clone(), count: layout.count };
    let mut jobs = Vec::new();
    for partition in &chosen {
        let store = open_any(&layout.dir(partition.index))?;
        let target = if whole { written.dir(partition.index) } else { dir.to_path_buf() };
        jobs.push((*partition, store, target));
    }
    let mut expected = 0;
    for partition in &chosen {
        expected +=
            files_of(&layout.dir(partition.index))?.iter().filter(|f| f.is_data()).map(|f| f.bytes).sum::<u64>();
    }
    let mut progress = Progress::new("checkpoint", "bytes", Some(expected));
    let result = write_checkpoints(&jobs, &staging, dir, &mut progress).and_then(|positions| {
        if whole {
            Layout::open(&staging, layout.count)?;
            std::fs::rename(&staging, dir)
                .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
        }
        Ok(positions)
    });
    let positions = if whole { removing_on_error(result, &staging)? } else { result? };
    let files = files_under(dir)?;
    let bytes = files.iter().map(|f| f.bytes).sum();
    let linked = files.iter().filter(|f| f.links > 1).count();
    progress.set_total(bytes);
    progress.set(bytes);
    progress.finish_with(&format!("{} files, {linked} hard-linked, {} copied", files.len(), files.len() - linked));
    Ok(Checkpointed { positions, files: files.len(), bytes, linked })
}

/// Checkpoints each store into its target, one after the other, showing the bytes written
/// under `staging` (and in RocksDB's `<dir>.tmp`) as they appear; returns each partition's
/// position as its checkpoint holds it.
fn write_checkpoints(
    jobs: &[(Partition, RocksStore, PathBuf)],
    staging: &Path,
    dir: &Path,
    progress: &mut Progress,
) -> anyhow::Result<Vec<(Partition, u64)>> {
    let rocks_staging = suffixed(dir, "tmp");
    let written = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            for (_, store, target) in jobs {
                store
                    .checkpoint(target)
                    .with_context(|| format!("writing the checkpoint into {}", target.display()))?;
            }
            anyhow::Ok(())
        });
        while !worker.is_finished() {
            progress.set(bytes_under(staging) + bytes_under(&rocks_staging));
            std::thread::sleep(POLL);
        }
        worker.join()
    });
    written.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    // Read back from what was written: a read-only view of a live state may have copied commits
    // that came after it was opened.
    let mut positions = Vec::new();
    for (partition, _, target) in jobs {
        let checkpoint = RocksStore::open_read_only(target)
            .with_context(|| format!("reading back the checkpoint in {}", target.display()))?;
        positions.push((*partition, topology::committed_position(&Overlay::new(&checkpoint))?));
    }
    Ok(positions)
}

/// `path` with `.<suffix>` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    PathBuf::from(name)
}

/// `result`, after removing `partial` (what a failed operation left) when it is an error; a
/// removal that fails is added to the error, so that the operator removes it by hand.
fn removing_on_error<T>(result: anyhow::Result<T>, partial: &Path) -> anyhow::Result<T> {
    result.map_err(|err| match std::fs::remove_dir_all(partial) {
        Ok(()) => err,
        Err(removal) if removal.kind() == std::io::ErrorKind::NotFound => err,
        Err(removal) => err.context(format!(
            "the unfinished {} could not be removed ({removal}); remove it before trying again",
            partial.display()
        )),
    })
}

/// How the positions of a checkpoint, restore or rebuild read in one line: one position as
/// before partitions, or each partition's.
pub fn positions_line(positions: &[(Partition, u64)]) -> String {
    match positions {
        [(partition, position)] if partition.count == 1 => format!("committed stream sequence {position}"),
        [(partition, position)] => {
            format!("partition {} of {}, committed stream sequence {position}", partition.index, partition.count)
        }
        many => {
            let each: Vec<String> = many.iter().map(|(p, position)| format!("{}: {position}", p.index)).collect();
            let highest = many.iter().map(|(_, position)| *position).max().unwrap_or(0);
            format!(
                "{} partitions, committed stream sequences per partition {}; highest {highest}",
                many.len(),
                each.join(", ")
            )
        }
    }
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

/// The regular files of `dir` and of the directories in it (a partitioned state's or
/// checkpoint's partitions), at any depth.
fn files_under(dir: &Path) -> anyhow::Result<Vec<StateFile>> {
    let mut files = files_of(dir)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            files.extend(files_under(&entry.path())?);
        }
    }
    Ok(files)
}

/// Bytes in the regular files under `dir`; 0 while it does not exist (or vanishes while read:
/// RocksDB renames its staging directory when done).
fn bytes_under(dir: &Path) -> u64 {
    files_under(dir).map(|files| files.iter().map(|f| f.bytes).sum()).unwrap_or(0)
}

/// What `restore` copied.
#[derive(Debug)]
pub struct Restored {
    /// Each partition restored, with the committed stream sequence `tally run` resumes after.
    pub positions: Vec<(Partition, u64)>,
    /// Where the restored state went: state.path, or the partition's directory in it.
    pub into: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

/// Copies checkpoint `from` into `config.state.path`, so that the next `tally run` resumes
/// after the checkpoint's positions: a whole checkpoint (every partition, in its layout) into an
/// absent or empty `state.path`, or with `only` a checkpoint of one partition (`tally state
/// checkpoint --partition N`) into that partition's absent or empty directory of a partitioned
/// `state.path`. What is restored is marked for reconciliation: its posting books are as old as
/// the checkpoint, and its first run sets them from what the ERP received since.
pub fn restore(config: &Config, from: &Path, only: Option<u32>) -> anyhow::Result<Restored> {
    match only {
        None => restore_whole(config, from),
        Some(index) => restore_partition(config, from, index),
    }
}

fn restore_whole(config: &Config, from: &Path) -> anyhow::Result<Restored> {
    let target = &config.state.path;
    let source = Layout::on_disk(from)?.with_context(|| {
        format!(
            "{} is not a checkpoint (neither a RocksDB CURRENT file nor a {} file)",
            from.display(),
            partitions::MARKER
        )
    })?;
    let restored = Layout { root: target.clone(), count: source.count };
    let copies: Vec<_> = source.partitions().map(|p| (p, source.dir(p.index), restored.dir(p.index))).collect();
    let copied = restore_into(target, "state.path", &copies)?;
    // The marker last: until it is there, tally run does not take the directories for a state.
    if source.count > 1 {
        Layout::open(target, source.count)?;
    }
    Ok(copied)
}

fn restore_partition(config: &Config, from: &Path, index: u32) -> anyhow::Result<Restored> {
    let root = &config.state.path;
    if let Some(source) = Layout::on_disk(from)?.filter(|l| l.count > 1) {
        bail!(
            "{} is a checkpoint of {} partitions; --partition restores a checkpoint of one partition (`tally state \
             checkpoint --partition N`), such as {}",
            from.display(),
            source.count,
            source.dir(index.min(source.count - 1)).display()
        );
    }
    if !from.join("CURRENT").exists() {
        bail!("{} is not a checkpoint (no RocksDB CURRENT file)", from.display());
    }
    let layout = match Layout::on_disk(root)? {
        Some(layout) if layout.count > 1 => layout,
        Some(_) => bail!(
            "state.path {} is not partitioned (one database); restore a checkpoint of it without --partition",
            root.display()
        ),
        None => bail!(
            "state.path {} holds no state to restore partition {index} into. Restore a whole checkpoint without \
             --partition, or, to assemble a state from checkpoints of single partitions, write the number of \
             partitions into {} first (e.g. `echo 16 > {}`)",
            root.display(),
            root.join(partitions::MARKER).display(),
            root.join(partitions::MARKER).display()
        ),
    };
    // `select` returns the one partition named, or an error naming the valid range.
    let partition = layout.select(Some(index))?.remove(0);
    let checkpoint = RocksStore::open_read_only(from)
        .with_context(|| format!("cannot open the checkpoint in {} read-only", from.display()))?;
    let stores: Vec<String> = report::store_days(&checkpoint, STORE_DAYS_MAX)?.into_iter().map(|(s, _)| s).collect();
    drop(checkpoint);
    belongs_to(partition, &stores)
        .with_context(|| format!("{} is not a checkpoint of partition {index}", from.display()))?;
    let target = layout.dir(index);
    restore_into(
        &target,
        &format!("partition {index} of state.path"),
        &[(partition, from.to_path_buf(), target.clone())],
    )
}

/// Store-days read at most to check which partition a checkpoint belongs to.
const STORE_DAYS_MAX: usize = 10_000_000;

/// Ok when every store of `stores` belongs to `partition`; else an error naming the first that
/// does not and where it belongs.
fn belongs_to(partition: Partition, stores: &[String]) -> anyhow::Result<()> {
    let home = |store: &str| tally_topologies::partition::of_store(store, partition.count);
    let Some(foreign) = stores.iter().find(|store| home(store) != partition.index) else { return Ok(()) };
    let others = stores.iter().filter(|store| home(store) != partition.index).count() - 1;
    bail!(
        "it holds store {foreign:?}, which belongs to partition {} of {}{}; checkpoint the partition to restore \
         with `tally state checkpoint --partition {}`",
        home(foreign),
        partition.count,
        if others > 0 { format!(" (and {others} more stores of other partitions)") } else { String::new() },
        partition.index
    )
}

/// Copies each partition's checkpoint directory into its target under `target` (which must be
/// absent or empty; `what` names it for the error), opens each copy to read its position and mark
/// it for reconciliation. What it copied is removed again when it fails.
fn restore_into(target: &Path, what: &str, copies: &[(Partition, PathBuf, PathBuf)]) -> anyhow::Result<Restored> {
    for (_, from, _) in copies {
        if !from.join("CURRENT").exists() {
            bail!("the checkpoint is incomplete: {} holds no database (no RocksDB CURRENT file)", from.display());
        }
    }
    let existed = target.exists();
    if existed && std::fs::read_dir(target)?.next().is_some() {
        bail!("{what} {} is not empty; move it away first (restore never overwrites state)", target.display());
    }
    let mut bytes = 0;
    for (_, from, _) in copies {
        bytes += files_of(from)?.iter().map(|f| f.bytes).sum::<u64>();
    }
    let mut progress = Progress::new("restore", "bytes", Some(bytes));
    let copied = copy_and_mark(copies, &mut progress);
    let copied = if existed { emptying_on_error(copied, target)? } else { removing_on_error(copied, target)? };
    progress.finish_with(&format!("{} files", copied.1));
    Ok(Restored { positions: copied.0, into: target.to_path_buf(), files: copied.1, bytes })
}

/// Copies, then opens each copy for its position and marks it; returns the positions and the
/// number of files copied.
fn copy_and_mark(
    copies: &[(Partition, PathBuf, PathBuf)],
    progress: &mut Progress,
) -> anyhow::Result<(Vec<(Partition, u64)>, usize)> {
    let mut files = 0;
    for (_, from, to) in copies {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for file in files_of(from)? {
            let name = file.path.file_name().context("a listed file has a name")?;
            copy_counting(&file.path, &to.join(name), progress)
                .with_context(|| format!("copying {}", file.path.display()))?;
            files += 1;
        }
    }
    let mut positions = Vec::new();
    for (partition, _, to) in copies {
        let store = RocksStore::open(to, &Default::default())
            .with_context(|| format!("opening the restored state in {}", to.display()))?;
        positions.push((*partition, topology::committed_position(&Overlay::new(&store))?));
        crate::reconcile::mark(&store)?;
    }
    Ok((positions, files))
}

/// As `removing_on_error`, for a directory that existed (empty) before: what is in it goes, the
/// directory stays (it may be a mount point).
fn emptying_on_error<T>(result: anyhow::Result<T>, dir: &Path) -> anyhow::Result<T> {
    let Err(err) = result else { return result };
    let emptied = std::fs::read_dir(dir).and_then(|entries| {
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    });
    match emptied {
        Ok(()) => Err(err),
        Err(removal) => Err(err.context(format!(
            "what the restore copied into {} could not be removed ({removal}); empty it before trying again",
            dir.display()
        ))),
    }
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
    /// The one partition of several rebuilt (`--partition`), to be moved into
    /// `state.path/partition-<n>`; `None` when the whole state was.
    pub partition: Option<Partition>,
    /// How the state's books came out of reading the output streams back.
    pub reconciled: crate::reconcile::Summary,
}

/// Rebuilds state from the input stream into `into` with its own consumers (one per partition,
/// all applying side by side), until every partition has caught up with the stream's last message
/// as of the start; then drops the outputs it recomputed (the live instance sent its own) and sets
/// its books from the output streams. With `only`, rebuilds that partition alone, into `into` as a
/// single database, to be moved into `state.path/partition-<n>`.
pub async fn rebuild(config: &Config, into: &Path, only: Option<u32>) -> anyhow::Result<Rebuilt> {
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!("{} is not empty; rebuild writes into a fresh directory", into.display());
    }
    let mut rebuild_config = config.clone();
    rebuild_config.state.path = PathBuf::from(into);
    rebuild_config.input.consumer = format!("{}-rebuild", config.input.consumer);
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(&config.input.stream).await.context("looking up the input stream")?;
    let info = stream.info().await.context("reading the input stream's state")?.clone();
    let count = partitions::count_of(config, info.config.subject_transform.as_ref())
        .context("the input stream has a subject transform tally did not make")?;
    let chosen = partitions::select(count, only, &format!("the input stream {}", config.input.stream))?;
    let stores: Vec<(Partition, Arc<RocksStore>)> = match only {
        None => chosen.iter().copied().zip(crate::app::open_partitions(&rebuild_config, count)?).collect(),
        Some(_) => vec![(chosen[0], crate::app::open_store(&rebuild_config)?)],
    };
    let every = Layout { root: into.to_path_buf(), count };
    let lasts = partitions::last_sequences(&stream, config, &every, info.state.last_sequence).await?;
    let lasts: Vec<u64> = chosen.iter().map(|p| lasts[p.index as usize]).collect();
    let position = replay(&rebuild_config, &stores, client.clone(), info.state.first_sequence, &lasts).await?;
    let parts: Vec<(Partition, &dyn Store)> =
        stores.iter().map(|(partition, store)| (*partition, store.as_ref() as &dyn Store)).collect();
    for (_, store) in &parts {
        discard_outbox(*store)?;
    }
    let mut progress = Progress::new("reading outputs back", "messages", None);
    let reconciled = crate::reconcile::run(&parts, &js, config, Some(&mut progress)).await?;
    progress.finish();
    for (_, store) in &parts {
        crate::reconcile::mark(*store)?;
    }
    for partition in &chosen {
        let name = partition.consumer_name(&rebuild_config);
        if let Err(err) = stream.delete_consumer(&name).await {
            warn!(error = %err, consumer = %name, "Cannot delete the rebuild's consumer; delete it by hand.");
        }
    }
    client.flush().await.ok();
    let partition = chosen.first().copied().filter(|p| only.is_some() && p.count > 1);
    Ok(Rebuilt { position, partition, reconciled })
}

/// Runs the input loops alone over the partitions' `stores` until each has committed its last
/// message as of the start (`lasts`), showing one progress display; returns the highest
/// position reached. The progress counts the stream from `first` up to the lowest position of a
/// partition not yet done, so it only moves forward.
async fn replay(
    config: &Config,
    stores: &[(Partition, Arc<RocksStore>)],
    client: async_nats::Client,
    first: u64,
    lasts: &[u64],
) -> anyhow::Result<u64> {
    // The last message to read, of any partition replayed; 0 when there is none.
    let end = lasts.iter().copied().max().unwrap_or(0);
    // The stream's messages from `first` to `position`; none when it is empty.
    let read_so_far = |position: u64| (position + 1).saturating_sub(first.max(1));
    let mut progress = Progress::new("rebuild", "messages", Some(read_so_far(end)));
    let (stop, shutdown) = watch::channel(false);
    let mut input = tokio::spawn(crate::app::consume_only(config.clone(), stores.to_vec(), client, shutdown));
    let positions = || -> anyhow::Result<Vec<u64>> {
        stores.iter().map(|(_, store)| Ok(topology::committed_position(&Overlay::new(store.as_ref()))?)).collect()
    };
    loop {
        let reached = positions()?;
        let behind = partitions::behind(&reached, lasts);
        progress.set(read_so_far(behind.unwrap_or(end)));
        if behind.is_none() {
            break;
        }
        tokio::select! {
            ended = &mut input => {
                ended.context("the rebuild's input loop panicked")??;
                bail!("the rebuild's input loops stopped at {reached:?} of {lasts:?}");
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let _ = stop.send(true);
    input.await.context("the rebuild's input loop panicked")??;
    progress.finish();
    Ok(positions()?.into_iter().max().unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use tally_topologies::keys;

    /// A config whose state.path is `root`.
    fn config_at(root: &Path) -> Config {
        let mut config = Config::default();
        config.state.path = root.to_path_buf();
        config
    }

    /// A state of `count` partitions in `root`: partition n at position 100 + n, holding a day of
    /// each of `stores` that belongs to it.
    fn state(root: &Path, count: u32, stores: &[&str]) {
        let opened = crate::app::open_partitions(&config_at(root), count).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        for (index, store) in opened.iter().enumerate() {
            let mut txn = Overlay::new(store.as_ref());
            topology::set_position(&mut txn, 100 + index as u64);
            for id in stores.iter().filter(|id| tally_topologies::partition::of_store(id, count) == index as u32) {
                txn.put(Cf::Aggregates, keys::store_day(id, day), Vec::new());
            }
            store.write(&txn.into_batch()).unwrap();
        }
    }

    /// Each partition's position and whether it is marked for reconciliation.
    fn read(root: &Path) -> Vec<(u64, bool)> {
        let layout = Layout::existing(root).unwrap();
        layout
            .partitions()
            .map(|p| {
                let store = RocksStore::open_read_only(&layout.dir(p.index)).unwrap();
                let txn = Overlay::new(&store);
                let position = topology::committed_position(&txn).unwrap();
                (position, tally_topologies::reconcile::is_marked(&txn).unwrap())
            })
            .collect()
    }

    // Proves a checkpoint of every partition restores into the same layout with each partition's
    // position, all marked for reconciliation; and that a restore never overwrites state.
    #[test]
    fn whole_checkpoint_round_trip() {
        let work = tempfile::tempdir().unwrap();
        let live = work.path().join("live");
        state(&live, 4, &["0042", "0043", "0044"]);
        let dir = work.path().join("checkpoint");
        let done = checkpoint(&config_at(&live), &dir, None).unwrap();
        let positions: Vec<u64> = done.positions.iter().map(|(_, at)| *at).collect();
        assert_eq!(positions, [100, 101, 102, 103]);
        assert_eq!(Layout::on_disk(&dir).unwrap().map(|l| l.count), Some(4), "the checkpoint keeps the layout");
        assert!(!suffixed(&dir, "partial").exists(), "nothing left beside it");

        let restored = work.path().join("restored");
        let done = restore(&config_at(&restored), &dir, None).unwrap();
        assert_eq!(done.positions.len(), 4);
        assert_eq!(read(&restored), [(100, true), (101, true), (102, true), (103, true)]);
        let refused = restore(&config_at(&restored), &dir, None).unwrap_err().to_string();
        assert!(refused.contains("is not empty; move it away first"), "{refused}");
        let refused = checkpoint(&config_at(&live), &dir, None).unwrap_err().to_string();
        assert!(refused.contains("already exists"), "{refused}");
        let refused = restore(&config_at(&work.path().join("other")), &dir, Some(1)).unwrap_err().to_string();
        assert!(refused.contains("is a checkpoint of 4 partitions") && refused.contains("partition-1"), "{refused}");
    }

    // Proves one partition checkpoints as a single database and restores into its own directory
    // only, and that the operator is told what to do when the checkpoint, the partition or
    // state.path do not fit.
    #[test]
    fn one_partition_checkpoint_and_restore() {
        let work = tempfile::tempdir().unwrap();
        let live = work.path().join("live");
        let stores = ["0042", "0043", "0044", "0045", "0046"];
        state(&live, 4, &stores);
        let home = tally_topologies::partition::of_store("0042", 4);
        let dir = work.path().join("one");
        let done = checkpoint(&config_at(&live), &dir, Some(home)).unwrap();
        assert_eq!(done.positions, [(Partition { index: home, count: 4 }, 100 + u64::from(home))]);
        assert!(dir.join("CURRENT").exists() && !dir.join(partitions::MARKER).exists(), "a single database");

        let out_of_range = checkpoint(&config_at(&live), &work.path().join("x"), Some(4)).unwrap_err().to_string();
        assert!(out_of_range.contains("0 to 3"), "{out_of_range}");
        let occupied = restore(&config_at(&live), &dir, Some(home)).unwrap_err().to_string();
        assert!(occupied.contains(&format!("partition {home} of state.path")) && occupied.contains("not empty"));
        let other = (home + 1) % 4;
        std::fs::remove_dir_all(live.join(format!("partition-{other}"))).unwrap();
        let foreign = format!("{:#}", restore(&config_at(&live), &dir, Some(other)).unwrap_err());
        assert!(foreign.contains(&format!("belongs to partition {home} of 4")), "{foreign}");
        assert!(!live.join(format!("partition-{other}")).exists(), "a refused restore writes nothing");

        std::fs::remove_dir_all(live.join(format!("partition-{home}"))).unwrap();
        let done = restore(&config_at(&live), &dir, Some(home)).unwrap();
        assert_eq!(done.into, live.join(format!("partition-{home}")));
        let store = RocksStore::open_read_only(&done.into).unwrap();
        assert!(tally_topologies::reconcile::is_marked(&Overlay::new(&store)).unwrap(), "marked for reconciliation");

        let whole = work.path().join("whole");
        let missing = checkpoint(&config_at(&live), &whole, None).unwrap_err().to_string();
        assert!(missing.contains(&format!("partition-{other} holds no tally state")), "{missing}");
        assert!(!whole.exists() && !suffixed(&whole, "partial").exists(), "a refused checkpoint writes nothing");
        let unpartitioned = work.path().join("single");
        state(&unpartitioned, 1, &stores);
        let refused = restore(&config_at(&unpartitioned), &dir, Some(0)).unwrap_err().to_string();
        assert!(refused.contains("is not partitioned"), "{refused}");
        let empty = restore(&config_at(&work.path().join("none")), &dir, Some(0)).unwrap_err().to_string();
        assert!(empty.contains("holds no state") && empty.contains("PARTITIONS"), "{empty}");
    }

    // Proves the output line gives one position as before partitions, or each partition's.
    #[test]
    fn positions_read_in_one_line() {
        let whole = [(Partition::WHOLE, 7)];
        assert_eq!(positions_line(&whole), "committed stream sequence 7");
        let one = [(Partition { index: 3, count: 16 }, 9)];
        assert_eq!(positions_line(&one), "partition 3 of 16, committed stream sequence 9");
        let many: Vec<_> = (0..3).map(|index| (Partition { index, count: 3 }, 10 * u64::from(index))).collect();
        assert_eq!(
            positions_line(&many),
            "3 partitions, committed stream sequences per partition 0: 0, 1: 10, 2: 20; highest 20"
        );
    }
}
