//! `tally sku-alias put|rm|list|import` (docs/operations.md, "SKU aliases"): edits the alias
//! bucket that a running tally watches. Nothing here touches tally's state.

use std::path::PathBuf;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use tally_topologies::sku_alias::parse_alias_name;

use super::csv::{self, Alias};
use crate::config::Config;
use crate::progress::Progress;

/// Puts in flight at once during an import.
const IMPORT_IN_FLIGHT: usize = 64;

/// `tally sku-alias …`: the configuration (NATS connection, `sku.aliases_bucket`), then what to do.
#[derive(Args)]
pub struct SkuAliasArgs {
    /// The TOML configuration file, for the NATS connection and `sku.aliases_bucket`; without it,
    /// defaults and TALLY_* variables apply.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: SkuAliasCommand,
}

#[derive(Subcommand)]
pub enum SkuAliasCommand {
    /// Map a code of one system to a canonical sku: `tally sku-alias put pos/012345678905 100234`.
    ///
    /// Records that arrive afterwards count that code under the sku; what was counted before
    /// stays as it was (docs/operations.md tells how to re-key a day).
    Put {
        /// `<system>/<code>`: the system (pos, inventory, or what a record's sku_system names)
        /// and the code as that system sends it.
        alias: String,
        /// The canonical sku.
        sku: String,
    },
    /// Remove an alias: later records count that code as itself again.
    Rm {
        /// `<system>/<code>`.
        alias: String,
    },
    /// Print every alias as `<system>/<code>,<sku>`, sorted (a file `import` reads back).
    List {
        /// Only the aliases of this system.
        #[arg(long)]
        system: Option<String>,
    },
    /// Put every alias of a CSV file, with a progress display.
    ///
    /// One alias per line: `<system>/<code>,<sku>` or `<system>,<code>,<sku>`; an optional
    /// header line whose last column is `sku`; blank lines and lines starting with # are
    /// ignored. Every line is checked first: a bad line is reported with its number, and then
    /// nothing is imported unless --skip-bad is given. Existing aliases not in the file stay.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Import the good lines even when some are bad (the bad ones are still reported).
        #[arg(long)]
        skip_bad: bool,
        /// Check the file and say what would be imported, without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs one `tally sku-alias` command.
pub async fn run(args: SkuAliasArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    match args.command {
        SkuAliasCommand::Put { alias, sku } => {
            let (system, code) = parse_alias_name(&alias).map_err(|m| anyhow::anyhow!("alias {alias:?}: {m}"))?;
            if !csv::is_valid_sku(&sku) {
                anyhow::bail!("sku {sku:?}: 1-256 characters, no comma, quote or control character");
            }
            let store = bucket(&config).await?;
            store.put(format!("{system}/{code}"), sku.clone().into()).await.context("putting the alias")?;
            println!("{system}/{code} -> {sku}");
            Ok(())
        }
        SkuAliasCommand::Rm { alias } => {
            let (system, code) = parse_alias_name(&alias).map_err(|m| anyhow::anyhow!("alias {alias:?}: {m}"))?;
            let store = bucket(&config).await?;
            let name = format!("{system}/{code}");
            if store.get(name.as_str()).await.context("reading the alias")?.is_none() {
                anyhow::bail!("there is no alias {name}");
            }
            store.delete(name.as_str()).await.context("removing the alias")?;
            println!("removed {name}");
            Ok(())
        }
        SkuAliasCommand::List { system } => {
            let store = bucket(&config).await?;
            let (table, _) = super::load(&store).await?;
            let mut rows: Vec<(&str, &str, &str)> =
                table.iter().filter(|(s, _, _)| system.as_deref().is_none_or(|wanted| wanted == *s)).collect();
            rows.sort_unstable();
            let mut out = String::new();
            for (system, code, sku) in &rows {
                out.push_str(&format!("{system}/{code},{sku}\n"));
            }
            print!("{out}");
            eprintln!("{} aliases.", rows.len());
            Ok(())
        }
        SkuAliasCommand::Import { file, skip_bad, dry_run } => import(&config, &file, skip_bad, dry_run).await,
    }
}

async fn import(config: &Config, file: &std::path::Path, skip_bad: bool, dry_run: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = csv::parse(&text);
    for bad in &parsed.bad {
        eprintln!("{}:{}: {}", file.display(), bad.line, bad.message);
    }
    if !parsed.bad.is_empty() && !skip_bad {
        anyhow::bail!(
            "{} bad line(s) in {}; nothing imported (fix them, or give --skip-bad to import the {} good ones)",
            parsed.bad.len(),
            file.display(),
            parsed.aliases.len()
        );
    }
    if dry_run {
        println!("Would import {} aliases from {} (dry run; nothing written).", parsed.aliases.len(), file.display());
        return Ok(());
    }
    let store = bucket(config).await?;
    let mut progress = Progress::new("import", "aliases", Some(parsed.aliases.len() as u64));
    let mut puts =
        futures::stream::iter(parsed.aliases.iter().map(|alias| put(&store, alias))).buffer_unordered(IMPORT_IN_FLIGHT);
    let mut failed = Vec::new();
    while let Some(result) = puts.next().await {
        if let Err(err) = result {
            failed.push(err);
        }
        progress.add(1);
    }
    progress.finish();
    failed.sort_by_key(|(line, _)| *line);
    for (line, err) in &failed {
        eprintln!("{}:{line}: not imported: {err:#}", file.display());
    }
    let imported = parsed.aliases.len() - failed.len();
    let skipped =
        if parsed.bad.is_empty() { String::new() } else { format!("; {} bad line(s) skipped", parsed.bad.len()) };
    println!("Imported {imported} aliases from {}{skipped}.", file.display());
    if !failed.is_empty() {
        anyhow::bail!("{} alias(es) could not be written (listed above)", failed.len());
    }
    Ok(())
}

async fn put(store: &kv::Store, alias: &Alias) -> Result<(), (usize, anyhow::Error)> {
    store.put(alias.name(), alias.sku.clone().into()).await.map(|_| ()).map_err(|err| (alias.line, err.into()))
}

async fn bucket(config: &Config) -> anyhow::Result<kv::Store> {
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    super::ensure_bucket(&js, config).await
}
