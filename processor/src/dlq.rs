//! `tally dlq list|show|replay`: the dead-letter queue (docs/wire-format.md, "The dead-letter
//! queue") read from outside, and replayed once the operator fixed the cause
//! (docs/operations.md, "Dead letters: list, inspect, replay").
//!
//! It reads `RETAIL_DLQ` through an ephemeral consumer, deleted when done (the server drops it
//! by itself after a minute without use, should the command die first), or by direct get of one
//! sequence. It never changes the DLQ and never leaves a durable consumer behind: a replayed
//! entry stays where it is, and a record that tally rejects again lands on the DLQ again, with a
//! new source sequence.
//!
//! - [`read`]: selecting entries: filters, the ephemeral consumer, direct gets.
//! - [`render`]: the one-line listing, its JSON form, and one entry shown whole.
//! - [`replay`]: the replay plan of each entry, publishing to the input stream or POSTing to
//!   the ERP webhook, and the summary.

mod read;
mod render;
mod replay;

use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::config::Config;

/// The dead-letter stream (docs/wire-format.md).
pub const DLQ_STREAM: &str = "RETAIL_DLQ";

/// `tally dlq …`: the configuration (for the NATS connection, the subject prefix, the input
/// stream and the ERP webhook), then what to do.
#[derive(Args)]
pub struct DlqArgs {
    /// The TOML configuration file, for the NATS connection, the subject prefix, the input stream
    /// and the ERP webhook; without it, defaults and TALLY_* variables apply.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first, one line each: DLQ sequence, time, reason, source subject
    /// and sequence, and the start of the detail.
    List {
        #[command(flatten)]
        filter: Filter,
        /// One JSON object per line instead (every field whole; for jq and scripts).
        #[arg(long)]
        json: bool,
    },
    /// Show dead letters whole: every header, and the payload (pretty JSON; MessagePack shown as
    /// JSON; other bytes as escaped text or a hex dump).
    Show {
        #[command(flatten)]
        filter: Filter,
        /// DLQ stream sequences (the first column of `list`); without them, every entry the
        /// filters select (use --limit).
        seqs: Vec<u64>,
        /// Write the payload of the one selected entry to stdout byte for byte, nothing else
        /// (to fix a record by hand: `tally dlq show 17 --raw > record.json`).
        #[arg(long)]
        raw: bool,
    },
    /// Replay dead letters after fixing their cause: publish each record, verbatim and with its
    /// own headers, to its original subject on the input stream, or POST a parked posting
    /// (erp_rejected) to the ERP webhook again. The DLQ is left as it is.
    ///
    /// Each replayed record is published with Nats-Msg-Id `replay/<DLQ sequence>`: the same
    /// replay run again within the input stream's duplicate window is dropped by JetStream (and
    /// reported as skipped); later, tally counts it as a duplicate of the record it accepted,
    /// never twice. A record that tally rejects again goes back to the DLQ with a new source
    /// sequence. Exits non-zero when an entry failed.
    Replay {
        #[command(flatten)]
        filter: Filter,
        /// DLQ stream sequences to replay (the first column of `list`); else every entry the
        /// filters select.
        seqs: Vec<u64>,
        /// Replay every entry when no sequence or filter is given (without it, a bare `replay`
        /// refuses, so that nobody replays the whole DLQ by accident).
        #[arg(long)]
        all: bool,
        /// Show what would be replayed, and where to, without publishing or POSTing anything.
        #[arg(long)]
        dry_run: bool,
        /// Also replay `conflict` entries, which are skipped by default: the same id with other
        /// content is a conflict again as long as tally holds the accepted record.
        #[arg(long)]
        force: bool,
    },
}

/// Which entries a command works on. Filters combine with AND; a repeated one with OR.
#[derive(Args, Default, Clone)]
pub struct Filter {
    /// Only entries with this reason: decode, schema, decimal, timestamp, unknown_type,
    /// store_mismatch, conflict, too_large or erp_rejected (the subject's last token). Repeat
    /// for several.
    #[arg(long = "reason", value_name = "REASON")]
    pub reasons: Vec<String>,
    /// Only entries of this store: the store token of the source subject (P.pos.<store>,
    /// P.inventory.<store>, P.orders.<store>, P.erp.postings.<store>). Repeat for several.
    #[arg(long = "store", value_name = "STORE")]
    pub stores: Vec<String>,
    /// Only entries dead-lettered at or after this time (the DLQ message's timestamp in the
    /// stream): RFC 3339 (2026-11-27T10:00:00Z) or a duration back from now (90m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries dead-lettered before this time; the same forms as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many entries, the oldest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.reasons.is_empty() && self.stores.is_empty() && self.since.is_none() && self.until.is_none()
    }
}

/// One DLQ message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence in the DLQ stream.
    pub seq: u64,
    /// When the DLQ stream stored it.
    pub time: DateTime<Utc>,
    /// `P.dlq.<reason>`.
    pub subject: String,
    pub headers: async_nats::HeaderMap,
    /// `None` when it was read without its payload.
    pub payload: Option<Bytes>,
    /// The payload's size in bytes.
    pub size: usize,
}

impl Entry {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.as_str())
    }

    /// The reason: `Tally-Error`, else the subject's last token.
    pub fn reason(&self) -> &str {
        self.header("Tally-Error").unwrap_or_else(|| last_token(&self.subject))
    }

    pub fn source_subject(&self) -> Option<&str> {
        self.header("Tally-Source-Subject")
    }

    pub fn source_seq(&self) -> Option<u64> {
        self.header("Tally-Source-Sequence").and_then(|seq| seq.parse().ok())
    }

    /// The store: the last token of the source subject, for input records and postings alike.
    pub fn store(&self) -> Option<&str> {
        self.source_subject().map(last_token)
    }

    pub fn detail(&self) -> &str {
        self.header("Tally-Error-Detail").unwrap_or_default()
    }
}

fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// Runs one `tally dlq` command.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    match args.command {
        DlqCommand::List { filter, json } => {
            let js = connect(&config).await?;
            let selection = read::Selection::new(&filter, &[], Utc::now())?;
            let entries = read::select(&js, &config, &selection, read::Payloads::No).await?;
            render::list(&entries, json, &mut std::io::stdout().lock())?;
            Ok(())
        }
        DlqCommand::Show { filter, seqs, raw } => {
            let js = connect(&config).await?;
            let selection = read::Selection::new(&filter, &seqs, Utc::now())?;
            let entries = read::select(&js, &config, &selection, read::Payloads::Yes).await?;
            if raw {
                return render::raw(&entries, &mut std::io::stdout().lock());
            }
            render::show(&entries, &mut std::io::stdout().lock())?;
            Ok(())
        }
        DlqCommand::Replay { filter, seqs, all, dry_run, force } => {
            if seqs.is_empty() && filter.is_empty() && !all {
                anyhow::bail!(
                    "say what to replay: DLQ sequences, --reason, --store, --since or --until \
                     (or --all for the whole DLQ); `tally dlq list` shows what is there"
                );
            }
            let js = connect(&config).await?;
            let selection = read::Selection::new(&filter, &seqs, Utc::now())?;
            replay::run(&js, &config, &selection, replay::Options { dry_run, force }).await
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = crate::nats::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    js.get_stream(DLQ_STREAM).await.with_context(|| {
        format!("looking up stream {DLQ_STREAM} at {} (run `tally setup` to create it)", config.nats.url)
    })?;
    Ok(js)
}
