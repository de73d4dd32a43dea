//! `tally-bench e2e`: one run, one machine, one nats-server. Preloads N realistic messages,
//! measures (a) a bare JetStream consumer over them and (b) tally end to end over the same
//! stream, then (c) publish→commit and publish→alert latency at half of (b)'s rate.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tally_processor::config::{Config, StoreConfig, BATCH_MAX_LIMIT};
use tally_processor::partitions::Layout;
use tally_processor::{app, telemetry};
use tally_state::{Cf, RocksMemory, RocksStore, Store};
use tally_topologies::partition;
use tally_traffic::{self as gen, GenOptions, Traffic};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ceiling;
use crate::load::{self, Mix};
use crate::measure::{self, mib, ms, PositionPoller};
use tally_traffic::process::free_port;
use tally_traffic::LocalNats;

#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    /// Input messages to preload and consume in (a) and (b).
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Stores of the generated chain.
    #[arg(long, default_value_t = 400)]
    pub stores: usize,
    /// Active SKUs per store.
    #[arg(long, default_value_t = 5_000)]
    pub skus: usize,
    /// `input.batch_max` of tally, and the ceiling consumer's batch size.
    #[arg(long, default_value_t = 500)]
    pub batch_max: usize,
    /// Baskets per second of event time in the preload (40 ≈ an average hour of 400 stores), so
    /// that movements lagging their sale by up to 10 minutes interleave as they would live.
    #[arg(long, default_value_t = 40.0)]
    pub event_rate: f64,
    /// Seconds of the latency phase (c).
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Messages per second of the latency phase (c), instead of half of (b)'s rate: to see how
    /// latency grows with load.
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// `state.sync`: fsync every commit (tally's default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sync: bool,
    /// `state.value_cache_bytes` in MiB (tally's default is 0, off): to see what the value
    /// cache costs in memory and gains in speed.
    #[arg(long, default_value_t = 0)]
    pub value_cache_mib: usize,
    /// `input.partitions` of the input stream (and of the latency phase's); tally's default
    /// (16 for a new stream) when not given.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A small, quick run for the test suite: at most 3 000 messages, a 2 s latency phase.
    #[arg(long)]
    pub smoke: bool,
}

/// How long (b) may take per message before the run gives up, at least [`CATCH_UP_MIN`].
pub(crate) const CATCH_UP_PER_MESSAGE: Duration = Duration::from_millis(5);
pub(crate) const CATCH_UP_MIN: Duration = Duration::from_secs(60);
/// How long a stopping processor may take to finish its batch.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the latency phase, how long alerts may take to leave the outbox.
const OUTBOX_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) const INPUT_STREAM: &str = "RETAIL_IN";

pub async fn run(mut args: E2eArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.messages = args.messages.min(3_000);
        args.latency_secs = 2;
    }
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    anyhow::ensure!((1..=BATCH_MAX_LIMIT).contains(&args.batch_max), "--batch-max must be 1..={BATCH_MAX_LIMIT}");
    anyhow::ensure!(args.event_rate.is_finite() && args.event_rate > 0.0, "--event-rate must be positive");

    let temp = tempfile::Builder::new().prefix("tally-bench-").tempdir()?;
    let nats = LocalNats::start(&temp.path().join("nats"))?;
    let metrics = telemetry::install()?;
    let client = async_nats::connect(nats.url().as_str()).await.context("connecting to the bench's nats-server")?;
    let js = jetstream::new(client.clone());
    let opts = preload_options(&args);
    println!(
        "tally-bench e2e: {} messages, {} stores, {} SKUs, batch_max {}, state.sync {}, {} CPUs",
        args.messages,
        args.stores,
        args.skus,
        args.batch_max,
        args.sync,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // Streams and tally's consumer, exactly as `tally setup` makes them.
    let config = processor_config(&args, &nats.url(), &temp.path().join("state-e2e"), "15m", &opts)?;
    let partitions = app::setup(&config).await.context("tally setup")?;
    println!("input stream {INPUT_STREAM}: {partitions} partition(s)");

    // Preload.
    let span = load::preload_span(args.messages, args.event_rate);
    let start = chrono::Utc::now() - span;
    let mut traffic = Traffic::new(opts.clone(), start);
    let preloaded = load::preload(&js, &mut traffic, start, args.event_rate, args.messages).await?;
    drop(traffic);
    let stream_bytes = js.get_stream(INPUT_STREAM).await?.info().await?.state.bytes;
    println!(
        "preload: {} messages ({}), stream {:.1} MiB, published at {:.0} msg/s",
        preloaded.mix.messages,
        preloaded.mix.describe(),
        mib(stream_bytes),
        rate(preloaded.mix.messages, preloaded.elapsed)
    );
    anyhow::ensure!(
        preloaded.last_seq == args.messages,
        "the stream's last sequence is {}, expected {}",
        preloaded.last_seq,
        args.messages
    );

    // (a) The ceiling.
    let nats_cpu_before = nats.pid().and_then(measure::process_cpu_secs);
    let own_cpu_before = measure::process_cpu_secs(std::process::id());
    let ceiling_elapsed = ceiling::measure(&js, INPUT_STREAM, args.batch_max, args.messages).await?;
    let ceiling_rate = rate(args.messages, ceiling_elapsed);
    // What receiving and acking alone cost, on both sides: the share of the machine left for
    // tally's own work at a given rate follows from it.
    println!(
        "(a) ceiling, bare pull consumer (AckAll, batch {}): {:.0} msg/s ({} in {:.2} s; CPU: nats-server {}, consumer {})",
        args.batch_max,
        ceiling_rate,
        args.messages,
        ceiling_elapsed.as_secs_f64(),
        cpu_text(nats_cpu_before, nats.pid().and_then(measure::process_cpu_secs)),
        cpu_text(own_cpu_before, measure::process_cpu_secs(std::process::id()))
    );

    // (b) tally end to end.
    let tally = tally_phase(&args, &config, &metrics, &nats, &js, partitions, preloaded.last_seq).await?;
    let tally_rate = rate(args.messages, tally.elapsed);
    println!(
        "(b) tally end to end: {:.0} msg/s ({} in {:.2} s, from start until every partition committed its last message, stream sequence {} at most)",
        tally_rate,
        args.messages,
        tally.elapsed.as_secs_f64(),
        preloaded.last_seq
    );
    for line in &tally.details {
        println!("    {line}");
    }

    // (c) Latency at half of (b)'s rate.
    for stream in [INPUT_STREAM, "RETAIL_ALERTS", "RETAIL_ERP", "RETAIL_DLQ"] {
        js.delete_stream(stream).await.with_context(|| format!("deleting stream {stream} before the latency phase"))?;
    }
    let latency_rate = args.latency_rate.unwrap_or(tally_rate / 2.0).max(1.0);
    let latency =
        latency_phase(&args, &client, &metrics, &nats.url(), &temp.path().join("state-latency"), latency_rate).await?;
    for line in &latency {
        println!("{line}");
    }

    println!("ratio b/a: {:.3} (target ≥ 0.8)", tally_rate / ceiling_rate);
    println!("e2e_vs_ceiling_ratio: {:.2}", tally_rate / ceiling_rate);
    Ok(())
}

fn preload_options(args: &E2eArgs) -> GenOptions {
    chain_options(args.stores, args.skus, args.seed)
}

/// The generated chain every phase and `process` consume: no malformed input, 0.5 % drift.
pub fn chain_options(stores: usize, skus: usize, seed: u64) -> GenOptions {
    GenOptions {
        stores,
        skus_per_store: skus,
        seed,
        drift_share: 0.005,
        malformed_share: 0.0,
        return_share: 0.05,
        ..GenOptions::default()
    }
}

fn processor_config(
    args: &E2eArgs,
    nats_url: &str,
    state: &Path,
    settle: &str,
    opts: &GenOptions,
) -> anyhow::Result<Config> {
    let mut config = default_config(nats_url, state, opts)?;
    config.state.sync = args.sync;
    config.state.value_cache_bytes = args.value_cache_mib << 20;
    config.input.batch_max = args.batch_max;
    config.input.partitions = args.partitions;
    config.drift.settle = settle.to_string();
    Ok(config)
}

/// tally's defaults, with this run's NATS, state directory, a free HTTP port and the
/// generated stores' time zones.
pub fn default_config(nats_url: &str, state: &Path, opts: &GenOptions) -> anyhow::Result<Config> {
    let mut config = Config::default();
    config.nats.url = nats_url.to_string();
    config.state.path = state.to_path_buf();
    config.http.listen = format!("127.0.0.1:{}", free_port()?);
    add_generated_stores(&mut config, opts);
    Ok(config)
}

/// The generator's stores live in several zones; tally must agree on their business days.
pub fn add_generated_stores(config: &mut Config, opts: &GenOptions) {
    for (index, id) in gen::store_ids(opts).into_iter().enumerate() {
        let zone = gen::store_timezone(opts, index).name().to_string();
        config.stores.insert(id, StoreConfig { timezone: Some(zone), drift: None });
    }
}

/// The processor running in this process on its own task.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(config: Config, stores: Vec<Arc<RocksStore>>, metrics: &PrometheusHandle) -> Running {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(app::run_with_stores(config, stores, metrics.clone(), shutdown));
        Running { stop, task }
    }

    fn failed_early(&self) -> bool {
        self.task.is_finished()
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        tokio::time::timeout(STOP_TIMEOUT, self.task)
            .await
            .context("the processor did not stop in time")?
            .context("the processor panicked")?
    }
}

struct TallyPhase {
    elapsed: Duration,
    details: Vec<String>,
}

/// (b): tally from a fresh state until every partition's committed position is its last
/// message's stream sequence.
async fn tally_phase(
    args: &E2eArgs,
    config: &Config,
    metrics: &PrometheusHandle,
    nats: &LocalNats,
    js: &jetstream::Context,
    partitions: u32,
    last_seq: u64,
) -> anyhow::Result<TallyPhase> {
    let stores = app::open_partitions(config, partitions)?;
    let lasts = last_sequences(js, config, partitions, last_seq).await?;
    let poller = PositionPoller::start(as_stores(&stores));
    let peak_reset = measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let threads_before = measure::threads_cpu_secs();
    let nats_cpu_before = nats.pid().and_then(measure::process_cpu_secs);
    let metrics_before = metrics.render();

    let started = Instant::now();
    let running = Running::start(config.clone(), stores.clone(), metrics);
    let timeout = (CATCH_UP_PER_MESSAGE * u32::try_from(args.messages).unwrap_or(u32::MAX)).max(CATCH_UP_MIN);
    let deadline = started + timeout;
    while let Some(lowest) = poller.behind(&lasts) {
        if running.failed_early() {
            return match running.task.await {
                Ok(Err(err)) => Err(err.context("the processor stopped during (b)")),
                Ok(Ok(())) => Err(anyhow::anyhow!("the processor stopped during (b) without an error")),
                Err(err) => Err(anyhow::anyhow!("the processor panicked during (b): {err}")),
            };
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "tally had not caught up with {last_seq} messages in {timeout:?}: the lowest committed position of the partitions behind is {lowest}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reached = poller.caught_up_at(&lasts).unwrap_or_else(Instant::now);
    let elapsed = reached.duration_since(started);

    let peak = measure::peak_rss_bytes();
    let threads = measure::cpu_delta(&threads_before, &measure::threads_cpu_secs());
    let nats_cpu = cpu_text(nats_cpu_before, nats.pid().and_then(measure::process_cpu_secs));
    let metrics_after = metrics.render();
    let (state_apparent, state_disk) = measure::dir_size(&config.state.path);
    let outbox = outbox_len(&stores)?;
    let mut details = Vec::new();
    details.push(match (peak, rss_before) {
        (Some(peak), Some(before)) => format!(
            "peak RSS {:.0} MiB (VmHWM of the whole bench process{}: harness, client buffers and tally together; {:.0} MiB before (b))",
            mib(peak),
            if peak_reset { ", reset before (b)" } else { " since start; the reset was refused" },
            mib(before)
        ),
        _ => "peak RSS: unavailable (no /proc/self/status)".into(),
    });
    // Where the memory is at the end, for the RSS target: RocksDB's parts (the value cache is
    // bounded by `--value-cache-mib`).
    if let Ok(memory) = rocks_memory(&stores) {
        details.push(format!(
            "memory at the end: RSS {:.0} MiB; RocksDB block cache {:.0} MiB, memtables {:.0} MiB, index and filter blocks {:.0} MiB; {:.1} M keys (RocksDB's estimate)",
            mib(measure::rss_bytes().unwrap_or(0)),
            mib(memory.block_cache),
            mib(memory.memtables),
            mib(memory.table_readers),
            memory.keys as f64 / 1e6
        ));
    }
    details.push(format!(
        "state on disk {:.1} MiB (du; apparent {:.1} MiB, RocksDB estimate {:.1} MiB incl. memtables)",
        mib(state_disk),
        mib(state_apparent),
        mib(stores.iter().map(|store| store.approximate_size_bytes().unwrap_or(0)).sum())
    ));
    let delta = |name: &str| measure::metric_sum(&metrics_after, name) - measure::metric_sum(&metrics_before, name);
    let commits = delta("tally_commit_duration_seconds_count");
    let commit_secs = delta("tally_commit_duration_seconds_sum");
    let batched = delta("tally_batch_messages_sum");
    details.push(format!(
        "{commits:.0} commits, mean {:.0} messages per batch, commit (RocksDB write{}) {:.2} s = {:.0} % of the phase, mean {:.2} ms",
        batched / commits.max(1.0),
        if args.sync { " + fsync" } else { "" },
        commit_secs,
        100.0 * commit_secs / elapsed.as_secs_f64(),
        1000.0 * commit_secs / commits.max(1.0)
    ));
    details.push(format!("outbox at the end of (b): {outbox} outputs not yet published (alerts, postings)"));
    let threads_text: Vec<String> = threads.iter().take(6).map(|(name, secs)| format!("{name} {secs:.2}")).collect();
    details.push(format!(
        "CPU seconds during (b), {:.2} s wall: bench process threads [{}], nats-server {nats_cpu}",
        elapsed.as_secs_f64(),
        threads_text.join(", ")
    ));
    drop(poller);
    running.stop().await?;
    Ok(TallyPhase { elapsed, details })
}

#[derive(serde::Deserialize)]
struct Alert {
    id: String,
    revision: u64,
    state: String,
    #[serde(default)]
    unmatched: Vec<String>,
}

/// (c): a fresh stream and state, drift settle 0, traffic at `rate` messages per second where
/// some baskets lack their inventory decrement and decrements follow their sale at once.
async fn latency_phase(
    args: &E2eArgs,
    client: &async_nats::Client,
    metrics: &PrometheusHandle,
    nats_url: &str,
    state: &Path,
    rate: f64,
) -> anyhow::Result<Vec<String>> {
    let opts = GenOptions { seed: args.seed + 1, drift_share: 0.05, movement_lag_max_secs: 0, ..preload_options(args) };
    let config = processor_config(args, nats_url, state, "0s", &opts)?;
    // Fresh streams, as `tally setup` makes them, so that the state is laid out for them.
    let partitions = app::setup(&config).await.context("tally setup for the latency phase")?;
    let stores = app::open_partitions(&config, partitions)?;
    let layout = Layout { root: config.state.path.clone(), count: partitions };
    let poller = PositionPoller::start(as_stores(&stores));

    // Alerts as any subscriber sees them: core NATS, timestamped on arrival.
    let alerts: Arc<Mutex<Vec<(Instant, bytes::Bytes)>>> = Arc::default();
    let mut subscriber = client.subscribe(format!("{}.alerts.drift.>", config.input.subject_prefix)).await?;
    client.flush().await?;
    let collector = tokio::spawn({
        let alerts = alerts.clone();
        async move {
            while let Some(message) = subscriber.next().await {
                alerts.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), message.payload));
            }
        }
    });

    let running = Running::start(config.clone(), stores.clone(), metrics);
    let js = jetstream::new(client.clone());
    wait_for_consumers(&js, &config, &layout, &running).await?;

    let mut traffic = Traffic::new(opts, chrono::Utc::now());
    let paced = load::publish_paced(&js, &mut traffic, rate, Duration::from_secs(args.latency_secs)).await?;
    let lasts = last_sequences(&js, &config, partitions, paced.last_seq).await?;
    let caught_up = poller.wait_until_caught_up(&lasts, CATCH_UP_MIN).await;
    anyhow::ensure!(
        caught_up,
        "tally did not commit every message of the latency phase: positions {:?}, last sequences {lasts:?}",
        poller.positions()
    );
    let drain_deadline = Instant::now() + OUTBOX_DRAIN_TIMEOUT;
    while outbox_len(&stores)? > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Published outputs reach a core subscriber within moments of their PubAck.
    tokio::time::sleep(Duration::from_millis(200)).await;
    collector.abort();
    running.stop().await?;

    // A message is committed when its own partition's position reaches it.
    let mut commit: Vec<Duration> = paced
        .published
        .iter()
        .filter_map(|message| {
            let partition = partition::of_store(&message.store, partitions);
            poller.reached(partition, message.seq).map(|at| at.saturating_duration_since(message.sent))
        })
        .collect();
    commit.sort();
    let alerts = std::mem::take(&mut *alerts.lock().unwrap_or_else(|e| e.into_inner()));
    let (mut firing, mut unmatched_alerts, mut by_other_records) = (0, 0, 0);
    let mut alert: Vec<Duration> = Vec::new();
    let mut revisions: Vec<(Alert, Instant)> = alerts
        .iter()
        .filter_map(|(arrived, payload)| Some((serde_json::from_slice::<Alert>(payload).ok()?, *arrived)))
        .collect();
    revisions.sort_by(|(a, _), (b, _)| (&a.id, a.revision).cmp(&(&b.id, b.revision)));
    let mut before: Option<&Alert> = None;
    for (parsed, arrived) in &revisions {
        let previous = before.filter(|b| b.id == parsed.id);
        before = Some(parsed);
        // Only a key that starts firing is timed, from the publish of the newest of its
        // unmatched sales: the sale that pushed it over. Later revisions of a firing key (its
        // drift changed when a decrement arrived, say) were caused by other records, and so was
        // a start whose newest unmatched sale was already listed by the key's previous revision:
        // timed from that sale they would measure seconds of the key's history instead.
        if parsed.state != "firing" || previous.is_some_and(|p| p.state == "firing") {
            continue;
        }
        firing += 1;
        let newest = parsed.unmatched.iter().filter_map(|id| Some((paced.transactions.get(id)?, id))).max();
        match newest {
            Some((_, id)) if previous.is_some_and(|p| p.unmatched.contains(id)) => by_other_records += 1,
            Some((sent, _)) => alert.push(arrived.saturating_duration_since(*sent)),
            None => unmatched_alerts += 1,
        }
    }
    alert.sort();
    let counts = AlertCounts { seen: alerts.len(), started: firing, without_sale: unmatched_alerts, by_other_records };
    Ok(latency_lines(rate, args.latency_rate.is_none(), &paced.mix, paced.elapsed, &commit, &alert, &counts))
}

/// What (c) saw of alerts: messages, keys that started firing, and those not timed.
struct AlertCounts {
    seen: usize,
    started: usize,
    without_sale: usize,
    by_other_records: usize,
}

fn latency_lines(
    rate: f64,
    half_of_b: bool,
    mix: &Mix,
    elapsed: Duration,
    commit: &[Duration],
    alert: &[Duration],
    counts: &AlertCounts,
) -> Vec<String> {
    let p = |v: &[Duration], q: f64| {
        measure::percentile(v, q).map(|d| format!("{:.1} ms", ms(d))).unwrap_or_else(|| "n/a".into())
    };
    vec![
        format!(
            "(c) latency at {rate:.0} msg/s ({}) for {:.1} s, drift.settle 0s: {} messages ({})",
            if half_of_b { "half of (b)" } else { "--latency-rate" },
            elapsed.as_secs_f64(),
            mix.messages,
            mix.describe()
        ),
        format!(
            "    publish→commit: p50 {} p99 {} max {} ({} messages; commit seen by polling every {} ms)",
            p(commit, 50.0),
            p(commit, 99.0),
            p(commit, 100.0),
            commit.len(),
            measure::POLL_EVERY.as_millis()
        ),
        format!(
            "    publish→alert:  p50 {} p99 {} max {} ({} keys that started firing after a sale timed, of {} that started firing; {} started by other records, {} without a known sale; {} alert messages in all)",
            p(alert, 50.0),
            p(alert, 99.0),
            p(alert, 100.0),
            alert.len(),
            counts.started,
            counts.by_other_records,
            counts.without_sale,
            counts.seen
        ),
    ]
}

/// Waits until the processor has every partition's input consumer, so the paced run starts
/// on readers.
async fn wait_for_consumers(
    js: &jetstream::Context,
    config: &Config,
    layout: &Layout,
    running: &Running,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        anyhow::ensure!(!running.failed_early(), "the processor stopped before consuming");
        anyhow::ensure!(Instant::now() < deadline, "the processor did not create its consumers in 30 s");
        if let Ok(stream) = js.get_stream(&config.input.stream).await {
            let mut missing = 0;
            for partition in layout.partitions() {
                if stream.consumer_info(partition.consumer_name(config)).await.is_err() {
                    missing += 1;
                }
            }
            if missing == 0 {
                // The runner recreates each consumer at its committed position right after setup.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stores as the poller reads them, in partition order.
pub(crate) fn as_stores(stores: &[Arc<RocksStore>]) -> Vec<Arc<dyn Store>> {
    stores.iter().map(|store| Arc::clone(store) as Arc<dyn Store>).collect()
}

/// The last stream sequence of each of `partitions` partitions of the input stream, which holds
/// `last_seq` messages: where each partition's position ends once it has caught up.
pub(crate) async fn last_sequences(
    js: &jetstream::Context,
    config: &Config,
    partitions: u32,
    last_seq: u64,
) -> anyhow::Result<Vec<u64>> {
    let stream = js.get_stream(INPUT_STREAM).await?;
    let layout = Layout { root: config.state.path.clone(), count: partitions };
    tally_processor::partitions::last_sequences(&stream, config, &layout, last_seq).await
}

/// Outputs not yet published, over every partition's outbox.
fn outbox_len(stores: &[Arc<RocksStore>]) -> anyhow::Result<usize> {
    let mut total = 0;
    for store in stores {
        total += store.scan_from(Cf::Outbox, &[], 1_000_000)?.len();
    }
    Ok(total)
}

/// RocksDB's memory over every partition's database: they share one block cache (each reports
/// the whole of it), and each has its own memtables and table readers.
fn rocks_memory(stores: &[Arc<RocksStore>]) -> anyhow::Result<RocksMemory> {
    let mut total = RocksMemory::default();
    for store in stores {
        let one = store.memory()?;
        total.block_cache = one.block_cache;
        total.memtables += one.memtables;
        total.table_readers += one.table_readers;
        total.keys += one.keys;
    }
    Ok(total)
}

fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn cpu_text(before: Option<f64>, after: Option<f64>) -> String {
    match (before, after) {
        (Some(before), Some(after)) => format!("{:.2} s", after - before),
        _ => "n/a".into(),
    }
}
