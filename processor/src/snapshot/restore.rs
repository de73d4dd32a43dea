//! Restoring a partition's checkpoint (docs/operations.md, "Checkpoints in the Object Store"):
//! every file of its manifest downloaded into a fresh directory and checked against the size
//! and SHA-256 digest the manifest records. The caller swaps the directory in before it opens
//! the database, and checks the position it has committed.

use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::manifest::{FileEntry, Manifest};
use super::upload::remove_dir;
use super::{io, nats, SnapshotError, Snapshots};

/// How many files come down at once.
const DOWNLOADS_IN_FLIGHT: usize = 4;

/// What a download brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// Downloads the files of `manifest` into `dir` (replacing what a crash left there), each
/// checked against its size and digest.
pub async fn download(snapshots: &Snapshots, manifest: &Manifest, dir: &Path) -> Result<Restored, SnapshotError> {
    let started = Instant::now();
    let scratch = dir.to_path_buf();
    tokio::task::spawn_blocking(move || remove_dir(&scratch)).await??;
    tokio::fs::create_dir_all(dir).await.map_err(io("creating", dir))?;
    let downloads = manifest.files.iter().map(|(file, entry)| fetch(snapshots, manifest.partition, file, entry, dir));
    futures::stream::iter(downloads).buffer_unordered(DOWNLOADS_IN_FLIGHT).try_collect::<Vec<()>>().await?;
    Ok(Restored {
        files: manifest.files.len(),
        bytes: manifest.files.values().map(|e| e.size).sum(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Downloads one object into `dir/file`, hashing it on the way.
async fn fetch(
    snapshots: &Snapshots,
    partition: u32,
    file: &str,
    entry: &FileEntry,
    dir: &Path,
) -> Result<(), SnapshotError> {
    let op = format!("downloading checkpoint object {}", entry.object);
    let mut object = snapshots.files.get(&entry.object).await.map_err(nats(op.clone()))?;
    let path = dir.join(file);
    let mut out = tokio::fs::File::create(&path).await.map_err(io("creating", &path))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 128 << 10];
    loop {
        let read = object.read(&mut buffer).await.map_err(nats(op.clone()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
        out.write_all(&buffer[..read]).await.map_err(io("writing", &path))?;
    }
    out.sync_all().await.map_err(io("syncing", &path))?;
    let digest = format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(hasher.finalize()));
    let corrupt =
        |what: String| SnapshotError::Corrupt { partition, file: file.to_string(), object: entry.object.clone(), what };
    if size != entry.size {
        return Err(corrupt(format!("{size} bytes where the manifest says {}", entry.size)));
    }
    if digest != entry.digest {
        return Err(corrupt(format!("digest {digest} where the manifest says {}", entry.digest)));
    }
    Ok(())
}
