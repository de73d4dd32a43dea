//! `tally run` as one of several instances (docs/operations.md, "Several instances"): it runs
//! exactly the partitions it owns, as the cluster's leases say (`crate::cluster`), and follows
//! their moves.
//!
//! Taking a partition over: its state in this instance's `state.path` (empty the first time)
//! first catches up with the input as far as the former owner can have read it (everything it
//! published came of that), without publishing anything, on event time alone, as a rebuild
//! does; then it reads the output streams back (`crate::reconcile`), because the
//! former owner published postings and alerts this state did not, and drops from its outbox
//! the postings, the alert revisions and the dead letters already published (the other dead
//! letters, whose content is the input's, stay and go out under their ids); then its pipeline
//! starts,
//! under the lease's epoch: its consumer, named with the epoch, replaces the former owner's,
//! and its publisher sends only while the lease holds. Losing one stops its pipeline and tells
//! the cluster, which releases the lease once the pipeline has stopped.
//!
//! With checkpoints on (docs/operations.md, "Checkpoints in the Object Store"), a partition's
//! latest checkpoint replaces its state in this instance's `state.path` before the database is
//! opened, when the checkpoint is ahead of it; the catch-up then replays only the input after
//! it. While it runs the partition, this instance checkpoints it every interval.

mod standby;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use tally_state::{CachedStore, Overlay, RocksOptions, RocksShared, RocksStore, Store};
use tally_topologies::topology;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::{Cluster, Epoch, Fence, Ownership};
use crate::partitions::{self, Layout, Partition, UnionStore};
use crate::pipeline::{Ended, Pipeline, Shared};
use crate::reconcile::ReadAhead;
use crate::runner::Tick;
use crate::snapshot::{self, Checkpointer, Checkpoints, FileEntry, Manifest};
use standby::Standbys;

/// How often a catch-up looks at how far it got.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

/// Opens a partition's database in this instance's state directory, sharing one block cache
/// and memtable budget with the others.
pub struct Opener {
    pub layout: Layout,
    pub options: RocksOptions,
    pub shared: RocksShared,
    pub value_cache_bytes: usize,
    /// Where partitions are checkpointed and restored from; `None` when checkpoints are off.
    pub checkpoints: Option<Checkpoints>,
    /// Each partition's database while anything holds it open: a stopped pipeline's may still
    /// be read for a moment (the HTTP API), and RocksDB refuses a second open in one process.
    pub open: std::sync::Mutex<BTreeMap<u32, Weak<RocksStore>>>,
}

impl Opener {
    /// The partition's database: the one still open if anything holds it (a pipeline stopped a
    /// moment ago), else opened now.
    fn open(&self, partition: Partition) -> anyhow::Result<(Arc<RocksStore>, Arc<dyn Store>)> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let rocks = match open.get(&partition.index).and_then(Weak::upgrade) {
            Some(rocks) => rocks,
            None => {
                let dir = self.layout.dir(partition.index);
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let rocks = RocksStore::open_shared(&dir, &self.options, &self.shared)
                    .with_context(|| format!("cannot open the state in {}", dir.display()))?;
                let rocks = Arc::new(rocks);
                open.insert(partition.index, Arc::downgrade(&rocks));
                rocks
            }
        };
        let cached = Arc::new(CachedStore::new(Arc::clone(&rocks), self.value_cache_bytes));
        Ok((rocks, cached))
    }

    /// [`Self::restore`], then [`Self::open`], checking a restored state against its manifest.
    async fn restore_and_open(
        &self,
        partition: Partition,
    ) -> anyhow::Result<(Arc<RocksStore>, Arc<dyn Store>, Option<Manifest>)> {
        let restored = self.restore(partition).await?;
        let (rocks, store) = self.open(partition)?;
        if let Some(manifest) = &restored {
            check_restored(&rocks, manifest)?;
        }
        Ok((rocks, store, restored))
    }

    /// Whether the partition's database is open in this process.
    fn is_open(&self, partition: Partition) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&partition.index).is_some_and(|weak| weak.strong_count() > 0)
    }

    /// The checkpoints, where a partition has a directory of its own: with one partition its
    /// state is `state.path` itself, which a restore cannot swap.
    fn checkpoints(&self) -> Option<&Checkpoints> {
        self.checkpoints.as_ref().filter(|_| self.layout.count > 1)
    }

    /// Replaces the partition's state on disk with its latest checkpoint when that is ahead of
    /// it, before the database is opened. A checkpoint that cannot be read or downloaded is
    /// logged and left: the catch-up then replays from the local state. Returns the checkpoint
    /// restored.
    async fn restore(&self, partition: Partition) -> anyhow::Result<Option<Manifest>> {
        let Some(checkpoints) = self.checkpoints() else { return Ok(None) };
        if self.is_open(partition) {
            // Still open (run or stood by here a moment ago): it is as fresh as anything, and
            // a directory in use is not swapped.
            return Ok(None);
        }
        let index = partition.index;
        let manifest = match checkpoints.snapshots.latest(index).await {
            Ok(Some((manifest, _))) => manifest,
            Ok(None) => return Ok(None),
            Err(err) => {
                warn!(partition = index, error = %err, "Cannot read the partition's checkpoint; catching up from the local state.");
                return Ok(None);
            }
        };
        let dir = self.layout.dir(index);
        let local = local_position(&dir).await?;
        if let Some(local) = local.filter(|local| manifest.position <= *local) {
            info!(
                partition = index,
                local,
                checkpoint = manifest.position,
                "The local state is not behind the partition's checkpoint; keeping it."
            );
            return Ok(None);
        }
        let incoming = suffixed(&dir, "restoring");
        let restored = match snapshot::download(&checkpoints.snapshots, &manifest, &incoming).await {
            Ok(restored) => restored,
            Err(err) => {
                warn!(partition = index, error = %err, "Cannot restore the partition's checkpoint; catching up from the local state.");
                // What is left of the download is removed by the next one before it starts.
                let _ = std::fs::remove_dir_all(&incoming);
                return Ok(None);
            }
        };
        swap_in(&incoming, &dir)?;
        info!(
            partition = index,
            position = manifest.position,
            local = local.unwrap_or(0),
            epoch = manifest.epoch,
            checkpoint = manifest.sequence,
            files = restored.files,
            bytes = restored.bytes,
            duration_ms = restored.duration_ms,
            "Restored a partition from its checkpoint."
        );
        Ok(Some(manifest))
    }

    /// Starts checkpointing a partition this instance now runs; `restored` names the files
    /// stored already.
    fn checkpointer(
        &self,
        partition: Partition,
        rocks: &Arc<RocksStore>,
        fence: &Fence,
        restored: Option<Manifest>,
    ) -> Option<JoinHandle<()>> {
        let checkpoints = self.checkpoints()?;
        let known: BTreeMap<String, FileEntry> = restored
            .map(|m| m.files.into_iter().filter(|(f, _)| snapshot::manifest::is_immutable(f)).collect())
            .unwrap_or_default();
        let checkpointer = Checkpointer {
            snapshots: checkpoints.snapshots.clone(),
            partition: partition.index,
            rocks: Arc::clone(rocks),
            fence: fence.clone(),
            scratch: self.layout.root.join("checkpoints").join(format!("partition-{}", partition.index)),
            known,
        };
        Some(tokio::spawn(checkpointer.run(checkpoints.interval)))
    }
}

/// The input position committed by the state in `dir`, `None` where there is none; read
/// without opening it for writing.
async fn local_position(dir: &Path) -> anyhow::Result<Option<u64>> {
    if !dir.join("CURRENT").exists() {
        return Ok(None);
    }
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let rocks = RocksStore::open_read_only(&dir)
            .with_context(|| format!("cannot read the state in {} to compare it with its checkpoint", dir.display()))?;
        Ok(Some(topology::committed_position(&Overlay::new(&rocks))?))
    })
    .await?
}

/// `dir` with `.suffix` appended to its name.
fn suffixed(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    PathBuf::from(name)
}

/// Puts the verified download `incoming` in place of `dir`: the old state moves aside first
/// and is deleted after, so that a crash in between leaves one whole state or the other.
fn swap_in(incoming: &Path, dir: &Path) -> anyhow::Result<()> {
    let replaced = suffixed(dir, "replaced");
    // Left by a crash after a swap; if it cannot be removed, the rename below says why.
    let _ = std::fs::remove_dir_all(&replaced);
    if dir.exists() {
        std::fs::rename(dir, &replaced).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(incoming, dir).with_context(|| format!("moving the restored checkpoint to {}", dir.display()))?;
    std::fs::remove_dir_all(&replaced)
        .or_else(|err| if err.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(err) })
        .with_context(|| format!("removing the replaced state {}", replaced.display()))
}

/// Checks that a restored state has committed exactly the position its manifest says.
fn check_restored(rocks: &RocksStore, manifest: &Manifest) -> anyhow::Result<()> {
    let position = topology::committed_position(&Overlay::new(rocks))?;
    if position != manifest.position {
        bail!(
            "partition {}'s state restored from checkpoint {} (epoch {}) has committed input position {position}, \
             but its manifest says {}: the checkpoint bucket holds files of another state. Delete the partition's \
             manifest (`nats kv del <cluster.checkpoint_bucket>_manifests checkpoints.{}`) and its directory to \
             replay the input (docs/operations.md, \"Checkpoints in the Object Store\")",
            manifest.partition,
            manifest.sequence,
            manifest.epoch,
            manifest.position,
            manifest.partition
        );
    }
    Ok(())
}

/// A partition this instance runs.
struct Running {
    epoch: Epoch,
    pipeline: Pipeline,
    store: Arc<dyn Store>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops checkpointing, then the pipeline.
    async fn stop(self) -> anyhow::Result<()> {
        if let Some(task) = self.checkpointer {
            task.abort();
            let _ = task.await;
        }
        self.pipeline.stop().await
    }
}

/// Runs the partitions `cluster` says this instance owns until `shutdown`, or until a pipeline
/// fails (then everything stops and the error is returned: the leases expire and the other
/// instances take the partitions). `union` is kept to the partitions running, for the HTTP API.
pub async fn run(
    shared: &Shared,
    opener: &Opener,
    union: &UnionStore,
    cluster: &Cluster,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut ownership = cluster.ownership();
    let (ended, mut endings) = mpsc::unbounded_channel();
    let mut running: BTreeMap<u32, Running> = BTreeMap::new();
    let mut retries = Retries::default();
    let mut members = cluster.members();
    let mut standbys = shared.config.cluster.standby.then(|| Standbys::new(shared, cluster.instance()));
    let result = loop {
        let (wanted, handing_over) = {
            let now = ownership.borrow_and_update();
            (now.partitions.clone(), now.handing_over.clone())
        };
        let following = Following { shared, opener, cluster, ownership: &ownership, ended: &ended };
        following.report_never_started(&handing_over, &running);
        if let Err(err) = following.follow(&wanted, &mut running, &mut retries, standbys.as_mut()).await {
            break Err(err);
        }
        union.replace_indexed(running.iter().map(|(p, r)| (*p, Arc::clone(&r.store))).collect());
        if let Some(standbys) = standbys.as_mut() {
            let ids: BTreeSet<String> = members.borrow_and_update().keys().cloned().collect();
            let busy = |p: &u32| handing_over.contains_key(p) || running.contains_key(p);
            let stand_by = standbys.wanted(opener.layout.count, &ids, cluster.instance(), &wanted, busy);
            standbys.follow(shared, opener, &stand_by).await;
        }
        let next_retry = retries.next();
        tokio::select! {
            _ = sleep_until_some(next_retry) => {}
            Ok(()) = members.changed(), if standbys.is_some() => {}
            changed = ownership.changed() => {
                if changed.is_err() {
                    break Err(anyhow::anyhow!("the cluster loop stopped; this instance runs no partition"));
                }
            }
            Some((partition, result)) = endings.recv() => {
                if let Err(err) = result {
                    break Err(err.context(format!("partition {}", partition.index)));
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break Ok(());
                }
            }
        }
    };
    union.replace_indexed(Vec::new());
    if let Some(standbys) = standbys.as_mut() {
        standbys.stop_all(shared).await;
    }
    let mut first_error = result.err();
    for (index, run) in std::mem::take(&mut running) {
        let epoch = run.epoch;
        if let Err(err) = run.stop().await {
            first_error.get_or_insert(err);
        }
        cluster.stopped(index, epoch);
    }
    first_error.map_or(Ok(()), Err)
}

/// What [`Following::follow`] needs of the instance.
struct Following<'a> {
    shared: &'a Shared,
    opener: &'a Opener,
    cluster: &'a Cluster,
    ownership: &'a watch::Receiver<Ownership>,
    ended: &'a mpsc::UnboundedSender<Ended>,
}

/// Partitions whose takeover failed (NATS did not answer: a server died, a leader election),
/// with when to try again. The lease stays held meanwhile, so no one else takes them.
#[derive(Default)]
struct Retries {
    at: BTreeMap<u32, Instant>,
}

impl Retries {
    fn next(&self) -> Option<Instant> {
        self.at.values().min().copied()
    }

    fn due(&self, partition: u32) -> bool {
        self.at.get(&partition).is_none_or(|at| *at <= Instant::now())
    }
}

/// How long a failed takeover waits before the next try.
const TAKEOVER_RETRY: Duration = Duration::from_secs(1);

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Following<'_> {
    /// Stops what is no longer owned (or owned under another epoch) and starts what is newly
    /// owned; a takeover that fails is tried again after [`TAKEOVER_RETRY`].
    async fn follow(
        &self,
        wanted: &BTreeMap<u32, Epoch>,
        running: &mut BTreeMap<u32, Running>,
        retries: &mut Retries,
        standbys: Option<&mut Standbys>,
    ) -> anyhow::Result<()> {
        let count = self.opener.layout.count;
        let lost: Vec<u32> = running.iter().filter(|(p, r)| wanted.get(p) != Some(&r.epoch)).map(|(p, _)| *p).collect();
        for index in lost {
            if let Some(run) = running.remove(&index) {
                let epoch = run.epoch;
                run.stop().await?;
                crate::telemetry::partition_stopped(&Partition { index, count });
                info!(partition = index, epoch = epoch.0, "Stopped a partition this instance no longer owns.");
                self.cluster.stopped(index, epoch);
            }
        }
        retries.at.retain(|p, _| wanted.contains_key(p));
        let due: Vec<(u32, Epoch)> = wanted
            .iter()
            .filter(|(p, _)| !running.contains_key(p) && retries.due(**p))
            .map(|(p, e)| (*p, *e))
            .collect();
        // A takeover can take long (a catch-up); a partition lost or handed over meanwhile
        // is stopped first, so that it neither runs past its lease nor holds up the handover.
        // While the cluster loop is still acquiring, the takeover waits for the rest, to take
        // them over together (one reading of the output streams for all).
        let unsettled = {
            let now = self.ownership.borrow();
            now.partitions != *wanted || now.moving
        };
        if due.is_empty() || unsettled {
            return Ok(());
        }
        // Their states, seconds behind, are where the takeovers start from; held open until
        // the takeovers have opened them.
        let due_indexes: Vec<u32> = due.iter().map(|(p, _)| *p).collect();
        let (stood_by, outputs) = match standbys {
            Some(standbys) => {
                (standbys.stop(self.shared, &due_indexes).await, standbys.take_outputs_read_ahead(&due_indexes))
            }
            None => (Vec::new(), None),
        };
        let started = self.start_all(&due, outputs).await;
        drop(stood_by);
        for (index, run) in started? {
            match run {
                Some(run) => {
                    retries.at.remove(&index);
                    running.insert(index, run);
                }
                None => {
                    retries.at.insert(index, Instant::now() + TAKEOVER_RETRY);
                }
            }
        }
        Ok(())
    }

    /// Tells the cluster that the partitions it hands over and that do not run here are
    /// stopped: one handed over before its takeover got to start (another took long) waits for
    /// that report to release its lease. One that runs is reported when [`Self::follow`] has
    /// stopped it.
    fn report_never_started(&self, handing_over: &BTreeMap<u32, Epoch>, running: &BTreeMap<u32, Running>) {
        for (&index, &epoch) in handing_over {
            if running.get(&index).is_none_or(|run| run.epoch != epoch) {
                self.cluster.stopped(index, epoch);
            }
        }
    }

    /// Takes the `due` partitions over together and starts their pipelines: their checkpoints
    /// are restored and their catch-ups run side by side, and the output streams are read back
    /// once for all of them. Each comes back with `None` when its takeover failed for now; an
    /// error only when a state cannot be opened.
    async fn start_all(
        &self,
        due: &[(u32, Epoch)],
        outputs: Option<ReadAhead>,
    ) -> anyhow::Result<Vec<(u32, Option<Running>)>> {
        let started = std::time::Instant::now();
        let count = self.opener.layout.count;
        let opened = futures::future::try_join_all(due.iter().map(|&(index, epoch)| async move {
            let partition = Partition { index, count };
            let (rocks, store, restored) = self.opener.restore_and_open(partition).await?;
            anyhow::Ok(Opened { partition, epoch, rocks, store, restored })
        }))
        .await?;
        let caught_up = take_over(self.shared, &opened, outputs).await;
        let mut runs = Vec::with_capacity(opened.len());
        for (opened, outcome) in opened.into_iter().zip(caught_up) {
            let index = opened.partition.index;
            if let Err(err) = outcome {
                warn!(
                    partition = index,
                    error = format!("{err:#}"),
                    retry_in = ?TAKEOVER_RETRY,
                    "Cannot take a partition over yet; it stays leased to this instance and is tried again."
                );
                runs.push((index, None));
                continue;
            }
            crate::telemetry::partition_started(&opened.partition, started.elapsed().as_secs_f64());
            runs.push((index, Some(self.run(opened))));
        }
        Ok(runs)
    }

    /// Starts the pipeline and the checkpoints of a partition taken over.
    fn run(&self, Opened { partition, epoch, rocks, store, restored }: Opened) -> Running {
        let fence = Fence::new(self.ownership.clone(), partition.index, epoch);
        let pipeline =
            Pipeline::start(self.shared, partition, Some(fence.clone()), Arc::clone(&store), self.ended.clone());
        let checkpointer = self.opener.checkpointer(partition, &rocks, &fence, restored);
        info!(partition = partition.index, epoch = epoch.0, "Running a partition this instance now owns.");
        Running { epoch, pipeline, store, checkpointer }
    }
}

/// A partition being taken over: its state open, restored from `restored` if that was ahead.
struct Opened {
    partition: Partition,
    epoch: Epoch,
    rocks: Arc<RocksStore>,
    store: Arc<dyn Store>,
    restored: Option<Manifest>,
}

/// Brings each partition's state up to the last input message its former owner can have read,
/// without publishing, then sets their books from the output streams, read back once for all
/// of them (docs/operations.md, "Several instances"), or only what they got since `outputs`
/// (a standby's) read them. One outcome per partition, in order.
async fn take_over(shared: &Shared, opened: &[Opened], outputs: Option<ReadAhead>) -> Vec<anyhow::Result<()>> {
    // The former owner publishes no more: the outputs are read back while the states catch up.
    let all: Vec<(Partition, &dyn Store)> = opened.iter().map(|o| (o.partition, o.store.as_ref())).collect();
    let started = std::time::Instant::now();
    let read_ahead = outputs.is_some();
    let read = async {
        match outputs {
            Some(outputs) => outputs.finish(&shared.js, &shared.config).await,
            None => crate::reconcile::read(&all, &shared.js, &shared.config, None).await,
        }
    };
    let ((caught_up, catch_up_time), (read, read_time)) =
        tokio::join!(timed(started, catch_up_all(shared, opened)), timed(started, read));
    let caught_up = match caught_up {
        Ok(outcomes) => outcomes,
        Err(err) => return opened.iter().map(|_| Err(anyhow::anyhow!("{err:#}"))).collect(),
    };
    let parts: Vec<(Partition, &dyn Store)> = opened
        .iter()
        .zip(&caught_up)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(o, _)| (o.partition, o.store.as_ref()))
        .collect();
    if parts.is_empty() {
        return caught_up;
    }
    let reconciled = match read {
        Ok(read) => crate::reconcile::apply(&parts, read, &shared.js, &shared.config).await,
        Err(err) => Err(err),
    };
    match reconciled {
        Ok(summary) => {
            let indexes: Vec<u32> = parts.iter().map(|(p, _)| p.index).collect();
            info!(
                partitions = ?indexes,
                %summary,
                catch_up_ms = catch_up_time.as_millis(),
                read_ms = read_time.as_millis(),
                read_ahead,
                total_ms = started.elapsed().as_millis(),
                "Reconciled the partitions taken over with the output streams."
            );
            caught_up
        }
        Err(err) => {
            let err = anyhow::Error::new(err).context("reading the output streams back");
            caught_up.into_iter().map(|outcome| outcome.and_then(|()| Err(anyhow::anyhow!("{err:#}")))).collect()
        }
    }
}

/// `future`'s outcome, and how long after `started` it came.
async fn timed<T>(started: std::time::Instant, future: impl std::future::Future<Output = T>) -> (T, Duration) {
    let outcome = future.await;
    (outcome, started.elapsed())
}

/// Catches each partition up, side by side, with the last input message its former owner can
/// have read ([`crate::nats::owners_reach`]), or with its last input message where that is
/// unknown; an error when the input stream cannot be read at all.
async fn catch_up_all(shared: &Shared, opened: &[Opened]) -> anyhow::Result<Vec<anyhow::Result<()>>> {
    let config = &shared.config;
    if opened.is_empty() {
        return Ok(Vec::new());
    }
    let mut stream = shared.js.get_stream(&config.input.stream).await.context("looking up the input stream")?;
    let stream_last = stream.info().await.context("reading the input stream's state")?.state.last_sequence;
    let taken: Vec<Partition> = opened.iter().map(|o| o.partition).collect();
    // Only the partitions taken over: each asks nats-server for one message.
    let lasts = futures::future::try_join_all(
        taken.iter().map(|partition| partitions::last_sequence(&stream, config, partition, stream_last)),
    )
    .await?;
    let reach = crate::nats::owners_reach(&stream, config, &taken).await.unwrap_or_else(|err| {
        warn!(
            error = format!("{err:#}"),
            "Cannot tell how far the former owners read; catching up with all the input."
        );
        Default::default()
    });
    let reach = &reach;
    Ok(futures::future::join_all(opened.iter().zip(lasts).map(|(o, partition_last)| async move {
        let index = o.partition.index;
        // What the former owner cannot have published outputs of is left to the pipeline,
        // which applies it publishing (docs/operations.md, "Several instances").
        let last = reach.get(&index).map_or(partition_last, |&reach| reach.min(partition_last));
        let position = topology::committed_position(&Overlay::new(o.rocks.as_ref()))?;
        if position < last {
            info!(
                partition = o.partition.index,
                from = position,
                to = last,
                "Catching up with a partition taken over."
            );
            catch_up(shared, o.partition, &o.store, last).await?;
        }
        Ok(())
    }))
    .await)
}

/// Runs the partition's input loop without publishing and on event time alone until it has
/// committed `last`, through a consumer of its own that is deleted afterwards.
async fn catch_up(shared: &Shared, partition: Partition, store: &Arc<dyn Store>, last: u64) -> anyhow::Result<()> {
    let mut catching_up = shared.clone_for(Tick::Never, false);
    catching_up.config.input.consumer = format!("{}-takeover", shared.config.input.consumer);
    let (ended, mut endings) = mpsc::unbounded_channel();
    let pipeline = Pipeline::start(&catching_up, partition, None, Arc::clone(store), ended);
    let outcome = loop {
        match topology::committed_position(&Overlay::new(store.as_ref())) {
            Ok(position) if position >= last => break Ok(()),
            Ok(_) => {}
            Err(err) => break Err(err.into()),
        }
        tokio::select! {
            Some((_, result)) = endings.recv() => {
                break result.and_then(|()| bail!("the catch-up of partition {} stopped early", partition.index));
            }
            _ = tokio::time::sleep(CATCH_UP_POLL) => {}
        }
    };
    pipeline.stop().await?;
    delete_consumer(shared, &partition.consumer_name(&catching_up.config)).await?;
    outcome
}

/// Deletes a consumer of the input stream that a catch-up or a standby used. One that cannot be
/// deleted is logged (the next start under that name replaces it); an error only when the input
/// stream cannot be looked up.
async fn delete_consumer(shared: &Shared, name: &str) -> anyhow::Result<()> {
    let stream = shared.js.get_stream(&shared.config.input.stream).await.context("looking up the input stream")?;
    if let Err(err) = stream.delete_consumer(name).await {
        warn!(error = %err, consumer = %name, "Cannot delete a catch-up's or standby's consumer; delete it by hand.");
    }
    Ok(())
}
