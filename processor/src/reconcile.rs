//! Reading the output streams back into a state that did not publish its own outputs, before it
//! publishes anything: after `tally state rebuild`, and on the first `tally run` of a rebuilt or
//! restored state (docs/operations.md, rebuilding state).
//!
//! The ERP holds what `RETAIL_ERP` holds, and alert consumers what `RETAIL_ALERTS` holds; such a
//! state's posting books and alert revisions are its own guesses. This module reads both streams
//! through ordered consumers (nothing is left on the server), hands what it read to the
//! topology's reconciliation (`tally_topologies::reconcile`), one store-day at a time, and drops
//! the ERP postings a restored outbox still holds: the books now say what the ERP has, and the
//! next posting carries whatever those postings would have.
//!
//! Some of the partitions (a takeover, `--partition`) read back only their stores' subjects,
//! named in the consumers' filters, when they hold few enough stores for that: the output
//! streams hold every store's outputs, and the rest are not theirs to reconcile.
//!
//! It never publishes and never acks; it writes only the state.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use futures::StreamExt;
use tally_state::{Cf, Overlay, StateError, Store, WriteBatch};
use tally_topologies::adjustments_reconcile::{self, ReceivedAdjustment, ReceivedAdjustments};
use tally_topologies::aggregates::OutboxEntry;
use tally_topologies::codec;
use tally_topologies::partition;
use tally_topologies::reconcile::{self, BookOutcome, Received, ReceivedAlert, ReceivedPosting};
use tally_topologies::report;
use tally_topologies::topology::TopologyError;
use tracing::{debug, info, warn};

pub use ahead::ReadAhead;

use crate::config::Config;
use crate::dlq::DLQ_STREAM;
use crate::partitions::Partition;
use crate::progress::Progress;

mod ahead;

/// The streams read back (docs/wire-format.md).
const POSTINGS_STREAM: &str = crate::nats::ERP_STREAM;
const ALERTS_STREAM: &str = "RETAIL_ALERTS";
/// How long a stream being read back may keep its next message before the read gives up.
const READ_WAIT: Duration = Duration::from_secs(30);
/// Store-days reconciled per write batch; a day's sku-days go into the same batch.
const DAYS_PER_BATCH: usize = 16;
/// Store-days a state holds at most (stores × retained days); a guard against a runaway scan.
const STORE_DAYS_MAX: usize = 10_000_000;
/// Stores a reading back keeps the outputs of at most; with more, it keeps every store's.
const FILTERED_STORES_MAX: usize = 1_000;
/// Store-days named in a warning at most; the count says how many there are.
const DAYS_NAMED_MAX: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading stream {stream} back: {step}")]
    Read {
        stream: &'static str,
        step: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("stream {stream} did not deliver its next message within {READ_WAIT:?}")]
    Stalled { stream: &'static str },
    #[error("reading stream {stream} back: NATS did not open a consumer of it within {READ_WAIT:?}")]
    NotOpened { stream: &'static str },
    #[error("reconciling the state")]
    Topology(#[from] TopologyError),
    #[error("reconciling the state")]
    State(#[from] StateError),
}

fn read_error(stream: &'static str, step: &'static str) -> impl FnOnce(async_nats::Error) -> ReconcileError {
    move |source| ReconcileError::Read { stream, step, source }
}

/// What a reconciliation did.
#[derive(Debug, Default)]
pub struct Summary {
    pub postings_read: u64,
    pub alerts_read: u64,
    /// Messages on the output subjects that are not tally's postings or alerts.
    pub unreadable: u64,
    /// Store-days by how their book came out.
    pub days: BTreeMap<&'static str, u64>,
    /// (store, accounting period)s of inventory adjustment postings by how their book came out.
    pub periods: BTreeMap<&'static str, u64>,
    /// ERP postings dropped from the outbox (a restored checkpoint's).
    pub outbox_postings_dropped: u64,
    /// Dead letters dropped from the outbox because `RETAIL_DLQ` holds them already.
    pub outbox_dead_letters_dropped: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<String> = self.days.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
        write!(
            f,
            "read {} postings and {} alert revisions back; store-day posting books: {}",
            self.postings_read,
            self.alerts_read,
            if days.is_empty() { "none".to_string() } else { days.join(", ") }
        )?;
        if !self.periods.is_empty() {
            let periods: Vec<String> = self.periods.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
            write!(f, "; adjustment period books: {}", periods.join(", "))?;
        }
        if self.outbox_postings_dropped > 0 {
            write!(
                f,
                "; {} postings dropped from the outbox (their content goes into the next postings)",
                self.outbox_postings_dropped
            )?;
        }
        if self.outbox_dead_letters_dropped > 0 {
            write!(
                f,
                "; {} dead letters already in RETAIL_DLQ dropped from the outbox",
                self.outbox_dead_letters_dropped
            )?;
        }
        Ok(())
    }
}

fn outcome_name(outcome: BookOutcome) -> &'static str {
    match outcome {
        BookOutcome::Matched => "matched",
        BookOutcome::Reset => "reset",
        BookOutcome::Partial => "partial",
        BookOutcome::Unverified => "unverified",
        BookOutcome::Unposted => "unposted",
    }
}

/// Reconciles the state when it is marked for it (a rebuilt or restored state); `None` when it
/// is not. `tally run` calls this before it starts publishing.
pub async fn if_marked(
    partitions: &[(Partition, &dyn Store)],
    js: &jetstream::Context,
    config: &Config,
) -> Result<Option<Summary>, ReconcileError> {
    let mut marked = Vec::new();
    for (partition, store) in partitions {
        if reconcile::is_marked(&Overlay::new(*store))? {
            marked.push((*partition, *store));
        }
    }
    if marked.is_empty() {
        return Ok(None);
    }
    info!(partitions = marked.len(), "This state was rebuilt or restored: setting its posting books and alert revisions from the output streams before publishing.");
    let summary = run(&marked, js, config, None).await?;
    info!(%summary, "Reconciled with the output streams.");
    Ok(Some(summary))
}

/// Reads the output streams back once and reconciles every store-day of every partition's state
/// with them, then clears each state's mark. Shows progress when given a display. Each partition
/// reconciles what it holds (its store-days and adjustment books), so a store's books are set
/// in the one partition that has the store.
pub async fn run(
    partitions: &[(Partition, &dyn Store)],
    js: &jetstream::Context,
    config: &Config,
    progress: Option<&mut Progress>,
) -> Result<Summary, ReconcileError> {
    let read = read(partitions, js, config, progress).await?;
    apply(partitions, read, js, config).await
}

/// What the output streams held for some partitions' stores, read ahead of [`apply`]: a
/// takeover reads while its partitions still catch up with the input, since the former owner
/// can publish no more.
pub struct ReadBack {
    /// The stores read (`None`: every store).
    stores: Option<BTreeSet<String>>,
    /// The partitions whose stores are kept, of how many (a read ahead's); `None`: all.
    partitions: Option<(BTreeSet<u32>, u32)>,
    /// Where the next read of each stream starts.
    next: Next,
    received: Received,
    adjustments: ReceivedAdjustments,
    /// The `Nats-Msg-Id`s of the dead letters in `RETAIL_DLQ`.
    dead_letters: HashSet<String>,
    summary: Summary,
}

/// Reads back the outputs of the stores `partitions` hold now, and the ids of the dead letters.
pub async fn read(
    partitions: &[(Partition, &dyn Store)],
    js: &jetstream::Context,
    config: &Config,
    progress: Option<&mut Progress>,
) -> Result<ReadBack, ReconcileError> {
    let mut read = ReadBack::empty(scope(partitions, &config.input.subject_prefix)?);
    read_back(js, config, &mut read, true, progress).await?;
    Ok(read)
}

/// Where the next read of each output stream starts: the sequence after the last message read,
/// 0 before the first read (from the stream's first message).
#[derive(Debug, Default, Clone, Copy)]
struct Next {
    postings: u64,
    alerts: u64,
    dlq: u64,
}

impl ReadBack {
    fn empty(stores: Option<BTreeSet<String>>) -> ReadBack {
        ReadBack {
            stores,
            partitions: None,
            next: Next::default(),
            received: Received::default(),
            adjustments: ReceivedAdjustments::default(),
            dead_letters: HashSet::new(),
            summary: Summary::default(),
        }
    }
}

/// Reconciles every store-day of every partition's state with what `read` holds, then clears
/// each state's mark. The stores the states came to hold since `read` (they caught up
/// meanwhile) are read back first.
pub async fn apply(
    partitions: &[(Partition, &dyn Store)],
    mut read: ReadBack,
    js: &jetstream::Context,
    config: &Config,
) -> Result<Summary, ReconcileError> {
    if let Some(before) = read.stores.take() {
        match scope(partitions, &config.input.subject_prefix)? {
            Some(now) => {
                let unread: BTreeSet<String> = now.difference(&before).cloned().collect();
                if !unread.is_empty() {
                    let (count, started) = (unread.len(), std::time::Instant::now());
                    read.stores = Some(unread);
                    // Their outputs can be anywhere in the streams: read from the start.
                    let (already, complete) = (read.next, read.received.postings_complete);
                    read.next = Next::default();
                    read_back(js, config, &mut read, false, None).await?;
                    read.next = already;
                    read.received.postings_complete &= complete;
                    info!(
                        stores = count,
                        ms = started.elapsed().as_millis(),
                        "Read back the outputs of the stores that appeared while catching up."
                    );
                }
            }
            // Too many stores to name now: every subject, read again from the start.
            None => {
                let dead_letters = std::mem::take(&mut read.dead_letters);
                read = ReadBack::empty(None);
                read_back(js, config, &mut read, false, None).await?;
                read.dead_letters = dead_letters;
            }
        }
    }
    let ReadBack { received, adjustments, dead_letters, mut summary, .. } = read;
    let read = Read { received: &received, adjustments: &adjustments, dead_letters: &dead_letters };
    let prefix = &config.input.subject_prefix;
    // Each state on a thread of its own: a takeover waits for the slowest only.
    let outcomes: Vec<Result<(Summary, Doubtful), ReconcileError>> = std::thread::scope(|threads| {
        let running: Vec<_> = partitions
            .iter()
            .map(|(_, store)| {
                threads.spawn(move || {
                    let (mut summary, mut doubtful) = (Summary::default(), Doubtful::new());
                    reconcile_state(*store, read, prefix, &mut summary, &mut doubtful).map(|()| (summary, doubtful))
                })
            })
            .collect();
        running.into_iter().map(|thread| thread.join().expect("reconciling a state panicked")).collect()
    });
    let mut doubtful = Doubtful::new();
    for outcome in outcomes {
        let (part, part_doubtful) = outcome?;
        summary.add(part);
        for (outcome, days) in part_doubtful {
            doubtful.entry(outcome).or_default().extend(days);
        }
    }
    warn_doubtful(&doubtful);
    Ok(summary)
}

/// Books that could not be checked in full, by outcome: `store/day` or `store/period/<p>`.
type Doubtful = BTreeMap<&'static str, Vec<String>>;

impl Summary {
    /// Adds what reconciling one more state did.
    fn add(&mut self, other: Summary) {
        for (outcome, count) in other.days {
            *self.days.entry(outcome).or_default() += count;
        }
        for (outcome, count) in other.periods {
            *self.periods.entry(outcome).or_default() += count;
        }
        self.outbox_postings_dropped += other.outbox_postings_dropped;
        self.outbox_dead_letters_dropped += other.outbox_dead_letters_dropped;
    }
}

/// Reconciles one state with what the output streams hold, and clears its mark.
fn reconcile_state(
    store: &dyn Store,
    Read { received, adjustments, dead_letters }: Read<'_>,
    prefix: &str,
    summary: &mut Summary,
    doubtful: &mut Doubtful,
) -> Result<(), ReconcileError> {
    let started = std::time::Instant::now();
    let dropped = drop_outbox_sent(store, prefix, received, dead_letters)?;
    summary.outbox_postings_dropped += dropped.postings;
    summary.outbox_dead_letters_dropped += dropped.dead_letters;
    let outbox_time = started.elapsed();
    let days = report::store_days(store, STORE_DAYS_MAX)?;
    let now = Utc::now();
    for chunk in days.chunks(DAYS_PER_BATCH) {
        let mut txn = Overlay::new(store);
        for (store_id, day) in chunk {
            let got = received.days.get(&(store_id.clone(), *day));
            let Some(outcome) =
                reconcile::reconcile_day(&mut txn, store_id, *day, got, received.postings_complete, now)?
            else {
                continue;
            };
            *summary.days.entry(outcome_name(outcome)).or_default() += 1;
            if matches!(outcome, BookOutcome::Partial | BookOutcome::Unverified) {
                doubtful.entry(outcome_name(outcome)).or_default().push(format!("{store_id}/{day}"));
            }
        }
        store.write(&txn.into_batch())?;
    }
    let mut txn = Overlay::new(store);
    for (store_id, period, outcome) in
        adjustments_reconcile::reconcile(&mut txn, adjustments, received.postings_complete, now)?
    {
        *summary.periods.entry(outcome_name(outcome)).or_default() += 1;
        if matches!(outcome, BookOutcome::Partial | BookOutcome::Unverified) {
            doubtful.entry(outcome_name(outcome)).or_default().push(format!("{store_id}/period/{period}"));
        }
    }
    reconcile::clear_mark(&mut txn);
    store.write(&txn.into_batch())?;
    debug!(
        store_days = days.len(),
        outbox_entries_dropped = dropped.postings + dropped.dead_letters + dropped.alerts,
        outbox_ms = outbox_time.as_millis(),
        total_ms = started.elapsed().as_millis(),
        "Reconciled a state with the output streams."
    );
    Ok(())
}

/// Store-days whose book could not be checked in full: the postings stream lost messages.
fn warn_doubtful(doubtful: &Doubtful) {
    for (outcome, days) in doubtful {
        let named: Vec<&String> = days.iter().take(DAYS_NAMED_MAX).collect();
        warn!(
            outcome,
            days = days.len(),
            examples = ?named,
            "RETAIL_ERP no longer holds every posting of these store-days (retention): their next posting \
             continues after the last seq there, but its deltas may not complete what the ERP received."
        );
    }
}

/// What the output streams hold, as read back.
#[derive(Clone, Copy)]
struct Read<'a> {
    received: &'a Received,
    adjustments: &'a ReceivedAdjustments,
    /// The `Nats-Msg-Id`s of the dead letters in `RETAIL_DLQ`.
    dead_letters: &'a HashSet<String>,
}

/// The stores whose outputs reconciling `partitions` needs to read, when that is not every
/// store: they are some of the partitions only, and hold at most [`FILTERED_STORES_MAX`] stores
/// (in store-days, adjustment books, or outbox entries).
fn scope(partitions: &[(Partition, &dyn Store)], prefix: &str) -> Result<Option<BTreeSet<String>>, ReconcileError> {
    let Some((first, _)) = partitions.first() else { return Ok(None) };
    if partitions.len() >= first.count as usize {
        return Ok(None);
    }
    let mut stores = BTreeSet::new();
    for (_, store) in partitions {
        stores.extend(report::store_days(*store, STORE_DAYS_MAX)?.into_iter().map(|(store_id, _)| store_id));
        stores.extend(adjustments_reconcile::stores_with_books(&Overlay::new(*store))?);
        stores.extend(outbox_stores(*store, prefix)?);
        if stores.len() > FILTERED_STORES_MAX {
            return Ok(None);
        }
    }
    Ok(Some(stores))
}

/// The stores of the alerts and postings waiting in a state's outbox.
fn outbox_stores(store: &dyn Store, prefix: &str) -> Result<BTreeSet<String>, ReconcileError> {
    let subjects = [format!("{prefix}.alerts.drift."), format!("{prefix}.erp.postings.")];
    let mut stores = BTreeSet::new();
    let mut corrupt = None;
    tally_state::visit_prefix(store, Cf::Outbox, &[], 4096, |_, value| match codec::decode::<OutboxEntry>(value) {
        Ok(entry) => {
            let store_id = subjects.iter().find_map(|subject| entry.subject.strip_prefix(subject.as_str()));
            stores.extend(store_id.map(str::to_string));
            true
        }
        Err(source) => {
            corrupt = Some(TopologyError::Corrupt { what: "outbox entry", source });
            false
        }
    })?;
    match corrupt {
        Some(err) => Err(err.into()),
        None => Ok(stores),
    }
}

/// Stores a reading back names one by one in its consumers' filters at most; with more, it reads
/// every store's subjects and keeps its stores' outputs itself. A filter per store costs the
/// server more than sending the other stores' outputs: 150 filters over 34 000 alert revisions
/// took 1.8 s of nats-server's CPU, one wildcard 0.55 s (bench/README.md, session 16).
const SUBJECT_FILTERS_MAX: usize = 8;

/// The subjects to read under `stem` (`P.alerts.drift`): those of a few `stores`, else every
/// store's.
fn filters(stem: &str, stores: Option<&BTreeSet<String>>) -> Vec<String> {
    match stores {
        Some(stores) if stores.len() <= SUBJECT_FILTERS_MAX => {
            stores.iter().map(|store| format!("{stem}.{store}")).collect()
        }
        _ => vec![format!("{stem}.>")],
    }
}

/// Whether `subject` is one of `stores`' under `stem` (`P.alerts.drift.`): every store's is
/// when `stores` is `None`.
fn in_scope(subject: &str, stem: &str, stores: Option<&BTreeSet<String>>) -> bool {
    stores.is_none_or(|stores| subject.strip_prefix(stem).is_some_and(|store| stores.contains(store)))
}

/// Whether `subject` under `stem` is of a store in one of `partitions` (of how many): every
/// store's is when `partitions` is `None`.
fn in_partitions(subject: &str, stem: &str, partitions: Option<&(BTreeSet<u32>, u32)>) -> bool {
    partitions.is_none_or(|(partitions, count)| {
        subject.strip_prefix(stem).is_some_and(|store| partitions.contains(&partition::of_store(store, *count)))
    })
}

/// Adds to `into` every posting and alert revision the output streams hold (of its stores
/// only, when it names them), and the ids of the dead letters when `dead_letters`.
async fn read_back(
    js: &jetstream::Context,
    config: &Config,
    into: &mut ReadBack,
    dead_letters: bool,
    mut progress: Option<&mut Progress>,
) -> Result<(), ReconcileError> {
    let prefix = &config.input.subject_prefix;
    let (postings_stem, alerts_stem) = (format!("{prefix}.erp.postings."), format!("{prefix}.alerts.drift."));
    // Only the ids of the dead letters are wanted, not the inputs they carry; a dead letter's
    // subject names its reason, not its store.
    let dlq_filters = if dead_letters { vec![format!("{prefix}.dlq.>")] } else { Vec::new() };
    let stores_named = into.stores.as_ref();
    let next = into.next;
    let (postings, alerts, dlq) = tokio::try_join!(
        open_ordered(
            js,
            POSTINGS_STREAM,
            filters(&format!("{prefix}.erp.postings"), stores_named),
            Reading::Whole,
            next.postings
        ),
        open_ordered(
            js,
            ALERTS_STREAM,
            filters(&format!("{prefix}.alerts.drift"), stores_named),
            Reading::Whole,
            next.alerts
        ),
        open_ordered(js, DLQ_STREAM, dlq_filters, Reading::HeadersOnly, next.dlq),
    )?;
    let ReadBack { stores, partitions, next, received, adjustments, dead_letters, summary } = into;
    let unreadable_before = summary.unreadable;
    let wanted = |message: &jetstream::Message, stem: &str| {
        in_scope(&message.subject, stem, stores.as_ref()) && in_partitions(&message.subject, stem, partitions.as_ref())
    };
    // A read that goes on from an earlier one keeps what that one found: whether the stream
    // held every posting when reading began.
    if next.postings == 0 {
        received.postings_complete = postings.complete;
    }
    if let Some(progress) = progress.as_deref_mut() {
        progress.set_total(postings.pending + alerts.pending + dlq.pending);
    }
    // The three streams are read side by side; the alert revisions are added once all is read.
    let progress = std::sync::Mutex::new(progress);
    let (mut alert_revisions, mut unreadable_alerts) = (Vec::new(), 0);
    let read_postings = read_all(postings, &progress, |message| {
        if !wanted(message, &postings_stem) {
            return;
        }
        // A posting read again (a read that failed part way is read again) counts once.
        match decode::<ReceivedPosting>(message) {
            Some(posting) => {
                summary.postings_read += u64::from(received.add_posting(posting));
            }
            // Inventory adjustment postings keep books of their own, per store and period.
            None => match decode::<ReceivedAdjustment>(message).filter(|_| is_adjustment_posting(message)) {
                Some(posting) => {
                    summary.postings_read += u64::from(adjustments.add(posting));
                }
                None => summary.unreadable += 1,
            },
        }
    });
    let read_alerts = read_all(alerts, &progress, |message| {
        if !wanted(message, &alerts_stem) {
            return;
        }
        match decode::<ReceivedAlert>(message) {
            Some(alert) => alert_revisions.push(alert),
            None => unreadable_alerts += 1,
        }
    });
    let read_dlq = read_all(dlq, &progress, |message| {
        if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
            dead_letters.insert(id.as_str().to_string());
        }
    });
    let (postings_last, alerts_last, dlq_last) = tokio::try_join!(read_postings, read_alerts, read_dlq)?;
    // Each stream goes on after the last message read; everything read before is kept, and a
    // message read twice changes nothing (a seq is added once, a revision is a maximum).
    next.postings = postings_last.map_or(next.postings, |last| last + 1);
    next.alerts = alerts_last.map_or(next.alerts, |last| last + 1);
    next.dlq = dlq_last.map_or(next.dlq, |last| last + 1);
    summary.alerts_read += alert_revisions.len() as u64;
    summary.unreadable += unreadable_alerts;
    alert_revisions.into_iter().for_each(|alert| received.add_alert(alert));
    if summary.unreadable > unreadable_before {
        warn!(
            count = summary.unreadable - unreadable_before,
            "Messages on the output subjects that are not tally's postings or alerts; ignored."
        );
    }
    Ok(())
}

/// Whether a message on the postings subjects is an `inventory_adjustment` posting.
fn is_adjustment_posting(message: &jetstream::Message) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    decode::<Kind>(message).is_some_and(|posting| posting.kind == tally_topologies::adjustment_body::KIND)
}

fn decode<T: serde::de::DeserializeOwned>(message: &jetstream::Message) -> Option<T> {
    let content_type = message.headers.as_ref().and_then(|h| h.get("Content-Type")).map(|v| v.as_str());
    reconcile::read_output(content_type, &message.payload).ok()
}

/// A stream being read back from its first message.
struct Ordered {
    stream: &'static str,
    consumer: Option<consumer::Consumer<consumer::pull::OrderedConfig>>,
    /// Messages to read.
    pending: u64,
    /// Whether the stream still holds every message ever published to it.
    complete: bool,
}

/// Whether a stream is read back with its messages' payloads or their headers alone.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    Whole,
    HeadersOnly,
}

/// How long one attempt to open a consumer may take before another is made.
const OPEN_WAIT: Duration = Duration::from_secs(2);

/// Opens an ordered consumer of `stream` on the subjects `filters`; none means nothing to read.
/// An attempt NATS does not answer within [`OPEN_WAIT`] is made again, for up to
/// [`READ_WAIT`]: an ordered consumer has one replica, placed on one of the stream's servers,
/// and NATS may place it on a server that died moments ago and that it still counts as up;
/// another attempt is placed anew.
async fn open_ordered(
    js: &jetstream::Context,
    stream: &'static str,
    filters: Vec<String>,
    read: Reading,
    from: u64,
) -> Result<Ordered, ReconcileError> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = open_ordered_once(js, stream, filters.clone(), read, from);
        match tokio::time::timeout(OPEN_WAIT, attempt).await {
            Ok(outcome) => {
                if attempts > 1 {
                    info!(stream, attempts, "Opened a consumer to read a stream back after NATS did not answer.");
                }
                return outcome;
            }
            Err(_) if tokio::time::Instant::now() + OPEN_WAIT <= deadline => {}
            Err(_) => return Err(ReconcileError::NotOpened { stream }),
        }
    }
}

/// One attempt of [`open_ordered`].
async fn open_ordered_once(
    js: &jetstream::Context,
    stream: &'static str,
    mut filters: Vec<String>,
    read: Reading,
    from: u64,
) -> Result<Ordered, ReconcileError> {
    // The stream's state as of now: looking the stream up reads it.
    let handle = js.get_stream(stream).await.map_err(|e| read_error(stream, "looking it up")(e.into()))?;
    let state = handle.cached_info().state.clone();
    let complete = state.first_sequence <= 1 && state.deleted_count.unwrap_or(0) == 0;
    if filters.is_empty() || from > state.last_sequence {
        return Ok(Ordered { stream, consumer: None, pending: 0, complete });
    }
    let deliver_policy = match from {
        0 | 1 => consumer::DeliverPolicy::All,
        start_sequence => consumer::DeliverPolicy::ByStartSequence { start_sequence },
    };
    // One subject goes in `filter_subject`, which servers before 2.10 know too.
    let (filter_subject, filter_subjects) =
        if filters.len() == 1 { (filters.remove(0), Vec::new()) } else { (String::new(), filters) };
    let config = consumer::pull::OrderedConfig {
        filter_subject,
        filter_subjects,
        deliver_policy,
        description: Some("tally: reading outputs back".into()),
        headers_only: read == Reading::HeadersOnly,
        ..Default::default()
    };
    let consumer =
        handle.create_consumer(config).await.map_err(|e| read_error(stream, "creating a consumer")(e.into()))?;
    let pending = consumer.cached_info().num_pending;
    Ok(Ordered { stream, consumer: Some(consumer), pending, complete })
}

/// Hands every message of `ordered` to `each`, until none is pending; the stream sequence of
/// the last one, if any was read.
async fn read_all(
    mut ordered: Ordered,
    progress: &std::sync::Mutex<Option<&mut Progress>>,
    mut each: impl FnMut(&jetstream::Message),
) -> Result<Option<u64>, ReconcileError> {
    let stream = ordered.stream;
    let Some(consumer) = ordered.consumer.take().filter(|_| ordered.pending > 0) else { return Ok(None) };
    let mut messages = consumer.messages().await.map_err(|e| read_error(stream, "reading its messages")(e.into()))?;
    let mut last = None;
    loop {
        let next =
            tokio::time::timeout(READ_WAIT, messages.next()).await.map_err(|_| ReconcileError::Stalled { stream })?;
        let Some(message) = next else { return Ok(last) };
        let message = message.map_err(|e| read_error(stream, "reading its messages")(e.into()))?;
        each(&message);
        if let Some(progress) = progress.lock().unwrap_or_else(|e| e.into_inner()).as_deref_mut() {
            progress.add(1);
        }
        let info = message.info().map_err(read_error(stream, "reading a message's sequence"))?;
        last = Some(info.stream_sequence);
        if info.pending == 0 {
            return Ok(last);
        }
    }
}

/// What [`drop_outbox_sent`] dropped.
#[derive(Default)]
struct Dropped {
    postings: u64,
    alerts: u64,
    dead_letters: u64,
}

/// Deletes from the outbox the ERP postings, the alert revisions at or below the highest one
/// published of their alert, and the dead letters `RETAIL_DLQ` holds. A restored checkpoint's
/// outbox, or a partition's taken over from another instance (or tailed by a standby), may hold
/// postings the ERP never got: the reconciled books make the next posting carry their content,
/// under a seq of its own. Its alert revisions up to the highest published were sent already,
/// maybe with other figures (another instance's, or before a restore); later ones were never
/// sent and go out. A dead letter's content is its input's, so one already in the stream is
/// dropped (it could be older than the stream's duplicate window) and the others go out.
fn drop_outbox_sent(
    store: &dyn Store,
    prefix: &str,
    received: &Received,
    dead_letters: &HashSet<String>,
) -> Result<Dropped, ReconcileError> {
    let postings = format!("{prefix}.erp.postings.");
    let alerts = format!("{prefix}.alerts.drift.");
    let dlq = format!("{prefix}.dlq.");
    let mut doomed = Vec::new();
    let mut dropped = Dropped::default();
    let mut corrupt = None;
    tally_state::visit_prefix(store, Cf::Outbox, &[], 4096, |key, value| match codec::decode::<OutboxEntry>(value) {
        Ok(entry) => {
            if entry.subject.starts_with(&postings) {
                doomed.push(key.to_vec());
                dropped.postings += 1;
            } else if entry.subject.starts_with(&alerts) && was_sent(&entry.msg_id, received) {
                doomed.push(key.to_vec());
                dropped.alerts += 1;
            } else if entry.subject.starts_with(&dlq) && dead_letters.contains(&entry.msg_id) {
                doomed.push(key.to_vec());
                dropped.dead_letters += 1;
            }
            true
        }
        Err(source) => {
            corrupt = Some(TopologyError::Corrupt { what: "outbox entry", source });
            false
        }
    })?;
    if let Some(err) = corrupt {
        return Err(err.into());
    }
    for keys in doomed.chunks(4096) {
        let mut batch = WriteBatch::default();
        keys.iter().for_each(|key| batch.delete(Cf::Outbox, key.clone()));
        store.write(&batch)?;
    }
    Ok(dropped)
}

/// Whether the alert revision with `Nats-Msg-Id` `drift/<store>/<day>/<sku>/<revision>`
/// (docs/wire-format.md, "Drift alert") is at or below the highest revision published of its
/// alert. An id of another shape is kept.
fn was_sent(msg_id: &str, received: &Received) -> bool {
    let parsed = || {
        let (id, revision) = msg_id.strip_prefix("drift/")?.rsplit_once('/')?;
        let mut parts = id.splitn(3, '/');
        let (store, day, sku) = (parts.next()?, parts.next()?, parts.next()?);
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        Some((received.alert_revision(store, day, sku)?, revision.parse::<u32>().ok()?))
    };
    parsed().is_some_and(|(published, revision)| revision <= published)
}

/// Marks a state so that its first `tally run` reconciles it before publishing.
pub fn mark(store: &dyn Store) -> Result<(), StateError> {
    let mut txn = Overlay::new(store);
    reconcile::mark(&mut txn);
    store.write(&txn.into_batch())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use tally_state::MemStore;
    use tally_topologies::keys;

    fn outbox_entry(subject: &str) -> Vec<u8> {
        let entry = OutboxEntry {
            subject: subject.into(),
            msg_id: "id".into(),
            headers: Vec::new(),
            payload: Vec::new(),
            kind: None,
        };
        codec::encode(&entry)
    }

    // Proves a reconciliation of some partitions keeps the outputs of exactly the stores they
    // hold (in store-days and in the outbox), and one of every partition keeps every store's.
    #[test]
    fn some_partitions_read_back_their_stores_only() {
        let state = MemStore::new();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(Cf::Aggregates, keys::store_day("0042", day), vec![0]);
        batch.put(Cf::Aggregates, keys::store_day("0007", day), vec![0]);
        batch.put(Cf::Outbox, keys::outbox(1), outbox_entry("retail.alerts.drift.0099"));
        batch.put(Cf::Outbox, keys::outbox(2), outbox_entry("retail.dlq.bad_json"));
        state.write(&batch).unwrap();
        let of = |index, count| [(Partition { index, count }, &state as &dyn Store)];

        let stores = scope(&of(3, 16), "retail").unwrap().expect("one of 16 partitions reads its stores only");
        assert_eq!(stores.into_iter().collect::<Vec<_>>(), ["0007", "0042", "0099"]);
        assert!(scope(&of(0, 1), "retail").unwrap().is_none(), "every partition: every subject");

        let named: BTreeSet<String> = ["0007".to_string()].into();
        assert!(in_scope("retail.alerts.drift.0007", "retail.alerts.drift.", Some(&named)));
        assert!(!in_scope("retail.alerts.drift.0042", "retail.alerts.drift.", Some(&named)));
        assert!(!in_scope("retail.alerts.drift.00071", "retail.alerts.drift.", Some(&named)));
        assert!(in_scope("retail.alerts.drift.0042", "retail.alerts.drift.", None));
        assert_eq!(filters("retail.alerts.drift", Some(&named)), ["retail.alerts.drift.0007"]);
        let many: BTreeSet<String> = (0..=SUBJECT_FILTERS_MAX).map(|n| format!("{n:04}")).collect();
        assert_eq!(filters("retail.alerts.drift", Some(&many)), ["retail.alerts.drift.>"]);
        assert_eq!(filters("retail.alerts.drift", None), ["retail.alerts.drift.>"]);
    }
}
