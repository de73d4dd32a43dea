//! SKU aliases from outside the topology (docs/wire-format.md, "SKU aliases"): the NATS KV
//! bucket that holds them, the watch that keeps the topology's table current, and the
//! `tally sku-alias` command that edits them.
//!
//! The bucket is the one source of truth; tally keeps no copy in its state. A record is counted
//! under the table as it stood when its batch started, so an alias changes what later records
//! count, never what was counted (docs/operations.md, "Re-keying a day after new aliases").
//!
//! - `cli`: `tally sku-alias put|rm|list|import`.
//! - `csv`: the import file, parsed and checked line by line.

mod cli;
mod csv;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::{FutureExt as _, StreamExt as _};
use tally_topologies::sku_alias::{parse_alias_name, SharedAliases, SkuAliases};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::telemetry;

pub use cli::{run, SkuAliasArgs};

/// Changes applied together before the topology gets a new snapshot: a bulk import reaches the
/// watch as a burst, and the table is copied once per burst, not once per alias.
const BURST_MAX: usize = 10_000;
/// How often a bucket that could not be read at start is tried again.
const RETRY_OPEN: Duration = Duration::from_secs(30);
/// How long reading the table waits for the bucket's next entry.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// Creates the bucket when absent (`tally setup`); an existing one is used as it is.
pub async fn ensure_bucket(js: &jetstream::Context, config: &Config) -> anyhow::Result<kv::Store> {
    let bucket = &config.sku.aliases_bucket;
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(store),
        Err(err) if err.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            let store = js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "tally SKU aliases: <system>/<code> -> canonical sku".into(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating the SKU alias bucket {bucket}"))?;
            info!(bucket = %bucket, "Created the SKU alias bucket.");
            Ok(store)
        }
        Err(err) => Err(err).with_context(|| format!("looking up the SKU alias bucket {bucket}")),
    }
}

/// Reads the whole table, then keeps it current in the background until `shutdown`: the
/// topology starts on the complete table, never on part of it.
pub async fn start(
    js: &jetstream::Context,
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<SharedAliases>> {
    let systems = config.sku.systems();
    for system in [&systems.pos, &systems.inventory, &systems.orders]
        .into_iter()
        .chain(systems.canonical.iter())
        .chain(&systems.named)
    {
        metrics::counter!(telemetry::UNMAPPED_SKUS, "system" => system.clone()).absolute(0);
    }
    metrics::counter!(telemetry::UNMAPPED_SKUS, "system" => "other").absolute(0);
    let bucket = &config.sku.aliases_bucket;
    let shared = Arc::new(SharedAliases::default());
    metrics::gauge!(telemetry::SKU_ALIASES).set(0.0);
    match open(js, config).await {
        Ok((store, table, watch)) => {
            info!(bucket = %bucket, aliases = table.len(), "Loaded the SKU aliases.");
            publish(&shared, &table);
            tokio::spawn(keep_current(store, table, watch, Arc::clone(&shared), shutdown));
        }
        // A deployment whose NATS user may not use KV (or a server without it) kept working
        // before aliases existed: it still does, without aliases, and tries again meanwhile.
        Err(err) => {
            warn!(bucket = %bucket, error = %format!("{err:#}"), "Cannot read the SKU alias bucket; counting every code as itself until it can be read.");
            tokio::spawn(open_later(js.clone(), config.clone(), Arc::clone(&shared), shutdown));
        }
    }
    Ok(shared)
}

/// The bucket (created when absent) and the table it holds, with the watch that goes on.
async fn open(js: &jetstream::Context, config: &Config) -> anyhow::Result<(kv::Store, SkuAliases, kv::Watch)> {
    let store = ensure_bucket(js, config).await?;
    let (table, watch) = load(&store).await?;
    Ok((store, table, watch))
}

/// Tries to read the bucket every 30 seconds until it can, then keeps the table current.
async fn open_later(
    js: jetstream::Context,
    config: Config,
    shared: Arc<SharedAliases>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETRY_OPEN) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Ok((store, table, watch)) = open(&js, &config).await {
            info!(bucket = %config.sku.aliases_bucket, aliases = table.len(), "Loaded the SKU aliases.");
            publish(&shared, &table);
            return keep_current(store, table, watch, shared, shutdown).await;
        }
    }
}

/// The table as the bucket holds it now, and the watch that goes on from there.
async fn load(store: &kv::Store) -> anyhow::Result<(SkuAliases, kv::Watch)> {
    let held = store.status().await.context("reading the SKU alias bucket's status")?.values();
    let mut watch = store.watch_with_history(">").await.context("watching the SKU alias bucket")?;
    let mut table = SkuAliases::default();
    if held == 0 {
        return Ok((table, watch));
    }
    // The bucket said it holds entries; one that went empty meanwhile must not hang the start.
    while let Some(entry) =
        tokio::time::timeout(LOAD_WAIT, watch.next()).await.context("timed out reading the SKU alias bucket")?
    {
        let entry = entry.context("reading the SKU alias bucket")?;
        let current = entry.delta == 0;
        apply(&mut table, &entry);
        if current {
            break;
        }
    }
    Ok((table, watch))
}

/// Applies the watch's changes in bursts; after the watch fails, reads the whole table again.
async fn keep_current(
    store: kv::Store,
    mut table: SkuAliases,
    mut watch: kv::Watch,
    shared: Arc<SharedAliases>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let next = tokio::select! {
            next = watch.next() => next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match next {
            Some(Ok(entry)) => {
                apply(&mut table, &entry);
                for _ in 1..BURST_MAX {
                    match watch.next().now_or_never() {
                        Some(Some(Ok(entry))) => apply(&mut table, &entry),
                        _ => break,
                    }
                }
                publish(&shared, &table);
                backoff.succeeded();
            }
            failed => {
                let why = match failed {
                    Some(Err(err)) => err.to_string(),
                    _ => "the watch ended".to_string(),
                };
                warn!(error = %why, "SKU alias watch failed; reading the aliases again. Records meanwhile use the aliases last read.");
                tokio::time::sleep(backoff.failed()).await;
                if let Ok((fresh, fresh_watch)) = load(&store).await {
                    table = fresh;
                    watch = fresh_watch;
                    publish(&shared, &table);
                }
            }
        }
    }
}

fn publish(shared: &SharedAliases, table: &SkuAliases) {
    shared.replace(Arc::new(table.clone()));
    metrics::gauge!(telemetry::SKU_ALIASES).set(table.len() as f64);
}

/// One change of the bucket. A key that is no alias name, or a value that is no sku, was not
/// written by `tally sku-alias`: it is logged and left out, never guessed at.
fn apply(table: &mut SkuAliases, entry: &kv::Entry) {
    let Ok((system, code)) = parse_alias_name(&entry.key) else {
        warn!(key = %entry.key, "Ignoring a SKU alias bucket key that is not <system>/<code>.");
        return;
    };
    match entry.operation {
        kv::Operation::Put => match std::str::from_utf8(&entry.value).ok().filter(|sku| csv::is_valid_sku(sku)) {
            Some(sku) => table.insert(system, code, sku),
            None => warn!(key = %entry.key, "Ignoring a SKU alias whose value is not a sku."),
        },
        kv::Operation::Delete | kv::Operation::Purge => table.remove(system, code),
    }
}
