//! The command-line face of the traffic generator, shared by `tally gen` and `tally demo`.

use std::time::Duration;

use async_nats::jetstream;
use clap::Args;
use tokio::sync::watch;

use crate::config::parse_duration;
use tally_traffic::{GenOptions, GenStats, RunOptions, Traffic};

#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Number of stores (ids 0001, 0002, …, in several time zones).
    #[arg(long, default_value_t = 20)]
    pub stores: usize,
    /// Active SKUs per store.
    #[arg(long, default_value_t = 5000)]
    pub skus: usize,
    /// Baskets per second (wall clock), chain-wide.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Stop after this long, e.g. 90s or 10m; default: until ctrl-c or --count.
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop after this many baskets.
    #[arg(long)]
    pub count: Option<u64>,
    /// Event-time seconds per wall-clock second (60: a minute of store time passes each second).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Random seed; the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of sales whose inventory decrement is missing or doubled (injected drift).
    #[arg(long, default_value_t = 0.02)]
    pub drift_share: f64,
    /// Share of messages replaced by malformed ones (they should land in the DLQ).
    #[arg(long, default_value_t = 0.002)]
    pub malformed_share: f64,
    /// Share of messages sent as MessagePack instead of JSON.
    #[arg(long, default_value_t = 0.3)]
    pub msgpack_share: f64,
    /// Inventory decrements lag their sale by up to this many seconds of event time.
    #[arg(long, default_value_t = 600)]
    pub movement_lag_max_secs: u64,
    /// First token of every subject.
    #[arg(long, default_value = "retail")]
    pub subject_prefix: String,
    /// Share of baskets followed by an online order fulfilled through the store
    /// (ship-from-store, pickup or return in store, on P.orders.<store>) and its movement.
    /// 0 (the default) publishes no orders and leaves the rest of the traffic unchanged.
    #[arg(long, default_value_t = 0.0)]
    pub order_share: f64,
}

impl TrafficArgs {
    pub fn options(&self) -> GenOptions {
        GenOptions {
            stores: self.stores,
            skus_per_store: self.skus,
            seed: self.seed,
            drift_share: self.drift_share,
            malformed_share: self.malformed_share,
            msgpack_share: self.msgpack_share,
            movement_lag_max_secs: self.movement_lag_max_secs,
            subject_prefix: self.subject_prefix.clone(),
            order_share: self.order_share,
            ..GenOptions::default()
        }
    }

    pub fn run_options(&self) -> anyhow::Result<RunOptions> {
        let duration: Option<Duration> = match &self.duration {
            Some(text) => Some(parse_duration(text).map_err(|m| anyhow::anyhow!("--duration: {m}"))?),
            None => None,
        };
        anyhow::ensure!(self.rate > 0.0, "--rate must be above 0");
        anyhow::ensure!(self.speedup > 0.0, "--speedup must be above 0");
        Ok(RunOptions { rate: self.rate, duration, count: self.count, speedup: self.speedup })
    }
}

/// `tally gen`: publishes until done or shutdown, printing progress each second.
pub async fn run(js: &jetstream::Context, args: &TrafficArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let run = args.run_options()?;
    let mut traffic = Traffic::new(args.options(), chrono::Utc::now());
    let stats = tally_traffic::run(js, &mut traffic, &run, until_shutdown(shutdown), |stats: &GenStats| {
        eprintln!(
            "gen: {} baskets, {} messages published, {} malformed, {} drift injected",
            stats.baskets, stats.published, stats.malformed, stats.drift_injected
        );
    })
    .await?;
    println!("{stats:#?}");
    Ok(())
}

/// A future that completes when `shutdown` turns true (or its sender is gone).
pub async fn until_shutdown(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
