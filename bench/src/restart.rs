//! `tally-bench restart`: how long tally takes from start to consuming when its state already
//! holds K keys (issue 6 target: ≤ 1 s at 10 million), and its memory while it does.
//!
//! The state is filled synthetically, straight through the stores, not through NATS: sku-day
//! aggregates (70 % of the keys, with realistic figures) and dedupe entries (30 %, values the
//! size of a stored transaction), spread over 400 stores and consecutive business days, each key
//! in the partition that holds its store. The filling databases are dropped without a flush, so
//! the timed open also replays their write-ahead logs, as after a crash. Then M fresh messages
//! are published and a processor started: the time to its first commit (in any partition) is
//! restart-to-consuming; the time until every partition with messages has committed once is
//! printed beside it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use tally_processor::app;
use tally_processor::config::Config;
use tally_processor::telemetry;
use tally_state::{Cf, Store, WriteBatch};
use tally_topologies::aggregates::SkuDay;
use tally_topologies::codec;
use tally_topologies::keys;
use tally_topologies::model::MovementReason;
use tally_topologies::partition;
use tally_traffic::{GenOptions, Traffic};

use crate::measure::{self, mib, PositionPoller};
use crate::{e2e, load};
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
    /// `input.partitions`: the stream is set up and the state filled with this many, each key
    /// in the partition that holds its store; tally's default (16) when not given.
    #[arg(long)]
    pub partitions: Option<u32>,
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
    config.input.partitions = args.partitions;
    config.http.listen = format!("127.0.0.1:{}", free_port()?);
    let partitions = app::setup(&config).await?;

    let filled = Instant::now();
    fill(&config, partitions, args.keys)?;
    let (_, disk) = measure::dir_size(&config.state.path);
    println!(
        "restart: filled {} keys over {partitions} partition(s) in {:.1} s; state on disk {:.0} MiB",
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
    let lasts = e2e::last_sequences(&js, &config, partitions, preloaded.last_seq).await?;

    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let stores = app::open_partitions(&config, partitions)?;
    let opened = started.elapsed();
    let poller = PositionPoller::start(e2e::as_stores(&stores));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(app::run_with_stores(config.clone(), stores, metrics, shutdown));
    anyhow::ensure!(
        poller.wait_for_first_commit(Duration::from_secs(120)).await,
        "no commit within 120 s of the restart"
    );
    anyhow::ensure!(
        poller.wait_until_caught_up(&lasts, Duration::from_secs(600)).await,
        "the {} messages were not committed within 600 s: positions {:?}, last sequences {lasts:?}",
        preloaded.last_seq,
        poller.positions()
    );
    let since_start = |at: Option<Instant>| at.map(|at| at.duration_since(started)).unwrap_or_default();
    let first_commits = poller.first_commits();
    let first_commit = since_start(first_commits.iter().flatten().min().copied());
    // Every partition with messages consuming, not only the quickest: with several partitions,
    // a restart is over when the last of them is reading again.
    let every_partition =
        since_start(first_commits.iter().zip(&lasts).filter(|(_, last)| **last > 0).filter_map(|(at, _)| *at).max());
    let all = since_start(poller.caught_up_at(&lasts));
    let peak = measure::peak_rss_bytes().unwrap_or(0);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), task).await.context("the processor did not stop")???;

    println!(
        "restart: open state ({partitions} partition(s)) {:.3} s, first commit {:.3} s after start, every partition with messages committed once {:.3} s after start",
        opened.as_secs_f64(),
        first_commit.as_secs_f64(),
        every_partition.as_secs_f64()
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

/// Writes `keys` synthetic keys into the state of `config` laid out for `partitions`
/// partitions, with the processor's RocksDB settings but without fsync (filling needs no
/// durability), and drops the databases without flushing their memtables.
fn fill(config: &Config, partitions: u32, keys: u64) -> anyhow::Result<()> {
    let mut unsynced = config.clone();
    unsynced.state.sync = false;
    let stores = app::open_partitions(&unsynced, partitions)?;
    let stores: Vec<&dyn Store> = stores.iter().map(|store| store.as_ref() as &dyn Store).collect();
    fill_partitions(&stores, keys)
}

/// Writes `keys` synthetic keys into `store`.
pub fn fill_store(store: &dyn Store, keys: u64) -> anyhow::Result<()> {
    fill_partitions(&[store], keys)
}

/// Writes `keys` synthetic keys over `partitions`, one store per partition in partition order:
/// each key goes to the partition that holds its store (`partition::of_store`), as the
/// processor would have written it.
pub fn fill_partitions(partitions: &[&dyn Store], keys: u64) -> anyhow::Result<()> {
    let count = u32::try_from(partitions.len()).context("more partitions than a u32 counts")?;
    let partition_of: Vec<usize> =
        (0..STORES).map(|index| partition::of_store(&tally_traffic::store_id(index), count) as usize).collect();
    // One batch per partition, together about FILL_BATCH keys, so memory does not grow with them.
    let batch_max = (FILL_BATCH / u64::from(count)).max(1_000);
    let mut batches: Vec<WriteBatch> = partitions.iter().map(|_| WriteBatch::new()).collect();
    let first_day = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid day");
    let mut sku = SkuDay { sold_units: Decimal::from(17), restocked_units: Decimal::ONE, ..SkuDay::default() };
    sku.gross = Decimal::new(33_983, 2);
    sku.net = Decimal::new(32_100, 2);
    sku.tax = Decimal::new(2_648, 2);
    sku.inventory.insert(MovementReason::Sale, Decimal::from(-16));
    let sku_value = codec::encode(&sku);
    let seen_value = vec![0x5a_u8; SEEN_VALUE_BYTES];
    for i in 0..keys {
        // Seven in ten keys are sku-days, walking stores, then skus, then days.
        let (store_index, cf, key, value) = if i % 10 < 7 {
            let n = i / 10 * 7 + i % 10;
            let store_index = (n % STORES as u64) as usize;
            let store = tally_traffic::store_id(store_index);
            let sku_code = (100_000 + (n / STORES as u64) % SKUS as u64).to_string();
            let day = first_day + chrono::Duration::days((n / (STORES * SKUS) as u64) as i64);
            (store_index, Cf::Aggregates, keys::sku_day(&store, day, &sku_code), &sku_value)
        } else {
            let store_index = (i % STORES as u64) as usize;
            let store = tally_traffic::store_id(store_index);
            (store_index, Cf::Dedupe, keys::seen(&store, &format!("T-{i:010}")), &seen_value)
        };
        let at = partition_of[store_index];
        batches[at].put(cf, key, value.clone());
        if batches[at].len() as u64 >= batch_max {
            partitions[at].write(&std::mem::take(&mut batches[at]))?;
        }
    }
    for (store, batch) in partitions.iter().zip(&batches) {
        store.write(batch)?;
    }
    Ok(())
}
