//! The `tally` binary: parses the command line and hands over to the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tally_processor::config::Config;
use tally_processor::{app, config, demo, gencli, inspect, progress, stateops, telemetry};

/// The per-message work allocates many small, short-lived values (decoded records, state
/// values); mimalloc serves those markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tally keeps a retailer's POS, inventory and ERP in step.
///
/// It consumes POS transactions and inventory movements from NATS JetStream, keeps exact
/// running totals per store, SKU and business day in an embedded RocksDB, and dead-letters bad
/// input with its reason. Configuration: a TOML file (see deploy/tally.example.toml), every key
/// overridable by TALLY_<SECTION>_<KEY> (e.g. TALLY_NATS_URL). Logging: RUST_LOG (default info).
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
    /// Start a local NATS, the traffic generator and the processor, with a live summary.
    Demo(demo::DemoArgs),
    /// Publish realistic POS and inventory traffic to a NATS server.
    Gen(GenArgs),
    /// Read the state directory offline and print JSON.
    Inspect(InspectArgs),
    /// Checkpoint, restore or rebuild the state directory.
    State(StateArgs),
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
    /// Write a consistent checkpoint of state.path into a new directory (works while running).
    Checkpoint {
        #[command(flatten)]
        config: ConfigArg,
        /// The new directory to write the checkpoint into.
        dir: PathBuf,
    },
    /// Copy a checkpoint into an empty state.path; the next `tally run` resumes after it.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
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
        /// The fresh directory to rebuild into; point state.path at it afterwards.
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
    #[command(subcommand)]
    what: InspectWhat,
}

#[derive(Subcommand)]
enum InspectWhat {
    /// The committed stream position, outbox size and the store-days held.
    Summary,
    /// One store-day's reconciliation, as the HTTP API shows it.
    Day {
        /// Store id, e.g. 0042.
        store: String,
        /// Business day, YYYY-MM-DD.
        day: String,
    },
}

fn main() -> std::process::ExitCode {
    let arenas_limited = tally_processor::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    // The demo's live table owns the terminal; its logs stay at warnings unless RUST_LOG says.
    init_logging(if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info" });
    if !arenas_limited {
        tracing::debug!("The C library's malloc keeps its own arena count (no M_ARENA_MAX here); RocksDB may hold more memory.");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let config = Config::load(args.config.as_deref())?;
            let metrics = telemetry::install()?;
            app::run(config, metrics, app::shutdown_on_signals()).await
        }
        Command::Setup(args) => {
            let config = Config::load(args.config.as_deref())?;
            app::setup(&config).await?;
            println!("Streams and consumer are in place.");
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Gen(args) => {
            let client = async_nats::connect(args.nats_url.as_str())
                .await
                .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
            let js = async_nats::jetstream::new(client);
            gencli::run(&js, &args.traffic, app::shutdown_on_signals()).await
        }
        Command::State(args) => state(args).await,
        Command::Inspect(args) => {
            let value = match args.what {
                InspectWhat::Summary => inspect::summary(&args.state)?,
                InspectWhat::Day { store, day } => inspect::day(&args.state, &store, &day)?,
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}

async fn state(args: StateArgs) -> anyhow::Result<()> {
    let every = config::parse_duration(&args.progress_every)
        .map_err(|err| anyhow::anyhow!("--progress-every {:?}: {err}", args.progress_every))?;
    progress::set_plain_every(every);
    match args.command {
        StateCommand::Checkpoint { config, dir } => {
            let config = Config::load(config.config.as_deref())?;
            let done = stateops::checkpoint(&config, &dir)?;
            println!("Checkpoint written to {} (committed stream sequence {}).", dir.display(), done.position);
        }
        StateCommand::Restore { config, from } => {
            let config = Config::load(config.config.as_deref())?;
            let done = stateops::restore(&config, &from)?;
            println!(
                "Restored {} into {}; tally run resumes after stream sequence {}, after reading the output \
                 streams to learn what was published since the checkpoint.",
                from.display(),
                config.state.path.display(),
                done.position
            );
        }
        StateCommand::Rebuild { config, into } => {
            let config = Config::load(config.config.as_deref())?;
            let done = stateops::rebuild(&config, &into).await?;
            println!("Rebuilt state into {} up to stream sequence {}.", into.display(), done.position);
            println!("Outputs: {}.", done.reconciled);
            println!(
                "Stop the live instance before pointing state.path at {}: its first run reads the output streams \
                 again and continues from the last posting and alert revision the live instance sent.",
                into.display()
            );
        }
    }
    Ok(())
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
