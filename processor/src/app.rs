//! Wiring: open the state, connect to NATS, then run the input loop, the outputs (outbox
//! publisher, Alertmanager pusher, ERP webhook) and the HTTP API side by side until shutdown.
//! `consume_only` is the input loop without the rest, for `tally state rebuild`: it starts
//! nothing that sends outputs out of the process.

use std::sync::Arc;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tally_state::{CachedStore, RocksOptions, RocksShared, RocksStore, Store};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::health::Health;
use crate::http::{self, ApiState};
use crate::partitions::{Layout, Partition, UnionStore};
use crate::pipeline::{self, Shared};
use crate::runner::Tick;

pub fn open_store(config: &Config) -> anyhow::Result<Arc<RocksStore>> {
    let options = rocks_options(config);
    std::fs::create_dir_all(&config.state.path)
        .with_context(|| format!("cannot create state.path {}", config.state.path.display()))?;
    let store = RocksStore::open(&config.state.path, &options)
        .with_context(|| format!("cannot open the state in {}", config.state.path.display()))?;
    Ok(Arc::new(store))
}

fn rocks_options(config: &Config) -> RocksOptions {
    RocksOptions {
        cache_bytes: config.state.cache_bytes,
        write_buffer_bytes: config.state.write_buffer_bytes,
        sync: config.state.sync,
    }
}

/// Opens every partition's state in `config.state.path` for `count` partitions (creating what is
/// missing; refusing a state laid out for another count), in partition order. The databases share
/// one block cache and one memtable budget, so `state.cache_bytes` and `state.write_buffer_bytes`
/// bound them all together (docs/operations.md, "Partitions").
pub fn open_partitions(config: &Config, count: u32) -> anyhow::Result<Vec<Arc<RocksStore>>> {
    let layout = Layout::open(&config.state.path, count)?;
    let options = rocks_options(config);
    let shared = RocksShared::for_databases(&options, count as usize);
    let open = |partition: Partition| {
        let dir = layout.dir(partition.index);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let store = RocksStore::open_shared(&dir, &options, &shared)
            .with_context(|| format!("cannot open the state in {}", dir.display()))?;
        anyhow::Ok(Arc::new(store))
    };
    // Opening replays each database's log; side by side, a restart of many partitions takes
    // about as long as the slowest one.
    std::thread::scope(|scope| {
        let opening: Vec<_> = layout.partitions().map(|p| scope.spawn(move || open(p))).collect();
        opening
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// `tally setup`: connect, create or check streams and consumers. Returns the input stream's
/// partitions.
pub async fn setup(config: &Config) -> anyhow::Result<u32> {
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    let partitions = crate::nats::setup(&js, config).await?;
    crate::sku_alias::ensure_bucket(&js, config).await?;
    check_input_retention(&js, config).await?;
    Ok(partitions)
}

/// With checkpoints on, whether the input stream keeps what a new owner replays after the last
/// checkpoint (docs/operations.md, "Checkpoints in the Object Store"): refused when it surely
/// does not, warned about when it may not.
async fn check_input_retention(js: &async_nats::jetstream::Context, config: &Config) -> anyhow::Result<()> {
    let Some(interval) = config.cluster.checkpoint_interval().filter(|_| config.cluster.enabled) else {
        return Ok(());
    };
    let mut stream = js.get_stream(&config.input.stream).await.context("looking up the input stream")?;
    let info = stream.info().await.context("reading the input stream's configuration")?;
    let verdict = crate::snapshot::retention::judge(&info.config, interval);
    for warning in &verdict.warnings {
        tracing::warn!(stream = %config.input.stream, "{warning}.");
    }
    match verdict.refusal {
        Some(refusal) => anyhow::bail!("{refusal} (docs/operations.md, \"Checkpoints in the Object Store\")"),
        None => Ok(()),
    }
}

/// `tally run`: the processor, until `shutdown` turns true. A state on disk says how many
/// partitions it holds (and the stream must agree, which `run_with_stores` checks); without one,
/// the input stream says, set up first.
pub async fn run(config: Config, metrics: PrometheusHandle, outer: watch::Receiver<bool>) -> anyhow::Result<()> {
    if config.cluster.enabled {
        return run_clustered(config, metrics, outer).await;
    }
    let partitions = match Layout::on_disk(&config.state.path)? {
        Some(layout) => layout.count,
        None => setup(&config).await.context("setting up the streams (docs/operations.md)")?,
    };
    let stores = open_partitions(&config, partitions)?;
    run_with_stores(config, stores, metrics, outer).await
}

/// `run` on the partitions' stores opened by the caller (the demo reads them for its summary
/// meanwhile): the HTTP API, the outputs and one input loop per partition, side by side.
pub async fn run_with_stores(
    config: Config,
    stores: Vec<Arc<RocksStore>>,
    metrics: PrometheusHandle,
    outer: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // An inner signal, so that a fatal error in an input loop also stops the other tasks.
    let (stop, shutdown) = watch::channel(false);
    let forward = forward_shutdown(outer, stop.clone());
    // Every reader and writer of a partition shares its one cache, so it never disagrees with the state.
    let cached: Vec<_> =
        stores.into_iter().map(|store| Arc::new(CachedStore::new(store, config.state.value_cache_bytes))).collect();
    let parts: Vec<Arc<dyn Store>> = cached.iter().map(|c| Arc::clone(c) as Arc<dyn Store>).collect();
    let everything = UnionStore::over(parts.clone());
    let health = Arc::new(Health::default());
    let api = ApiState {
        store: Arc::clone(&everything),
        health: Arc::clone(&health),
        metrics,
        bearer_token: config.http.bearer_token.as_deref().map(Arc::from),
        cluster: None,
    };
    let http_task = tokio::spawn(http::serve(config.http_listen(), api, shutdown.clone()));

    let client = crate::nats::connect(&config).await?;
    let js = async_nats::jetstream::new(client.clone());
    let partitions =
        crate::nats::setup(&js, &config).await.context("checking streams (run `tally setup` to create them)")?;
    let layout = Layout::open(&config.state.path, partitions)?;
    anyhow::ensure!(
        parts.len() == layout.count as usize,
        "{} partition stores for {partitions} partitions",
        parts.len()
    );
    // A rebuilt or restored state learns what was published before it publishes anything.
    crate::reconcile::if_marked(&partitioned(&layout, &parts), &js, &config)
        .await
        .context("reconciling this rebuilt or restored state with the output streams")?;

    tokio::spawn(crate::memory::memory_loop(cached, shutdown.clone()));
    spawn_state_gauges(&config, &everything, &shutdown);
    let outputs = Outputs::spawn(&config, &everything, &js, &health, &shutdown)?;
    let mut shared = Shared::new(&config, &js, &client, layout.count);
    shared.health = Arc::clone(&health);
    shared.aliases = crate::sku_alias::start(&js, &config, shutdown.clone()).await?;
    let result = pipeline::run_all(&shared, layout.partitions().zip(parts).collect(), shutdown.clone()).await;
    let _ = stop.send(true);
    forward.abort();
    wind_down(outputs, http_task, &client).await?;
    result
}

/// Recounts the state gauges (drift keys, KPIs, overdue final postings) every 5 seconds.
fn spawn_state_gauges(config: &Config, everything: &Arc<dyn Store>, shutdown: &watch::Receiver<bool>) {
    let topology = config.topology();
    let idle_timeout = topology.idle_timeout;
    let settle: crate::telemetry::SettleOf = Arc::new(move |store: &str| topology.thresholds(store).settle);
    tokio::spawn(crate::telemetry::state_gauges_loop(
        Arc::clone(everything),
        std::time::Duration::from_secs(5),
        idle_timeout,
        settle,
        shutdown.clone(),
    ));
}

/// `tally run` as one of several instances sharing the partitions (docs/operations.md, "Several
/// instances"): the HTTP API (answering for the partitions this instance runs, and sending
/// requests for other stores to their owner), the outputs, and the partitions it owns.
async fn run_clustered(config: Config, metrics: PrometheusHandle, outer: watch::Receiver<bool>) -> anyhow::Result<()> {
    // Checked with the configuration: no ERP webhook with several instances (config.rs).
    let settings = crate::cluster::Settings::from_config(&config.cluster)?;
    let (stop, shutdown) = watch::channel(false);
    let forward = forward_shutdown(outer, stop.clone());
    let union = Arc::new(UnionStore::new(Vec::new()));
    let everything: Arc<dyn Store> = Arc::clone(&union) as Arc<dyn Store>;
    let health = Arc::new(Health::default());
    // An instance that runs no partition yet (they settle, or the others hold them all) is
    // well: ready, so that a rolling start does not wait on partitions it may never get; each
    // partition's input loop reports its consumer as it sets it up.
    health.set(crate::health::Component::Consumer, Ok(()));
    let client = crate::nats::connect(&config).await?;
    let js = async_nats::jetstream::new(client.clone());
    let partitions = setup(&config).await.context("checking streams")?;
    let layout = Layout::open(&config.state.path, partitions)?;
    // Before joining: a member is handed partitions at once, and must be able to restore them.
    let checkpoints = match config.cluster.checkpoint_interval() {
        Some(interval) => {
            let bucket = &config.cluster.checkpoint_bucket;
            let snapshots = crate::snapshot::Snapshots::open(&js, bucket, config.cluster.replicas).await?;
            Some(crate::snapshot::Checkpoints { snapshots, interval })
        }
        None => None,
    };
    let cluster = crate::cluster::Cluster::join(&js, settings, partitions).await?;
    let view = http::ClusterView {
        instance: cluster.instance().to_string(),
        partitions,
        ownership: cluster.ownership(),
        members: cluster.members(),
        serving: Arc::clone(&union),
        client: reqwest::Client::new(),
    };
    let api = ApiState {
        store: Arc::clone(&everything),
        health: Arc::clone(&health),
        metrics,
        bearer_token: config.http.bearer_token.as_deref().map(Arc::from),
        cluster: Some(view),
    };
    let http_task = tokio::spawn(http::serve(config.http_listen(), api, shutdown.clone()));
    spawn_state_gauges(&config, &everything, &shutdown);
    let outputs = Outputs::spawn(&config, &everything, &js, &health, &shutdown)?;
    let mut shared = Shared::new(&config, &js, &client, layout.count);
    shared.health = Arc::clone(&health);
    shared.aliases = crate::sku_alias::start(&js, &config, shutdown.clone()).await?;
    let options = rocks_options(&config);
    let opener = crate::owned::Opener {
        checkpoints,
        // Sized as if this instance ran every partition: it may, when the others are gone.
        shared: RocksShared::for_databases(&options, layout.count as usize),
        options,
        layout,
        value_cache_bytes: config.state.value_cache_bytes,
        open: Default::default(),
    };
    let result = crate::owned::run(&shared, &opener, &union, &cluster, shutdown.clone()).await;
    let left = cluster.leave().await;
    let _ = stop.send(true);
    forward.abort();
    wind_down(outputs, http_task, &client).await?;
    result.and(left)
}

/// After the input loops are done (shutdown or a fatal error): lets the outputs finish, stops
/// the HTTP server (reporting its panic or error, if it ended by one) and flushes the client.
async fn wind_down(
    outputs: Outputs,
    http_task: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: &async_nats::Client,
) -> anyhow::Result<()> {
    outputs.join().await?;
    if http_task.is_finished() {
        http_task.await.context("HTTP server panicked")??;
    } else {
        http_task.abort();
    }
    client.flush().await.ok();
    info!("tally stopped.");
    Ok(())
}

/// Each partition with its store.
fn partitioned<'a>(layout: &Layout, parts: &'a [Arc<dyn Store>]) -> Vec<(Partition, &'a dyn Store)> {
    layout.partitions().zip(parts.iter().map(|store| store.as_ref())).collect()
}

/// The input loops alone: consume, apply, commit, ack, on event time only (no processing-time
/// tick). Nothing else runs: no outbox publisher, no Alertmanager pusher, no ERP webhook, no
/// HTTP server, so whatever the topology emits stays in the states' outboxes and nothing leaves
/// the process. `tally state rebuild` runs this, over each partition of `stores` (every one of
/// the stream, or the one `--partition` names) with its store.
pub async fn consume_only(
    config: Config,
    stores: Vec<(Partition, Arc<RocksStore>)>,
    client: async_nats::Client,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let parts: Vec<(Partition, Arc<dyn Store>)> = stores
        .into_iter()
        .map(|(partition, store)| {
            (partition, Arc::new(CachedStore::new(store, config.state.value_cache_bytes)) as Arc<dyn Store>)
        })
        .collect();
    let js = async_nats::jetstream::new(client.clone());
    // Each partition run here has its own working set, bounded to its share of the memory.
    let mut shared = Shared::new(&config, &js, &client, parts.len() as u32);
    shared.tick = Tick::Never;
    shared.publish = false;
    // A rebuild counts every record under the aliases as they are now (docs/operations.md).
    shared.aliases = crate::sku_alias::start(&js, &config, shutdown.clone()).await?;
    pipeline::run_all(&shared, parts, shutdown).await
}

/// What sends outputs out of the process besides the partitions' outbox publishers (which run
/// in their pipelines): the Alertmanager pusher and the ERP webhook (HTTP). Only `tally run`
/// starts them.
struct Outputs {
    webhook: Option<tokio::task::JoinHandle<()>>,
}

impl Outputs {
    fn spawn(
        config: &Config,
        everything: &Arc<dyn Store>,
        js: &async_nats::jetstream::Context,
        health: &Arc<Health>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Outputs> {
        if let Some(pusher) = crate::alertmanager::Pusher::from_config(Arc::clone(everything), &config.alertmanager)? {
            tokio::spawn(pusher.run(shutdown.clone()));
        }
        let webhook = crate::webhook::Webhook::from_config(config, js.clone(), Arc::clone(health))?
            .map(|webhook| tokio::spawn(webhook.run(shutdown.clone())));
        Ok(Outputs { webhook })
    }

    /// Waits for the publisher and the webhook to finish after shutdown.
    async fn join(self) -> anyhow::Result<()> {
        if let Some(task) = self.webhook {
            task.await.context("ERP webhook panicked")?;
        }
        Ok(())
    }
}

/// Turns `stop` true when `outer` does.
fn forward_shutdown(mut outer: watch::Receiver<bool>, stop: watch::Sender<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if outer.wait_for(|s| *s).await.is_ok() {
            let _ = stop.send(true);
        }
    })
}

/// A watch channel that turns true on ctrl-c or SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("Shutdown requested; finishing the batch in flight.");
        let _ = sender.send(true);
    });
    receiver
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
