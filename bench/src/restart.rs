//! `tally-bench restart`: how long tally takes from start to consuming when its state already
//! holds K keys (issue 6 target: ≤ 1 s at 10 million), and its memory while it does.
//!
//! The state is filled synthetically, straight through the store, not through NATS: sku-day
//! aggregates (70 % of the keys, with realistic figures) and dedupe entries (30 %, values the
//! size of a stored transaction), spread over 400 stores and consecutive business days. The
//! filling store is dropped without a flush, so the timed open also replays its write-ahead log,
//! as after a crash. Then M fresh messages are published and a processor started: the time to
//! its first commit is restart-to-consuming.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use tally_processor::app;
use tally_processor::config::Config;
use tally_processor::telemetry;
use tally_state::{Cf, RocksOptions, RocksStore, Store, WriteBatch};
use tally_topologies::aggregates::SkuDay;
use tally_topologies::codec;
use tally_topologies::keys;
use tally_topologies::model::MovementReason;
use tally_traffic::{GenOptions, Traffic};

use crate::load;
use crate::measure::{self, mib, PositionPoller};
use tally_traffic::process::free_port;
use tally_traffic::LocalNats;

#[derive(clap::Args, Debug, Clone)]
pub struct RestartArgs {
    /// Keys to put in the state before the timed start.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,
    /// Messages published before the timed start; the run waits until all are committed.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// `state.sync` of the timed processor.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sync: bool,
}

const STORES: usize = 400;
const SKUS: usize = 5_000;
/// Keys written per fill batch.
const FILL_BATCH: u64 = 100_000;
/// Bytes of a synthetic dedupe value: about a stored 3-line transaction.
const SEEN_VALUE_BYTES: usize = 320;

pub async fn run(args: RestartArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("tally-bench-restart-").tempdir()?;
    let nats = LocalNats::start(&temp.path().join("nats"))?;
    let metrics = telemetry::install()?;
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.state.path = temp.path().join("state");
    config.state.sync = args.sync;
    config.http.listen = format!("127.0.0.1:{}", free_port()?);
    app::setup(&config).await?;

    let filled = Instant::now();
    fill(&config.state.path, &fill_options(&config), args.keys)?;
    let (_, disk) = measure::dir_size(&config.state.path);
    println!(
        "restart: filled {} keys in {:.1} s; state on disk {:.0} MiB",
        args.keys,
        filled.elapsed().as_secs_f64(),
        mib(disk)
    );

    let client = async_nats::connect(nats.url().as_str()).await?;
    let js = jetstream::new(client);
    let opts = GenOptions { stores: STORES, skus_per_store: SKUS, malformed_share: 0.0, ..GenOptions::default() };
    let start = chrono::Utc::now();
    let mut traffic = Traffic::new(opts, start);
    let preloaded = load::preload(&js, &mut traffic, start, 40.0, args.messages.max(1)).await?;
    drop(traffic);

    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let store = app::open_store(&config)?;
    let opened = started.elapsed();
    let poller = PositionPoller::start(store.clone() as Arc<dyn Store>);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(app::run_with_store(config.clone(), store.clone(), metrics, shutdown));
    anyhow::ensure!(poller.wait_for(1, Duration::from_secs(120)).await, "no commit within 120 s of the restart");
    let first_commit = poller.reached(1).map(|at| at.duration_since(started)).unwrap_or_default();
    anyhow::ensure!(
        poller.wait_for(preloaded.last_seq, Duration::from_secs(600)).await,
        "the {} messages were not committed within 600 s",
        preloaded.last_seq
    );
    let all = poller.reached(preloaded.last_seq).map(|at| at.duration_since(started)).unwrap_or_default();
    let peak = measure::peak_rss_bytes().unwrap_or(0);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), task).await.context("the processor did not stop")???;

    println!(
        "restart: open state {:.3} s, first commit {:.3} s after start",
        opened.as_secs_f64(),
        first_commit.as_secs_f64()
    );
    println!(
        "restart: {} messages committed {:.2} s after start; peak RSS {:.0} MiB (whole bench process; {:.0} MiB before the start)",
        preloaded.last_seq,
        all.as_secs_f64(),
        mib(peak),
        mib(rss_before)
    );
    println!("restart_to_consuming_secs: {:.3}", first_commit.as_secs_f64());
    Ok(())
}

/// The processor's RocksDB settings, without fsync (filling needs no durability).
fn fill_options(config: &Config) -> RocksOptions {
    RocksOptions {
        cache_bytes: config.state.cache_bytes,
        write_buffer_bytes: config.state.write_buffer_bytes,
        sync: false,
    }
}

/// Writes `keys` synthetic keys into the store at `path` and drops it without flushing its
/// memtables.
pub fn fill(path: &std::path::Path, options: &RocksOptions, keys: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)?;
    let store = RocksStore::open(path, options)?;
    fill_store(&store, keys)
}

/// Writes `keys` synthetic keys into `store`.
pub fn fill_store(store: &dyn Store, keys: u64) -> anyhow::Result<()> {
    let first_day = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid day");
    let mut sku = SkuDay { sold_units: Decimal::from(17), restocked_units: Decimal::ONE, ..SkuDay::default() };
    sku.gross = Decimal::new(33_983, 2);
    sku.net = Decimal::new(32_100, 2);
    sku.tax = Decimal::new(2_648, 2);
    sku.inventory.insert(MovementReason::Sale, Decimal::from(-16));
    let sku_value = codec::encode(&sku);
    let seen_value = vec![0x5a_u8; SEEN_VALUE_BYTES];
    let mut batch = WriteBatch::new();
    for i in 0..keys {
        // Seven in ten keys are sku-days, walking stores, then skus, then days.
        if i % 10 < 7 {
            let n = i / 10 * 7 + i % 10;
            let store = tally_traffic::store_id((n % STORES as u64) as usize);
            let sku_code = (100_000 + (n / STORES as u64) % SKUS as u64).to_string();
            let day = first_day + chrono::Duration::days((n / (STORES * SKUS) as u64) as i64);
            batch.put(Cf::Aggregates, keys::sku_day(&store, day, &sku_code), sku_value.clone());
        } else {
            let store = tally_traffic::store_id((i % STORES as u64) as usize);
            batch.put(Cf::Dedupe, keys::seen(&store, &format!("T-{i:010}")), seen_value.clone());
        }
        if batch.len() as u64 >= FILL_BATCH {
            store.write(&std::mem::take(&mut batch))?;
        }
    }
    store.write(&batch)?;
    Ok(())
}
