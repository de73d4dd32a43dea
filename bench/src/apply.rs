//! `tally-bench apply`: tally's per-message work without NATS, to see where (b)'s time goes.
//! The same generated messages are decoded alone, then applied batch by batch over RocksDB
//! exactly as the runner does (one overlay per batch, `Retail::apply_batch`, one write),
//! with every store read counted and timed, and finally applied over the in-memory store for
//! contrast. Figures are per input message. The last line, `apply_us_per_msg`, is the CPU time
//! the applying thread spent per message over RocksDB (decode, apply, commit): tally's own work
//! on one core, less sensitive to the machine's other load than the wall-clock figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tally_processor::config::Config;
use tally_state::{
    CachedStore, Cf, Entries, MemStore, Overlay, RocksOptions, RocksStore, StateError, Store, WriteBatch,
};
use tally_topologies::decode::{self, DecodeContext};
use tally_topologies::model::Event;
use tally_topologies::sku_alias::{SharedAliases, SkuAliases};
use tally_topologies::topology::{InputMessage, Retail, Tick};
use tally_traffic::{GenOptions, Traffic, WireMessage};

use crate::measure::mib;

#[derive(clap::Args, Debug, Clone)]
pub struct ApplyArgs {
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    #[arg(long, default_value_t = 500)]
    pub batch_max: usize,
    #[arg(long, default_value_t = 400)]
    pub stores: usize,
    #[arg(long, default_value_t = 5_000)]
    pub skus: usize,
    /// Synthetic keys written to the RocksDB store before the timed run (see `restart`), to
    /// see how reads scale with the size of the state.
    #[arg(long, default_value_t = 0)]
    pub prefill_keys: u64,
    /// Block cache size in MiB (tally's default `state.cache_bytes` is 128 MiB).
    #[arg(long, default_value_t = 128)]
    pub cache_mib: usize,
    /// `state.value_cache_bytes` in MiB (tally's default is 0, off).
    #[arg(long, default_value_t = 0)]
    pub value_cache_mib: usize,
    /// `state.sync` of the RocksDB store.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sync: bool,
    /// Alias every sku of both systems (`pos/<sku>`, `inventory/<sku>` → another canonical
    /// sku), so that every line is looked up and rewritten: what SKU aliases cost at most.
    #[arg(long)]
    pub aliases: bool,
}

/// A store that counts and times what passes through it.
struct Counting<S> {
    inner: S,
    gets: AtomicU64,
    misses: AtomicU64,
    get_nanos: AtomicU64,
    scans: AtomicU64,
    scan_nanos: AtomicU64,
    /// Gets and misses by kind ([`kind_index`]), each counted with two atomic additions so
    /// that counting costs the applying thread next to nothing.
    by_kind: Vec<(AtomicU64, AtomicU64)>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Counting {
            inner,
            gets: 0.into(),
            misses: 0.into(),
            get_nanos: 0.into(),
            scans: 0.into(),
            scan_nanos: 0.into(),
            by_kind: (0..KINDS).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
        }
    }

    /// Gets per message by kind, with their share of misses, the most frequent first.
    fn print_gets_by_kind(&self, n: usize) {
        let mut kinds: Vec<(usize, u64, u64)> = (self.by_kind.iter().enumerate())
            .map(|(kind, (gets, misses))| (kind, gets.load(Ordering::Relaxed), misses.load(Ordering::Relaxed)))
            .filter(|(_, gets, _)| *gets > 0)
            .collect();
        kinds.sort_by_key(|(_, gets, _)| std::cmp::Reverse(*gets));
        let shown: Vec<String> = kinds
            .iter()
            .map(|(kind, gets, misses)| {
                let share = 100.0 * *misses as f64 / *gets as f64;
                format!("{} {:.2} ({share:.0} % misses)", kind_name(*kind), *gets as f64 / n as f64)
            })
            .collect();
        println!("  gets per message by kind: {}", shown.join(", "));
    }
}

/// Kinds of values told apart: 256 key tags per column family.
const KINDS: usize = Cf::ALL.len() * 256;

/// The kind of a key, as an index below [`KINDS`]: its column family, and for `aggregates`
/// its tag (`topologies/src/keys.rs`).
fn kind_index(cf: Cf, key: &[u8]) -> usize {
    let family = Cf::ALL.iter().position(|known| *known == cf).expect("every family is in Cf::ALL");
    let tag = if cf == Cf::Aggregates { key.first().copied().unwrap_or(0) } else { 0 };
    family * 256 + usize::from(tag)
}

fn kind_name(kind: usize) -> String {
    let (cf, tag) = (Cf::ALL[kind / 256], kind % 256);
    if cf == Cf::Aggregates {
        format!("aggregates/{tag}")
    } else {
        cf.name().to_string()
    }
}

fn add_since(counter: &AtomicU64, started: Instant) {
    counter.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

impl<S: Store> Store for Counting<S> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let started = Instant::now();
        let value = self.inner.get(cf, key);
        add_since(&self.get_nanos, started);
        self.gets.fetch_add(1, Ordering::Relaxed);
        let missed = matches!(value, Ok(None));
        if missed {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        let (gets, misses) = &self.by_kind[kind_index(cf, key)];
        gets.fetch_add(1, Ordering::Relaxed);
        misses.fetch_add(u64::from(missed), Ordering::Relaxed);
        value
    }

    fn scan_from(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Entries, StateError> {
        let started = Instant::now();
        let entries = self.inner.scan_from(cf, start, limit);
        add_since(&self.scan_nanos, started);
        self.scans.fetch_add(1, Ordering::Relaxed);
        entries
    }

    fn scan_prefix_from(&self, cf: Cf, prefix: &[u8], start: &[u8], limit: usize) -> Result<Entries, StateError> {
        let started = Instant::now();
        let entries = self.inner.scan_prefix_from(cf, prefix, start, limit);
        add_since(&self.scan_nanos, started);
        self.scans.fetch_add(1, Ordering::Relaxed);
        entries
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StateError> {
        self.inner.write(batch)
    }
}

fn generate(opts: GenOptions, n: usize) -> Vec<WireMessage> {
    let start = Utc::now() - chrono::Duration::hours(1);
    let mut traffic = Traffic::new(opts, start);
    let step = chrono::Duration::milliseconds(25);
    let mut out = Vec::with_capacity(n);
    let mut basket = 0;
    while out.len() < n {
        let at = start + step * basket;
        out.extend(traffic.due(at));
        out.extend(traffic.next_basket(at));
        basket += 1;
    }
    out.truncate(n);
    out
}

#[derive(Default)]
struct Split {
    apply: Duration,
    into_batch: Duration,
    commit: Duration,
    ops: u64,
    bytes: u64,
    batches: u64,
    /// Operations and bytes written by kind ([`kind_index`]).
    by_kind: Vec<(u64, u64)>,
}

fn run_batches(retail: &Retail, store: &dyn Store, msgs: &[WireMessage], batch_max: usize) -> anyhow::Result<Split> {
    let mut split = Split { by_kind: vec![(0, 0); KINDS], ..Split::default() };
    let mut seq = 0;
    for chunk in msgs.chunks(batch_max) {
        let now = Utc::now();
        let started = Instant::now();
        let mut txn = Overlay::new(store);
        let inputs: Vec<InputMessage<'_>> = chunk
            .iter()
            .map(|msg| {
                seq += 1;
                InputMessage::new(&msg.subject, Some(msg.content_type), &msg.payload, seq)
            })
            .collect();
        retail.apply_batch(&mut txn, &inputs, now, Tick::Skip)?;
        split.apply += started.elapsed();
        let started = Instant::now();
        let batch = txn.into_batch();
        split.into_batch += started.elapsed();
        split.ops += batch.len() as u64;
        for op in batch.ops() {
            let bytes = op.key().len() as u64 + op_value_len(op);
            split.bytes += bytes;
            let kind = &mut split.by_kind[kind_index(op.cf(), op.key())];
            kind.0 += 1;
            kind.1 += bytes;
        }
        split.batches += 1;
        let started = Instant::now();
        store.write(&batch)?;
        split.commit += started.elapsed();
    }
    Ok(split)
}

/// With `all`, an alias for every sku of the POS records among `msgs`; else none.
fn aliases_of(config: &Config, msgs: &[WireMessage], all: bool) -> SkuAliases {
    let mut aliases = SkuAliases::default();
    if !all {
        return aliases;
    }
    let topology = config.topology();
    let timezone_of = |store: &str| topology.timezone(store);
    let ctx = DecodeContext {
        subject_prefix: "retail",
        default_currency: "USD",
        timezone_of: &timezone_of,
        max_message_bytes: 1 << 20,
        max_lines: 1000,
    };
    for msg in msgs {
        let skus: Vec<String> = match decode::decode(&msg.subject, Some(msg.content_type), &msg.payload, &ctx) {
            Ok((_, Event::Transaction(tx))) => tx.lines.into_iter().map(|line| line.sku).collect(),
            Ok((_, Event::Movement(movement))) => movement.lines.into_iter().map(|line| line.sku).collect(),
            _ => Vec::new(),
        };
        // Both systems' codes map to the same canonical sku, so the keys are as many as without.
        for sku in skus {
            aliases.insert("pos", &sku, &format!("C{sku}"));
            aliases.insert("inventory", &sku, &format!("C{sku}"));
        }
    }
    println!("aliases: {} (every sku, of both systems)", aliases.len());
    aliases
}

/// What each kind of value costs in writes: the column family, and for `aggregates` the key's
/// tag (`topologies/src/keys.rs`), with operations and bytes per message, the largest first.
fn print_written_by_kind(split: &Split, n: usize) {
    let mut kinds: Vec<(usize, &(u64, u64))> =
        split.by_kind.iter().enumerate().filter(|(_, (ops, _))| *ops > 0).collect();
    kinds.sort_by_key(|(_, (_, bytes))| std::cmp::Reverse(*bytes));
    let shown: Vec<String> = kinds
        .iter()
        .map(|(kind, (ops, bytes))| {
            format!("{} {:.2} ops {:.0} B", kind_name(*kind), *ops as f64 / n as f64, *bytes as f64 / n as f64)
        })
        .collect();
    println!("  written per message by kind: {}", shown.join(", "));
}

fn op_value_len(op: &tally_state::Op) -> u64 {
    match op {
        tally_state::Op::Put { value, .. } => value.len() as u64,
        tally_state::Op::Delete { .. } => 0,
    }
}

/// `n` generated messages of a chain of `stores` stores, well-formed, and the configuration
/// that knows those stores: the input of `apply` and `partitions`.
pub(crate) fn generated_chain(stores: usize, skus: usize, n: usize) -> (Config, Vec<WireMessage>) {
    let opts = GenOptions {
        stores,
        skus_per_store: skus,
        malformed_share: 0.0,
        drift_share: 0.005,
        return_share: 0.05,
        ..GenOptions::default()
    };
    let mut config = Config::default();
    crate::e2e::add_generated_stores(&mut config, &opts);
    (config, generate(opts, n))
}

pub fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let n = args.messages as usize;
    let (config, msgs) = generated_chain(args.stores, args.skus, n);
    let retail =
        Retail::with_aliases(config.topology(), Arc::new(SharedAliases::new(aliases_of(&config, &msgs, args.aliases))));
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "tally-bench apply: {n} messages, batch {}, block cache {} MiB, value cache {} MiB, state.sync {}",
        args.batch_max, args.cache_mib, args.value_cache_mib, args.sync
    );

    let topology_config = config.topology();
    let timezone_of = |store: &str| topology_config.timezone(store);
    let ctx = DecodeContext {
        subject_prefix: "retail",
        default_currency: "USD",
        timezone_of: &timezone_of,
        max_message_bytes: 1 << 20,
        max_lines: 1000,
    };
    let started = Instant::now();
    for msg in &msgs {
        let _ = std::hint::black_box(decode::decode(&msg.subject, Some(msg.content_type), &msg.payload, &ctx));
    }
    println!("decode only:           {:6.1} µs/msg", per(started.elapsed()));

    let dir = tempfile::Builder::new().prefix("tally-bench-apply-").tempdir()?;
    let defaults = RocksOptions { cache_bytes: args.cache_mib << 20, ..RocksOptions::default() };
    let rocks = Arc::new(RocksStore::open(dir.path(), &RocksOptions { sync: args.sync, ..defaults })?);
    let filtered = Arc::clone(&rocks);
    let rocks: Arc<dyn Store> = Arc::new(CachedStore::new(rocks, args.value_cache_mib << 20));
    if args.prefill_keys > 0 {
        let started = Instant::now();
        crate::restart::fill_store(rocks.as_ref(), args.prefill_keys)?;
        println!("prefilled {} keys in {:.1} s", args.prefill_keys, started.elapsed().as_secs_f64());
    }
    let threads_before = crate::measure::threads_cpu_secs();
    let counting = Arc::new(Counting::new(rocks));
    let started = Instant::now();
    let cpu_before = crate::measure::thread_cpu_secs();
    let split = run_batches(&retail, counting.as_ref(), &msgs, args.batch_max)?;
    let cpu = crate::measure::thread_cpu_secs() - cpu_before;
    let total = started.elapsed();
    let gets = counting.gets.load(Ordering::Relaxed);
    let get_time = Duration::from_nanos(counting.get_nanos.load(Ordering::Relaxed));
    let scan_time = Duration::from_nanos(counting.scan_nanos.load(Ordering::Relaxed));
    println!(
        "over RocksDB:          {:6.1} µs/msg = {:.0} msg/s on one core",
        per(total),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "  apply (in overlay):  {:6.1} µs/msg, of which store reads {:.1} µs ({:.1} gets/msg, {:.0} % misses, {:.2} µs each) and scans {:.1} µs ({:.2}/msg)",
        per(split.apply),
        per(get_time),
        gets as f64 / n as f64,
        100.0 * counting.misses.load(Ordering::Relaxed) as f64 / gets.max(1) as f64,
        get_time.as_secs_f64() * 1e6 / gets.max(1) as f64,
        per(scan_time),
        counting.scans.load(Ordering::Relaxed) as f64 / n as f64
    );
    let threads = crate::measure::cpu_delta(&threads_before, &crate::measure::threads_cpu_secs());
    let shown: Vec<String> = threads.iter().take(4).map(|(name, secs)| format!("{name} {secs:.1} s")).collect();
    println!("  CPU meanwhile: {}", shown.join(", "));
    println!("  into_batch:          {:6.1} µs/msg", per(split.into_batch));
    println!(
        "  commit (write{}): {:6.1} µs/msg, {:.2} ms per batch, {:.1} ops/msg, {:.0} bytes/msg, {:.1} MiB per 1000 batches",
        if args.sync { "+fsync" } else { "      " },
        per(split.commit),
        split.commit.as_secs_f64() * 1000.0 / split.batches.max(1) as f64,
        split.ops as f64 / n as f64,
        split.bytes as f64 / n as f64,
        mib(split.bytes) * 1000.0 / split.batches.max(1) as f64
    );

    print_written_by_kind(&split, n);
    counting.print_gets_by_kind(n);
    if let Some(filter) = filtered.key_filter() {
        println!(
            "  key filter: {:.2} gets/msg answered without a read, {:.2} read ({} scans, {} keys, {} KiB)",
            filter.answered as f64 / n as f64,
            filter.passed as f64 / n as f64,
            filter.scans,
            filter.keys,
            filter.bytes >> 10
        );
    }
    let cpu_per_msg = cpu * 1e6 / n as f64;
    println!("  CPU of the applying thread (decode + apply + commit): {cpu_per_msg:6.1} µs/msg");
    let background: f64 = threads.iter().filter(|(name, _)| name.starts_with("rocksdb")).map(|(_, secs)| secs).sum();
    println!("  CPU of RocksDB's threads (flush, compaction): {:6.1} µs/msg", background * 1e6 / n as f64);
    let mem = Counting::new(MemStore::new());
    let started = Instant::now();
    let split = run_batches(&retail, &mem, &msgs, args.batch_max)?;
    let total = started.elapsed();
    println!(
        "over MemStore:         {:6.1} µs/msg (apply {:.1}, of which reads {:.1}; commit {:.1})",
        per(total),
        per(split.apply),
        per(Duration::from_nanos(mem.get_nanos.load(Ordering::Relaxed))),
        per(split.commit)
    );
    println!("apply_us_per_msg: {cpu_per_msg:.1}");
    Ok(())
}
