//! `tally-bench process`: the `tally` binary itself, as its own process with default settings,
//! over a preloaded stream until it has acked every message. It measures what the RSS target
//! is about (RSS ≤ 512 MiB at 10 M keys): the e2e run's (b) measures tally inside the bench
//! process, whose peak includes the harness; this one reads the tally process's own VmHWM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use tally_processor::app;
use tally_processor::config::Config;
use tally_processor::partitions::{self, Layout};
use tally_state::{Cf, Store};
use tally_traffic::{LocalNats, Traffic};

use crate::e2e::{
    chain_options, default_config, last_sequences, CATCH_UP_MIN, CATCH_UP_PER_MESSAGE, INPUT_STREAM, STOP_TIMEOUT,
};
use crate::load;
use crate::measure::{self, mib};

#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// Input messages to preload; 2 200 000 leave about 10.3 M keys in state (2 000 000: 9.4 M).
    #[arg(long, default_value_t = 2_200_000)]
    pub messages: u64,
    /// Stores of the generated chain.
    #[arg(long, default_value_t = 400)]
    pub stores: usize,
    /// Active SKUs per store.
    #[arg(long, default_value_t = 5_000)]
    pub skus: usize,
    /// Baskets per second of event time in the preload (as in `e2e`).
    #[arg(long, default_value_t = 40.0)]
    pub event_rate: f64,
    /// `input.partitions` of the input stream; tally's default (16 for a new stream) when not
    /// given.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The `tally` binary; by default the one next to this benchmark's executable (cargo
    /// builds both into the same target directory).
    #[arg(long, env = "TALLY_BIN")]
    pub tally_bin: Option<PathBuf>,
    /// Keep the run's directory (NATS store, tally's state, configuration and log) and print
    /// where it is, to look into afterwards.
    #[arg(long)]
    pub keep: bool,
    /// A small, quick run for the test suite: at most 3 000 messages.
    #[arg(long)]
    pub smoke: bool,
}

/// How often the tally process's RSS and its consumer's ack floor are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often progress is printed while tally catches up.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

pub async fn run(mut args: ProcessArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.messages = args.messages.min(3_000);
    }
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    anyhow::ensure!(args.event_rate.is_finite() && args.event_rate > 0.0, "--event-rate must be positive");
    let tally_bin = tally_binary(args.tally_bin.clone())?;

    let temp = tempfile::Builder::new().prefix("tally-bench-process-").tempdir()?;
    let nats = LocalNats::start(&temp.path().join("nats"))?;
    let client = async_nats::connect(nats.url().as_str()).await.context("connecting to the bench's nats-server")?;
    let js = jetstream::new(client);
    let opts = chain_options(args.stores, args.skus, args.seed);
    let mut config = default_config(&nats.url(), &temp.path().join("state"), &opts)?;
    config.input.partitions = args.partitions;
    let partitions = app::setup(&config).await.context("tally setup")?;
    println!(
        "tally-bench process: {} messages, {} stores, {} SKUs, {partitions} partition(s), tally's default settings otherwise, {}",
        args.messages,
        args.stores,
        args.skus,
        tally_bin.display()
    );
    let span = load::preload_span(args.messages, args.event_rate);
    let start = chrono::Utc::now() - span;
    let mut traffic = Traffic::new(opts, start);
    let preloaded = load::preload(&js, &mut traffic, start, args.event_rate, args.messages).await?;
    drop(traffic);
    println!("preload: {} messages ({})", preloaded.mix.messages, preloaded.mix.describe());
    let lasts = last_sequences(&js, &config, partitions, preloaded.last_seq).await?;
    let layout = Layout { root: config.state.path.clone(), count: partitions };

    let config_path = temp.path().join("tally.toml");
    std::fs::write(&config_path, toml::to_string(&config).context("writing tally's configuration as TOML")?)?;
    let log_path = temp.path().join("tally.log");
    let started = Instant::now();
    let mut tally = Tally::spawn(&tally_bin, &config_path, &log_path)?;
    let stream = js.get_stream(INPUT_STREAM).await?;
    let timeout = (CATCH_UP_PER_MESSAGE * u32::try_from(args.messages).unwrap_or(u32::MAX)).max(CATCH_UP_MIN);
    let mut last_progress = Instant::now();
    let mut largest = Sample::default();
    loop {
        if let Some(status) = tally.child.try_wait()? {
            anyhow::bail!("tally exited with {status} before acking every message; its log:\n{}", log_tail(&log_path));
        }
        let acked = ack_floors(&stream, &config, &layout).await;
        let Some(lowest) = partitions::behind(&acked, &lasts) else { break };
        let rss = measure::process_rss_bytes(tally.pid()).unwrap_or(0);
        if rss > largest.rss {
            largest = Sample { rss, parts: scrape_memory(&config.http.listen).unwrap_or_default() };
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "tally had not acked all {} messages in {timeout:?}: the lowest ack floor of the partitions behind is {lowest}",
            preloaded.last_seq
        );
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprintln!(
                "  {} of {partitions} partition(s) done, lowest ack floor behind {lowest} of {}, after {:.0} s, RSS {:.0} MiB",
                acked.iter().zip(&lasts).filter(|(floor, last)| floor >= last).count(),
                preloaded.last_seq,
                started.elapsed().as_secs_f64(),
                mib(measure::process_rss_bytes(tally.pid()).unwrap_or(0))
            );
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let elapsed = started.elapsed();
    let pid = tally.pid();
    let peak = measure::process_peak_rss_bytes(pid).context("reading the tally process's VmHWM")?;
    let rss = measure::process_rss_bytes(pid).unwrap_or(0);
    let cpu = measure::process_cpu_secs(pid).unwrap_or(0.0);
    tally.stop()?;

    let stores = app::open_partitions(&config, partitions).context("opening tally's state after it stopped")?;
    let mut keys = 0;
    for store in &stores {
        keys += count_keys(store.as_ref())?;
    }
    let (_, state_disk) = measure::dir_size(&config.state.path);
    println!(
        "tally process: {} messages acked in {:.2} s ({:.0} msg/s, from spawn, start-up included), CPU {:.1} s",
        preloaded.last_seq,
        elapsed.as_secs_f64(),
        preloaded.last_seq as f64 / elapsed.as_secs_f64(),
        cpu
    );
    println!(
        "    peak RSS {:.0} MiB (VmHWM of the tally process), RSS at the end {:.0} MiB; {} keys in state (counted), state on disk {:.1} MiB",
        mib(peak),
        mib(rss),
        keys,
        mib(state_disk)
    );
    println!("    {}", largest.describe());
    if args.keep {
        drop(nats);
        println!("    kept: {} (tally's log: tally.log)", temp.keep().display());
    }
    println!("tally_peak_rss_mib: {:.0}", mib(peak));
    Ok(())
}

/// Each partition's consumer's ack floor (its last stream sequence acked without a gap), in
/// partition order; 0 for a consumer tally has not created yet.
async fn ack_floors(stream: &jetstream::stream::Stream, config: &Config, layout: &Layout) -> Vec<u64> {
    let mut floors = Vec::new();
    for partition in layout.partitions() {
        let floor = match stream.consumer_info(partition.consumer_name(config)).await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(_) => 0,
        };
        floors.push(floor);
    }
    floors
}

/// Keys in every column family, counted by scanning: RocksDB's own estimate, right after an
/// open, reads the statistics of only a few files and was off by 20× here.
fn count_keys(store: &dyn Store) -> anyhow::Result<u64> {
    let mut total = 0;
    for cf in Cf::ALL {
        tally_state::visit_prefix(store, cf, &[], 100_000, |_, _| {
            total += 1;
            true
        })?;
    }
    Ok(total)
}

/// The largest RSS sampled, with tally's own account of its memory (`tally_memory_bytes`,
/// refreshed every second) at that moment.
#[derive(Default)]
struct Sample {
    rss: u64,
    parts: Vec<(String, f64)>,
}

impl Sample {
    fn describe(&self) -> String {
        let accounted: f64 = self.parts.iter().filter(|(part, _)| part != "rss").map(|(_, bytes)| bytes).sum();
        let parts: Vec<String> = self
            .parts
            .iter()
            .filter(|(part, _)| part != "rss")
            .map(|(part, bytes)| format!("{part} {:.0}", bytes / 1048576.0))
            .collect();
        format!(
            "largest RSS sampled (every {} ms): {:.0} MiB; tally_memory_bytes then, in MiB: {}; the rest (allocators, buffers, code) {:.0}",
            SAMPLE_EVERY.as_millis(),
            mib(self.rss),
            parts.join(", "),
            (self.rss as f64 - accounted) / 1048576.0
        )
    }
}

/// The `tally_memory_bytes` gauges from tally's `/metrics`, by part.
fn scrape_memory(listen: &str) -> Option<Vec<(String, f64)>> {
    let text = http_get(listen, "/metrics")?;
    let parts = text
        .lines()
        .filter_map(|line| line.strip_prefix("tally_memory_bytes{part=\""))
        .filter_map(|rest| {
            let (part, value) = rest.split_once("\"} ")?;
            Some((part.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    Some(parts)
}

/// The whole HTTP/1.0 answer (status line, headers, body) of `GET path` at `listen`; `None`
/// when it does not answer within a second.
pub(crate) fn http_get(listen: &str, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(listen).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: tally\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `--tally-bin`, else `tally` in the directory of this executable.
pub(crate) fn tally_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?.parent().context("this executable's directory")?.join("tally"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} does not exist: build it with `cargo build --release -p tally-processor` (or pass --tally-bin)",
        path.display()
    );
    Ok(path)
}

/// The `tally run` child process, killed on drop.
pub(crate) struct Tally {
    pub child: Child,
}

impl Tally {
    fn spawn(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Tally> {
        Self::spawn_logging(binary, config, log, "warn")
    }

    /// `tally run --config config`, logging at `level` into `log`.
    pub fn spawn_logging(binary: &Path, config: &Path, log: &Path, level: &str) -> anyhow::Result<Tally> {
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Tally { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        terminate(self.child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "tally exited with {status} on SIGTERM");
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "tally did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(pid: u32) {
    // SAFETY: kill only sends a signal to the child this benchmark started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// The last lines of tally's log, for an error message.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
