//! Wiring: open the state, connect to NATS, then run the input loop, the outbox publisher and
//! the HTTP API side by side until shutdown.

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
use crate::runner::Runner;

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
    crate::nats::setup(&js, config).await
}

/// `tally run`: the processor, until `shutdown` turns true.
pub async fn run(config: Config, metrics: PrometheusHandle, outer: watch::Receiver<bool>) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    run_with_store(config, store, metrics, outer).await
}

/// `run` on a store opened by the caller (the demo reads it for its summary meanwhile).
pub async fn run_with_store(
    config: Config,
    store: Arc<RocksStore>,
    metrics: PrometheusHandle,
    outer: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // An inner signal, so that a fatal error in the input loop also stops the other tasks.
    let (stop, shutdown) = watch::channel(false);
    let forward = {
        let stop = stop.clone();
        let mut outer = outer;
        tokio::spawn(async move {
            if outer.wait_for(|s| *s).await.is_ok() {
                let _ = stop.send(true);
            }
        })
    };
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

    tokio::spawn(crate::memory::memory_loop(cached, shutdown.clone()));
    let idle_timeout = config.topology().idle_timeout;
    tokio::spawn(crate::telemetry::state_gauges_loop(Arc::clone(&store), std::time::Duration::from_secs(5), idle_timeout, shutdown.clone()));
    if let Some(pusher) = crate::alertmanager::Pusher::from_config(Arc::clone(&store), &config.alertmanager)? {
        tokio::spawn(pusher.run(shutdown.clone()));
    }
    let webhook_task = crate::webhook::Webhook::from_config(&config, js.clone(), Arc::clone(&health))?
        .map(|webhook| tokio::spawn(webhook.run(shutdown.clone())));
    let notify = Arc::new(Notify::new());
    let publisher = Publisher { store: Arc::clone(&store), js: js.clone(), health: Arc::clone(&health), notify: Arc::clone(&notify) };
    let publisher_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { publisher.run(shutdown).await }
    });
    let runner = Runner {
        retail: Arc::new(Retail::new(config.topology())),
        config,
        store,
        health,
        outbox_notify: notify,
        // The first batch ticks at once, so a process that restarts often still posts.
        last_tick: std::sync::Mutex::new(
            std::time::Instant::now().checked_sub(std::time::Duration::from_secs(60)).unwrap_or_else(std::time::Instant::now),
        ),
        client: client.clone(),
    };
    let result = runner.run(&js, shutdown.clone()).await;
    let _ = stop.send(true);
    forward.abort();
    // The input loop is done (shutdown or a fatal error): let the others finish too.
    publisher_task.await.context("outbox publisher panicked")?;
    if let Some(task) = webhook_task {
        task.await.context("ERP webhook panicked")?;
    }
    if http_task.is_finished() {
        http_task.await.context("HTTP server panicked")??;
    } else {
        http_task.abort();
    }
    client.flush().await.ok();
    info!("tally stopped.");
    result
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
