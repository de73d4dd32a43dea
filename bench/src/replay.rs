//! `tally-bench replay`: the topology's outputs over a fixed, generated input, written to files,
//! so that two builds can be compared byte for byte (`diff -r` of their output directories).
//!
//! Deterministic: a fixed seed and start, one basket per second of event time (so the run
//! crosses business days and sees day-closes, finalizations, interim postings and settled
//! alerts), malformed input for the DLQ, and a fake processing-time clock that advances one
//! second per batch with the tick run at every batch. After the input, processing time jumps
//! ahead so idle stores finalize their days. Written into `--out`:
//!
//! - `outbox.txt`: every output in outbox order, one per line: subject, `Nats-Msg-Id`, headers,
//!   payload (JSON as text, anything else as hex);
//! - `reports.jsonl`: the day report (`/v1/stores/<store>/days/<day>`) of every store-day;
//! - `alerts.json`: the latest revision of every alert (`/v1/alerts`).

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use tally_processor::config::Config;
use tally_state::{Cf, MemStore, Overlay, Store};
use tally_topologies::aggregates::OutboxEntry;
use tally_topologies::codec;
use tally_topologies::report;
use tally_topologies::topology::{InputMessage, Retail, Tick};
use tally_traffic::{GenOptions, Traffic, WireMessage};

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    #[arg(long, default_value_t = 40)]
    pub stores: usize,
    #[arg(long, default_value_t = 400)]
    pub skus: usize,
    #[arg(long, default_value_t = 500)]
    pub batch_max: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The directory to write the outputs into (created).
    #[arg(long)]
    pub out: PathBuf,
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T20:00:00Z").map(|t| t.to_utc()).unwrap_or_default()
}

/// The input: one basket per second of event time, queued messages as they come due.
fn generate(opts: GenOptions, n: usize) -> Vec<WireMessage> {
    let mut traffic = Traffic::new(opts, start());
    let mut out = Vec::with_capacity(n);
    let mut basket = 0;
    while out.len() < n {
        let at = start() + Duration::seconds(basket);
        out.extend(traffic.due(at));
        out.extend(traffic.next_basket(at));
        basket += 1;
    }
    out.truncate(n);
    out.extend(traffic.drain_all());
    out
}

/// Applies one batch as the runner does (`Retail::apply_batch`, with the tick) and commits it.
fn apply(retail: &Retail, store: &MemStore, batch: &[(u64, &WireMessage)], now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut txn = Overlay::new(store);
    let inputs: Vec<InputMessage<'_>> = batch
        .iter()
        .map(|(seq, msg)| InputMessage::new(&msg.subject, Some(msg.content_type), &msg.payload, *seq))
        .collect();
    retail.apply_batch(&mut txn, &inputs, now, Tick::Run)?;
    store.write(&txn.into_batch())?;
    Ok(())
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let opts = GenOptions {
        stores: args.stores,
        skus_per_store: args.skus,
        seed: args.seed,
        malformed_share: 0.01,
        day_close_error_share: 0.2,
        ..GenOptions::default()
    };
    let mut config = Config::default();
    crate::e2e::add_generated_stores(&mut config, &opts);
    let retail = Retail::new(config.topology());
    let msgs = generate(opts, args.messages);
    let store = MemStore::new();
    let mut now = start();
    let numbered: Vec<(u64, &WireMessage)> = msgs.iter().enumerate().map(|(i, m)| (i as u64 + 1, m)).collect();
    for batch in numbered.chunks(args.batch_max.max(1)) {
        now += Duration::seconds(1);
        apply(&retail, &store, batch, now)?;
    }
    for elapsed in [Duration::minutes(10), Duration::hours(2), Duration::hours(30), Duration::days(2)] {
        now += elapsed;
        apply(&retail, &store, &[], now)?;
    }
    std::fs::create_dir_all(&args.out)?;
    let outputs = write_outbox(&store, &args.out)?;
    let days = write_reports(&store, &args.out)?;
    let alerts = report::alerts(&store, None, usize::MAX)?;
    std::fs::write(args.out.join("alerts.json"), serde_json::to_vec_pretty(&alerts)?)?;
    println!(
        "tally-bench replay: {} messages, {outputs} outputs, {days} store-days, {} alerts, into {}",
        msgs.len(),
        alerts.len(),
        args.out.display()
    );
    Ok(())
}

fn write_outbox(store: &MemStore, dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("outbox.txt"))?);
    let entries = store.scan_from(Cf::Outbox, &[], usize::MAX)?;
    for (_, value) in &entries {
        let entry: OutboxEntry = codec::decode(value)?;
        let payload = match std::str::from_utf8(&entry.payload) {
            Ok(text) if entry.payload.first() == Some(&b'{') => text.to_string(),
            _ => entry.payload.iter().map(|b| format!("{b:02x}")).collect(),
        };
        writeln!(file, "{}\t{}\t{:?}\t{}", entry.subject, entry.msg_id, entry.headers, payload)?;
    }
    file.flush()?;
    Ok(entries.len())
}

fn write_reports(store: &MemStore, dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("reports.jsonl"))?);
    let days = report::store_days(store, usize::MAX)?;
    for (id, day) in &days {
        if let Some(report) = report::day_report(store, id, *day)? {
            writeln!(file, "{}", serde_json::to_string(&report)?)?;
        }
    }
    file.flush()?;
    Ok(days.len())
}
