//! `tally-bench restart`: not written yet.

#[derive(clap::Args, Debug, Clone)]
pub struct RestartArgs {
    /// Keys to put in the state before the timed start.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,
}

pub async fn run(_args: RestartArgs) -> anyhow::Result<()> {
    anyhow::bail!("restart mode is not implemented yet")
}
