//! The loop behind a [`super::Cluster`]: every heartbeat it rewrites the member entry and renews
//! every lease held; between rounds it reads the members and makes one move at a time towards
//! the rendezvous assignment, once the members have stayed the same for `cluster.settle`; a
//! member whose entry expired (it crashed) is not waited for: its partitions are free once its
//! leases expire, and they are acquired then (docs/operations.md, "Several instances: partition
//! ownership").

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::assign::{self, Move, View};
use super::bucket::Member;
use super::lease::{Acquired, Leases, Renewal};
use super::members::{self, Live};
use super::{Epoch, Ownership, Settings};

/// How long after an entry's expiry it is looked for again: the server removes expired
/// entries on a timer of its own.
const EXPIRY_MARGIN: Duration = Duration::from_millis(50);

/// A lease this instance holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    revision: u64,
    /// Past this, the lease may have expired in the bucket (its last write was sent at
    /// `valid_until - (lease_ttl - heartbeat)`): the partition stops even without an answer.
    valid_until: Instant,
    /// Taken out of the ownership for another member; released once the caller says its
    /// pipeline stopped, renewed until then.
    handing_over: bool,
}

pub(super) struct Driver {
    pub store: kv::Store,
    pub leases: Leases,
    pub me: Member,
    pub settings: Settings,
    pub count: u32,
    pub ownership: watch::Sender<Ownership>,
    pub members: watch::Sender<BTreeMap<String, Member>>,
    pub stopped: mpsc::UnboundedReceiver<(u32, Epoch)>,
    held: BTreeMap<u32, Held>,
    /// The member ids last read.
    seen: BTreeSet<String>,
    /// Nothing moves before then: `cluster.settle` after the members last changed, except by
    /// a member's entry expiring.
    settled_at: Instant,
    /// Partitions tried and found taken, with when to try again: when their lease can have
    /// expired, or (`None`) at the next round.
    tried: BTreeMap<u32, Option<Instant>>,
    /// When the entry of another member can expire at the earliest: the members are read again
    /// then, so that a crashed member's partitions are seen free as soon as they are.
    member_expiry: Option<Instant>,
    /// The epoch at which this instance last acquired each partition.
    epochs: BTreeMap<u32, u64>,
    /// When each member last wrote its entry, as last read.
    written: BTreeMap<String, SystemTime>,
    /// Members seen gone by their entries expiring: when that entry was written, and when it
    /// was seen gone. Replicas of the bucket remove an expired entry each on its own timer, so
    /// for a moment it may still be read: an entry written no later is that one, not the member
    /// back (which would be a join, and start a settle).
    gone: BTreeMap<String, (SystemTime, Instant)>,
    /// The last step made a move: the next is decided at once.
    moving: bool,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: kv::Store,
        leases: Leases,
        me: Member,
        settings: Settings,
        count: u32,
        ownership: watch::Sender<Ownership>,
        members: watch::Sender<BTreeMap<String, Member>>,
        stopped: mpsc::UnboundedReceiver<(u32, Epoch)>,
    ) -> Driver {
        let settle = settings.settle;
        Driver {
            store,
            leases,
            me,
            count,
            ownership,
            members,
            stopped,
            held: BTreeMap::new(),
            settings,
            seen: BTreeSet::new(),
            // Joining is a change of members: nothing moves until it settled.
            settled_at: Instant::now() + settle,
            tried: BTreeMap::new(),
            member_expiry: None,
            epochs: BTreeMap::new(),
            written: BTreeMap::new(),
            gone: BTreeMap::new(),
            moving: false,
        }
    }

    /// Runs until `leave` fires (or its sender is dropped), then gives up every lease and the
    /// member entry.
    pub async fn run(mut self, mut leave: oneshot::Receiver<()>) -> anyhow::Result<()> {
        let mut next_round = Instant::now();
        loop {
            let wake = if self.moving {
                Instant::now()
            } else {
                [self.earliest_deadline(), self.next_look()].into_iter().flatten().fold(next_round, Instant::min)
            };
            tokio::select! {
                biased;
                _ = &mut leave => return self.leave().await,
                Some((partition, epoch)) = self.stopped.recv() => self.hand_over(partition, epoch).await,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= next_round {
                next_round = Instant::now() + self.settings.heartbeat;
                self.round().await;
            }
            self.stop_overdue();
            self.moving = self.step().await;
            self.publish();
        }
    }

    /// The member entry and every lease, renewed.
    async fn round(&mut self) {
        self.tried.clear();
        let heartbeat = tokio::time::timeout(self.leases.op_timeout, members::heartbeat(&self.store, &self.me)).await;
        match heartbeat {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = format!("{err:#}"), "Cannot renew this instance's member entry."),
            Err(_) => warn!(timeout = ?self.leases.op_timeout, "Renewing this instance's member entry timed out."),
        }
        let sent = Instant::now();
        let valid_until = sent + self.validity();
        let renewals = self.held.iter().map(|(&partition, held)| {
            let leases = self.leases.clone();
            let (epoch, revision) = (held.epoch, held.revision);
            async move { (partition, leases.renew(partition, epoch, revision).await) }
        });
        for (partition, renewal) in join_all(renewals).await {
            match renewal {
                Renewal::Renewed(revision) => {
                    if let Some(held) = self.held.get_mut(&partition) {
                        held.revision = revision;
                        held.valid_until = valid_until;
                    }
                }
                Renewal::Lost(why) => {
                    self.held.remove(&partition);
                    warn!(partition, reason = why, "Lost the lease of a partition; it stops now.");
                    crate::telemetry::lease_lost();
                }
            }
        }
        self.publish();
    }

    /// Stops the partitions whose renewals have not been answered for too long.
    fn stop_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u32> = self.held.iter().filter(|(_, h)| h.valid_until <= now).map(|(p, _)| *p).collect();
        for partition in overdue {
            self.held.remove(&partition);
            warn!(partition, "No renewal of the lease of a partition succeeded in time; it stops now.");
            crate::telemetry::lease_lost();
        }
    }

    /// Reads the members and makes at most one move. True when it tried one, so that the next
    /// is decided at once on fresh members.
    async fn step(&mut self) -> bool {
        let mut live = match tokio::time::timeout(self.leases.op_timeout, members::live(&self.store)).await {
            Ok(Ok(live)) => live,
            Ok(Err(err)) => {
                warn!(error = format!("{err:#}"), "Cannot read the cluster's members; no partition moves meanwhile.");
                return false;
            }
            Err(_) => {
                warn!(timeout = ?self.leases.op_timeout, "Reading the cluster's members timed out.");
                return false;
            }
        };
        self.drop_expired_entries(&mut live);
        let ids: BTreeSet<String> = live.members.keys().cloned().collect();
        crate::telemetry::cluster_members(ids.len());
        self.member_expiry = live
            .written
            .iter()
            .filter(|(id, _)| **id != self.me.instance)
            .filter_map(|(_, written)| self.expiry(*written))
            .min();
        self.members.send_if_modified(|members| std::mem::replace(members, live.members) != *members);
        if ids != self.seen {
            self.members_changed(ids).await;
        }
        self.written = live.written;
        if Instant::now() < self.settled_at {
            return false;
        }
        let now = Instant::now();
        self.tried.retain(|_, at| at.is_none_or(|at| now < at));
        let tried: BTreeSet<u32> = self.tried.keys().copied().collect();
        let held: BTreeSet<u32> = self.held.iter().filter(|(_, h)| !h.handing_over).map(|(p, _)| *p).collect();
        let view = View { me: &self.me.instance, count: self.count, members: &self.seen, held: &held, tried: &tried };
        match assign::next_move(&view) {
            None => false,
            Some(Move::Release(partition)) => {
                if let Some(held) = self.held.get_mut(&partition) {
                    held.handing_over = true;
                    let to = assign::owner(partition, &self.seen).unwrap_or_default();
                    info!(partition, to, "Handing a partition over: stopping it, then releasing its lease.");
                }
                true
            }
            Some(Move::Acquire(partition)) => {
                self.acquire(partition).await;
                true
            }
        }
    }

    /// Settles again after a change of members, unless the change is members whose entries
    /// expired: they crashed (or paused, or lost NATS), their partitions must be taken anyway,
    /// and each moment waited is a moment those partitions stand still. A member that deleted
    /// its entry stopped on purpose and may be back at once (a rolling restart): that waits.
    async fn members_changed(&mut self, ids: BTreeSet<String>) {
        let joined = ids.difference(&self.seen).next().is_some();
        let left: Vec<String> = self.seen.difference(&ids).cloned().collect();
        if !joined && self.all_expired(&left).await {
            for id in &left {
                if let Some(written) = self.written.get(id) {
                    self.gone.insert(id.clone(), (*written, Instant::now()));
                }
            }
            info!(members = ?ids, expired = ?left, "A member's entry expired; its partitions are taken as their leases expire, without settling.");
        } else {
            info!(members = ?ids, settle = ?self.settings.settle, "The cluster's members changed; partitions move once they settle.");
            self.settled_at = Instant::now() + self.settings.settle;
        }
        self.seen = ids;
    }

    /// Drops from `live` the entries of members seen gone that are those same expired entries,
    /// still read from a replica that has not removed them yet.
    fn drop_expired_entries(&mut self, live: &mut Live) {
        // After two lease TTLs every replica has removed them.
        let forget_after = self.settings.lease_ttl * 2;
        self.gone.retain(|_, (_, seen)| seen.elapsed() < forget_after);
        let (gone, written) = (&self.gone, &live.written);
        let is_expired = |id: &String| {
            let entry = written.get(id);
            gone.get(id).is_some_and(|(expired, _)| entry.is_some_and(|entry| entry <= expired))
        };
        live.members.retain(|id, _| !is_expired(id));
        live.written.retain(|id, _| live.members.contains_key(id));
    }

    /// Whether every one of `left` (at least one) left by its entry expiring; false when that
    /// cannot be read.
    async fn all_expired(&self, left: &[String]) -> bool {
        if left.is_empty() {
            return false;
        }
        let reads =
            left.iter().map(|id| tokio::time::timeout(self.leases.op_timeout, members::expired(&self.store, id)));
        join_all(reads).await.into_iter().all(|read| matches!(read, Ok(Ok(true))))
    }

    async fn acquire(&mut self, partition: u32) {
        let sent = Instant::now();
        match self.leases.acquire(partition).await {
            // A create of ours from before, never renewed, read back after this one went
            // unanswered: an epoch this instance had, not a new one. It expires unrenewed.
            Ok(Acquired::Ours(epoch)) if self.epochs.get(&partition).is_some_and(|last| epoch <= *last) => {
                self.tried.insert(partition, None);
            }
            Ok(Acquired::Ours(epoch)) => {
                self.epochs.insert(partition, epoch);
                let valid_until = sent + self.validity();
                self.held.insert(partition, Held { epoch, revision: epoch, valid_until, handing_over: false });
                info!(partition, epoch, "Acquired the lease of a partition.");
            }
            // Its owner has not released it yet, or it has not expired yet: tried again when it
            // can have expired, or next round.
            Ok(Acquired::Held(written)) => {
                self.tried.insert(partition, written.and_then(|written| self.expiry(written)));
            }
            Err(err) => {
                self.tried.insert(partition, None);
                warn!(partition, error = format!("{err:#}"), "Cannot acquire the lease of a partition.");
            }
        }
    }

    /// When an entry written at `written` (the NATS server's clock) expires, on this host's
    /// clock, a little after to let the server remove it; `None` when that is past already
    /// (the clocks differ, or the server is late): the next round looks again.
    fn expiry(&self, written: SystemTime) -> Option<Instant> {
        let left = (written + self.settings.lease_ttl).duration_since(SystemTime::now()).ok()?;
        Some(Instant::now() + left + EXPIRY_MARGIN)
    }

    /// The next time the members or a lease should be looked at before the next round.
    fn next_look(&self) -> Option<Instant> {
        self.tried.values().flatten().copied().chain(self.member_expiry).min()
    }

    /// The caller stopped `partition`'s pipeline: release the lease if it is being handed over.
    async fn hand_over(&mut self, partition: u32, epoch: Epoch) {
        let Some(held) = self.held.get(&partition).copied() else { return };
        if !held.handing_over || held.epoch != epoch.0 {
            return;
        }
        self.held.remove(&partition);
        match self.leases.release(partition, held.revision).await {
            Ok(()) => info!(partition, epoch = held.epoch, "Released the lease of a partition."),
            Err(err) => warn!(partition, error = format!("{err:#}"), "Cannot release the lease of a partition."),
        }
    }

    /// Gives up every lease and the member entry. The caller has stopped every pipeline.
    async fn leave(mut self) -> anyhow::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.publish();
        let releases = held.iter().map(|(&partition, held)| self.leases.release(partition, held.revision));
        let mut first_error = join_all(releases).await.into_iter().find_map(Result::err);
        if let Err(err) = members::remove(&self.store, &self.me.instance).await {
            first_error.get_or_insert(err);
        }
        info!(instance = self.me.instance, "Left the cluster.");
        first_error.map_or(Ok(()), Err)
    }

    /// How long after a write was sent its lease is still surely ours: `lease_ttl` less one
    /// heartbeat, for clock rate differences between this host and the NATS servers.
    fn validity(&self) -> Duration {
        self.settings.lease_ttl.saturating_sub(self.settings.heartbeat)
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.valid_until).min()
    }

    fn publish(&self) {
        let running = || self.held.iter().filter(|(_, h)| !h.handing_over);
        let partitions = running().map(|(p, h)| (*p, Epoch(h.epoch))).collect();
        let valid_until = running().map(|(p, h)| (*p, h.valid_until)).collect();
        let handing_over =
            self.held.iter().filter(|(_, h)| h.handing_over).map(|(p, h)| (*p, Epoch(h.epoch))).collect();
        let ownership = Ownership { partitions, valid_until, handing_over, moving: self.moving };
        self.ownership.send_if_modified(|current| std::mem::replace(current, ownership) != *current);
    }
}
