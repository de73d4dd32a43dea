//! Several tally instances sharing the input's partitions (docs/operations.md, "Several
//! instances: partition ownership"): membership by heartbeats and partition ownership by leases,
//! both in one NATS KV bucket, with the partitions spread by rendezvous hashing.
//!
//! The caller [`Cluster::join`]s, then follows [`Cluster::ownership`]: it runs exactly the
//! partitions listed there, each under its epoch. A partition that disappears from it is stopped
//! at once; one that was handed over (rather than lost) stays leased until the caller says its
//! pipeline stopped ([`Cluster::stopped`]), so that the next owner never starts while this one
//! still runs. [`Cluster::leave`], after every pipeline stopped, frees everything for the others
//! at once; dropping a `Cluster` without leaving is a crash: its leases expire after the TTL.
//!
//! - `assign`: rendezvous hashing and the next move (pure).
//! - `bucket`: the bucket, its keys and values.
//! - `members`: heartbeats and the live members.
//! - `lease`: acquire, renew and release one lease, resolving ambiguous writes by reading back.
//! - `driver`: the loop that renews and moves.

pub mod assign;
mod bucket;
mod driver;
mod lease;
mod members;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

pub use bucket::{lease_key, member_key, LeaseValue, Member};

use crate::config::{is_valid_instance_id, ClusterConfig};

/// The revision of a partition's lease when it was acquired: higher for every later owner, so a
/// pipeline can tell its own writes from a former owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// The partitions this instance should run, each with its epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub partitions: BTreeMap<u32, Epoch>,
    /// Until when each lease is surely still this instance's: its last successful write's send
    /// time plus `lease_ttl` less a heartbeat. Renewed every heartbeat.
    pub valid_until: BTreeMap<u32, tokio::time::Instant>,
    /// Leases still held but being handed over to another member: each is released once this
    /// instance reports its pipeline stopped ([`Cluster::stopped`]), which it also does for
    /// one it never got to start.
    pub handing_over: BTreeMap<u32, Epoch>,
    /// The cluster loop is making moves one right after another (acquiring partitions that
    /// came free): more may be acquired in a moment. Taking partitions over waits until it is
    /// false, so that those acquired together are taken over together.
    pub moving: bool,
}

/// Whether this instance still holds a partition's lease under one epoch, asked by that
/// partition's pipeline before it does something the world sees (publishing its outbox), so
/// that an instance paused past its lease does not publish after the next owner started, even
/// before its own cluster loop has noticed (docs/operations.md, "Several instances").
#[derive(Debug, Clone)]
pub struct Fence {
    ownership: watch::Receiver<Ownership>,
    partition: u32,
    epoch: Epoch,
}

impl Fence {
    pub fn new(ownership: watch::Receiver<Ownership>, partition: u32, epoch: Epoch) -> Fence {
        Fence { ownership, partition, epoch }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// True while the partition is owned under this epoch and its lease has not run out.
    pub fn holds(&self) -> bool {
        let ownership = self.ownership.borrow();
        ownership.partitions.get(&self.partition) == Some(&self.epoch)
            && ownership.valid_until.get(&self.partition).is_some_and(|until| tokio::time::Instant::now() < *until)
    }
}

/// `[cluster]` resolved for one instance: durations parsed, the instance id chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub instance: String,
    pub advertise: String,
    pub bucket: String,
    pub replicas: usize,
    pub lease_ttl: Duration,
    pub heartbeat: Duration,
    pub settle: Duration,
}

impl Settings {
    /// From a validated `[cluster]`: the instance id defaults to the host name.
    pub fn from_config(config: &ClusterConfig) -> anyhow::Result<Settings> {
        let instance = match &config.instance_id {
            Some(id) => id.clone(),
            None => host_name()?,
        };
        let advertise = config.advertise.as_deref().context(
            "cluster.advertise is not set: the host:port at which the other instances reach this one's HTTP API",
        )?;
        // `{hostname}` lets one configuration serve every pod of a StatefulSet.
        let advertise = if advertise.contains(HOSTNAME) {
            advertise.replace(HOSTNAME, &host_name()?)
        } else {
            advertise.to_string()
        };
        Ok(Settings {
            instance,
            advertise,
            bucket: config.bucket.clone(),
            replicas: config.replicas,
            lease_ttl: config.lease_ttl(),
            heartbeat: config.heartbeat(),
            settle: config.settle(),
        })
    }

    /// How long one KV request may take before it counts as unanswered: half a heartbeat, so that
    /// a renewal and the read that resolves it end before the lease could expire.
    fn op_timeout(&self) -> Duration {
        self.heartbeat / 2
    }
}

/// Where the caller says that a partition's pipeline has stopped.
#[derive(Debug, Clone)]
pub struct StopReports {
    sender: mpsc::UnboundedSender<(u32, Epoch)>,
}

impl StopReports {
    /// The pipeline of `partition`, which left the ownership at `epoch`, has stopped: a
    /// partition handed over to another member is released now (until then its lease is
    /// renewed, so the next owner waits). For a lost partition it changes nothing.
    pub fn stopped(&self, partition: u32, epoch: Epoch) {
        // The loop has ended only after `leave` or a drop, and then holds nothing to release.
        let _ = self.sender.send((partition, epoch));
    }
}

/// This instance's membership, running in the background until [`Cluster::leave`].
pub struct Cluster {
    instance: String,
    ownership: watch::Receiver<Ownership>,
    members: watch::Receiver<BTreeMap<String, Member>>,
    stopped: mpsc::UnboundedSender<(u32, Epoch)>,
    leave: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Cluster {
    /// Joins the cluster of `settings.bucket` to share `partitions` partitions: creates the
    /// bucket if absent, writes the member entry, and starts renewing and moving. Nothing is
    /// owned until the members have settled. Refused while another live instance has the same
    /// id (after waiting out the entry of this instance's previous run).
    pub async fn join(js: &jetstream::Context, settings: Settings, partitions: u32) -> anyhow::Result<Cluster> {
        let store = bucket::open(js, &settings.bucket, settings.lease_ttl, settings.replicas).await?;
        let me = Member {
            instance: settings.instance.clone(),
            advertise: settings.advertise.clone(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            session: session(),
        };
        // A bucket another instance created a moment ago may not take reads and writes on every
        // server yet: both are retried for a while.
        let deadline = tokio::time::Instant::now() + JOIN_RETRY;
        retrying(deadline, settings.heartbeat, || wait_out_namesake(&store, &settings)).await?;
        retrying(deadline, settings.heartbeat, || members::heartbeat(&store, &me)).await?;
        info!(instance = me.instance, bucket = settings.bucket, partitions, "Joined the cluster.");
        let leases = lease::Leases {
            store: store.clone(),
            instance: me.instance.clone(),
            session: me.session.clone(),
            op_timeout: settings.op_timeout(),
        };
        let (ownership_tx, ownership) = watch::channel(Ownership::default());
        let (members_tx, members) = watch::channel(BTreeMap::new());
        let (stopped, stopped_rx) = mpsc::unbounded_channel();
        let (leave, leave_rx) = oneshot::channel();
        let instance = settings.instance.clone();
        let driver = driver::Driver::new(store, leases, me, settings, partitions, ownership_tx, members_tx, stopped_rx);
        let task = tokio::spawn(driver.run(leave_rx));
        Ok(Cluster { instance, ownership, members, stopped, leave: Some(leave), task: Some(task) })
    }

    /// The partitions to run. When it closes (the background task ended), run none.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.clone()
    }

    /// The live members by instance id, with where to reach them.
    pub fn members(&self) -> watch::Receiver<BTreeMap<String, Member>> {
        self.members.clone()
    }

    /// This instance's id among the members.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Says that the pipeline of `partition`, which left the ownership at `epoch`, has stopped:
    /// see [`StopReports::stopped`].
    pub fn stopped(&self, partition: u32, epoch: Epoch) {
        self.stop_reports().stopped(partition, epoch);
    }

    /// A handle for the task that follows the ownership and stops pipelines, to say when one
    /// has stopped.
    pub fn stop_reports(&self) -> StopReports {
        StopReports { sender: self.stopped.clone() }
    }

    /// Leaves: releases every lease and deletes the member entry, so the others take over after
    /// their settling delay instead of the lease TTL. Call it once every pipeline has stopped.
    pub async fn leave(mut self) -> anyhow::Result<()> {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("the cluster loop panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for Cluster {
    /// Without [`Cluster::leave`]: stop renewing, as a crash would; the leases expire by
    /// themselves.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Stands for the host name in `cluster.advertise`.
const HOSTNAME: &str = "{hostname}";

/// How long joining retries a bucket that does not answer yet.
const JOIN_RETRY: Duration = Duration::from_secs(30);

/// `attempt` until it succeeds, every `pause`; its last error after `deadline`.
async fn retrying<F, Fut>(deadline: tokio::time::Instant, pause: Duration, mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err.context(format!(
                    "the cluster bucket did not answer for {JOIN_RETRY:?}; check that NATS JetStream is up (`nats \
                     server report jetstream`)"
                )));
            }
            Err(err) => {
                tracing::debug!(error = format!("{err:#}"), "The cluster bucket does not answer yet; retrying.")
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Waits for a live entry under this instance's id, left by another session, to expire: a
/// restarted instance's previous run stops renewing it, another instance with the same id does
/// not, and is refused.
async fn wait_out_namesake(store: &async_nats::jetstream::kv::Store, settings: &Settings) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + settings.lease_ttl + settings.heartbeat;
    loop {
        let live = members::live(store).await?.members;
        let Some(other) = live.get(&settings.instance) else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "another instance is live under cluster.instance_id {:?} (advertising {}, started {}). Give each \
                 instance its own cluster.instance_id (docs/operations.md, \"Several instances: partition ownership\")",
                settings.instance,
                other.advertise,
                other.started_at
            );
        }
        tokio::time::sleep(settings.heartbeat).await;
    }
}

/// This run's session: the process id and the time, unique per start of an instance.
fn session() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// The host name, as the default instance id.
fn host_name() -> anyhow::Result<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        bail!("cannot read the host name ({}); set cluster.instance_id", std::io::Error::last_os_error());
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    if !is_valid_instance_id(&name) {
        bail!("the host name {name:?} cannot be an instance id; set cluster.instance_id (letters, digits, _ - .)");
    }
    Ok(name)
}
