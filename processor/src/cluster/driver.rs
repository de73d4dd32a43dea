//! The loop behind a [`super::Cluster`]: every heartbeat it rewrites the member entry and renews
//! every lease held; between rounds it reads the members and makes one move at a time towards
//! the rendezvous assignment, once the members have stayed the same for `cluster.settle`
//! (docs/operations.md, "Several instances: partition ownership").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::assign::{self, Move, View};
use super::bucket::Member;
use super::lease::{Leases, Renewal};
use super::{members, Epoch, Ownership, Settings};

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
    /// The member ids last read, and since when they are so.
    seen: BTreeSet<String>,
    changed_at: Instant,
    tried: BTreeSet<u32>,
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
        Driver {
            store,
            leases,
            me,
            settings,
            count,
            ownership,
            members,
            stopped,
            held: BTreeMap::new(),
            seen: BTreeSet::new(),
            // Joining is a change of members: nothing moves until it settled.
            changed_at: Instant::now(),
            tried: BTreeSet::new(),
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
                self.earliest_deadline().map_or(next_round, |d| d.min(next_round))
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
        let live = match tokio::time::timeout(self.leases.op_timeout, members::live(&self.store)).await {
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
        let ids: BTreeSet<String> = live.keys().cloned().collect();
        crate::telemetry::cluster_members(ids.len());
        self.members.send_if_modified(|members| std::mem::replace(members, live) != *members);
        if ids != self.seen {
            info!(members = ?ids, settle = ?self.settings.settle, "The cluster's members changed; partitions move once they settle.");
            self.seen = ids;
            self.changed_at = Instant::now();
        }
        if self.changed_at.elapsed() < self.settings.settle {
            return false;
        }
        let held: BTreeSet<u32> = self.held.iter().filter(|(_, h)| !h.handing_over).map(|(p, _)| *p).collect();
        let view =
            View { me: &self.me.instance, count: self.count, members: &self.seen, held: &held, tried: &self.tried };
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

    async fn acquire(&mut self, partition: u32) {
        self.tried.insert(partition);
        let sent = Instant::now();
        match self.leases.acquire(partition).await {
            Ok(Some(epoch)) => {
                let valid_until = sent + self.validity();
                self.held.insert(partition, Held { epoch, revision: epoch, valid_until, handing_over: false });
                info!(partition, epoch, "Acquired the lease of a partition.");
            }
            // Its owner has not released it yet, or it has not expired yet: tried again next round.
            Ok(None) => {}
            Err(err) => warn!(partition, error = format!("{err:#}"), "Cannot acquire the lease of a partition."),
        }
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
