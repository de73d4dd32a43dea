//! `tally-bench checkpoint`: issue 16's "a checkpoint of a 1 GiB state uploads only what changed
//! since the last one", measured with the processor's own [`Checkpointer::once`] against a real
//! nats-server's Object Store and a real RocksDB.
//!
//! One partition's state is filled synthetically, straight through the store as `restart` fills
//! its states (seven in ten keys sku-day aggregates walking stores, skus and days, three in ten
//! dedupe entries), but with values that vary, and dedupe values of random bytes, so that LZ4
//! cannot shrink them and the table files on disk really reach the size asked for. Filling stops
//! once RocksDB's live table files hold `--gib` GiB. A committed input position is
//! written as the processor writes it (`topology::set_position`), since a checkpoint reads it.
//!
//! Then: a first checkpoint (everything goes up), a change of `--change-percent` of the keys
//! (half overwritten, spread over the whole key range, half new), a second checkpoint. Each
//! checkpoint's own RocksDB checkpoint flushes the memtables first, so the change reaches the
//! second one as new table files. Before each checkpoint the benchmark waits until compaction
//! has settled, so that the second checkpoint pays for every compaction the change set off
//! before it, and none left over from the fill; what compaction went on to do after the second
//! checkpoint (the next one's upload) is printed too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use tally_processor::cluster::{Epoch, Fence, Ownership};
use tally_processor::snapshot::{manifest, Checkpointer, Manifest, Report, Snapshots};
use tally_state::{Cf, Overlay, RocksOptions, RocksStore, Store, WriteBatch};
use tally_topologies::aggregates::SkuDay;
use tally_topologies::model::MovementReason;
use tally_topologies::{codec, keys, topology};
use tally_traffic::LocalNats;

use crate::measure::mib;

#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Size of the state, in GiB: keys are written until RocksDB's live table files hold this
    /// much (values are incompressible, so the files on disk do reach it); what the memtables
    /// still hold then (at most their 64 MiB budget) is flushed by the first checkpoint, on top.
    #[arg(long, default_value_t = 1.0)]
    gib: f64,
    /// Percentage of the state's keys changed between the two checkpoints: half of them overwrite
    /// existing keys spread over the whole key range, half are new keys.
    #[arg(long, default_value_t = 1.0)]
    change_percent: f64,
    /// Seconds RocksDB's table files must stay unchanged (and its log show no flush or compaction
    /// running) before compaction counts as settled; the benchmark waits for that before each
    /// checkpoint and after the second.
    #[arg(long, default_value_t = 5)]
    quiet_secs: u64,
    /// A small, quick run: 20 MiB of table files (plus what the memtables hold then) instead of
    /// `--gib` (the test suite runs this).
    #[arg(long)]
    smoke: bool,
}

/// The state size of `--smoke`, in GiB: 20 MiB.
const SMOKE_GIB: f64 = 20.0 / 1024.0;
/// The one partition checkpointed, its lease epoch, and the bucket its checkpoints go to.
const PARTITION: u32 = 0;
const EPOCH: Epoch = Epoch(1);
const BUCKET: &str = "tally_bench_checkpoints";
/// The input position the filled state has committed; the change advances it by one per key.
const FILLED_POSITION: u64 = 1_000_000;
/// Keys written per batch, and between two looks at the state's size.
const BATCH_KEYS: u64 = 10_000;
/// Fill progress is printed (stderr) every this many bytes of keys and values.
const PROGRESS_EVERY: u64 = 64 << 20;
/// As in `restart`: stores, skus per store, and the size of a dedupe value (about a stored
/// 3-line transaction).
const STORES: u64 = 400;
const SKUS: u64 = 5_000;
const SEEN_VALUE_BYTES: usize = 320;
/// How often the table files are looked at while waiting for compaction to settle, and how long
/// that wait may take before the run gives up.
const SETTLE_POLL: Duration = Duration::from_millis(500);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1800);

pub async fn run(mut args: CheckpointArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.gib = SMOKE_GIB;
    }
    anyhow::ensure!(args.gib > 0.0, "--gib must be positive");
    anyhow::ensure!(args.change_percent > 0.0 && args.change_percent <= 100.0, "--change-percent must be in (0, 100]");
    let quiet = Duration::from_secs(args.quiet_secs);
    let target = (args.gib * f64::from(1u32 << 30)) as u64;
    let temp = tempfile::Builder::new().prefix("tally-bench-checkpoint-").tempdir()?;
    let nats = LocalNats::start(&temp.path().join("nats")).context("starting nats-server")?;
    let js = jetstream::new(async_nats::connect(nats.url().as_str()).await.context("connecting to nats-server")?);
    // The layout of `tally run` (owned.rs): the scratch checkpoint next to the database, on the
    // same file system, so that RocksDB hard-links the table files instead of copying them.
    let db_dir = temp.path().join("state").join(format!("partition-{PARTITION}"));
    let scratch = temp.path().join("state").join("checkpoints").join(format!("partition-{PARTITION}"));
    // No fsync per write: filling needs no durability, and a checkpoint does not depend on it.
    let options = RocksOptions { sync: false, ..RocksOptions::default() };
    let rocks = Arc::new(RocksStore::open(&db_dir, &options).context("opening the state")?);
    println!(
        "tally-bench checkpoint: a {:.0} MiB state of one partition, {}% of its keys changed between two checkpoints",
        mib(target),
        args.change_percent
    );

    let mut noise = Noise(1);
    let filled = fill(&rocks, target, &mut noise)?;
    commit_position(&rocks, FILLED_POSITION)?;
    let settled = settle(&db_dir, quiet).await?;
    let tables = table_files(&db_dir)?;
    println!(
        "state: {} keys ({} B = {:.1} MiB of keys and values) written in {:.1} s; compaction settled {:.1} s later; \
         table files on disk: {} B = {:.1} MiB in {} files",
        filled.keys,
        filled.bytes,
        mib(filled.bytes),
        filled.seconds,
        settled.as_secs_f64(),
        tables.values().sum::<u64>(),
        mib(tables.values().sum()),
        tables.len()
    );

    let snapshots = Snapshots::open(&js, BUCKET, 1).await.context("opening the checkpoint buckets")?;
    // The lease stays this instance's for as long as the benchmark runs: the sender is kept.
    let (_lease, ownership) = tokio::sync::watch::channel(owning(PARTITION, EPOCH));
    let mut checkpointer = Checkpointer {
        snapshots,
        partition: PARTITION,
        rocks: Arc::clone(&rocks),
        fence: Fence::new(ownership, PARTITION, EPOCH),
        scratch,
        known: BTreeMap::new(),
    };
    let first = checkpoint(&mut checkpointer, FILLED_POSITION).await?;
    print_checkpoint("first", &first);

    let changed = change(&rocks, filled.keys, args.change_percent, &mut noise)?;
    let position = FILLED_POSITION + changed.overwritten + changed.inserted;
    commit_position(&rocks, position)?;
    let settled = settle(&db_dir, quiet).await?;
    println!(
        "change: {} keys overwritten and {} inserted ({} B = {:.1} MiB of keys and values) in {:.1} s; compaction \
         settled {:.1} s later",
        changed.overwritten,
        changed.inserted,
        changed.bytes,
        mib(changed.bytes),
        changed.seconds,
        settled.as_secs_f64()
    );
    let second = checkpoint(&mut checkpointer, position).await?;
    print_checkpoint("second", &second);
    print_turnover(&first.manifest, &second.manifest, changed.bytes);

    settle(&db_dir, quiet).await?;
    print_left_for_next(&second.manifest, &table_files(&db_dir)?);
    let share = second.report.uploaded_bytes as f64 / table_bytes(&second.manifest) as f64;
    println!("second_checkpoint_uploaded_share: {share:.4}");
    Ok(())
}

/// An ownership holding `partition` at `epoch` with a lease that outlasts the benchmark.
fn owning(partition: u32, epoch: Epoch) -> Ownership {
    let far_future = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    Ownership {
        partitions: [(partition, epoch)].into(),
        valid_until: [(partition, far_future)].into(),
        ..Ownership::default()
    }
}

/// What a fill or a change wrote.
#[derive(Debug, Default)]
struct Written {
    keys: u64,
    /// Bytes of keys and values.
    bytes: u64,
    seconds: f64,
}

/// Writes the state's keys in order until RocksDB's live table files hold `target` bytes;
/// progress goes to stderr.
fn fill(rocks: &RocksStore, target: u64, noise: &mut Noise) -> anyhow::Result<Written> {
    let started = Instant::now();
    let mut written = Written::default();
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let size = live_table_bytes(rocks)?;
        if size >= target {
            break;
        }
        if written.bytes >= next_progress {
            eprintln!(
                "prefill: {} keys, {:.0} of {:.0} MiB, {:.0} s",
                written.keys,
                mib(size),
                mib(target),
                started.elapsed().as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        let (batch, bytes) = batch_of(written.keys..written.keys + BATCH_KEYS, noise);
        rocks.write(&batch).context("writing the fill")?;
        written.keys += BATCH_KEYS;
        written.bytes += bytes;
    }
    written.seconds = started.elapsed().as_secs_f64();
    Ok(written)
}

/// Bytes of the table files in RocksDB's current version: no memtable (whose arena counts more
/// than the table files it will become), no file a compaction is still writing or has replaced.
fn live_table_bytes(rocks: &RocksStore) -> anyhow::Result<u64> {
    let with_memtables = rocks.approximate_size_bytes().context("reading the state's size")?;
    let memtables = rocks.memory().context("reading the state's memtable size")?.memtables;
    Ok(with_memtables.saturating_sub(memtables))
}

/// What the change between the checkpoints wrote.
#[derive(Debug)]
struct Changed {
    overwritten: u64,
    inserted: u64,
    bytes: u64,
    seconds: f64,
}

/// Changes `percent` % of the `keys` keys the fill wrote: half of them overwritten with new
/// values, picked evenly over the fill's key order (so over every store's range, and both
/// families), half of them new keys after the fill's.
fn change(rocks: &RocksStore, keys: u64, percent: f64, noise: &mut Noise) -> anyhow::Result<Changed> {
    let started = Instant::now();
    let count = ((keys as f64 * percent / 100.0).round() as u64).max(2);
    let overwritten = (count / 2).min(keys);
    let inserted = count - overwritten;
    let stride = keys / overwritten.max(1);
    // `+ j % 10` walks the seven-sku-days-in-ten pattern, which a stride of a multiple of ten
    // would always hit at the same place.
    let old = (0..overwritten).map(|j| (j * stride + j % 10).min(keys - 1));
    let indices: Vec<u64> = old.chain(keys..keys + inserted).collect();
    let mut bytes = 0;
    for chunk in indices.chunks(BATCH_KEYS as usize) {
        let (batch, chunk_bytes) = batch_of(chunk.iter().copied(), noise);
        rocks.write(&batch).context("writing the change")?;
        bytes += chunk_bytes;
    }
    Ok(Changed { overwritten, inserted, bytes, seconds: started.elapsed().as_secs_f64() })
}

/// The entries of the keys at `indices`, and their bytes.
fn batch_of(indices: impl Iterator<Item = u64>, noise: &mut Noise) -> (WriteBatch, u64) {
    let mut batch = WriteBatch::new();
    let mut bytes = 0;
    for i in indices {
        let (cf, key, value) = entry(i, noise);
        bytes += (key.len() + value.len()) as u64;
        batch.put(cf, key, value);
    }
    (batch, bytes)
}

/// The `i`-th key of the state, laid out as `restart` lays its keys out, with a fresh value.
fn entry(i: u64, noise: &mut Noise) -> (Cf, Vec<u8>, Vec<u8>) {
    let first_day = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid day");
    if i % 10 < 7 {
        let n = i / 10 * 7 + i % 10;
        let store = tally_traffic::store_id((n % STORES) as usize);
        let sku = (100_000 + (n / STORES) % SKUS).to_string();
        let day = first_day + chrono::Duration::days((n / (STORES * SKUS)) as i64);
        (Cf::Aggregates, keys::sku_day(&store, day, &sku), codec::encode(&sku_day(noise)))
    } else {
        let store = tally_traffic::store_id((i % STORES) as usize);
        let mut value = vec![0_u8; SEEN_VALUE_BYTES];
        noise.fill(&mut value);
        (Cf::Dedupe, keys::seen(&store, &format!("T-{i:010}")), value)
    }
}

/// A sku-day with figures of its own, as a day of sales leaves them.
fn sku_day(noise: &mut Noise) -> SkuDay {
    let sold = (noise.next() % 200) as i64;
    let gross = (noise.next() % 5_000_000) as i64;
    let mut sku = SkuDay {
        sold_units: Decimal::from(sold),
        returned_units: Decimal::from((noise.next() % 3) as i64),
        gross: Decimal::new(gross, 2),
        discount: Decimal::new(gross / 20, 2),
        net: Decimal::new(gross - gross / 20, 2),
        tax: Decimal::new(gross * 8 / 100, 2),
        ..SkuDay::default()
    };
    sku.inventory.insert(MovementReason::Sale, Decimal::from(-sold));
    sku
}

/// SplitMix64: cheap incompressible bytes for the values, the same for every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes the committed input position as the processor's commit does.
fn commit_position(rocks: &RocksStore, position: u64) -> anyhow::Result<()> {
    let mut txn = Overlay::new(rocks);
    topology::set_position(&mut txn, position);
    let batch = txn.into_batch();
    rocks.write(&batch).context("writing the committed position")
}

/// The table files in `dir` by name, with their sizes. A file that compaction deletes between
/// the listing and its size is left out: it is gone.
fn table_files(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !manifest::is_immutable(&name) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => files.insert(name, meta.len()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", entry.path().display())),
        };
    }
    Ok(files)
}

/// Waits until RocksDB has finished flushing and compacting in `dir`: its table files (names
/// and sizes) unchanged for `quiet`, and every flush and compaction its log started finished.
/// Returns how long that took.
async fn settle(dir: &Path, quiet: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = table_files(dir)?;
    let mut unchanged_since = Instant::now();
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = table_files(dir)?;
        if now != last {
            last = now;
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= quiet && background_jobs_running(dir)? == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < SETTLE_TIMEOUT,
            "RocksDB in {} kept flushing or compacting for {SETTLE_TIMEOUT:?}",
            dir.display()
        );
    }
}

/// Flushes and compactions RocksDB's log (`LOG`, its event lines) says started and not yet
/// finished.
fn background_jobs_running(dir: &Path) -> anyhow::Result<i64> {
    let path = dir.join("LOG");
    let log = std::fs::read_to_string(&path).with_context(|| format!("reading RocksDB's log {}", path.display()))?;
    let count = |event: &str| log.matches(&format!("\"event\": \"{event}\"")).count() as i64;
    Ok(count("flush_started") - count("flush_finished") + count("compaction_started") - count("compaction_finished"))
}

/// One checkpoint, timed, with the manifest it published.
struct Measured {
    report: Report,
    manifest: Manifest,
    seconds: f64,
}

/// Runs one checkpoint and reads back its manifest, which must hold `position`.
async fn checkpoint(checkpointer: &mut Checkpointer, position: u64) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let report = checkpointer.once().await.context("checkpointing the partition")?;
    let seconds = started.elapsed().as_secs_f64();
    let (manifest, _) = checkpointer
        .snapshots
        .latest(PARTITION)
        .await
        .context("reading the manifest back")?
        .context("the checkpoint published no manifest")?;
    anyhow::ensure!(
        manifest.sequence == report.sequence && manifest.position == position,
        "the manifest read back is checkpoint {} at position {}, not {} at {position}",
        manifest.sequence,
        manifest.position,
        report.sequence
    );
    Ok(Measured { report, manifest, seconds })
}

/// Bytes of the table files a manifest names.
fn table_bytes(manifest: &Manifest) -> u64 {
    manifest.files.iter().filter(|(file, _)| manifest::is_immutable(file)).map(|(_, entry)| entry.size).sum()
}

fn print_checkpoint(which: &str, measured: &Measured) {
    let Measured { report, manifest, seconds } = measured;
    let state_bytes: u64 = manifest.files.values().map(|entry| entry.size).sum();
    println!(
        "{which} checkpoint (#{}, position {}): {} files uploaded, {} reused; uploaded {} B = {:.1} MiB ({} B of \
         table files); state {} B = {:.1} MiB in {} files ({} B of table files); {:.2} s ({:.0} MiB/s uploaded)",
        report.sequence,
        report.position,
        report.uploaded_files,
        report.reused_files,
        report.uploaded_bytes,
        mib(report.uploaded_bytes),
        report.table_bytes,
        state_bytes,
        mib(state_bytes),
        manifest.files.len(),
        table_bytes(manifest),
        seconds,
        mib(report.uploaded_bytes) / seconds
    );
}

/// The table files each of two manifests holds and the other does not: those of the first that
/// compaction merged away, those of the second that flushes and compactions wrote since.
fn print_turnover(first: &Manifest, second: &Manifest, changed_bytes: u64) {
    let only_in = |a: &Manifest, b: &Manifest| -> (usize, u64) {
        let files: Vec<u64> = a
            .files
            .iter()
            .filter(|(file, _)| manifest::is_immutable(file) && !b.files.contains_key(*file))
            .map(|(_, entry)| entry.size)
            .collect();
        (files.len(), files.iter().sum())
    };
    let (gone, gone_bytes) = only_in(first, second);
    let (new, new_bytes) = only_in(second, first);
    println!(
        "between them: {gone} table files of the first ({:.1} MiB) merged away by compaction; {new} new table files \
         ({:.1} MiB) in the second, where the change itself wrote {:.1} MiB of keys and values ({:.2}x that)",
        mib(gone_bytes),
        mib(new_bytes),
        mib(changed_bytes),
        new_bytes as f64 / changed_bytes as f64
    );
}

/// What flushes and compactions did after the second checkpoint: table files it does not hold,
/// which the next checkpoint would upload.
fn print_left_for_next(second: &Manifest, live: &BTreeMap<String, u64>) {
    let new: Vec<u64> = live.iter().filter(|(file, _)| !second.files.contains_key(*file)).map(|(_, s)| *s).collect();
    println!(
        "after the second checkpoint, compaction settled with {} table files ({:.1} MiB) it does not hold: the next \
         checkpoint's upload, before any further change",
        new.len(),
        mib(new.iter().sum())
    );
}
