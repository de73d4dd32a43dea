//! `tally demo`: the main job on a local default. Starts a nats-server in a temporary directory
//! (or uses `--nats-url`), sets up the streams, runs the generator and the processor in this
//! process, and shows what happens until ctrl-c or `--duration`: on a terminal one screen
//! redrawn in place (stores, alerts as they fire and resolve, postings as they go out,
//! throughput), otherwise a plain line per refresh; then a summary of what was counted,
//! alerted, posted and dead-lettered, and where to look next (docs/operations.md).
//!
//! - `feed`: alerts, postings and dead letters as they are published (core subscriptions).
//! - `read`: the state, for the store table and what was counted; the output streams, for
//!   what went out.
//! - `screen`: the live screen and the plain line, as pure functions of what was read.
//! - `summary`: the closing summary and where to look next, a pure function too.
//! - `terminal`: the alternate screen, restored however the demo ends.

mod feed;
mod read;
pub mod screen;
pub mod summary;
mod terminal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tally_state::{RocksStore, Store};
use tally_traffic::{GenStats, LocalNats, RunError, RunOptions, Traffic};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::feed::Feed;
use self::screen::Snapshot;
use self::summary::{LookNext, Summary};
use self::terminal::AltScreen;
use crate::config::{Config, StoreConfig};
use crate::gencli::{until_shutdown, TrafficArgs};
use crate::partitions::{self, Layout, UnionStore};
use crate::{app, telemetry};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Use this NATS server instead of starting one (it needs JetStream enabled); its streams
    /// outlive the demo.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Where the processor's HTTP API listens (metrics, /v1) while the demo runs.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub http_listen: String,
    /// Keep the state here instead of in a temporary directory (then `tally inspect --state`
    /// reads it afterwards).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Seconds between refreshes; default 1 on a terminal, 5 otherwise (one line each).
    #[arg(long)]
    pub refresh_secs: Option<u64>,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// How long the processor may take to commit the last input and publish its outputs once the
/// generator is done, before the summary is taken anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    if args.traffic.duration.is_none() && args.traffic.count.is_none() {
        eprintln!("demo: running until ctrl-c (or pass --duration 60s)");
    }
    if (args.traffic.speedup - 1.0).abs() < f64::EPSILON {
        // A demo should show a day's worth of lag and drift in minutes, not hours.
        args.traffic.speedup = 60.0;
    }
    // Checked first: a bad --duration or --rate fails before anything starts.
    let run_options = args.traffic.run_options()?;
    let temp = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
    let (nats_url, _server) = match &args.nats_url {
        Some(url) => (url.clone(), None),
        None => {
            // In its own process group, so the ctrl-c that stops the demo does not take the
            // server away before the processor has stopped and the summary is read.
            let server =
                LocalNats::launch().dir(&temp.path().join("nats")).prefer_port(4222).own_process_group().start();
            let server = server.context("starting a local nats-server (or pass --nats-url)")?;
            (server.url(), Some(server))
        }
    };
    let config = demo_config(&args, &nats_url, temp.path())?;
    eprintln!("demo: NATS {nats_url}, state {}, HTTP http://{}", config.state.path.display(), config.http.listen);
    let partitions = app::setup(&config).await?;

    let metrics = telemetry::install()?;
    let shutdown = app::shutdown_on_signals();
    let stores = app::open_partitions(&config, partitions)?;
    let parts: Vec<Arc<dyn Store>> = stores.iter().map(|s| Arc::clone(s) as Arc<dyn Store>).collect();
    let store = UnionStore::over(parts.clone());
    let client = async_nats::connect(nats_url.as_str()).await?;
    // Subscribed before anything is published, so the screen misses no output.
    let feed = Feed::start(&client, &config.input.subject_prefix).await?;
    let processor = Processor::start(&config, stores, metrics, &shutdown);

    let js = async_nats::jetstream::new(client);
    let duration = run_options.duration;
    let (generator, progress) = spawn_generator(&js, &args.traffic, run_options, &shutdown);

    let terminal = std::io::stdout().is_terminal();
    let refresh = Duration::from_secs(args.refresh_secs.unwrap_or(if terminal { 1 } else { 5 }).max(1));
    let mut live = Live {
        store: Arc::clone(&store),
        parts: parts.clone(),
        layout: Layout { root: config.state.path.clone(), count: partitions },
        feed,
        js: js.clone(),
        config: &config,
        started: Instant::now(),
        duration,
        last: (Instant::now(), 0, 0),
    };
    let screen = if terminal { Some(AltScreen::enter()?) } else { None };
    live.show(screen.as_ref(), &generator, &processor.task, shutdown.clone(), refresh).await;

    let generated = generator.await.context("generator panicked")?;
    let stopped = processor.stop().await;
    let mut summary = Summary {
        elapsed: live.started.elapsed(),
        interrupted: *shutdown.borrow(),
        next: look_next(&args, &config, &nats_url),
        ..Summary::default()
    };
    let stats = generated.as_ref().map(|stats| stats.clone()).unwrap_or_else(|_| progress.borrow().clone());
    (summary.baskets, summary.generated) = (stats.baskets, stats.messages);
    (summary.malformed, summary.drift_injected) = (stats.malformed, stats.drift_injected);
    let read = read::counted(store.as_ref(), &parts, &mut summary);
    let sent = read::sent(&js, &config.input.stream, &mut summary).await;
    drop(screen);
    for line in summary::summary(&summary) {
        println!("{line}");
    }
    generated.context("the generator stopped")?;
    stopped?;
    read.context("reading the state for the summary")?;
    sent.context("reading the output streams for the summary")
}

/// The generator, publishing until done or ctrl-c; its stats as they grow.
fn spawn_generator(
    js: &async_nats::jetstream::Context,
    args: &TrafficArgs,
    run_options: RunOptions,
    shutdown: &watch::Receiver<bool>,
) -> (JoinHandle<Result<GenStats, RunError>>, watch::Receiver<GenStats>) {
    let mut traffic = Traffic::new(args.options(), chrono::Utc::now());
    let (progress_tx, progress) = watch::channel(GenStats::default());
    let (js, shutdown) = (js.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        let on_progress = |stats: &GenStats| {
            let _ = progress_tx.send(stats.clone());
        };
        let until = until_shutdown(shutdown);
        tally_traffic::run(&js, &mut traffic, &run_options, until, on_progress).await
    });
    (task, progress)
}

fn demo_config(args: &DemoArgs, nats_url: &str, temp: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = Config::default();
    config.nats.url = nats_url.to_string();
    config.http.listen = args.http_listen.clone();
    config.state.path = args.state.clone().unwrap_or_else(|| temp.join("state"));
    config.input.subject_prefix = args.traffic.subject_prefix.clone();
    // Interim postings every few seconds, so a short demo shows the ERP side too.
    config.erp.interval = "10s".into();
    let options = args.traffic.options();
    for (index, id) in tally_traffic::store_ids(&options).into_iter().enumerate() {
        let zone = tally_traffic::store_timezone(&options, index).name().to_string();
        config.stores.insert(id, StoreConfig { timezone: Some(zone), drift: None });
    }
    Ok(config)
}

fn look_next(args: &DemoArgs, config: &Config, nats_url: &str) -> LookNext {
    let streams = crate::nats::streams(config);
    let name = |index: usize| streams.get(index).map(|s| s.0.clone()).unwrap_or_default();
    LookNext {
        http: config.http.listen.clone(),
        nats_url: nats_url.to_string(),
        nats_kept: args.nats_url.is_some(),
        state: args.state.clone(),
        subject_prefix: config.input.subject_prefix.clone(),
        alerts_stream: name(1),
        erp_stream: name(2),
        dlq_stream: name(3),
        example: None,
    }
}

/// The processor, running in this process on the demo's store.
struct Processor {
    task: JoinHandle<anyhow::Result<()>>,
    stop: watch::Sender<bool>,
}

impl Processor {
    /// Starts it; it stops on ctrl-c, or when [`Processor::stop`] is called: gracefully either
    /// way, so that it leaves NATS before the local server goes.
    fn start(
        config: &Config,
        stores: Vec<Arc<RocksStore>>,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
        shutdown: &watch::Receiver<bool>,
    ) -> Processor {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn({
            let mut signals = shutdown.clone();
            let stop = stop.clone();
            async move {
                if signals.wait_for(|s| *s).await.is_ok() {
                    let _ = stop.send(true);
                }
            }
        });
        let task = tokio::spawn(app::run_with_stores(config.clone(), stores, metrics, stopped));
        Processor { task, stop }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("the processor panicked")?.context("the processor stopped with an error")
    }
}

/// The live view: reads a [`Snapshot`] every refresh and shows it.
struct Live<'a> {
    /// Every partition's state read as one, and each partition's.
    store: Arc<dyn Store>,
    parts: Vec<Arc<dyn Store>>,
    layout: Layout,
    feed: Feed,
    js: async_nats::jetstream::Context,
    config: &'a Config,
    started: Instant,
    duration: Option<Duration>,
    /// When the last snapshot was taken, with the published and committed counts then.
    last: (Instant, u64, u64),
}

impl Live<'_> {
    /// Shows snapshots until ctrl-c, the processor stops, or the generator is done and the
    /// processor has caught up (or [`CATCH_UP_TIMEOUT`] passed).
    async fn show(
        &mut self,
        screen: Option<&AltScreen>,
        generator: &JoinHandle<Result<GenStats, RunError>>,
        processor: &JoinHandle<anyhow::Result<()>>,
        mut shutdown: watch::Receiver<bool>,
        every: Duration,
    ) {
        let mut generator_done: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let snapshot = match self.snapshot().await {
                Ok(snapshot) => snapshot,
                Err(err) => {
                    tracing::warn!("Cannot read the state for the demo's screen: {err:#}");
                    continue;
                }
            };
            match screen {
                Some(screen) => {
                    let (height, width) = terminal::size();
                    if let Err(err) = screen.draw(&screen::screen(&snapshot, height, width)) {
                        tracing::warn!("Cannot draw the demo's screen: {err}");
                    }
                }
                None => println!("{}", screen::line(&snapshot)),
            }
            if processor.is_finished() {
                return;
            }
            if generator.is_finished() {
                let since = *generator_done.get_or_insert_with(Instant::now);
                let caught_up = snapshot.committed >= snapshot.published && snapshot.outbox == 0;
                if caught_up || since.elapsed() >= CATCH_UP_TIMEOUT {
                    return;
                }
            }
        }
    }

    async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        // The input stream's last sequence: what the generator (or anyone) published, and what
        // the committed position reaches when tally has caught up.
        let mut input = self.js.get_stream(&self.config.input.stream).await?;
        let published = input.info().await?.state.last_sequence;
        // Read without a gap up to the lowest position of a partition that is behind.
        let lasts = partitions::last_sequences(&input, self.config, &self.layout, published).await?;
        let committed = partitions::behind(&read::positions(&self.parts)?, &lasts).unwrap_or(published);
        let (then, published_then, committed_then) = self.last;
        let secs = then.elapsed().as_secs_f64().max(0.001);
        self.last = (Instant::now(), published, committed);
        let mut snapshot = Snapshot {
            elapsed: self.started.elapsed(),
            duration: self.duration,
            published,
            published_rate: published.saturating_sub(published_then) as f64 / secs,
            committed,
            committed_rate: committed.saturating_sub(committed_then) as f64 / secs,
            outbox: read::outbox(self.store.as_ref())?,
            stores: read::store_rows(self.store.as_ref(), self.config.drift.min_units)?,
            http: self.config.http.listen.clone(),
            nats_url: self.config.nats.url.clone(),
            subject_prefix: self.config.input.subject_prefix.clone(),
            ..Snapshot::default()
        };
        self.feed.fill(&mut snapshot);
        Ok(snapshot)
    }
}
