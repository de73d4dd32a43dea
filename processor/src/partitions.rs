//! Partitions on disk and on NATS (docs/operations.md, "Partitions"): which directory holds a
//! partition's state, which consumer reads it and what it filters, and how the partition token
//! comes off a stored subject.
//!
//! One partition is exactly the layout of versions before partitions: the state in
//! `state.path`, the consumer `input.consumer`, every subject. More than one: the state of
//! partition `n` in `state.path/partition-<n>`, a `PARTITIONS` file in `state.path` saying how
//! many, the consumer `<input.consumer>-p<n>` filtered to `<prefix>.*.*.<n>`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::Config;

pub mod union;

pub use union::UnionStore;

/// The file in `state.path` that says how many partitions the state holds.
pub const MARKER: &str = "PARTITIONS";

/// Where each partition's state lives under one `state.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub count: u32,
}

impl Layout {
    /// The partitions of the state in `root` as found on disk: from its `PARTITIONS` file, one for
    /// a database made by a version before partitions, `None` where there is no state yet.
    pub fn on_disk(root: &Path) -> anyhow::Result<Option<Layout>> {
        let marker = root.join(MARKER);
        match std::fs::read_to_string(&marker) {
            Ok(text) => {
                let count = text.trim().parse::<u32>().ok().filter(|n| *n >= 1).with_context(|| {
                    format!("{} should hold a number of partitions, not {:?}", marker.display(), text.trim())
                })?;
                return Ok(Some(Layout { root: root.to_path_buf(), count }));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", marker.display())),
        }
        let single = root.join("CURRENT").exists();
        Ok(single.then(|| Layout { root: root.to_path_buf(), count: 1 }))
    }

    /// The layout of `count` partitions in `root`: the one on disk, which must agree, or a new one
    /// (its `PARTITIONS` file written now).
    pub fn open(root: &Path, count: u32) -> anyhow::Result<Layout> {
        if let Some(found) = Layout::on_disk(root)? {
            if found.count != count {
                bail!(
                    "the state in {} holds {} partition(s) but the input stream has {count}. Rebuild the state from \
                     the stream into a new directory (`tally state rebuild --into DIR`) and point state.path at it, \
                     or use a stream with {} partition(s) (docs/operations.md, \"Partitions\")",
                    root.display(),
                    found.count,
                    found.count,
                );
            }
            return Ok(found);
        }
        let layout = Layout { root: root.to_path_buf(), count };
        if count > 1 {
            std::fs::create_dir_all(root).with_context(|| format!("cannot create state.path {}", root.display()))?;
            let temporary = root.join(format!("{MARKER}.new"));
            std::fs::write(&temporary, format!("{count}\n"))
                .and_then(|()| std::fs::rename(&temporary, root.join(MARKER)))
                .with_context(|| format!("writing {}", root.join(MARKER).display()))?;
        }
        Ok(layout)
    }

    /// The layout of the state in `root`, which must hold one.
    pub fn existing(root: &Path) -> anyhow::Result<Layout> {
        Layout::on_disk(root)?.with_context(|| {
            format!(
                "{} holds no tally state (neither a RocksDB CURRENT file nor a {MARKER} file); is it state.path?",
                root.display()
            )
        })
    }

    /// The partitions a state command works on: every one without `--partition`, else the one it
    /// names, which must exist.
    pub fn select(&self, only: Option<u32>) -> anyhow::Result<Vec<Partition>> {
        select(self.count, only, &format!("the state in {}", self.root.display()))
    }

    /// The directory of partition `index`'s database.
    pub fn dir(&self, index: u32) -> PathBuf {
        if self.count == 1 {
            self.root.clone()
        } else {
            self.root.join(format!("partition-{index}"))
        }
    }

    pub fn partitions(&self) -> impl Iterator<Item = Partition> + '_ {
        (0..self.count).map(|index| Partition { index, count: self.count })
    }
}

/// The partitions of `count` that a command works on: every one without `--partition`, else the
/// one it names, which must be below `count`. `holder` says whose partitions they are, for the
/// error (e.g. "the state in /var/lib/tally").
pub fn select(count: u32, only: Option<u32>, holder: &str) -> anyhow::Result<Vec<Partition>> {
    let Some(index) = only else { return Ok((0..count).map(|index| Partition { index, count }).collect()) };
    if index < count {
        return Ok(vec![Partition { index, count }]);
    }
    if count == 1 {
        bail!("--partition {index}: {holder} is not partitioned; leave --partition out (or give 0, the whole of it)");
    }
    bail!("--partition {index} is out of range: {holder} holds {count} partitions, 0 to {}", count - 1)
}

/// One partition of the input stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// The one partition of an unpartitioned stream.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// The durable consumer that reads this partition.
    pub fn consumer_name(&self, config: &Config) -> String {
        if self.count == 1 {
            config.input.consumer.clone()
        } else {
            format!("{}-p{}", config.input.consumer, self.index)
        }
    }

    /// The durable consumer that reads this partition under `epoch`, when several instances
    /// share the partitions (docs/operations.md, "Several instances"): the owner's consumer,
    /// named with its lease's epoch, replaces every former owner's.
    pub fn consumer_name_at(&self, config: &Config, epoch: Option<u64>) -> String {
        match epoch {
            Some(epoch) => format!("{}-e{epoch}", self.consumer_name(config)),
            None => self.consumer_name(config),
        }
    }

    /// Whether `name` is a consumer of this partition, under any epoch or none.
    pub fn is_its_consumer(&self, config: &Config, name: &str) -> bool {
        let base = self.consumer_name(config);
        name == base
            || name
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix("-e"))
                .is_some_and(|epoch| !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()))
    }

    /// The stored subjects of this partition, for its consumer's filter; `None` reads them all.
    pub fn filter_subject(&self, config: &Config) -> Option<String> {
        (self.count > 1).then(|| format!("{}.*.*.{}", config.input.subject_prefix, self.index))
    }

    /// The subject a record was published on, from the one the stream stored it under: the
    /// partition's transform appends the partition as a last token, which comes off again here.
    pub fn published_subject<'s>(&self, stored: &'s str) -> &'s str {
        if self.count == 1 {
            return stored;
        }
        stored.rsplit_once('.').map_or(stored, |(published, _)| published)
    }

    /// The value of the `partition` metric label: bounded by the partitions (at most 256).
    pub fn label(&self) -> String {
        self.index.to_string()
    }
}

/// The subject transform of a partitioned input stream: `P.<kind>.<store>` is stored as
/// `P.<kind>.<store>.<partition>`, the partition being nats-server's
/// `{{partition(n, <store token>)}}`.
pub fn transform(config: &Config, count: u32) -> async_nats::jetstream::stream::SubjectTransform {
    let p = &config.input.subject_prefix;
    async_nats::jetstream::stream::SubjectTransform {
        source: format!("{p}.*.*"),
        destination: format!("{p}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({count},2)}}}}"),
    }
}

/// The partitions of an input stream with `transform` (one without a transform has one), or
/// `None` when the transform is not one that `tally setup` makes.
pub fn count_of(config: &Config, transform: Option<&async_nats::jetstream::stream::SubjectTransform>) -> Option<u32> {
    let Some(transform) = transform else { return Some(1) };
    let ours = self::transform(config, 1);
    if transform.source != ours.source {
        return None;
    }
    let p = &config.input.subject_prefix;
    let count = transform
        .destination
        .strip_prefix(&format!("{p}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition("))?
        .strip_suffix(",2)}}")?;
    count.trim().parse().ok().filter(|n| *n >= 1)
}

/// The last stream sequence of each partition of `layout` as of now (0 for one without
/// messages; `last`, the stream's, for an unpartitioned stream), so that a reader knows when each
/// has caught up.
pub async fn last_sequences(
    stream: &async_nats::jetstream::stream::Stream,
    config: &Config,
    layout: &Layout,
    last: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut lasts = Vec::new();
    for partition in layout.partitions() {
        lasts.push(last_sequence(stream, config, &partition, last).await?);
    }
    Ok(lasts)
}

/// The last stream sequence of `partition` as of now: 0 without messages, `last` (the
/// stream's) for an unpartitioned stream.
pub async fn last_sequence(
    stream: &async_nats::jetstream::stream::Stream,
    config: &Config,
    partition: &Partition,
    last: u64,
) -> anyhow::Result<u64> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let Some(subject) = partition.filter_subject(config) else { return Ok(last) };
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => Ok(message.sequence),
        Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
        Err(err) => Err(err).with_context(|| format!("reading the last message of {subject}")),
    }
}

/// The lowest committed position of the partitions that have not reached their last sequence,
/// `None` when all have: how far the input is read without a gap, counted on the stream.
pub fn behind(positions: &[u64], lasts: &[u64]) -> Option<u64> {
    positions.iter().zip(lasts).filter(|(at, last)| at < last).map(|(at, _)| *at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves one partition keeps the layout of versions before partitions, and several get a
    // directory each and a marker that a later open must agree with.
    #[test]
    fn layout_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        assert_eq!(Layout::on_disk(&root).unwrap(), None, "nothing yet");
        let single = Layout::open(&root, 1).unwrap();
        assert_eq!(single.dir(0), root);
        assert!(!root.join(MARKER).exists(), "one partition writes no marker");

        let many = Layout::open(&root, 4).unwrap();
        assert_eq!(many.dir(3), root.join("partition-3"));
        assert_eq!(Layout::on_disk(&root).unwrap(), Some(many.clone()));
        let refused = Layout::open(&root, 16).unwrap_err().to_string();
        assert!(refused.contains("holds 4 partition(s) but the input stream has 16"), "{refused}");

        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("CURRENT"), "MANIFEST-000001\n").unwrap();
        assert_eq!(Layout::on_disk(&old).unwrap().map(|l| l.count), Some(1), "a state of an earlier version");
        let refused = Layout::open(&old, 16).unwrap_err().to_string();
        assert!(refused.contains("holds 1 partition(s)"), "{refused}");

        std::fs::write(root.join(MARKER), "many\n").unwrap();
        assert!(Layout::on_disk(&root).unwrap_err().to_string().contains("not \"many\""));
    }

    // Proves `--partition` selects every partition without it, the one named within range, and
    // is refused with the valid range (or, on an unpartitioned state, anything but 0).
    #[test]
    fn select_partitions() {
        let many = Layout { root: PathBuf::from("/state"), count: 16 };
        assert_eq!(many.select(None).unwrap().len(), 16);
        assert_eq!(many.select(Some(15)).unwrap(), [Partition { index: 15, count: 16 }]);
        let refused = many.select(Some(16)).unwrap_err().to_string();
        assert!(
            refused.contains("--partition 16 is out of range") && refused.contains("16 partitions, 0 to 15"),
            "{refused}"
        );

        let one = Layout { root: PathBuf::from("/state"), count: 1 };
        assert_eq!(one.select(Some(0)).unwrap(), [Partition::WHOLE]);
        assert_eq!(one.select(None).unwrap(), [Partition::WHOLE]);
        let refused = one.select(Some(1)).unwrap_err().to_string();
        assert!(refused.contains("is not partitioned"), "{refused}");

        let dir = tempfile::tempdir().unwrap();
        let missing = Layout::existing(dir.path()).unwrap_err().to_string();
        assert!(missing.contains("holds no tally state"), "{missing}");
        Layout::open(dir.path(), 4).unwrap();
        assert_eq!(Layout::existing(dir.path()).unwrap().count, 4);
    }

    // Proves the names, filters and subjects of a partition, and that one partition is the
    // unpartitioned stream of earlier versions.
    #[test]
    fn partition_names_and_subjects() {
        let config = Config::default();
        let whole = Partition::WHOLE;
        assert_eq!(whole.consumer_name(&config), "tally");
        assert_eq!(whole.filter_subject(&config), None);
        assert_eq!(whole.published_subject("retail.pos.0042"), "retail.pos.0042");
        let seventh = Partition { index: 7, count: 16 };
        assert_eq!(seventh.consumer_name(&config), "tally-p7");
        assert_eq!(seventh.filter_subject(&config).as_deref(), Some("retail.*.*.7"));
        assert_eq!(seventh.published_subject("retail.pos.0042.7"), "retail.pos.0042");
        assert_eq!(seventh.consumer_name_at(&config, Some(42)), "tally-p7-e42");
        assert!(seventh.is_its_consumer(&config, "tally-p7") && seventh.is_its_consumer(&config, "tally-p7-e42"));
        for other in ["tally-p70", "tally-p7-e", "tally-p7-ex", "tally-p1", "tally-p7-rebuild"] {
            assert!(!seventh.is_its_consumer(&config, other), "{other}");
        }
    }

    // Proves the stream's transform is read back as its partition count, and a foreign one is not.
    #[test]
    fn transform_round_trip() {
        let config = Config::default();
        let made = transform(&config, 16);
        assert_eq!(made.destination, "retail.{{wildcard(1)}}.{{wildcard(2)}}.{{partition(16,2)}}");
        assert_eq!(count_of(&config, Some(&made)), Some(16));
        assert_eq!(count_of(&config, None), Some(1));
        let foreign = async_nats::jetstream::stream::SubjectTransform {
            source: "retail.*.*".into(),
            destination: "retail.{{wildcard(2)}}.{{wildcard(1)}}".into(),
        };
        assert_eq!(count_of(&config, Some(&foreign)), None);
    }
}
