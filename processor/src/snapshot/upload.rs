//! One checkpoint of one partition (docs/operations.md, "Checkpoints in the Object Store"): a
//! RocksDB checkpoint into a scratch directory (hard links), the files not stored yet uploaded,
//! the manifest published by compare-and-set while the partition's lease holds, then the objects
//! neither it nor the previous manifest names deleted. [`Checkpointer::run`] makes one every
//! interval; a failed one is logged and tried again at the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use tally_state::{Overlay, RocksStore};
use tally_topologies::topology;
use tracing::{info, warn};

use super::manifest::{self, FileEntry, Manifest};
use super::{io, nats, SnapshotError, Snapshots};
use crate::cluster::Fence;
use crate::telemetry;

/// How many files go up at once.
const UPLOADS_IN_FLIGHT: usize = 4;

/// What one checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sequence: u64,
    pub position: u64,
    pub uploaded_files: usize,
    pub reused_files: usize,
    pub uploaded_bytes: u64,
    /// Of `uploaded_bytes`, those of table files (the rest: MANIFEST, CURRENT, OPTIONS, logs).
    pub table_bytes: u64,
    pub deleted_objects: usize,
}

/// Checkpoints one partition this instance owns.
pub struct Checkpointer {
    pub snapshots: Snapshots,
    pub partition: u32,
    pub rocks: Arc<RocksStore>,
    pub fence: Fence,
    /// Where the RocksDB checkpoint is made: inside `state.path`, so that it can hard-link.
    pub scratch: PathBuf,
    /// Immutable files stored already (uploaded by this owner, or restored): reused as they are.
    pub known: BTreeMap<String, FileEntry>,
}

impl Checkpointer {
    /// A checkpoint every `interval`, until the task is aborted.
    pub async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = std::time::Instant::now();
            match self.once().await {
                Ok(report) => {
                    let took = started.elapsed();
                    record(self.partition, &report, took);
                    info!(
                        partition = self.partition,
                        checkpoint = report.sequence,
                        position = report.position,
                        uploaded_files = report.uploaded_files,
                        reused_files = report.reused_files,
                        uploaded_bytes = report.uploaded_bytes,
                        table_bytes = report.table_bytes,
                        deleted_objects = report.deleted_objects,
                        duration_ms = took.as_millis() as u64,
                        "Checkpointed a partition."
                    );
                }
                Err(err) => warn!(
                    partition = self.partition,
                    error = %err,
                    "Cannot checkpoint a partition; trying again at the next interval."
                ),
            }
        }
    }

    /// Makes, uploads and publishes one checkpoint.
    pub async fn once(&mut self) -> Result<Report, SnapshotError> {
        let rocks = Arc::clone(&self.rocks);
        let scratch = self.scratch.clone();
        let (files, position) = tokio::task::spawn_blocking(move || local_checkpoint(&rocks, &scratch)).await??;
        let result = self.publish(&files, position).await;
        let scratch = self.scratch.clone();
        tokio::task::spawn_blocking(move || remove_dir(&scratch)).await??;
        result
    }

    async fn publish(&mut self, files: &[(String, u64)], position: u64) -> Result<Report, SnapshotError> {
        let epoch = self.fence.epoch().0;
        let latest = self.snapshots.latest(self.partition).await?;
        let (previous, revision) = latest.map_or((None, None), |(m, r)| (Some(m), Some(r)));
        manifest::may_replace(previous.as_ref(), self.partition, epoch)?;
        let sequence = previous.as_ref().map_or(1, |m| m.sequence + 1);
        let plan = manifest::plan(files, &self.known, self.partition, epoch, sequence);
        let uploads: Vec<_> = plan.upload.into_iter().map(|(file, object)| self.upload(file, object)).collect();
        let uploaded: Vec<(String, FileEntry)> =
            futures::stream::iter(uploads).buffer_unordered(UPLOADS_IN_FLIGHT).try_collect().await?;
        let mut report = Report {
            sequence,
            position,
            uploaded_files: uploaded.len(),
            reused_files: plan.reuse.len(),
            uploaded_bytes: uploaded.iter().map(|(_, e)| e.size).sum(),
            table_bytes: uploaded.iter().filter(|(f, _)| manifest::is_immutable(f)).map(|(_, e)| e.size).sum(),
            deleted_objects: 0,
        };
        let mut entries = plan.reuse;
        entries.extend(uploaded);
        let manifest = Manifest {
            partition: self.partition,
            epoch,
            sequence,
            position,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            files: entries,
        };
        if !self.fence.holds() {
            return Err(SnapshotError::NotOwner { partition: self.partition, epoch });
        }
        self.snapshots.publish(&manifest, revision).await?;
        self.known = manifest.files.iter().filter(|(f, _)| manifest::is_immutable(f)).map(clone_pair).collect();
        report.deleted_objects = self.collect_garbage(&manifest, previous.as_ref()).await;
        Ok(report)
    }

    /// Uploads one file of the scratch checkpoint as `object`.
    async fn upload(&self, file: String, object: String) -> Result<(String, FileEntry), SnapshotError> {
        let path = self.scratch.join(&file);
        let mut reader = tokio::fs::File::open(&path).await.map_err(io("opening", &path))?;
        let info = self
            .snapshots
            .files
            .put(object.as_str(), &mut reader)
            .await
            .map_err(nats(format!("uploading checkpoint object {object}")))?;
        let digest = info.digest.ok_or_else(|| SnapshotError::Corrupt {
            partition: self.partition,
            file: file.clone(),
            object: object.clone(),
            what: "the Object Store gave it no digest".into(),
        })?;
        Ok((file, FileEntry { object, size: info.size as u64, digest }))
    }

    /// Deletes the partition's objects that neither `new` nor `previous` names; a failure is
    /// logged, and the next checkpoint collects what is left.
    async fn collect_garbage(&self, new: &Manifest, previous: Option<&Manifest>) -> usize {
        let objects = match self.snapshots.objects(self.partition).await {
            Ok(objects) => objects,
            Err(err) => {
                warn!(partition = self.partition, error = %err, "Cannot list old checkpoint objects; keeping them.");
                return 0;
            }
        };
        let mut deleted = 0;
        for object in manifest::garbage(&objects, new.epoch, new, previous) {
            match self.snapshots.delete(&object).await {
                Ok(()) => deleted += 1,
                Err(err) => warn!(partition = self.partition, error = %err, "Cannot delete an old checkpoint object."),
            }
        }
        deleted
    }
}

fn clone_pair((file, entry): (&String, &FileEntry)) -> (String, FileEntry) {
    (file.clone(), entry.clone())
}

/// Writes a RocksDB checkpoint of `rocks` into `scratch` (replacing one a crash left), and
/// returns its files with their sizes and the input position it has committed.
fn local_checkpoint(rocks: &RocksStore, scratch: &Path) -> Result<(Vec<(String, u64)>, u64), SnapshotError> {
    remove_dir(scratch)?;
    rocks.checkpoint(scratch)?;
    let checkpoint = RocksStore::open_read_only(scratch)?;
    let position = topology::committed_position(&Overlay::new(&checkpoint))?;
    drop(checkpoint);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(scratch).map_err(io("listing", scratch))? {
        let entry = entry.map_err(io("listing", scratch))?;
        let meta = entry.metadata().map_err(io("reading", &entry.path()))?;
        if meta.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    files.sort();
    Ok((files, position))
}

/// Removes `dir` and what it holds, if it exists.
pub(super) fn remove_dir(dir: &Path) -> Result<(), SnapshotError> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(err)),
        _ => Ok(()),
    }
}

/// The checkpoint's metrics.
fn record(partition: u32, report: &Report, took: Duration) {
    let label = partition.to_string();
    metrics::counter!(telemetry::CHECKPOINT_UPLOADED_BYTES, "partition" => label.clone())
        .increment(report.uploaded_bytes);
    metrics::gauge!(telemetry::CHECKPOINT_LAST_POSITION, "partition" => label).set(report.position as f64);
    metrics::histogram!(telemetry::CHECKPOINT_DURATION).record(took.as_secs_f64());
}
