//! `tally-bench`: tally measured side by side with the broker's own ceiling (issue 6).
//!
//! - `load`: realistic input from tally's generator, preloaded or paced.
//! - `ceiling`: (a), a bare JetStream pull consumer over the same stream.
//! - `e2e`: the whole run: preload, (a), (b) tally end to end, (c) latency at half load.
//! - `restart`: time from start to consuming with many keys in state.
//! - `apply`: the per-message work without NATS, store reads counted and timed.
//! - `partitions`: the apply spread over partitions and threads, the scaling table.
//! - `checkpoint`: what a second checkpoint of a large state uploads after a small change.
//! - `replay`: the topology's outputs over a fixed generated input, to compare two builds.
//! - `measure`: committed-position polling, RSS, CPU, disk, percentiles.
//!
//! The criterion micro-benchmarks live in `benches/micro.rs`.

/// The same allocator as the `tally` binary, so the in-process processor measures as it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apply;
mod ceiling;
mod checkpoint;
mod e2e;
mod failover;
mod load;
mod measure;
mod partitions;
mod process;
mod replay;
mod restart;

use clap::{Parser, Subcommand};

/// tally's benchmarks. See bench/README.md for what each figure means.
#[derive(Parser)]
#[command(name = "tally-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Preload N messages, measure the bare consumer ceiling, tally end to end, and latency at
    /// half load. The last line is `e2e_vs_ceiling_ratio: <x>`.
    E2e(e2e::E2eArgs),
    /// Fill a state with K keys, then time a start until the first message is committed.
    Restart(restart::RestartArgs),
    /// Decode and apply generated messages over RocksDB and in memory, without NATS, with the
    /// time split into decode, apply (and its store reads) and commit.
    Apply(apply::ApplyArgs),
    /// Run the `tally` binary as its own process, with default settings, over N preloaded
    /// messages (2.2 M ≈ 10 M keys) and report its peak RSS. The last line is
    /// `tally_peak_rss_mib: <x>`.
    Process(process::ProcessArgs),
    /// Apply generated messages split by store into partitions, each with its own database and
    /// topology, on 1, 2 and all cores: the scaling table (bench/README.md, "Partitions").
    Partitions(partitions::PartitionsArgs),
    /// Two `tally run` instances share the partitions of a preloaded day; one is killed and the
    /// other takes its partitions over. The last line is `failover_seconds: <x>`.
    Failover(failover::FailoverArgs),
    /// Fill one partition's RocksDB state to --gib GiB, checkpoint it to a JetStream Object Store,
    /// change --change-percent of its keys and checkpoint again. The last line is
    /// `second_checkpoint_uploaded_share: <x>` (bytes the second uploaded / the state's table bytes).
    Checkpoint(checkpoint::CheckpointArgs),
    /// Apply a fixed generated input on a fake clock and write every output, day report and
    /// alert into a directory, to compare two builds byte for byte.
    Replay(replay::ReplayArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // As the `tally` binary does, so that (b)'s RSS is tally's.
    if !tally_processor::memory::limit_malloc_arenas() {
        eprintln!(
            "tally-bench: the C library's malloc keeps its own arena count; RSS figures may be higher than tally's"
        );
    }
    match Cli::parse().command {
        Command::E2e(args) => e2e::run(args).await,
        Command::Restart(args) => restart::run(args).await,
        Command::Apply(args) => apply::run(args),
        Command::Process(args) => process::run(args).await,
        Command::Replay(args) => replay::run(args),
        Command::Partitions(args) => partitions::run(args),
        Command::Failover(args) => failover::run(args).await,
        Command::Checkpoint(args) => checkpoint::run(args).await,
    }
}
