//! The two buckets of checkpoints (docs/operations.md, "Checkpoints in the Object Store"): the
//! Object Store bucket `cluster.checkpoint_bucket` holds the files, as objects
//! `p<partition>/e<epoch>/s<checkpoint>/<file>`; the KV bucket `<checkpoint_bucket>_manifests`
//! holds each partition's latest manifest under `checkpoints.<partition>`. Manifests live apart
//! from the cluster bucket, whose entries expire after the lease TTL.

use async_nats::jetstream::{self, kv, object_store};
use futures::TryStreamExt as _;
use tracing::info;

use super::manifest::{self, Manifest};
use super::{nats, SnapshotError};

/// How many past manifests of a partition the KV bucket keeps, for operators reading back.
const MANIFEST_HISTORY: i64 = 5;

/// The key of a partition's manifest.
pub fn manifest_key(partition: u32) -> String {
    format!("checkpoints.{partition}")
}

/// The Object Store bucket of checkpoint files and the KV bucket of their manifests.
#[derive(Clone)]
pub struct Snapshots {
    pub(super) files: object_store::ObjectStore,
    manifests: kv::Store,
}

impl Snapshots {
    /// Opens both buckets, creating them with `replicas` replicas when absent.
    pub async fn open(js: &jetstream::Context, bucket: &str, replicas: usize) -> anyhow::Result<Snapshots> {
        let files = match js.get_object_store(bucket).await {
            Ok(files) => files,
            Err(_) => create_files(js, bucket, replicas).await?,
        };
        let manifests_bucket = format!("{bucket}_manifests");
        let manifests = match js.get_key_value(&manifests_bucket).await {
            Ok(manifests) => manifests,
            Err(_) => create_manifests(js, &manifests_bucket, replicas).await?,
        };
        Ok(Snapshots { files, manifests })
    }

    /// The partition's latest manifest with its KV revision, if it has one.
    pub async fn latest(&self, partition: u32) -> Result<Option<(Manifest, u64)>, SnapshotError> {
        let entry = self
            .manifests
            .entry(manifest_key(partition))
            .await
            .map_err(nats(format!("reading partition {partition}'s checkpoint manifest")))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
        let manifest: Manifest =
            serde_json::from_slice(&entry.value).map_err(|source| SnapshotError::Manifest { partition, source })?;
        assert_eq!(manifest.partition, partition, "the manifest under {} names another partition", entry.key);
        Ok(Some((manifest, entry.revision)))
    }

    /// Publishes `manifest` in place of the one at `revision` (none: the partition has none),
    /// failing if another was published meanwhile.
    pub async fn publish(&self, manifest: &Manifest, revision: Option<u64>) -> Result<u64, SnapshotError> {
        let key = manifest_key(manifest.partition);
        let value: bytes::Bytes = serde_json::to_vec(manifest)
            .map_err(|source| SnapshotError::Manifest { partition: manifest.partition, source })?
            .into();
        let op = format!("publishing partition {}'s checkpoint manifest", manifest.partition);
        match revision {
            Some(revision) => self.manifests.update(&key, value, revision).await.map_err(nats(op)),
            None => self.manifests.create(&key, value).await.map_err(nats(op)),
        }
    }

    /// The names of the partition's objects in the bucket.
    pub async fn objects(&self, partition: u32) -> Result<Vec<String>, SnapshotError> {
        let op = "listing the checkpoint objects";
        let list = self.files.list().await.map_err(nats(op))?;
        let infos: Vec<object_store::ObjectInfo> = list.try_collect().await.map_err(nats(op))?;
        let prefix = manifest::partition_prefix(partition);
        Ok(infos.into_iter().map(|info| info.name).filter(|name| name.starts_with(&prefix)).collect())
    }

    /// Deletes an object.
    pub async fn delete(&self, object: &str) -> Result<(), SnapshotError> {
        self.files.delete(object).await.map_err(nats(format!("deleting checkpoint object {object}")))
    }
}

async fn create_files(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> anyhow::Result<object_store::ObjectStore> {
    let config = object_store::Config {
        bucket: bucket.to_string(),
        description: Some("tally checkpoints: p<partition>/e<epoch>/s<checkpoint>/<file>".into()),
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(files) => {
            info!(bucket, replicas, "Created the checkpoint bucket.");
            Ok(files)
        }
        // Another instance created it meanwhile: use theirs.
        Err(err) => match js.get_object_store(bucket).await {
            Ok(files) => Ok(files),
            Err(_) => Err(anyhow::Error::new(err).context(format!(
                "creating the checkpoint Object Store bucket {bucket} with {replicas} replica(s) (cluster.replicas)"
            ))),
        },
    }
}

async fn create_manifests(js: &jetstream::Context, bucket: &str, replicas: usize) -> anyhow::Result<kv::Store> {
    let config = kv::Config {
        bucket: bucket.to_string(),
        description: "tally checkpoint manifests: checkpoints.<partition>".into(),
        history: MANIFEST_HISTORY,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(manifests) => {
            info!(bucket, replicas, "Created the checkpoint manifest bucket.");
            Ok(manifests)
        }
        Err(err) => match js.get_key_value(bucket).await {
            Ok(manifests) => Ok(manifests),
            Err(_) => Err(anyhow::Error::new(err).context(format!(
                "creating the checkpoint manifest KV bucket {bucket} with {replicas} replica(s) (cluster.replicas)"
            ))),
        },
    }
}
