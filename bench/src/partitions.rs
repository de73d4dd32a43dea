//! `tally-bench partitions`: the topology's work spread over partitions, without NATS
//! (bench/README.md, "Partitions"). The generated messages are split by store into P
//! partitions (`partition::of_store`, the server's transform); each partition has its own
//! RocksDB database (all sharing one block cache and one memtable budget), its own topology and
//! working set (a 1/P share of the whole's bounds), and is applied batch by batch on one of T
//! threads, as a partition's pipeline would. The table gives the rate for each T against one partition on one thread.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tally_processor::config::Config;
use tally_state::{Overlay, RocksOptions, RocksShared, RocksStore, Store};
use tally_topologies::partition;
use tally_topologies::topology::{InputMessage, Retail, Tick};
use tally_traffic::WireMessage;

#[derive(clap::Args, Debug, Clone)]
pub struct PartitionsArgs {
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Partitions the stores are spread over (`input.partitions`).
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Thread counts to measure, comma-separated; default 1, 2 and the cores available.
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    #[arg(long, default_value_t = 500)]
    pub batch_max: usize,
    #[arg(long, default_value_t = 400)]
    pub stores: usize,
    #[arg(long, default_value_t = 5_000)]
    pub skus: usize,
}

/// One partition's messages with their global stream sequences, in stream order.
type Lane = Vec<(u64, WireMessage)>;

pub fn run(args: PartitionsArgs) -> anyhow::Result<()> {
    let n = args.messages as usize;
    let (config, msgs) = crate::apply::generated_chain(args.stores, args.skus, n);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = if args.threads.is_empty() { vec![1, 2, cores] } else { args.threads.clone() };
    threads.sort_unstable();
    threads.dedup();
    println!(
        "tally-bench partitions: {n} messages of {} stores, batch {}, {cores} cores; RocksDB with fsync, one shared 128 MiB block cache and 64 MiB memtable budget",
        args.stores, args.batch_max
    );
    let single = measure(&config, &lanes(&msgs, 1), 1, args.batch_max)?;
    println!("{:>11} {:>8} {:>12} {:>10} {:>14}", "partitions", "threads", "msg/s", "vs 1 × 1", "CPU µs/msg");
    print_row(1, 1, &single, &single, n);
    let split = lanes(&msgs, args.partitions);
    for &t in &threads {
        let run = measure(&config, &split, t, args.batch_max)?;
        print_row(args.partitions, t, &run, &single, n);
    }
    Ok(())
}

fn print_row(partitions: u32, threads: usize, run: &Run, single: &Run, n: usize) {
    println!(
        "{partitions:>11} {threads:>8} {:>12.0} {:>9.2}× {:>14.1}",
        run.rate,
        run.rate / single.rate,
        run.cpu_secs * 1e6 / n as f64
    );
}

/// The messages of each partition, by the store token of their subject.
fn lanes(msgs: &[WireMessage], partitions: u32) -> Vec<Lane> {
    let mut lanes = vec![Vec::new(); partitions as usize];
    for (at, msg) in msgs.iter().enumerate() {
        let store = crate::load::store_token(&msg.subject);
        lanes[partition::of_store(store, partitions) as usize].push((at as u64 + 1, msg.clone()));
    }
    lanes
}

struct Run {
    rate: f64,
    cpu_secs: f64,
}

/// Applies every lane on `threads` threads (lane i on thread i mod threads, each thread taking
/// a batch of each of its lanes in turn), each lane over its own database in a fresh temp dir.
fn measure(config: &Config, lanes: &[Lane], threads: usize, batch_max: usize) -> anyhow::Result<Run> {
    let dir = tempfile::Builder::new().prefix("tally-bench-partitions-").tempdir()?;
    let rocks_opts = RocksOptions::default();
    let shared = RocksShared::for_databases(&rocks_opts, lanes.len());
    let mut partitions = Vec::with_capacity(lanes.len());
    for (p, lane) in lanes.iter().enumerate() {
        let path = dir.path().join(format!("partition-{p}"));
        let store: Arc<dyn Store> = Arc::new(open(&path, &rocks_opts, &shared)?);
        partitions.push((Retail::with_share(config.topology(), Default::default(), lanes.len()), store, lane));
    }
    let messages: usize = lanes.iter().map(Vec::len).sum();
    let cpu_before = crate::measure::process_cpu_secs(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut workers = Vec::new();
        for t in 0..threads {
            let mine: Vec<_> = partitions.iter().skip(t).step_by(threads).collect();
            workers.push(scope.spawn(move || -> anyhow::Result<()> {
                let mut cursors = vec![0usize; mine.len()];
                loop {
                    let mut progressed = false;
                    for (at, (retail, store, lane)) in mine.iter().enumerate() {
                        let chunk = &lane[cursors[at]..(cursors[at] + batch_max).min(lane.len())];
                        if chunk.is_empty() {
                            continue;
                        }
                        cursors[at] += chunk.len();
                        progressed = true;
                        apply_batch(retail, store.as_ref(), chunk)?;
                    }
                    if !progressed {
                        return Ok(());
                    }
                }
            }));
        }
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a partition thread panicked"))??;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_secs = crate::measure::process_cpu_secs(std::process::id()).unwrap_or(0.0) - cpu_before;
    Ok(Run { rate: messages as f64 / elapsed, cpu_secs })
}

fn open(path: &Path, opts: &RocksOptions, shared: &RocksShared) -> anyhow::Result<RocksStore> {
    Ok(RocksStore::open_shared(path, opts, shared)?)
}

/// One batch as the run loop applies it: one overlay, `Retail::apply_batch`, one write.
fn apply_batch(retail: &Retail, store: &dyn Store, chunk: &[(u64, WireMessage)]) -> anyhow::Result<()> {
    let mut txn = Overlay::new(store);
    let inputs: Vec<InputMessage<'_>> = chunk
        .iter()
        .map(|(seq, msg)| InputMessage::new(&msg.subject, Some(msg.content_type), &msg.payload, *seq))
        .collect();
    retail.apply_batch(&mut txn, &inputs, Utc::now(), Tick::Skip)?;
    store.write(&txn.into_batch())?;
    Ok(())
}
