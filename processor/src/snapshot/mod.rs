//! Checkpoints of the partitions an instance owns, in the JetStream Object Store
//! (docs/operations.md, "Checkpoints in the Object Store"): each owner uploads what changed in
//! its partitions' RocksDB state every `cluster.checkpoint_interval`, and a new owner restores
//! the latest checkpoint instead of replaying the input stream from its start. This module never
//! opens a partition's live database and never runs a pipeline: `crate::owned` does both.
//!
//! - `manifest`: what a checkpoint holds; what to upload, what to delete, what may replace what.
//! - `buckets`: the Object Store bucket of files and the KV bucket of manifests.
//! - `upload`: one checkpoint of one partition, and the loop that makes one every interval.
//! - `restore`: downloading and verifying a checkpoint into a directory.
//! - `retention`: whether the input stream keeps enough for a restored checkpoint to catch up.

mod buckets;
pub mod manifest;
mod restore;
pub mod retention;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

pub use buckets::Snapshots;
pub use manifest::{FileEntry, Manifest};
pub use restore::{download, Restored};
pub use upload::{Checkpointer, Report};

/// Checkpoints as `[cluster]` configures them: where, and how often.
#[derive(Clone)]
pub struct Checkpoints {
    pub snapshots: Snapshots,
    pub interval: Duration,
}

/// What can go wrong with a checkpoint. None of it stops a partition: a failed checkpoint is
/// tried again at the next interval, a failed restore leaves the partition to replay the input.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "partition {partition}'s checkpoint manifest is of epoch {theirs}, later than this owner's {ours}: another \
         instance owns the partition now"
    )]
    Superseded { partition: u32, theirs: u64, ours: u64 },
    #[error("partition {partition} is no longer this instance's under epoch {epoch}; its checkpoint is not published")]
    NotOwner { partition: u32, epoch: u64 },
    #[error("{file} of partition {partition}'s checkpoint ({object}) is corrupt: {what}")]
    Corrupt { partition: u32, file: String, object: String, what: String },
    #[error("{op}: {source}")]
    Nats { op: String, source: async_nats::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("decoding partition {partition}'s checkpoint manifest: {source}")]
    Manifest { partition: u32, source: serde_json::Error },
    #[error(transparent)]
    State(#[from] tally_state::StateError),
    #[error(transparent)]
    Topology(#[from] tally_topologies::topology::TopologyError),
    #[error("a checkpoint's blocking step panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Wraps a NATS error with what was being done.
fn nats<E: std::error::Error + Send + Sync + 'static>(op: impl Into<String>) -> impl FnOnce(E) -> SnapshotError {
    let op = op.into();
    move |source| SnapshotError::Nats { op, source: Box::new(source) }
}

/// Wraps an I/O error with what was being done to which path.
fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}
