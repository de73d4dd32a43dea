//! Warm standby (docs/operations.md, "Warm standby"): with `cluster.standby`, this instance
//! tails, into its own `state.path`, each partition it would take over if the partition's owner
//! left (where rendezvous hashing ranks it second), applying the input without publishing and
//! on event time alone, as a catch-up does. Once the owner has left, the standby goes on until
//! this instance takes the partition over; that stops it, keeps its database open, and goes on
//! as every takeover does (catch-up, reading the outputs back), from a state that is only as far
//! behind as the standby's last commit, with no checkpoint to look at and nothing to reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tally_state::Store;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Opener;
use crate::cluster::{assign, Epoch};
use crate::partitions::Partition;
use crate::pipeline::{Ended, Pipeline, Shared};
use crate::reconcile::ReadAhead;
use crate::runner::Tick;

/// The standbys this instance runs, by partition.
pub struct Standbys {
    /// What stands for `input.consumer` in this instance's standby consumers' names:
    /// `<input.consumer>-standby-<instance id>`, then `-p<n>` per partition. No owner's
    /// consumer replaces them, and they replace none.
    consumer: String,
    running: BTreeMap<u32, Standby>,
    /// The outputs of the stores of the partitions stood by for, read ahead for their takeover.
    outputs: Option<ReadAhead>,
}

/// One partition's standby pipeline.
struct Standby {
    pipeline: Pipeline,
    ended: mpsc::UnboundedReceiver<Ended>,
    /// Its database, held open past the pipeline's stop for a takeover to go on with.
    store: Arc<dyn Store>,
}

impl Standbys {
    pub fn new(shared: &Shared, instance: &str) -> Standbys {
        // A consumer name has no dots; an instance id may have inner ones.
        let consumer = format!("{}-standby-{}", shared.config.input.consumer, instance.replace('.', "_"));
        Standbys { consumer, running: BTreeMap::new(), outputs: None }
    }

    /// Runs a standby for exactly the partitions of `wanted`: stops the others (and any whose
    /// pipeline ended by itself, to start again) and starts the missing ones. A standby that
    /// cannot start is logged and tried again at the next call.
    pub async fn follow(&mut self, shared: &Shared, opener: &Opener, wanted: &BTreeSet<u32>) {
        let ended: Vec<u32> = self.running.iter_mut().filter_map(|(p, s)| s.has_ended().then_some(*p)).collect();
        let unwanted: Vec<u32> = self.running.keys().filter(|p| !wanted.contains(p)).copied().collect();
        let stopping: Vec<u32> = ended.into_iter().chain(unwanted).collect();
        self.stop(shared, &stopping).await;
        for &index in wanted {
            if self.running.contains_key(&index) {
                continue;
            }
            let partition = Partition { index, count: opener.layout.count };
            match self.start(shared, opener, partition).await {
                Ok(standby) => {
                    info!(partition = index, "Standing by for a partition: tailing its input without publishing.");
                    self.running.insert(index, standby);
                }
                Err(err) => {
                    warn!(partition = index, error = format!("{err:#}"), "Cannot stand by for a partition yet.")
                }
            }
        }
        self.read_outputs_ahead(shared, opener.layout.count, wanted);
    }

    /// Reads the outputs of the stores of `wanted` ahead: a read ahead that misses one of them
    /// is replaced by one of them all (which reads the streams from their start); none is kept
    /// without partitions to stand by for.
    fn read_outputs_ahead(&mut self, shared: &Shared, count: u32, wanted: &BTreeSet<u32>) {
        if wanted.is_empty() {
            self.outputs = None;
            return;
        }
        if self.outputs.as_ref().is_some_and(|outputs| outputs.covers(wanted)) {
            return;
        }
        self.outputs = Some(ReadAhead::start(shared.js.clone(), shared.config.clone(), wanted.clone(), count));
    }

    /// The outputs read ahead, when they cover every one of `partitions`, for their takeover to
    /// read only what came since. The next [`Self::follow`] starts reading ahead again for
    /// the partitions still stood by for.
    pub fn take_outputs_read_ahead(&mut self, partitions: &[u32]) -> Option<ReadAhead> {
        self.outputs.take_if(|outputs| outputs.covers(partitions))
    }

    /// The partitions of `count` to stand by for, with `members` live and `owned` leased to
    /// `me`: those `me` is the runner-up of and does not own, and those stood by for already
    /// whose owner left and that are `me`'s to take (or leased already, their takeover yet to
    /// start), whose standby goes on until the takeover stops it. None that is `busy` (running
    /// here, or being handed over).
    pub fn wanted(
        &self,
        count: u32,
        members: &BTreeSet<String>,
        me: &str,
        owned: &BTreeMap<u32, Epoch>,
        busy: impl Fn(&u32) -> bool,
    ) -> BTreeSet<u32> {
        let mut wanted = assign::standing_by(count, members, me);
        wanted.retain(|p| !owned.contains_key(p));
        let mine = |p: &u32| assign::owner(*p, members) == Some(me) || owned.contains_key(p);
        wanted.extend(self.running.keys().filter(|p| mine(p)));
        wanted.retain(|p| !busy(p));
        wanted
    }

    /// Stops the standbys of the partitions `indexes` that have one, side by side, and deletes
    /// their consumers: their pipelines have committed their last batches once this returns,
    /// for takeovers to go on from. Returns their databases: while held, a takeover finds them
    /// open and goes on with them as they are.
    pub async fn stop(&mut self, shared: &Shared, indexes: &[u32]) -> Vec<Arc<dyn Store>> {
        let stopping: Vec<Standby> = indexes.iter().filter_map(|index| self.running.remove(index)).collect();
        let config = self.config_of(shared);
        futures::future::join_all(stopping.into_iter().map(|standby| standby.stop(shared, &config))).await
    }

    /// Stops every standby.
    pub async fn stop_all(&mut self, shared: &Shared) {
        let all: Vec<u32> = self.running.keys().copied().collect();
        self.stop(shared, &all).await;
    }

    /// Brings the partition's state to its latest checkpoint when that is ahead, opens it and
    /// starts tailing the input from its committed position.
    async fn start(&self, shared: &Shared, opener: &Opener, partition: Partition) -> anyhow::Result<Standby> {
        let (_, store, _) = opener.restore_and_open(partition).await?;
        let (ended, endings) = mpsc::unbounded_channel();
        let standing_by = Shared { config: self.config_of(shared), ..shared.clone_for(Tick::Never, false) };
        let pipeline = Pipeline::start(&standing_by, partition, None, Arc::clone(&store), ended);
        Ok(Standby { pipeline, ended: endings, store })
    }

    /// The configuration a standby pipeline runs with: its own consumer name.
    fn config_of(&self, shared: &Shared) -> crate::config::Config {
        let mut config = shared.config.clone();
        config.input.consumer.clone_from(&self.consumer);
        config
    }
}

impl Standby {
    /// Stops its pipeline and deletes its consumer (named after `config`); returns its database.
    async fn stop(self, shared: &Shared, config: &crate::config::Config) -> Arc<dyn Store> {
        let partition = self.pipeline.partition;
        if let Err(err) = self.pipeline.stop().await {
            warn!(
                partition = partition.index,
                error = format!("{err:#}"),
                "The standby of a partition stopped with an error."
            );
        }
        if let Err(err) = super::delete_consumer(shared, &partition.consumer_name(config)).await {
            warn!(partition = partition.index, error = format!("{err:#}"), "Cannot delete a standby's consumer.");
        }
        info!(partition = partition.index, "Stopped standing by for a partition.");
        self.store
    }

    /// Whether its input loop ended by itself (an error, logged here): it is started again.
    fn has_ended(&mut self) -> bool {
        match self.ended.try_recv() {
            Ok((partition, result)) => {
                if let Err(err) = result {
                    warn!(partition = partition.index, error = format!("{err:#}"), "A standby stopped; restarting it.");
                }
                true
            }
            Err(_) => false,
        }
    }
}
