//! Wiring: open the state, connect to NATS, then run the input loop, the outputs (outbox
//! publisher, Alertmanager pusher, ERP webhook) and the HTTP API side by side until shutdown.
//! `consume_only` is the input loop without the rest, for `tally state rebuild`: it starts
//! nothing that sends outputs out of the process.

use std::sync::Arc;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tally_state::{CachedStore, RocksOptions, RocksStore, Store};
use tally_topologies::topology::Retail;
use tokio::sync::{watch, Notify};
use tracing::info;

use crate::config::Config;
use crate::health::Health;
use crate::http::{self, ApiState};
use crate::outbox::Publisher;
use crate::runner::{Runner, Tick};

pub fn open_store(config: &Config) -> anyhow::Result<Arc<RocksStore>> {
    let options = RocksOptions {
        cache_bytes: config.state.cache_bytes,
        write_buffer_bytes: config.state.write_buffer_bytes,
        sync: config.state.sync,
    };
    std::fs::create_dir_all(&config.state.path)
        .with_context(|| format!("cannot create state.path {}", config.state.path.display()))?;
    let store = RocksStore::open(&config.state.path, &options)
        .with_context(|| format!("cannot open the state in {}", config.state.path.display()))?;
    Ok(Arc::new(store))
}

/// `tally setup`: connect, create or check streams and consumer.
pub async fn setup(config: &Config) -> anyhow::Result<()> {
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    crate::nats::setup(&js, config).await?;
    crate::sku_alias::ensure_bucket(&js, config).await.map(|_| ())
}

/// `tally run`: the processor, until `shutdown` turns true.
pub async fn run(config: Config, metrics: PrometheusHandle, outer: watch::Receiver<bool>) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    run_with_store(config, store, metrics, outer).await
}

/// `run` on a store opened by the caller (the demo reads it for its summary meanwhile): the
/// HTTP API, the outputs and the input loop, side by side.
pub async fn run_with_store(
    config: Config,
    store: Arc<RocksStore>,
    metrics: PrometheusHandle,
    outer: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // An inner signal, so that a fatal error in the input loop also stops the other tasks.
    let (stop, shutdown) = watch::channel(false);
    let forward = forward_shutdown(outer, stop.clone());
    // Every reader and writer below shares the one cache, so it never disagrees with the state.
    let cached = Arc::new(CachedStore::new(store, config.state.value_cache_bytes));
    let store: Arc<dyn Store> = cached.clone();
    let health = Arc::new(Health::default());
    let api = ApiState {
        store: Arc::clone(&store),
        health: Arc::clone(&health),
        metrics,
        bearer_token: config.http.bearer_token.as_deref().map(Arc::from),
    };
    let http_task = tokio::spawn(http::serve(config.http_listen(), api, shutdown.clone()));

    let client = crate::nats::connect(&config).await?;
    let js = async_nats::jetstream::new(client.clone());
    crate::nats::setup(&js, &config).await.context("checking streams (run `tally setup` to create them)")?;
    // A rebuilt or restored state learns what was published before it publishes anything.
    crate::reconcile::if_marked(store.as_ref(), &js, &config)
        .await
        .context("reconciling this rebuilt or restored state with the output streams")?;

    tokio::spawn(crate::memory::memory_loop(cached, shutdown.clone()));
    let topology = config.topology();
    let idle_timeout = topology.idle_timeout;
    let settle: crate::telemetry::SettleOf = Arc::new(move |store: &str| topology.thresholds(store).settle);
    tokio::spawn(crate::telemetry::state_gauges_loop(
        Arc::clone(&store),
        std::time::Duration::from_secs(5),
        idle_timeout,
        settle,
        shutdown.clone(),
    ));
    let aliases = crate::sku_alias::start(&js, &config, shutdown.clone()).await?;
    let outputs = Outputs::spawn(&config, &store, &js, &health, &shutdown)?;
    let runner = runner(config, store, health, Arc::clone(&outputs.notify), client.clone(), Tick::Live, aliases);
    let result = runner.run(&js, shutdown.clone()).await;
    let _ = stop.send(true);
    forward.abort();
    // The input loop is done (shutdown or a fatal error): let the others finish too.
    outputs.join().await?;
    if http_task.is_finished() {
        http_task.await.context("HTTP server panicked")??;
    } else {
        http_task.abort();
    }
    client.flush().await.ok();
    info!("tally stopped.");
    result
}

/// The input loop alone: consume, apply, commit, ack, on event time only (no processing-time
/// tick). Nothing else runs: no outbox publisher, no Alertmanager pusher, no ERP webhook, no
/// HTTP server, so whatever the topology emits stays in the state's outbox and nothing leaves
/// the process. `tally state rebuild` runs this.
pub async fn consume_only(
    config: Config,
    store: Arc<RocksStore>,
    client: async_nats::Client,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(CachedStore::new(store, config.state.value_cache_bytes));
    let js = async_nats::jetstream::new(client.clone());
    // Nobody waits on this: there is no publisher to wake.
    let notify = Arc::new(Notify::new());
    // A rebuild counts every record under the aliases as they are now (docs/operations.md).
    let aliases = crate::sku_alias::start(&js, &config, shutdown.clone()).await?;
    let runner = runner(config, store, Arc::new(Health::default()), notify, client, Tick::Never, aliases);
    runner.run(&js, shutdown).await
}

fn runner(
    config: Config,
    store: Arc<dyn Store>,
    health: Arc<Health>,
    outbox_notify: Arc<Notify>,
    client: async_nats::Client,
    tick: Tick,
    aliases: Arc<tally_topologies::sku_alias::SharedAliases>,
) -> Runner {
    Runner {
        retail: Arc::new(Retail::with_aliases(config.topology(), aliases)),
        config,
        store,
        health,
        outbox_notify,
        // The first batch ticks at once, so a process that restarts often still posts.
        last_tick: std::sync::Mutex::new(
            std::time::Instant::now()
                .checked_sub(std::time::Duration::from_secs(60))
                .unwrap_or_else(std::time::Instant::now),
        ),
        client,
        tick,
    }
}

/// Everything that sends outputs out of the process: the outbox publisher (to NATS), the
/// Alertmanager pusher and the ERP webhook (HTTP). Only `tally run` starts them.
struct Outputs {
    /// Woken after each commit, so that new outputs leave at once.
    notify: Arc<Notify>,
    publisher: tokio::task::JoinHandle<()>,
    webhook: Option<tokio::task::JoinHandle<()>>,
}

impl Outputs {
    fn spawn(
        config: &Config,
        store: &Arc<dyn Store>,
        js: &async_nats::jetstream::Context,
        health: &Arc<Health>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Outputs> {
        if let Some(pusher) = crate::alertmanager::Pusher::from_config(Arc::clone(store), &config.alertmanager)? {
            tokio::spawn(pusher.run(shutdown.clone()));
        }
        let webhook = crate::webhook::Webhook::from_config(config, js.clone(), Arc::clone(health))?
            .map(|webhook| tokio::spawn(webhook.run(shutdown.clone())));
        let notify = Arc::new(Notify::new());
        let publisher = Publisher {
            store: Arc::clone(store),
            js: js.clone(),
            health: Arc::clone(health),
            notify: Arc::clone(&notify),
        };
        let publisher = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { publisher.run(shutdown).await }
        });
        Ok(Outputs { notify, publisher, webhook })
    }

    /// Waits for the publisher and the webhook to finish after shutdown.
    async fn join(self) -> anyhow::Result<()> {
        self.publisher.await.context("outbox publisher panicked")?;
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
