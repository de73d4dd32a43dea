//! What a partition's checkpoint holds and the decisions about it that need no I/O: which files
//! to upload and which to reuse, which objects nothing needs any more, and whether a manifest
//! may replace the one published (docs/operations.md, "Checkpoints in the Object Store").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// A published checkpoint of one partition: which object holds each file of its RocksDB
/// checkpoint, and the input position that state has committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub partition: u32,
    /// The epoch of the lease under which it was made.
    pub epoch: u64,
    /// One more than the partition's previous checkpoint, whoever made it: names its new objects.
    pub sequence: u64,
    /// The last input stream sequence the checkpoint's state has committed.
    pub position: u64,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// File name in the checkpoint directory → where it is stored.
    pub files: BTreeMap<String, FileEntry>,
}

/// One file of a checkpoint in the Object Store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub object: String,
    pub size: u64,
    /// `SHA-256=<base64url>`, as the Object Store writes it.
    pub digest: String,
}

/// What one checkpoint does with the files of its RocksDB checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files stored already (immutable, same name and size), with their entries.
    pub reuse: BTreeMap<String, FileEntry>,
    /// Files to upload, each with its new object name.
    pub upload: Vec<(String, String)>,
}

/// The prefix of every object of `partition`.
pub fn partition_prefix(partition: u32) -> String {
    format!("p{partition}/")
}

/// A new object's name: unique per partition, epoch and checkpoint, so that a paused former
/// owner's uploads never overwrite the new owner's, nor one checkpoint's small files the last's.
pub fn object_name(partition: u32, epoch: u64, sequence: u64, file: &str) -> String {
    format!("{}e{epoch}/s{sequence}/{file}", partition_prefix(partition))
}

/// The epoch an object of `partition` was uploaded under, from its name.
fn epoch_of(partition: u32, object: &str) -> Option<u64> {
    let rest = object.strip_prefix(&partition_prefix(partition))?.strip_prefix('e')?;
    rest.split('/').next()?.parse().ok()
}

/// Whether RocksDB never rewrites a file of this name: table files are written once, and a new
/// one gets a new number. MANIFEST-*, CURRENT, OPTIONS-* and logs are small and are uploaded
/// with every checkpoint.
pub fn is_immutable(file: &str) -> bool {
    file.ends_with(".sst") || file.ends_with(".blob")
}

/// Which of `local` (file name, size) are stored already among `known` (the entries of files
/// this owner uploaded or restored) and which go up as new objects of checkpoint `sequence`.
pub fn plan(
    local: &[(String, u64)],
    known: &BTreeMap<String, FileEntry>,
    partition: u32,
    epoch: u64,
    sequence: u64,
) -> Plan {
    let mut plan = Plan::default();
    for (file, size) in local {
        match known.get(file) {
            Some(entry) if is_immutable(file) && entry.size == *size => {
                plan.reuse.insert(file.clone(), entry.clone());
            }
            _ => plan.upload.push((file.clone(), object_name(partition, epoch, sequence, file))),
        }
    }
    plan
}

/// The objects of `partition` among `objects` that neither the new manifest nor the previous one
/// (which a restorer may be downloading) refers to. Objects of a later epoch than `epoch` are a
/// newer owner's, maybe not yet published: never this owner's to delete.
pub fn garbage(objects: &[String], epoch: u64, new: &Manifest, previous: Option<&Manifest>) -> Vec<String> {
    let referenced: BTreeSet<&str> =
        new.files.values().chain(previous.iter().flat_map(|m| m.files.values())).map(|e| e.object.as_str()).collect();
    objects
        .iter()
        .filter(|object| epoch_of(new.partition, object).is_some_and(|e| e <= epoch))
        .filter(|object| !referenced.contains(object.as_str()))
        .cloned()
        .collect()
}

/// Whether a manifest of `epoch` may replace `current`: never one of a later epoch, whose owner
/// has taken the partition over.
pub fn may_replace(current: Option<&Manifest>, partition: u32, epoch: u64) -> Result<(), SnapshotError> {
    match current {
        Some(current) if current.epoch > epoch => {
            Err(SnapshotError::Superseded { partition, theirs: current.epoch, ours: epoch })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, size: u64) -> FileEntry {
        FileEntry { object: object.into(), size, digest: "SHA-256=x".into() }
    }

    fn manifest(epoch: u64, objects: &[(&str, &str)]) -> Manifest {
        Manifest {
            partition: 3,
            epoch,
            sequence: 1,
            position: 10,
            created_at: "2026-11-27T10:00:00Z".into(),
            files: objects.iter().map(|(file, object)| (file.to_string(), entry(object, 1))).collect(),
        }
    }

    // Proves an SST file uploaded before is reused under its old object name (also one restored
    // from another epoch), while one of another size, a new one and every small mutable file go
    // up as objects of this checkpoint.
    #[test]
    fn plan_reuses_known_table_files_only() {
        let known: BTreeMap<String, FileEntry> = [
            ("000011.sst".to_string(), entry("p3/e7/s4/000011.sst", 100)),
            ("000012.sst".to_string(), entry("p3/e9/s5/000012.sst", 50)),
            ("CURRENT".to_string(), entry("p3/e9/s5/CURRENT", 16)),
        ]
        .into();
        let local: Vec<(String, u64)> = [("000011.sst", 100), ("000012.sst", 51), ("000013.sst", 7), ("CURRENT", 16)]
            .iter()
            .map(|(f, s)| (f.to_string(), *s))
            .collect();
        let plan = plan(&local, &known, 3, 9, 6);
        assert_eq!(plan.reuse.keys().collect::<Vec<_>>(), ["000011.sst"]);
        assert_eq!(plan.reuse["000011.sst"].object, "p3/e7/s4/000011.sst");
        let uploaded: Vec<&str> = plan.upload.iter().map(|(_, object)| object.as_str()).collect();
        assert_eq!(uploaded, ["p3/e9/s6/000012.sst", "p3/e9/s6/000013.sst", "p3/e9/s6/CURRENT"]);
    }

    // Proves the collection keeps what the new and the previous manifest name, and what belongs
    // to another partition or a later epoch, and deletes the rest of the partition's objects.
    #[test]
    fn garbage_is_what_neither_manifest_names() {
        let previous = manifest(4, &[("1.sst", "p3/e4/s1/1.sst"), ("CURRENT", "p3/e4/s1/CURRENT")]);
        let new =
            manifest(5, &[("1.sst", "p3/e4/s1/1.sst"), ("2.sst", "p3/e5/s2/2.sst"), ("CURRENT", "p3/e5/s2/CURRENT")]);
        let objects: Vec<String> = [
            "p3/e4/s1/1.sst",
            "p3/e4/s1/CURRENT",
            "p3/e5/s2/2.sst",
            "p3/e5/s2/CURRENT",
            "p3/e3/s0/0.sst",
            "p3/e5/s9/orphan.sst",
            "p3/e6/s3/newer-owner.sst",
            "p31/e1/s1/other-partition.sst",
            "p13/e1/s1/other-partition.sst",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(garbage(&objects, 5, &new, Some(&previous)), ["p3/e3/s0/0.sst", "p3/e5/s9/orphan.sst"]);
        let without_previous = garbage(&objects, 5, &new, None);
        assert_eq!(without_previous, ["p3/e4/s1/CURRENT", "p3/e3/s0/0.sst", "p3/e5/s9/orphan.sst"]);
    }

    // Proves a manifest never replaces one of a later epoch (a paused former owner cannot undo
    // the new owner's checkpoint), and does replace its own or an earlier epoch's.
    #[test]
    fn a_lower_epoch_never_replaces_a_higher_one() {
        let current = manifest(8, &[]);
        assert!(matches!(
            may_replace(Some(&current), 3, 7),
            Err(SnapshotError::Superseded { partition: 3, theirs: 8, ours: 7 })
        ));
        assert!(may_replace(Some(&current), 3, 8).is_ok());
        assert!(may_replace(Some(&current), 3, 9).is_ok());
        assert!(may_replace(None, 3, 1).is_ok());
    }

    // Proves the manifest's JSON has the fields operators read with `nats kv get`.
    #[test]
    fn manifest_json_round_trips() {
        let m = manifest(2, &[("CURRENT", "p3/e2/s1/CURRENT")]);
        let text = serde_json::to_string(&m).unwrap();
        for field in ["\"partition\":3", "\"epoch\":2", "\"position\":10", "\"created_at\"", "\"digest\""] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        assert_eq!(epoch_of(3, "p3/e12/s1/x"), Some(12));
        assert_eq!(epoch_of(3, "p31/e12/s1/x"), None);
    }
}
