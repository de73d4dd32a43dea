//! The `tally` binary: parses the command line and hands over to the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tally_processor::config::{self, Config, LogConfig};
use tally_processor::{app, demo, dlq, gencli, inspect, logging, progress, sku_alias, stateops, telemetry};

/// The per-message work allocates many small, short-lived values (decoded records, state
/// values); mimalloc serves those markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tally keeps a retailer's POS, inventory and ERP in step.
///
/// It consumes POS transactions and inventory movements from NATS JetStream, keeps exact
/// running totals per store, SKU and business day in an embedded RocksDB, and dead-letters bad
/// input with its reason. Configuration: a TOML file (see deploy/tally.example.toml), every key
/// overridable by TALLY_<SECTION>_<KEY> (e.g. TALLY_NATS_URL). Logging: [log] format and level
/// (text or json, default info); RUST_LOG, when set, wins over log.level.
#[derive(Parser)]
#[command(name = "tally", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor: consume, aggregate, commit, publish outputs, serve HTTP.
    Run(ConfigArg),
    /// Create the streams and the consumer when absent, check them when present (idempotent).
    Setup(ConfigArg),
    /// Check the configuration (file, TALLY_* variables, secret files) without connecting to
    /// anything, and say when final postings go out.
    Check(ConfigArg),
    /// Start a local NATS, the traffic generator and the processor, and watch them work.
    ///
    /// On a terminal: one screen redrawn in place (the busiest store-days, drift alerts as they
    /// fire and resolve, ERP postings as they go out, throughput); piped: one plain line per
    /// refresh. At the end (--duration, --count or ctrl-c): a summary of what was counted,
    /// alerted, posted and dead-lettered, and the URLs and subjects to look at next.
    Demo(demo::DemoArgs),
    /// Publish realistic POS and inventory traffic to a NATS server.
    Gen(GenArgs),
    /// Read the state directory offline and print JSON.
    Inspect(InspectArgs),
    /// Trace one input record by its id, offline: when and at which stream sequence it arrived,
    /// what became of it (applied, duplicate copies, dead-lettered, voided), the inventory
    /// movements that matched it, the alert revisions that listed it and the ERP posting that
    /// first included it. The same JSON as GET /v1/trace/<id>.
    Trace(TraceArgs),
    /// Checkpoint, restore or rebuild the state directory.
    State(StateArgs),
    /// List, inspect and replay dead letters (RETAIL_DLQ) after fixing their cause.
    Dlq(dlq::DlqArgs),
    /// Map codes of other systems (UPCs, PLUs) to canonical skus: put, rm, list, import a CSV.
    ///
    /// The aliases live in a NATS KV bucket (sku.aliases_bucket) that a running tally watches:
    /// records that arrive after a change count under it; what was counted before stays.
    SkuAlias(sku_alias::SkuAliasArgs),
}

#[derive(Args)]
struct StateArgs {
    /// How often a progress line is printed when stderr is not a terminal (logs, CI), e.g. 5s,
    /// 1m; 0s prints one at every update. On a terminal a progress bar redraws in place instead.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s")]
    progress_every: String,
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Write a consistent checkpoint of state.path into a new directory (works while running):
    /// every partition, laid out as state.path is, or one with --partition.
    Checkpoint {
        #[command(flatten)]
        config: ConfigArg,
        /// Checkpoint only this partition (0 to the number of partitions - 1), as a single
        /// database in DIR, for `tally state restore --partition` of the same partition.
        #[arg(long, value_name = "N")]
        partition: Option<u32>,
        /// The new directory to write the checkpoint into.
        dir: PathBuf,
    },
    /// Copy a checkpoint into an empty state.path (or, with --partition, into one partition's
    /// empty directory); the next `tally run` resumes after it.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// Restore a checkpoint of one partition (made with `checkpoint --partition N`) into
        /// state.path/partition-N of a partitioned state.path, which must be absent or empty
        /// (stop tally and move the partition's old directory away first).
        #[arg(long, value_name = "N")]
        partition: Option<u32>,
        /// The checkpoint directory.
        from: PathBuf,
    },
    /// Rebuild state from the input stream into a fresh directory, with its own consumer,
    /// until caught up. It publishes nothing and calls nothing (no outbox, Alertmanager, ERP
    /// webhook or HTTP): the outputs it recomputes are dropped, and its ERP posting books and
    /// alert revisions are set from what RETAIL_ERP and RETAIL_ALERTS hold. Stop the live
    /// instance before running tally on the rebuilt directory: that first run reads the output
    /// streams again, so that it continues from what the live instance sent last.
    Rebuild {
        #[command(flatten)]
        config: ConfigArg,
        /// Rebuild only this partition of the input stream (its own consumer,
        /// `<consumer>-rebuild-p<N>`), into INTO as a single database: stop tally, move
        /// state.path/partition-N away and move INTO there.
        #[arg(long, value_name = "N")]
        partition: Option<u32>,
        /// The fresh directory to rebuild into; point state.path at it afterwards (with
        /// --partition: move it to state.path/partition-N).
        into: PathBuf,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The TOML configuration file; without it, defaults and TALLY_* variables apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct GenArgs {
    /// The NATS server to publish to.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    traffic: gencli::TrafficArgs,
}

#[derive(Args)]
struct InspectArgs {
    /// The state directory (state.path).
    #[arg(long, default_value = "./tally-data")]
    state: PathBuf,
    /// Read only this partition of a partitioned state (0 to the number of partitions - 1);
    /// without it, every partition is read as one.
    #[arg(long, global = true, value_name = "N")]
    partition: Option<u32>,
    #[command(subcommand)]
    what: InspectWhat,
}

#[derive(Args)]
struct TraceArgs {
    /// The state directory (state.path). Read-only: works while the processor runs.
    #[arg(long, default_value = "./tally-data")]
    state: PathBuf,
    /// Look only in this store (ids are unique per store); without it, every store is searched.
    #[arg(long)]
    store: Option<String>,
    /// The record's `id`, e.g. 0042-R03-20261127-000123.
    id: String,
}

#[derive(Subcommand)]
enum InspectWhat {
    /// The committed stream positions, outbox sizes and store-days held: in total and per
    /// partition.
    Summary,
    /// One store-day's reconciliation, as the HTTP API shows it.
    Day {
        /// Store id, e.g. 0042.
        store: String,
        /// Business day, YYYY-MM-DD.
        day: String,
    },
}

/// A command, with the configuration it reads loaded first: the log's format and level are
/// part of it, so logging starts only once it is read.
enum Job {
    Configured(Box<Config>, Configured),
    Plain(Plain),
}

/// The commands that read no configuration before they start (`dlq` reads it itself: its
/// `--config` is global to its subcommands).
enum Plain {
    Demo(demo::DemoArgs),
    Dlq(dlq::DlqArgs),
    Gen(GenArgs),
    Inspect(InspectArgs),
    SkuAlias(sku_alias::SkuAliasArgs),
    Trace(TraceArgs),
}

/// The commands that read the configuration.
enum Configured {
    Run,
    Setup,
    /// The file checked, if any.
    Check(Option<PathBuf>),
    /// The directory, and the partition named by --partition.
    Checkpoint(PathBuf, Option<u32>),
    Restore(PathBuf, Option<u32>),
    Rebuild(PathBuf, Option<u32>),
}

impl Job {
    fn new(command: Command) -> anyhow::Result<Job> {
        let (args, what) = match command {
            Command::Run(args) => (args, Configured::Run),
            Command::Setup(args) => (args, Configured::Setup),
            Command::Check(args) => {
                let file = args.config.clone();
                (args, Configured::Check(file))
            }
            Command::State(StateArgs { progress_every, command }) => {
                let every = config::parse_duration(&progress_every)
                    .map_err(|err| anyhow::anyhow!("--progress-every {progress_every:?}: {err}"))?;
                progress::set_plain_every(every);
                match command {
                    StateCommand::Checkpoint { config, partition, dir } => {
                        (config, Configured::Checkpoint(dir, partition))
                    }
                    StateCommand::Restore { config, partition, from } => (config, Configured::Restore(from, partition)),
                    StateCommand::Rebuild { config, partition, into } => (config, Configured::Rebuild(into, partition)),
                }
            }
            Command::Demo(args) => return Ok(Job::Plain(Plain::Demo(args))),
            Command::Dlq(args) => return Ok(Job::Plain(Plain::Dlq(args))),
            Command::Gen(args) => return Ok(Job::Plain(Plain::Gen(args))),
            Command::Inspect(args) => return Ok(Job::Plain(Plain::Inspect(args))),
            Command::SkuAlias(args) => return Ok(Job::Plain(Plain::SkuAlias(args))),
            Command::Trace(args) => return Ok(Job::Plain(Plain::Trace(args))),
        };
        Ok(Job::Configured(Box::new(Config::load(args.config.as_deref())?), what))
    }
}

fn main() -> std::process::ExitCode {
    let arenas_limited = tally_processor::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    let job = match Job::new(cli.command) {
        Ok(job) => job,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match &job {
        Job::Configured(config, _) => {
            logging::init(&config.log);
            if !config.ignored_env.is_empty() {
                tracing::info!(
                    variables = %config.ignored_env.join(", "),
                    "Ignoring environment variables that name no tally setting (Kubernetes sets such for a Service named tally)."
                );
            }
        }
        // The demo's live table owns the terminal, and `dlq` prints results: their logs stay at
        // warnings unless RUST_LOG says.
        Job::Plain(command) => {
            let level =
                if matches!(command, Plain::Demo(_) | Plain::Dlq(_) | Plain::SkuAlias(_)) { "warn" } else { "info" };
            logging::init(&LogConfig { level: level.into(), ..LogConfig::default() });
        }
    }
    if !arenas_limited {
        tracing::debug!(
            "The C library's malloc keeps its own arena count (no M_ARENA_MAX here); RocksDB may hold more memory."
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match job {
        Job::Configured(config, what) => runtime.block_on(configured(*config, what)),
        Job::Plain(command) => runtime.block_on(plain(command)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn configured(config: Config, what: Configured) -> anyhow::Result<()> {
    match what {
        Configured::Run => {
            let metrics = telemetry::install()?;
            app::run(config, metrics, app::shutdown_on_signals()).await
        }
        Configured::Setup => {
            app::setup(&config).await?;
            println!("Streams and consumer are in place.");
            println!("{}", config.final_posting_timing());
            Ok(())
        }
        Configured::Check(file) => {
            let source = match file {
                Some(path) => path.display().to_string(),
                None => "the defaults and TALLY_* variables".into(),
            };
            // Only settings that cannot hold a secret (a NATS URL may carry a password).
            println!(
                "The configuration is valid: {source} (state.path {}, http.listen {}).",
                config.state.path.display(),
                config.http.listen
            );
            println!("{}", config.final_posting_timing());
            println!("{}", config.fiscal_summary(chrono::Utc::now().date_naive()));
            if !config.ignored_env.is_empty() {
                println!("Ignored (not tally's): {}.", config.ignored_env.join(", "));
            }
            Ok(())
        }
        Configured::Checkpoint(dir, partition) => {
            let done = stateops::checkpoint(&config, &dir, partition)?;
            println!("Checkpoint written to {} ({}).", dir.display(), stateops::positions_line(&done.positions));
            Ok(())
        }
        Configured::Restore(from, partition) => {
            let done = stateops::restore(&config, &from, partition)?;
            println!(
                "Restored {} into {} ({}); tally run resumes right after, once it has read the output streams \
                 to learn what was published since the checkpoint.",
                from.display(),
                done.into.display(),
                stateops::positions_line(&done.positions)
            );
            Ok(())
        }
        Configured::Rebuild(into, partition) => {
            let done = stateops::rebuild(&config, &into, partition).await?;
            let what = done.partition.map(|p| format!("partition {} of {}", p.index, p.count));
            println!(
                "Rebuilt {} into {} up to stream sequence {}.",
                what.as_deref().unwrap_or("state"),
                into.display(),
                done.position
            );
            println!("Outputs: {}.", done.reconciled);
            let place = match done.partition {
                Some(p) => format!(
                    "moving {} to {} (once that directory is moved away)",
                    into.display(),
                    config.state.path.join(format!("partition-{}", p.index)).display()
                ),
                None => format!("pointing state.path at {}", into.display()),
            };
            println!(
                "Stop the live instance before {place}: its first run reads the output streams again and continues \
                 from the last posting and alert revision the live instance sent."
            );
            Ok(())
        }
    }
}

async fn plain(command: Plain) -> anyhow::Result<()> {
    match command {
        Plain::Demo(args) => demo::run(args).await,
        Plain::Dlq(args) => dlq::run(args).await,
        Plain::SkuAlias(args) => sku_alias::run(args).await,
        Plain::Gen(args) => {
            let client = async_nats::connect(args.nats_url.as_str())
                .await
                .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
            let js = async_nats::jetstream::new(client);
            gencli::run(&js, &args.traffic, app::shutdown_on_signals()).await
        }
        Plain::Inspect(args) => {
            let value = match args.what {
                InspectWhat::Summary => inspect::summary(&args.state, args.partition)?,
                InspectWhat::Day { store, day } => inspect::day(&args.state, args.partition, &store, &day)?,
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        Plain::Trace(args) => {
            let value = inspect::trace(&args.state, &args.id, args.store.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}
