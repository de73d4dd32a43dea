//! `tally demo`: the main job on a local default. Starts a nats-server in a temporary directory
//! (or uses `--nats-url`), sets up the streams, runs the generator and the processor in this
//! process, and prints a live per-store summary until ctrl-c or `--duration`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use rust_decimal::Decimal;
use tally_state::{Cf, Overlay, Store};
use tally_topologies::aggregates::{self, SkuDay};
use tally_topologies::drift::Phase;
use tally_topologies::{keys, report, topology};
use tokio::sync::watch;

use crate::config::{Config, StoreConfig};
use crate::gen::{self, Traffic};
use crate::gencli::{until_shutdown, TrafficArgs};
use crate::localnats::LocalNats;
use crate::{app, telemetry};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Use this NATS server instead of starting one (it needs JetStream enabled).
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Where the processor's HTTP API listens (metrics, /v1).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub http_listen: String,
    /// Keep the state here instead of in a temporary directory.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Seconds between summary refreshes.
    #[arg(long, default_value_t = 2)]
    pub refresh_secs: u64,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

pub async fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    if args.traffic.duration.is_none() && args.traffic.count.is_none() {
        eprintln!("demo: running until ctrl-c (or pass --duration 60s)");
    }
    if (args.traffic.speedup - 1.0).abs() < f64::EPSILON {
        // A demo should show a day's worth of lag and drift in minutes, not hours.
        args.traffic.speedup = 60.0;
    }
    let temp = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
    let (nats_url, _server) = match &args.nats_url {
        Some(url) => (url.clone(), None),
        None => {
            let server = LocalNats::start(&temp.path().join("nats"))?;
            (server.url.clone(), Some(server))
        }
    };
    let config = demo_config(&args, &nats_url, temp.path())?;
    eprintln!("demo: NATS {nats_url}, state {}, HTTP http://{}", config.state.path.display(), config.http.listen);
    app::setup(&config).await?;

    let metrics = telemetry::install()?;
    let shutdown = app::shutdown_on_signals();
    let store = app::open_store(&config)?;
    // The processor stops on ctrl-c, or when the demo is done: gracefully either way, so that it
    // leaves NATS before the local server goes.
    let (stop_processor, processor_stop) = watch::channel(false);
    tokio::spawn({
        let mut signals = shutdown.clone();
        let stop = stop_processor.clone();
        async move {
            if signals.wait_for(|s| *s).await.is_ok() {
                let _ = stop.send(true);
            }
        }
    });
    let processor = tokio::spawn(app::run_with_store(config.clone(), store.clone(), metrics, processor_stop));

    let client = async_nats::connect(nats_url.as_str()).await?;
    let js = async_nats::jetstream::new(client);
    let gen_js = js.clone();
    let run_options = args.traffic.run_options()?;
    let mut traffic = Traffic::new(args.traffic.options(), chrono::Utc::now());
    let (gen_done_tx, gen_done) = watch::channel(false);
    let generator = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let result = gen::run(&gen_js, &mut traffic, &run_options, until_shutdown(shutdown), |_| {}).await;
            let _ = gen_done_tx.send(true);
            result
        }
    });

    let summary = Summary::new(store.clone() as Arc<dyn Store>, config.drift.min_units, js.clone());
    summary.show_until(shutdown.clone(), gen_done, Duration::from_secs(args.refresh_secs.max(1))).await;
    let stats = generator.await.context("generator panicked")??;
    eprintln!("demo: generator done: {} baskets, {} messages, {} malformed, {} drift injected",
        stats.baskets, stats.messages, stats.malformed, stats.drift_injected);
    if !*shutdown.borrow() {
        // Let the processor catch up with the last messages before stopping it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        summary.print().await;
    }
    let _ = stop_processor.send(true);
    match processor.await {
        Ok(Err(err)) => eprintln!("demo: the processor stopped with an error: {err:#}"),
        Err(err) => eprintln!("demo: the processor panicked: {err}"),
        Ok(Ok(())) => {}
    }
    Ok(())
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
    for (index, id) in gen::store_ids(&options).into_iter().enumerate() {
        let zone = gen::store_timezone(&options, index).name().to_string();
        config.stores.insert(id, StoreConfig { timezone: Some(zone), drift: None });
    }
    Ok(config)
}

/// The live per-store table, read from state.
struct Summary {
    store: Arc<dyn Store>,
    js: async_nats::jetstream::Context,
    min_units: Decimal,
    started: Instant,
    last: std::sync::Mutex<(Instant, u64)>,
}

/// Rows shown at most; the rest are summed in the totals line.
const ROWS_MAX: usize = 15;

impl Summary {
    fn new(store: Arc<dyn Store>, min_units: Decimal, js: async_nats::jetstream::Context) -> Self {
        let now = Instant::now();
        Summary { store, js, min_units, started: now, last: std::sync::Mutex::new((now, 0)) }
    }

    async fn show_until(&self, mut shutdown: watch::Receiver<bool>, mut gen_done: watch::Receiver<bool>, every: Duration) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.print().await,
                _ = shutdown.changed() => return,
                _ = gen_done.changed() => return,
            }
        }
    }

    async fn print(&self) {
        let dlq = match self.js.get_stream("RETAIL_DLQ").await {
            Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        match self.render(dlq) {
            Ok(text) => {
                if std::io::stdout().is_terminal() {
                    print!("\x1b[2J\x1b[H");
                }
                println!("{text}");
            }
            Err(err) => eprintln!("demo: cannot read state: {err:#}"),
        }
    }

    fn render(&self, dlq: u64) -> anyhow::Result<String> {
        let position = topology::committed_position(&Overlay::new(self.store.as_ref()))?;
        let rate = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let elapsed = last.0.elapsed().as_secs_f64().max(0.001);
            let rate = (position.saturating_sub(last.1)) as f64 / elapsed;
            *last = (Instant::now(), position);
            rate
        };
        let outbox = self.store.scan_from(Cf::Outbox, &[], 100_000)?.len();
        let mut rows = Vec::new();
        for (store_id, day) in report::store_days(self.store.as_ref(), 100_000)? {
            let Some(totals) = report::store_day_totals(self.store.as_ref(), &store_id, day)? else { continue };
            let drift_keys = self.drift_keys(&store_id, day)?;
            rows.push((store_id, day, totals, drift_keys));
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.2.net));
        let mut out = format!(
            "tally demo — {:>5.0}s  events committed {position}  ({rate:.0}/s)  dead-lettered {dlq}  outbox {outbox}\n\n\
             {:<6} {:<10} {:>7} {:>13} {:>11} {:>6} {:>5} {:>8} {:>8} {:>7} {:>9}\n",
            self.started.elapsed().as_secs_f64(),
            "store", "day", "txns", "net", "tax", "dupes", "confl", "lagging", "pending", "firing", "postings"
        );
        for (store_id, day, t, drift) in rows.iter().take(ROWS_MAX) {
            out.push_str(&format!(
                "{store_id:<6} {day:<10} {:>7} {:>13} {:>11} {:>6} {:>5} {:>8} {:>8} {:>7} {:>9}\n",
                t.transactions,
                t.net.round_dp(2),
                t.tax.round_dp(2),
                t.duplicates,
                t.conflicts,
                drift.lagging,
                drift.pending,
                drift.firing,
                t.posting.seq
            ));
        }
        let net: Decimal = rows.iter().map(|r| r.2.net).sum();
        let txns: i64 = rows.iter().map(|r| r.2.transactions).sum();
        let firing: usize = rows.iter().map(|r| r.3.firing).sum();
        let pending: usize = rows.iter().map(|r| r.3.pending).sum();
        out.push_str(&format!(
            "\nall {} store-days: {txns} transactions, net {}; drift keys: {pending} pending (over threshold, \
             settling), {firing} firing or final\n(lagging = sku-days with |drift| >= {} units, most of it normal \
             inventory lag; http://…/v1/alerts lists the alerts)",
            rows.len(), net.round_dp(2), self.min_units
        ));
        Ok(out)
    }

    fn drift_keys(&self, store_id: &str, day: chrono::NaiveDate) -> anyhow::Result<DriftCounts> {
        let rows = self.store.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(store_id, day), 1_000_000)?;
        let mut counts = DriftCounts::default();
        for (_, value) in rows {
            let sku: SkuDay = aggregates::decode(&value)?;
            if sku.drift_units().abs() >= self.min_units {
                counts.lagging += 1;
            }
            match sku.alert.phase {
                Phase::Pending => counts.pending += 1,
                Phase::Firing | Phase::Final => counts.firing += 1,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// Drift keys of one store-day by what they show.
#[derive(Debug, Default, Clone, Copy)]
struct DriftCounts {
    lagging: usize,
    pending: usize,
    firing: usize,
}
