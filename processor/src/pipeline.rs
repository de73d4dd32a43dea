//! One partition's work in a running tally: its input loop and, in `tally run`, its outbox
//! publisher, started and stopped together (docs/operations.md, "Partitions"). `tally run`
//! starts one per partition; a rebuild starts them without publishers.

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use tally_state::Store;
use tally_topologies::sku_alias::SharedAliases;
use tally_topologies::topology::{Retail, TopologyConfig};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::Fence;
use crate::config::Config;
use crate::health::Health;
use crate::outbox::Publisher;
use crate::partitions::Partition;
use crate::runner::{Runner, Tick};

/// What every partition's pipeline shares.
pub struct Shared {
    pub config: Config,
    pub topology: TopologyConfig,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub health: Arc<Health>,
    pub tick: Tick,
    pub aliases: Arc<SharedAliases>,
    /// `input.threads` permits: at most that many partitions apply a batch at once.
    pub apply_slots: Arc<Semaphore>,
    /// The partitions of the input stream: each working set is bounded to its share.
    pub partitions: u32,
    /// Whether pipelines publish their outboxes (`tally run`) or leave them (a rebuild).
    pub publish: bool,
}

impl Shared {
    pub fn new(config: &Config, js: &jetstream::Context, client: &async_nats::Client, partitions: u32) -> Shared {
        Shared {
            config: config.clone(),
            topology: config.topology(),
            js: js.clone(),
            client: client.clone(),
            health: Arc::new(Health::default()),
            tick: Tick::Live,
            aliases: Arc::default(),
            apply_slots: Arc::new(Semaphore::new(config.apply_threads())),
            partitions,
            publish: true,
        }
    }
}

impl Shared {
    /// The same, with another tick and publishing: what a catch-up or a rebuild runs with.
    pub fn clone_for(&self, tick: Tick, publish: bool) -> Shared {
        Shared {
            config: self.config.clone(),
            topology: self.topology.clone(),
            js: self.js.clone(),
            client: self.client.clone(),
            health: Arc::clone(&self.health),
            tick,
            aliases: Arc::clone(&self.aliases),
            apply_slots: Arc::clone(&self.apply_slots),
            partitions: self.partitions,
            publish,
        }
    }
}

/// How a pipeline's input loop ended: its partition, and the loop's result.
pub type Ended = (Partition, anyhow::Result<()>);

/// A partition's input loop and outbox publisher, running.
pub struct Pipeline {
    pub partition: Partition,
    stop: watch::Sender<bool>,
    /// Stops the publisher, after the input loop: it sends what the last batch put in the
    /// outbox first.
    stop_publisher: watch::Sender<bool>,
    input: JoinHandle<()>,
    publisher: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the partition's input loop over `store` (and its publisher, when `shared` says so).
    /// When the input loop ends, by a stop or an error, its result goes to `ended`. Under a lease
    /// (several instances), `lease` names the consumer with its epoch and fences the publisher.
    pub fn start(
        shared: &Shared,
        partition: Partition,
        lease: Option<Fence>,
        store: Arc<dyn Store>,
        ended: mpsc::UnboundedSender<Ended>,
    ) -> Pipeline {
        let (stop, stopped) = watch::channel(false);
        let (stop_publisher, publisher_stopped) = watch::channel(false);
        let notify = Arc::new(Notify::new());
        let runner = Runner {
            retail: Arc::new(Retail::with_share(
                shared.topology.clone(),
                Arc::clone(&shared.aliases),
                shared.partitions as usize,
            )),
            config: shared.config.clone(),
            store: Arc::clone(&store),
            health: Arc::clone(&shared.health),
            outbox_notify: Arc::clone(&notify),
            // The first batch ticks at once, so a process that restarts often still posts.
            last_tick: std::sync::Mutex::new(
                std::time::Instant::now()
                    .checked_sub(std::time::Duration::from_secs(60))
                    .unwrap_or_else(std::time::Instant::now),
            ),
            client: shared.client.clone(),
            tick: shared.tick,
            partition,
            apply_slots: Arc::clone(&shared.apply_slots),
            epoch: lease.as_ref().map(|fence| fence.epoch().0),
        };
        let js = shared.js.clone();
        let input = tokio::spawn(async move {
            let result = runner.run(&js, stopped).await;
            // Nobody listening means the whole program is stopping: nothing left to tell.
            let _ = ended.send((partition, result));
        });
        let publisher = shared.publish.then(|| {
            let health = Arc::clone(&shared.health);
            let publisher = Publisher { store, js: shared.js.clone(), health, notify, partition, fence: lease };
            tokio::spawn(async move { publisher.run(publisher_stopped).await })
        });
        Pipeline { partition, stop, stop_publisher, input, publisher }
    }

    /// Stops the input loop (its batch in flight is committed and acked first), then the
    /// publisher, which first sends what is left in the outbox while it can (so that a partition
    /// handed over to another instance leaves nothing unsent behind); what it cannot send goes
    /// out on the partition's next start.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let index = self.partition.index;
        self.input.await.with_context(|| format!("the input loop of partition {index} panicked"))?;
        let _ = self.stop_publisher.send(true);
        if let Some(publisher) = self.publisher {
            publisher.await.with_context(|| format!("the outbox publisher of partition {index} panicked"))?;
        }
        Ok(())
    }
}

/// Runs a pipeline for each of `parts` until `shutdown`, or until one input loop fails: then
/// every pipeline is stopped and the first error returned.
pub async fn run_all(
    shared: &Shared,
    parts: Vec<(Partition, Arc<dyn Store>)>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (ended, mut endings) = mpsc::unbounded_channel();
    let pipelines: Vec<Pipeline> = parts
        .into_iter()
        .map(|(partition, store)| Pipeline::start(shared, partition, None, store, ended.clone()))
        .collect();
    drop(ended);
    let mut first_error = None;
    while !*shutdown.borrow() {
        tokio::select! {
            ending = endings.recv() => match ending {
                Some((partition, Err(err))) => {
                    first_error = Some(err.context(format!("partition {}", partition.index)));
                    break;
                }
                // Ended without an error: it saw the shutdown too.
                Some((_, Ok(()))) => {}
                None => break,
            },
            _ = shutdown.changed() => {}
        }
    }
    for pipeline in pipelines {
        let stopped = pipeline.stop().await;
        if let Err(err) = stopped {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}
