//! `tally-bench failover`: two `tally run` instances sharing the partitions of one nats-server
//! (docs/operations.md, "Several instances"), a preloaded day applied by both and checkpointed
//! to the Object Store; then one is killed (SIGKILL) and the other takes its partitions over.
//! It measures issue 16's failover figure: from the kill to every one of the killed instance's
//! partitions committing again on the other (`tally_partition_owned` 1 there: taken over,
//! restored, caught up, outputs read back; then a commit of its own pipeline, unless nothing
//! was left for it), with or without `cluster.standby`.
//!
//! One nats-server (R1 streams and buckets), not the three of the cluster tests: what is
//! measured is tally's takeover (lease expiry, settle, restore, catch-up, reading the outputs
//! back), not NATS replication.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use tally_processor::app;
use tally_processor::config::Config;
use tally_processor::snapshot::Manifest;
use tally_traffic::{LocalNats, Traffic};

use crate::e2e::{chain_options, default_config, last_sequences, CATCH_UP_MIN, CATCH_UP_PER_MESSAGE};
use crate::load;
use crate::measure::mib;
use crate::process::{http_get, log_tail, tally_binary, Tally};

#[derive(clap::Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Input messages to preload; 2 200 000 leave about 10.3 M keys over 16 partitions.
    #[arg(long, default_value_t = 2_200_000)]
    messages: u64,
    /// Stores of the generated chain.
    #[arg(long, default_value_t = 400)]
    stores: usize,
    /// Active SKUs per store.
    #[arg(long, default_value_t = 5_000)]
    skus: usize,
    /// Baskets per second of event time in the preload.
    #[arg(long, default_value_t = 40.0)]
    event_rate: f64,
    /// Messages published right after the kill: what the partitions taken over must commit.
    #[arg(long, default_value_t = 20_000)]
    after: u64,
    /// Run both instances with `cluster.standby = true`.
    #[arg(long)]
    standby: bool,
    /// `cluster.checkpoint_interval`.
    #[arg(long, default_value = "60s")]
    checkpoint_interval: String,
    /// `cluster.lease_ttl`: how long the killed instance's leases take to expire.
    #[arg(long, default_value = "3s")]
    lease_ttl: String,
    /// `cluster.settle`.
    #[arg(long, default_value = "1s")]
    settle: String,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `tally` binary; by default the one next to this benchmark's executable.
    #[arg(long, env = "TALLY_BIN")]
    tally_bin: Option<PathBuf>,
    /// Keep the run's directory (NATS store, both states, configurations and logs).
    #[arg(long)]
    keep: bool,
    /// A small, quick run: at most 3 000 messages and 300 after the kill, checkpoints every 1s.
    #[arg(long)]
    smoke: bool,
}

/// How often the instances' metrics are read.
const POLL: Duration = Duration::from_millis(100);
/// How long a takeover may take before the run gives up.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(mut args: FailoverArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.messages = args.messages.min(3_000);
        args.after = args.after.min(300);
        args.checkpoint_interval = "1s".into();
    }
    anyhow::ensure!(args.messages > 0 && args.after > 0, "--messages and --after must be positive");
    let tally_bin = tally_binary(args.tally_bin.clone())?;
    let temp = tempfile::Builder::new().prefix("tally-bench-failover-").tempdir()?;
    let nats = LocalNats::start(&temp.path().join("nats"))?;
    let js = jetstream::new(async_nats::connect(nats.url().as_str()).await.context("connecting to nats-server")?);
    let opts = chain_options(args.stores, args.skus, args.seed);
    let a_config = instance_config(&args, &nats.url(), temp.path(), "a", &opts)?;
    let b_config = instance_config(&args, &nats.url(), temp.path(), "b", &opts)?;
    let partitions = app::setup(&a_config).await.context("tally setup")?;
    println!(
        "tally-bench failover: {} messages, {} stores, {} SKUs, {partitions} partitions on 2 instances, standby {}, \
         checkpoints every {}, lease_ttl {}, settle {}",
        args.messages, args.stores, args.skus, args.standby, args.checkpoint_interval, args.lease_ttl, args.settle
    );
    let span = load::preload_span(args.messages, args.event_rate);
    let start = chrono::Utc::now() - span;
    let mut traffic = Traffic::new(opts, start);
    let preloaded = load::preload(&js, &mut traffic, start, args.event_rate, args.messages).await?;
    let lasts = last_sequences(&js, &a_config, partitions, preloaded.last_seq).await?;

    let mut a = spawn(&tally_bin, &a_config, temp.path(), "a")?;
    let mut b = spawn(&tally_bin, &b_config, temp.path(), "b")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (tally, name) in [(&mut a, "a"), (&mut b, "b")] {
        if let Some(status) = tally.child.try_wait()? {
            anyhow::bail!(
                "{name} exited with {status}; its log:\n{}",
                log_tail(&temp.path().join(format!("{name}.log")))
            );
        }
    }
    let listen = |config: &Config| config.http.listen.clone();
    let (a_listen, b_listen) = (listen(&a_config), listen(&b_config));
    let applied = Instant::now();
    let timeout = (CATCH_UP_PER_MESSAGE * u32::try_from(args.messages).unwrap_or(u32::MAX)).max(CATCH_UP_MIN);
    let everything = |positions: &[BTreeMap<u32, u64>]| {
        lasts.iter().enumerate().all(|(p, last)| positions.iter().any(|at| at.get(&(p as u32)) >= Some(last)))
    };
    // Both must hold their shares first: a standby's positions count too, and b's standbys can
    // have applied a's partitions before a has acquired them.
    let split = || match (owned(&a_listen), owned(&b_listen)) {
        (Some(on_a), Some(on_b)) => {
            !on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == partitions as usize
        }
        _ => false,
    };
    wait_for(timeout, "both instances to hold their partitions and apply the preload", || async {
        split() && everything(&[committed(&a_listen), committed(&b_listen)])
    })
    .await?;
    println!("applied: {} messages by both instances in {:.1} s", preloaded.last_seq, applied.elapsed().as_secs_f64());

    let on_a = owned(&a_listen).context("reading a's partitions from its /readyz")?;
    anyhow::ensure!(!on_a.is_empty(), "a runs no partition: nothing to fail over");
    let checkpointed = Instant::now();
    let manifests = js.get_key_value(format!("{}_manifests", a_config.cluster.checkpoint_bucket)).await?;
    let mut checkpoint_bytes = 0;
    for &partition in &on_a {
        let wanted = lasts[partition as usize];
        let manifest = wait_for_manifest(&manifests, partition, wanted).await?;
        checkpoint_bytes += manifest.files.values().map(|f| f.size).sum::<u64>();
    }
    println!(
        "checkpointed: a's {} partitions {on_a:?} at their last input, {:.1} MiB in all, {:.1} s after applying",
        on_a.len(),
        mib(checkpoint_bytes),
        checkpointed.elapsed().as_secs_f64()
    );
    if args.standby {
        wait_for(timeout, "b's standbys to apply a's partitions", || async {
            let at = committed(&b_listen);
            on_a.iter().all(|p| at.get(p) >= Some(&lasts[*p as usize]))
        })
        .await?;
        println!("standing by: b's standbys of a's partitions hold their last input");
    }

    a.kill();
    let killed = Instant::now();
    let more = load::preload(&js, &mut traffic, chrono::Utc::now(), args.event_rate, args.after).await?;
    let published = killed.elapsed();
    let lasts_after = last_sequences(&js, &a_config, partitions, more.last_seq).await?;
    let mut running: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut owned_at: BTreeMap<u32, u64> = BTreeMap::new();
    wait_for(TAKEOVER_TIMEOUT, "b to run every partition of a's", || {
        let metrics = http_get(&b_listen, "/metrics").unwrap_or_default();
        let at = gauge(&metrics, "tally_committed_stream_sequence");
        let owned = gauge(&metrics, "tally_partition_owned");
        for &p in &on_a {
            // A standby commits too: the partition runs once b owns it, from at least a's
            // input, and has committed since (or has nothing left to commit).
            let Some(&at) = at.get(&p).filter(|at| **at >= lasts[p as usize] && owned.get(&p) == Some(&1)) else {
                continue;
            };
            let first = *owned_at.entry(p).or_insert(at);
            if at > first || at >= lasts_after[p as usize] {
                running.entry(p).or_insert_with(|| killed.elapsed());
            }
        }
        let done = running.len() == on_a.len();
        async move { done }
    })
    .await
    .with_context(|| format!("b's log:\n{}", log_tail(&temp.path().join("b.log"))))?;
    let failover = running.values().max().copied().unwrap_or_default();
    wait_for(TAKEOVER_TIMEOUT, "b to catch up with the input published after the kill", || async {
        let at = committed(&b_listen);
        on_a.iter().all(|p| at.get(p) >= Some(&lasts_after[*p as usize]))
    })
    .await?;
    let caught_up = killed.elapsed();
    drop(b);

    let log = std::fs::read_to_string(temp.path().join("b.log")).unwrap_or_default();
    println!("after the kill: {} messages published in {:.1} s", args.after, published.as_secs_f64());
    for (partition, at) in &running {
        println!("    partition {partition}: committing on b {:.2} s after the kill", at.as_secs_f64());
    }
    for line in takeover_lines(&log) {
        println!("    b: {line}");
    }
    println!(
        "failover: {:.2} s from a's SIGKILL to all its {} partitions committing on b; {:.2} s to have applied the {} \
         messages published after it",
        failover.as_secs_f64(),
        on_a.len(),
        caught_up.as_secs_f64(),
        args.after
    );
    if args.keep {
        drop(nats);
        println!("    kept: {} (logs: a.log, b.log)", temp.keep().display());
    }
    println!("failover_seconds: {:.2}", failover.as_secs_f64());
    Ok(())
}

/// One instance's configuration: tally's defaults, this run's NATS, a state directory and HTTP
/// port of its own, and `[cluster]` as the arguments say.
fn instance_config(
    args: &FailoverArgs,
    nats_url: &str,
    dir: &Path,
    instance: &str,
    opts: &tally_traffic::GenOptions,
) -> anyhow::Result<Config> {
    let mut config = default_config(nats_url, &dir.join(format!("{instance}-state")), opts)?;
    let cluster = &mut config.cluster;
    cluster.enabled = true;
    cluster.instance_id = Some(instance.to_string());
    cluster.advertise = Some(config.http.listen.clone());
    cluster.replicas = 1;
    cluster.lease_ttl.clone_from(&args.lease_ttl);
    cluster.settle.clone_from(&args.settle);
    cluster.checkpoint_interval.clone_from(&args.checkpoint_interval);
    cluster.standby = args.standby;
    Ok(config)
}

/// What the instances log: the takeover's steps, with each state's reconciliation timed.
const FAILOVER_LOG: &str = "info,tally_processor::reconcile=debug";

fn spawn(binary: &Path, config: &Config, dir: &Path, instance: &str) -> anyhow::Result<Tally> {
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, toml::to_string(config).context("writing the configuration as TOML")?)?;
    Tally::spawn_logging(binary, &path, &dir.join(format!("{instance}.log")), FAILOVER_LOG)
}

/// `tally_committed_stream_sequence` by partition, from the instance at `listen`; empty when
/// it does not answer (killed, or not up yet).
fn committed(listen: &str) -> BTreeMap<u32, u64> {
    gauge(&http_get(listen, "/metrics").unwrap_or_default(), "tally_committed_stream_sequence")
}

/// The gauge `name{partition="<n>"}` of a `/metrics` text, by partition.
fn gauge(metrics: &str, name: &str) -> BTreeMap<u32, u64> {
    let prefix = format!("{name}{{partition=\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (partition, value) = rest.split_once("\"} ")?;
            Some((partition.parse().ok()?, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The partitions the instance at `listen` runs, from its `/readyz`.
fn owned(listen: &str) -> Option<Vec<u32>> {
    let body = http_get(listen, "/readyz")?;
    let json: serde_json::Value = serde_json::from_str(body.split_once("\r\n\r\n")?.1).ok()?;
    Some(json["partitions"].as_array()?.iter().filter_map(|p| p.as_u64().map(|p| p as u32)).collect())
}

/// Waits for the manifest of `partition`'s checkpoint at `position` or later.
async fn wait_for_manifest(
    manifests: &jetstream::kv::Store,
    partition: u32,
    position: u64,
) -> anyhow::Result<Manifest> {
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        if let Some(value) = manifests.get(format!("checkpoints.{partition}")).await? {
            let manifest: Manifest = serde_json::from_slice(&value).context("a checkpoint manifest")?;
            if manifest.position >= position {
                return Ok(manifest);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no checkpoint of partition {partition} at {position} in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls `done` every [`POLL`] until it holds; an error naming `what` after `timeout`.
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !done().await {
        anyhow::ensure!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The lines of b's log about its takeovers: restores, catch-ups, readings back.
fn takeover_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            [
                "Restored a partition",
                "Catching up with a partition",
                "Reconciled the partitions",
                "Reconciled a state",
                "Read the output streams ahead",
                "Acquired the lease",
            ]
            .iter()
            .any(|marker| line.contains(marker))
        })
        .collect()
}
