//! Micro-benchmarks of tally's hot path, each reporting elements (messages or keys) per second:
//! decoding JSON and MessagePack, applying messages to the aggregates over the in-memory store,
//! encoding keys, and committing one batch's write set to RocksDB (with and without fsync).
//!
//! Inputs come from tally's realistic generator with a fixed seed, so runs compare.

use std::hint::black_box;

use chrono::{TimeZone as _, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_processor::config::{Config, StoreConfig};
use tally_state::{MemStore, Overlay, RocksOptions, RocksStore, Store, WriteBatch};
use tally_topologies::decode::{self, DecodeContext};
use tally_topologies::keys;
use tally_topologies::topology::{InputMessage, Retail, Tick};
use tally_traffic::{self as gen, GenOptions, Traffic, WireMessage};

/// Messages per measured iteration (and per commit, tally's default `input.batch_max`).
const BATCH: usize = 500;
/// Messages applied and committed before the aggregate benchmark, so reads find state.
const WARM: usize = 20_000;

fn options(msgpack_share: f64) -> GenOptions {
    GenOptions {
        stores: 400,
        skus_per_store: 5_000,
        malformed_share: 0.0,
        drift_share: 0.005,
        return_share: 0.05,
        msgpack_share,
        ..GenOptions::default()
    }
}

/// `n` messages of the realistic mix, event time advancing 25 ms per basket.
fn messages(opts: GenOptions, n: usize) -> Vec<WireMessage> {
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 15, 0, 0).single().expect("a valid instant");
    let mut traffic = Traffic::new(opts, start);
    let mut out = Vec::with_capacity(n);
    let mut basket = 0;
    while out.len() < n {
        let at = start + chrono::Duration::milliseconds(25 * basket);
        out.extend(traffic.due(at));
        out.extend(traffic.next_basket(at));
        basket += 1;
    }
    out.truncate(n);
    out
}

fn retail(opts: &GenOptions) -> Retail {
    let mut config = Config::default();
    for (index, id) in gen::store_ids(opts).into_iter().enumerate() {
        let zone = gen::store_timezone(opts, index).name().to_string();
        config.stores.insert(id, StoreConfig { timezone: Some(zone), drift: None });
    }
    Retail::new(config.topology())
}

fn input<'a>(msg: &'a WireMessage, seq: u64) -> InputMessage<'a> {
    InputMessage::new(&msg.subject, Some(msg.content_type), &msg.payload, seq)
}

fn bench_decode(c: &mut Criterion) {
    let timezone_of = |_: &str| chrono_tz_utc();
    let ctx = DecodeContext {
        subject_prefix: "retail",
        default_currency: "USD",
        timezone_of: &timezone_of,
        max_message_bytes: 1 << 20,
        max_lines: 1000,
    };
    let mut group = c.benchmark_group("decode");
    for (name, share) in [("json", 0.0), ("msgpack", 1.0)] {
        let batch = messages(options(share), BATCH);
        let bytes: usize = batch.iter().map(|m| m.payload.len()).sum();
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_function(format!("{name} ({} B/msg)", bytes / batch.len()), |b| {
            b.iter(|| {
                for msg in &batch {
                    let decoded = decode::decode(&msg.subject, Some(msg.content_type), &msg.payload, &ctx);
                    assert!(decoded.is_ok(), "the generator's clean traffic decodes");
                    black_box(decoded.ok());
                }
            })
        });
    }
    group.finish();
}

fn chrono_tz_utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

/// Applies `msgs` in one overlay over `store` and returns the write set, as one tally batch.
fn apply_batch(retail: &Retail, store: &dyn Store, msgs: &[WireMessage], first_seq: u64) -> WriteBatch {
    let now = Utc::now();
    let mut txn = Overlay::new(store);
    let inputs: Vec<InputMessage<'_>> =
        msgs.iter().enumerate().map(|(i, msg)| input(msg, first_seq + i as u64)).collect();
    retail.apply_batch(&mut txn, &inputs, now, Tick::Skip).expect("the in-memory store does not fail");
    txn.into_batch()
}

fn bench_apply(c: &mut Criterion) {
    let opts = options(0.3);
    let retail = retail(&opts);
    let all = messages(opts, WARM + BATCH);
    let (warm, batch) = all.split_at(WARM);
    let store = MemStore::new();
    for (i, chunk) in warm.chunks(BATCH).enumerate() {
        let write = apply_batch(&retail, &store, chunk, 1 + (i * BATCH) as u64);
        store.write(&write).expect("the in-memory store does not fail");
    }
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(batch.len() as u64));
    // Decode, dedupe, aggregates, drift, outbox: Retail::apply over an overlay on a store
    // that already holds WARM messages' state; the write set is built but not committed.
    group.bench_function("apply (decode+update, warm MemStore)", |b| {
        b.iter(|| black_box(apply_batch(&retail, &store, batch, 1 + WARM as u64)))
    });
    group.finish();
}

fn bench_keys(c: &mut Criterion) {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).expect("a valid day");
    let inputs: Vec<(String, String)> =
        (0..1000).map(|i| (format!("{:04}", 1 + i % 400), (100_000 + i * 7_919 % 900_000).to_string())).collect();
    let mut group = c.benchmark_group("keys");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("sku_day", |b| {
        b.iter(|| {
            for (store, sku) in &inputs {
                black_box(keys::sku_day(store, day, sku));
            }
        })
    });
    group.bench_function("seen (dedupe)", |b| {
        b.iter(|| {
            for (store, sku) in &inputs {
                black_box(keys::seen(store, sku));
            }
        })
    });
    group.finish();
}

fn bench_commit(c: &mut Criterion) {
    let opts = options(0.3);
    let retail = retail(&opts);
    let msgs = messages(opts, BATCH);
    let write = apply_batch(&retail, &MemStore::new(), &msgs, 1);
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(msgs.len() as u64));
    for sync in [true, false] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store =
            RocksStore::open(dir.path(), &RocksOptions { sync, ..RocksOptions::default() }).expect("opening RocksDB");
        let name = format!("write batch of {} messages ({} ops), sync {sync}", msgs.len(), write.len());
        group.bench_function(name, |b| {
            b.iter_batched(|| write.clone(), |w| store.write(&w).expect("RocksDB write"), BatchSize::SmallInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_apply, bench_keys, bench_commit);
criterion_main!(benches);
