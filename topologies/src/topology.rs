//! The retail topology: one input message in, state changes and outputs out.
//!
//! It reads and writes only through an `Overlay`, so a whole input batch becomes one atomic
//! write that the processor commits together with the stream position. It never waits, never
//! talks to the network and never reads the wall clock: the processor passes time in.

use std::collections::{btree_map, hash_map, BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use tally_state::{Cf, Overlay};

use crate::adjustments;
use crate::aggregates::{LatestPrice, OutboxEntry, OutputKind, Seen, SeenDay, SkuDay, StoreDay};
use crate::clock::{self, StoreClock};
use crate::codec::{self, read, read_meta_u64};
use crate::decode::{self, DecodeContext, RejectReason, Rejection};
use crate::drift::DriftThresholds;
use crate::fingerprint::fingerprint;
use crate::fiscal::FiscalSettings;
use crate::keys;
use crate::lineage::{self, Arrival, Rejected, TraceContext};
use crate::model::{DayClose, Event, InventoryMovement, PosTransaction, Source};
use crate::outputs::{self, Emitted, OutputFormat};
use crate::postings;
use crate::retention;
use crate::sku_alias::{self, SharedAliases, SkuAliases, SkuSystems};
use crate::unmapped;
use crate::working_set::{Mark, WorkingSet};

/// What the topology needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    pub subject_prefix: String,
    pub default_currency: String,
    pub default_timezone: Tz,
    pub store_timezones: HashMap<String, Tz>,
    pub max_message_bytes: usize,
    pub max_lines: usize,
    pub drift: DriftThresholds,
    pub drift_overrides: HashMap<String, DriftThresholds>,
    /// A store idle this long (processing time) has its watermark advanced by processing time.
    pub idle_timeout: Duration,
    /// Processing time between interim postings of a changed day.
    pub erp_interval: Duration,
    /// Event time after a day-close before the day is finalized.
    pub close_grace: Duration,
    /// Event time after the end of a business day before it is finalized without day-close.
    pub max_open: Duration,
    pub output_format: OutputFormat,
    /// Event time after the end of a business day before its totals and dedupe ids are pruned.
    pub retention: Duration,
    /// Accounting periods of inventory adjustment postings (`adjustments`).
    pub fiscal: FiscalSettings,
    /// Which system a record's codes belong to (docs/wire-format.md, "SKU aliases").
    pub sku_systems: SkuSystems,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            subject_prefix: "retail".into(),
            default_currency: "USD".into(),
            default_timezone: Tz::UTC,
            store_timezones: HashMap::new(),
            max_message_bytes: 1 << 20,
            max_lines: 1000,
            drift: DriftThresholds::default(),
            drift_overrides: HashMap::new(),
            idle_timeout: Duration::minutes(5),
            erp_interval: Duration::minutes(5),
            close_grace: Duration::minutes(10),
            max_open: Duration::hours(30),
            output_format: OutputFormat::Json,
            retention: Duration::days(35),
            fiscal: FiscalSettings::default(),
            sku_systems: SkuSystems::default(),
        }
    }
}

impl TopologyConfig {
    pub fn timezone(&self, store: &str) -> Tz {
        self.store_timezones.get(store).copied().unwrap_or(self.default_timezone)
    }

    pub fn thresholds(&self, store: &str) -> &DriftThresholds {
        self.drift_overrides.get(store).unwrap_or(&self.drift)
    }
}

/// One message as it came off the input stream.
#[derive(Debug, Clone, Copy)]
pub struct InputMessage<'a> {
    pub subject: &'a str,
    pub content_type: Option<&'a str>,
    pub payload: &'a [u8],
    /// The JetStream stream sequence: the DLQ's message id and the commit position.
    pub stream_seq: u64,
    /// The trace context of its headers, kept with the record and passed on to what it causes.
    pub trace: TraceContext<'a>,
}

impl<'a> InputMessage<'a> {
    /// A message without trace headers.
    pub fn new(subject: &'a str, content_type: Option<&'a str>, payload: &'a [u8], stream_seq: u64) -> Self {
        InputMessage { subject, content_type, payload, stream_seq, trace: TraceContext::default() }
    }
}

/// What became of one input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected(RejectReason),
}

impl Outcome {
    /// The label value used in metrics (`tally_events_total{outcome}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// The outcome with the source it was read from, when the subject named one, and what
/// outputs it emitted.
pub use crate::error::TopologyError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub source: Option<Source>,
    pub outcome: Outcome,
    pub emitted: Emitted,
    /// Lines of an accepted record whose code no alias mapped, with the system's metric label
    /// (`tally_unmapped_skus_total{system}`); `None` when there were none.
    pub unmapped: Option<(String, u64)>,
}

pub struct Retail {
    config: TopologyConfig,
    /// The working set between batches; a batch holds it while it runs.
    working: Mutex<WorkingSet>,
    /// The SKU alias table, kept current by the processor; each batch reads one snapshot.
    aliases: Arc<SharedAliases>,
}

/// A message decoded by [`Retail::decode`]: its record with the record's fingerprint, or why
/// it is rejected.
#[derive(Debug)]
pub struct Decoded {
    record: Result<(Event, u64, Option<String>), Rejection>,
}

/// The work of one accepted record on one store: its clock, the drift keys it touched, and
/// the store-days and sku-days it changed, taken from the working set (or decoded) once and
/// written back once at its end.
pub(crate) struct Step<'w> {
    pub store: String,
    pub clock: StoreClock,
    pub now: DateTime<Utc>,
    pub touched: BTreeSet<(NaiveDate, String)>,
    pub emitted: Emitted,
    pub store_days: BTreeMap<NaiveDate, StoreDay>,
    /// Hashed, not ordered: nothing reads them in order, and a sku-day is a few hundred bytes
    /// that an ordered map's nodes moved about on every insertion.
    pub sku_days: foldhash::HashMap<(NaiveDate, String), SkuDay>,
    /// Latest prices by sku, read once per record: a sale writes them and its drift
    /// evaluation reads them again.
    pub prices: foldhash::HashMap<String, Option<LatestPrice>>,
    /// The batch's working set: where the values above come from and go back to.
    pub working: &'w mut WorkingSet,
    /// The input position applied before this step: what a posting it sends covers (`lineage`).
    pub covers: u64,
    /// Headers that the outputs this step causes carry: the record's trace context.
    pub trace_headers: Vec<(String, String)>,
}

impl<'w> Step<'w> {
    pub fn new(store: String, clock: StoreClock, now: DateTime<Utc>, working: &'w mut WorkingSet) -> Step<'w> {
        Step {
            store,
            clock,
            now,
            touched: BTreeSet::new(),
            emitted: Emitted::default(),
            store_days: BTreeMap::new(),
            sku_days: foldhash::HashMap::default(),
            prices: foldhash::HashMap::default(),
            working,
            covers: 0,
            trace_headers: Vec::new(),
        }
    }

    /// Writes back what the record changed, and returns it to the working set.
    pub fn flush(&mut self, txn: &mut Overlay<'_>) {
        for (day, totals) in std::mem::take(&mut self.store_days) {
            txn.put(Cf::Aggregates, keys::store_day(&self.store, day), codec::encode(&totals));
            self.working.put_store_day(&self.store, day, totals);
        }
        for ((day, sku), totals) in std::mem::take(&mut self.sku_days) {
            txn.put(Cf::Aggregates, keys::sku_day(&self.store, day, &sku), codec::encode(&totals));
            self.working.put_sku_day(&self.store, day, sku, totals);
        }
    }

    /// Writes the store's clock, and keeps it in the working set.
    pub fn save_clock(&mut self, txn: &mut Overlay<'_>) {
        clock::save(txn, &self.store, &self.clock);
        self.working.put_clock(&self.store, self.clock.clone());
    }
}

/// Whether a batch ends with the processing-time tick (idle stores, interim postings). The run
/// loop runs it about once a second of processing time, not with every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Run,
    Skip,
}

/// What became of one batch.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// Per message, in order: what became of it, or `None` for a message at or below the
    /// committed position (a redelivery of input already committed), which changes nothing.
    pub applied: Vec<Option<Applied>>,
    /// What the tick emitted, when it ran.
    pub tick: Option<Emitted>,
    /// The committed position before the batch.
    pub committed: u64,
    /// The position the batch commits: the stream sequence of its last new message, or
    /// `committed` when it held none.
    pub position: u64,
}

/// A batch being applied: the topology's unit of work. It skips what the committed position
/// already covers, applies each new message (dedupe, voids, aggregates, drift, postings, the
/// timers its store's event time reached), runs the tick when asked and sets the position, all
/// into one overlay that the caller commits as one write (docs/operations.md, "The guarantees").
///
/// Messages are pushed one at a time so that the run loop can decode them ahead on another
/// thread and let arrivals join the batch while the one before commits; everything else calls
/// [`Retail::apply_batch`], which is this over a slice.
pub struct Batch<'r, 't, 's> {
    retail: &'r Retail,
    txn: &'t mut Overlay<'s>,
    now: DateTime<Utc>,
    result: BatchResult,
    /// Taken from the topology for the batch; returned when it finishes (a batch that fails
    /// part-way drops it, and the next batch starts with an empty one).
    working: WorkingSet,
    working_generation: u64,
    /// The alias table as it stood when the batch started: one table for all of its records.
    aliases: Arc<SkuAliases>,
}

impl Batch<'_, '_, '_> {
    /// The position so far: the committed one, or the last message applied.
    pub fn position(&self) -> u64 {
        self.result.position
    }

    /// Applies one message, decoding it here unless `decoded` holds its [`Retail::decode`]; a
    /// message the position already covers is skipped (`None`). Only state errors fail; bad
    /// input never does.
    pub fn push(
        &mut self,
        msg: &InputMessage<'_>,
        decoded: Option<Decoded>,
    ) -> Result<Option<&Applied>, TopologyError> {
        if msg.stream_seq <= self.result.position {
            self.result.applied.push(None);
            return Ok(None);
        }
        let decoded = decoded.unwrap_or_else(|| self.retail.decode(msg.subject, msg.content_type, msg.payload));
        let applied = self.retail.apply_decoded(self.txn, &mut self.working, &self.aliases, msg, decoded, self.now)?;
        self.result.position = msg.stream_seq;
        self.result.applied.push(Some(applied));
        Ok(self.result.applied.last().and_then(Option::as_ref))
    }

    /// Ends the batch: the tick when asked, then the position.
    pub fn finish(mut self, tick: Tick) -> Result<BatchResult, TopologyError> {
        if tick == Tick::Run {
            self.result.tick = Some(self.retail.tick(self.txn, &mut self.working, self.now, self.result.position)?);
        }
        if self.result.position > self.result.committed {
            set_position(self.txn, self.result.position);
        }
        let generation = self.working_generation;
        self.working.leave(Mark { store: self.txn.store_id(), position: self.result.position, generation });
        *self.retail.working.lock().unwrap_or_else(PoisonError::into_inner) = self.working;
        Ok(self.result)
    }
}

impl Retail {
    pub fn new(config: TopologyConfig) -> Self {
        Retail::build(config, Arc::default(), 1)
    }

    /// A topology that reads SKU aliases from `aliases`, which its owner keeps current.
    pub fn with_aliases(config: TopologyConfig, aliases: Arc<SharedAliases>) -> Self {
        Retail::build(config, aliases, 1)
    }

    /// The topology of one of `partitions` partitions of a process, reading SKU aliases from
    /// `aliases`: its working set is bounded to its share, so that the process's memory does not
    /// grow with the partitions.
    pub fn with_share(config: TopologyConfig, aliases: Arc<SharedAliases>, partitions: usize) -> Self {
        Retail::build(config, aliases, partitions)
    }

    fn build(config: TopologyConfig, aliases: Arc<SharedAliases>, partitions: usize) -> Self {
        Retail { config, working: Mutex::new(WorkingSet::with_share(partitions)), aliases }
    }

    pub fn config(&self) -> &TopologyConfig {
        &self.config
    }

    /// Starts a batch over `txn` at processing time `now`, after the position `txn` reads as
    /// committed.
    pub fn batch<'r, 't, 's>(
        &'r self,
        txn: &'t mut Overlay<'s>,
        now: DateTime<Utc>,
    ) -> Result<Batch<'r, 't, 's>, TopologyError> {
        let committed = committed_position(txn)?;
        let mut working = std::mem::take(&mut *self.working.lock().unwrap_or_else(PoisonError::into_inner));
        let generation = read_meta_u64(txn, keys::META_GENERATION)?.unwrap_or(0);
        working.check(Mark { store: txn.store_id(), position: committed, generation });
        Ok(Batch {
            retail: self,
            txn,
            now,
            result: BatchResult { committed, position: committed, ..BatchResult::default() },
            working,
            working_generation: generation,
            aliases: self.aliases.snapshot(),
        })
    }

    /// Applies a batch of messages at processing time `now` into `txn` (see [`Batch`]): what the
    /// run loop, the fault tests, the benchmarks and the fuzz targets all run.
    pub fn apply_batch(
        &self,
        txn: &mut Overlay<'_>,
        messages: &[InputMessage<'_>],
        now: DateTime<Utc>,
        tick: Tick,
    ) -> Result<BatchResult, TopologyError> {
        let mut batch = self.batch(txn, now)?;
        for msg in messages {
            batch.push(msg, None)?;
        }
        batch.finish(tick)
    }

    /// The part of `apply` that reads no state: decoding and validating the message and
    /// fingerprinting its record. The processor runs it on another core, ahead of [`Batch::push`].
    pub fn decode(&self, subject: &str, content_type: Option<&str>, payload: &[u8]) -> Decoded {
        let timezone_of = |store: &str| self.config.timezone(store);
        let ctx = DecodeContext {
            subject_prefix: &self.config.subject_prefix,
            default_currency: &self.config.default_currency,
            timezone_of: &timezone_of,
            max_message_bytes: self.config.max_message_bytes,
            max_lines: self.config.max_lines,
        };
        let record = decode::decode_with_system(subject, content_type, payload, &ctx).map(|(_, event, system)| {
            let print = crate::fingerprint::with_sku_system(fingerprint(&event), system.as_deref());
            (event, print, system)
        });
        Decoded { record }
    }

    /// The record id and store of a message, as far as they can be read (the store from the
    /// subject), for log lines about it; empty when unreadable. Reads the payload again, so
    /// callers ask only when they write such a line.
    pub fn identify(&self, msg: &InputMessage<'_>) -> (String, String) {
        let id = decode::record_id(msg.content_type, msg.payload, self.config.max_message_bytes);
        let store = decode::parse_input_subject(&self.config.subject_prefix, msg.subject).map(|(_, store)| store);
        (id.unwrap_or_default(), store.unwrap_or_default().to_string())
    }

    /// Applies one decoded input message at processing time `now`: dedupe, voids, aggregates,
    /// drift, posting bookkeeping; a rejection becomes a DLQ entry in the outbox.
    fn apply_decoded(
        &self,
        txn: &mut Overlay<'_>,
        working: &mut WorkingSet,
        aliases: &SkuAliases,
        msg: &InputMessage<'_>,
        decoded: Decoded,
        now: DateTime<Utc>,
    ) -> Result<Applied, TopologyError> {
        let source = decode::parse_input_subject(&self.config.subject_prefix, msg.subject).map(|(s, _)| s);
        let mut unmapped = None;
        let (outcome, emitted) = match decoded.record {
            Ok((event, print, system)) => {
                let codes = Codes { aliases, system: system.as_deref(), unmapped: &mut unmapped };
                self.apply_event(txn, working, msg, event, print, codes, now)?
            }
            Err(rejection) => (self.reject(txn, msg, &rejection, None, now)?, Emitted::default()),
        };
        Ok(Applied { source, outcome, emitted, unmapped })
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_event(
        &self,
        txn: &mut Overlay<'_>,
        working: &mut WorkingSet,
        msg: &InputMessage<'_>,
        mut event: Event,
        print: u64,
        codes: Codes<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Outcome, Emitted), TopologyError> {
        let store = event.store().to_string();
        let seen_key = keys::seen(&store, event.id());
        if let Some(mut seen) = read::<Seen>(txn, Cf::Dedupe, &seen_key, "dedupe entry")? {
            let outcome = if seen.fingerprint == print {
                update_counters(txn, working, &store, event.business_day(), |day| day.duplicates += 1)?;
                if let Some(arrival) = &mut seen.arrival {
                    arrival.duplicates += 1;
                    arrival.last_duplicate_seq = Some(msg.stream_seq);
                    txn.put(Cf::Dedupe, seen_key, codec::encode(&seen));
                }
                Outcome::Duplicate
            } else {
                update_counters(txn, working, &store, event.business_day(), |day| day.conflicts += 1)?;
                let rejection = Rejection {
                    reason: RejectReason::Conflict,
                    detail: format!(
                        "id {:?} was already accepted with different content (business day {})",
                        event.id(),
                        seen.business_day
                    ),
                };
                self.reject(txn, msg, &rejection, Some((&event, &store)), now)?
            };
            return Ok((outcome, Emitted::default()));
        }
        if let Some(rejection) = self.mixed_currency(txn, working, &event)? {
            return Ok((self.reject(txn, msg, &rejection, Some((&event, &store)), now)?, Emitted::default()));
        }
        let occurred = event.occurred_at().to_utc();
        self.canonicalize(txn, &mut event, codes, occurred)?;
        let known = match working.clock(&store) {
            Some(clock) => Some(clock.clone()),
            None => clock::load(txn, &store)?,
        };
        let clock = match known {
            Some(mut clock) => {
                clock.observe(occurred, now);
                clock
            }
            None => StoreClock::new(occurred, now),
        };
        let mut step = Step::new(store, clock, now, working);
        step.covers = msg.stream_seq.saturating_sub(1);
        // Timers due before this record's time fire first: a key that stayed over threshold
        // for the settle time fires even if this very record brings it back under. What they
        // send is caused by time passing, so it does not carry this record's trace context.
        self.fire_due(txn, &mut step)?;
        step.trace_headers = msg.trace.headers();
        let event_id = &event.id().to_string();
        let mut arrival = Arrival::new(msg.stream_seq, now, &event, msg.trace);
        if let Event::Transaction(tx) = &event {
            arrival.voids = tx.voids.clone();
        }
        let mut seen = Seen {
            fingerprint: print,
            business_day: event.business_day(),
            transaction: None,
            voided_by: None,
            arrival: Some(arrival),
            order_skus: Vec::new(),
        };
        match event {
            Event::Transaction(tx) if tx.voids.is_some() => self.apply_void(txn, &mut step, &tx)?,
            Event::Transaction(tx) => {
                seen.voided_by = self.apply_transaction(txn, &mut step, &tx)?;
                seen.transaction = Some(tx);
            }
            Event::Movement(movement) => {
                let booked = self.apply_movement(txn, &mut step, &movement)?;
                if let Some(arrival) = seen.arrival.as_mut() {
                    arrival.booked_period = booked;
                }
            }
            Event::DayClose(close) => self.apply_day_close(txn, &mut step, close)?,
            Event::Order(order) => {
                self.apply_order(txn, &mut step, &order)?;
                seen.order_skus = order.skus();
            }
        }
        txn.put(Cf::Dedupe, seen_key, codec::encode(&seen));
        retention::index(txn, &step.store, seen.business_day, retention::Indexed::Seen, event_id);
        self.evaluate_touched(txn, &mut step)?;
        step.flush(txn);
        step.save_clock(txn);
        Ok((Outcome::Accepted, step.emitted))
    }

    /// Counts the record's lines under their canonical skus (docs/wire-format.md, "SKU aliases"):
    /// what is stored, aggregated and voided later is the canonical form, so an alias that
    /// arrives afterwards changes nothing already counted. Codes that stay themselves although
    /// their system is mapped are noted per store-day.
    fn canonicalize(
        &self,
        txn: &mut Overlay<'_>,
        event: &mut Event,
        codes: Codes<'_>,
        occurred: DateTime<Utc>,
    ) -> Result<(), TopologyError> {
        let source = match event {
            Event::Movement(_) => Source::Inventory,
            Event::Order(_) => Source::Orders,
            Event::Transaction(_) | Event::DayClose(_) => Source::Pos,
        };
        let systems = &self.config.sku_systems;
        let system = systems.of(source, codes.system);
        let found = sku_alias::canonicalize(event, system, systems, codes.aliases);
        if !found.codes.is_empty() {
            unmapped::note(txn, event.store(), event.business_day(), occurred, &found)?;
            *codes.unmapped = Some((systems.label(&found.system), found.lines()));
        }
        Ok(())
    }

    /// Why a transaction with lines cannot join its store-day, if it cannot: the day already
    /// sums another currency (docs/wire-format.md, "The dead-letter queue", `currency`). A day's
    /// first transaction sets its currency; voids carry no lines and no currency of their own.
    fn mixed_currency(
        &self,
        txn: &Overlay<'_>,
        working: &mut WorkingSet,
        event: &Event,
    ) -> Result<Option<Rejection>, TopologyError> {
        let Event::Transaction(tx) = event else { return Ok(None) };
        if tx.lines.is_empty() {
            return Ok(None);
        }
        // Read into the working set, where the record's step finds it next.
        let totals = match working.take_store_day(&tx.store, tx.business_day) {
            Some(totals) => totals,
            None => {
                let key = keys::store_day(&tx.store, tx.business_day);
                match read::<StoreDay>(txn, Cf::Aggregates, &key, "store-day totals")? {
                    Some(totals) => totals,
                    None => return Ok(None),
                }
            }
        };
        let rejection = match &totals.currency {
            Some(currency) if *currency != tx.currency => Some(Rejection {
                reason: RejectReason::Currency,
                detail: format!(
                    "currency: {:?}, but business day {} of store {:?} is in {currency:?}; a day is not summed across currencies",
                    tx.currency, tx.business_day, tx.store
                ),
            }),
            _ => None,
        };
        working.put_store_day(&tx.store, tx.business_day, totals);
        Ok(rejection)
    }

    /// Puts the verbatim input on `P.dlq.<reason>` through the outbox (docs/wire-format.md, "The dead-letter queue").
    ///
    /// `record` is the record and its store when it could be read (a conflict, a mixed
    /// currency); otherwise its id and store are read again from the message, as far as they
    /// can be, so that the rejection can be traced (`lineage`).
    fn reject(
        &self,
        txn: &mut Overlay<'_>,
        msg: &InputMessage<'_>,
        rejection: &Rejection,
        record: Option<(&Event, &str)>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, TopologyError> {
        let reason = rejection.reason.as_str();
        let content_type =
            msg.content_type.map(str::to_string).unwrap_or_else(|| sniff_content_type(msg.payload).into());
        let mut headers = vec![
            ("Tally-Error".into(), reason.into()),
            ("Tally-Error-Detail".into(), header_safe(&rejection.detail)),
            ("Tally-Source-Subject".into(), msg.subject.into()),
            ("Tally-Source-Sequence".into(), msg.stream_seq.to_string()),
            ("Content-Type".into(), content_type),
        ];
        headers.extend(msg.trace.headers());
        let entry = OutboxEntry {
            subject: format!("{}.dlq.{}", self.config.subject_prefix, reason),
            msg_id: format!("dlq/{}", msg.stream_seq),
            headers,
            payload: msg.payload.to_vec(),
            kind: Some(OutputKind::Dlq),
        };
        outputs::enqueue(txn, &entry)?;
        let (id, store, day) = match record {
            Some((event, store)) => (event.id().to_string(), store.to_string(), event.business_day()),
            None => {
                let (id, store) = self.identify(msg);
                (id, store, now.date_naive())
            }
        };
        if !id.is_empty() && !store.is_empty() {
            let rejected = Rejected {
                reason: reason.to_string(),
                detail: rejection.detail.clone(),
                subject: msg.subject.to_string(),
                at: now,
                traceparent: msg.trace.traceparent.map(str::to_string),
            };
            lineage::remember_rejection(txn, &store, &id, msg.stream_seq, &rejected);
            // Filed under its business day when the record could be read, else the day it arrived.
            retention::index(txn, &store, day, retention::Indexed::Rejected, &id);
        }
        Ok(Outcome::Rejected(rejection.reason))
    }

    /// A post-void: reverses its target if already accepted, else waits for it in `Voids`.
    fn apply_void(&self, txn: &mut Overlay<'_>, step: &mut Step, void: &PosTransaction) -> Result<(), TopologyError> {
        let Some(target_id) = void.voids.as_deref() else { return Ok(()) };
        let target_key = keys::seen(&void.store, target_id);
        match read::<Seen>(txn, Cf::Dedupe, &target_key, "dedupe entry")? {
            Some(mut target) => {
                // A second void of the same transaction, or a void of a non-transaction, changes nothing.
                let Some(tx) = target.transaction.as_ref().filter(|_| target.voided_by.is_none()) else {
                    return Ok(());
                };
                self.apply_transaction_effect(txn, step, tx, Decimal::NEGATIVE_ONE)?;
                target.voided_by = Some(void.id.clone());
                txn.put(Cf::Dedupe, target_key, codec::encode(&target));
            }
            None => {
                let key = keys::pending_void(&void.store, target_id);
                if txn.get(Cf::Voids, &key)?.is_none() {
                    txn.put(Cf::Voids, key, void.id.as_bytes().to_vec());
                    retention::index(txn, &void.store, void.business_day, retention::Indexed::PendingVoid, target_id);
                }
            }
        }
        Ok(())
    }

    /// Applies a transaction with lines, unless a void for it arrived first; returns that void's id.
    fn apply_transaction(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        tx: &PosTransaction,
    ) -> Result<Option<String>, TopologyError> {
        self.update_store_day(txn, step, tx.business_day, |day| day.note_seq(tx))?;
        // A voided sale's price is still the latest price seen: drift values must not depend on
        // whether the void came first.
        for line in &tx.lines {
            let newer = match self.latest_price(txn, step, &line.sku)? {
                Some(latest) => tx.occurred_at.to_utc() >= latest.at,
                None => true,
            };
            if newer {
                let price = LatestPrice { unit_price: line.unit_price, at: tx.occurred_at.to_utc() };
                txn.put(Cf::Aggregates, keys::price(&tx.store, &line.sku), codec::encode(&price));
                step.working.put_price(&tx.store, &line.sku, Some(price.clone()));
                step.prices.insert(line.sku.clone(), Some(price));
            }
        }
        let void_key = keys::pending_void(&tx.store, &tx.id);
        if let Some(void_id) = txn.get(Cf::Voids, &void_key)? {
            txn.delete(Cf::Voids, void_key);
            return Ok(Some(String::from_utf8_lossy(&void_id).into_owned()));
        }
        self.apply_transaction_effect(txn, step, tx, Decimal::ONE)?;
        Ok(None)
    }

    /// Adds (`sign` 1) or reverses (`sign` −1) a transaction's effect on every aggregate.
    fn apply_transaction_effect(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        tx: &PosTransaction,
        sign: Decimal,
    ) -> Result<(), TopologyError> {
        let now = step.now;
        let store = step.store.clone();
        self.update_store_day(txn, step, tx.business_day, |day| day.apply_transaction(tx, sign))?;
        let totals = self.store_day_mut(txn, step, tx.business_day)?;
        postings::mark_dirty(txn, &store, tx.business_day, totals, now);
        for line in &tx.lines {
            let expects_movement = line.qty.is_sign_positive() || line.restock;
            let referenced = txn.get(Cf::Aggregates, &keys::reference(&store, &tx.id, &line.sku))?.is_some();
            self.update_sku_day(txn, step, tx.business_day, &line.sku, |sku| {
                sku.apply_line(line, sign);
                if sign.is_sign_negative() {
                    sku.forget_unmatched(&tx.id);
                } else if expects_movement && !referenced {
                    sku.note_unmatched(&tx.id, tx.occurred_at);
                }
            })?;
        }
        Ok(())
    }

    /// Applies an inventory movement; returns the accounting period it was booked in when it
    /// is an adjustment.
    fn apply_movement(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        movement: &InventoryMovement,
    ) -> Result<Option<String>, TopologyError> {
        let day = movement.business_day;
        self.update_store_day(txn, step, day, |totals| totals.apply_movement(movement))?;
        for line in &movement.lines {
            self.update_sku_day(txn, step, day, &line.sku, |sku| sku.apply_movement_qty(movement.reason, line.qty))?;
        }
        if let Some(reference) = &movement.reference {
            self.match_reference(txn, step, reference, movement)?;
        }
        if movement.reason.is_adjustment() {
            return self.book_adjustment(txn, step, movement).map(Some);
        }
        Ok(None)
    }

    /// Books an adjustment movement in its accounting period, or in the earliest open one when
    /// its own is closed on the store's event time (docs/wire-format.md, "Inventory adjustment posting").
    /// Returns the id of the period it was booked in.
    fn book_adjustment(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        movement: &InventoryMovement,
    ) -> Result<String, TopologyError> {
        let fiscal = &self.config.fiscal;
        let belongs = fiscal.calendar.period_of(movement.business_day);
        // The earliest period not closed: the one holding the local day of (watermark − grace).
        let open_at = step.clock.watermark.checked_sub_signed(fiscal.close_grace).unwrap_or(step.clock.watermark);
        let open = fiscal.calendar.period_of(open_at.with_timezone(&self.config.timezone(&step.store)).date_naive());
        let booked = adjustments::booked(&belongs, &open);
        if adjustments::record(txn, &step.store, booked, &belongs, movement, step.now)? {
            // Nothing books in a period after it closed; its books go with the retention.
            let prune_at = self.end_of_day(&step.store, booked.last) + fiscal.close_grace + self.config.retention;
            let timer = clock::Timer::PruneAdjustments { day: booked.last };
            clock::add_timer(txn, &mut step.clock, &step.store.clone(), prune_at, &timer);
        }
        Ok(booked.id.clone())
    }

    /// A movement naming its POS transaction takes that transaction off the unmatched lists.
    fn match_reference(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        reference: &str,
        movement: &InventoryMovement,
    ) -> Result<(), TopologyError> {
        let store = &movement.store;
        for line in &movement.lines {
            // The value names the movement, for tracing the transaction (`lineage`).
            txn.put(Cf::Aggregates, keys::reference(store, reference, &line.sku), movement.id.as_bytes().to_vec());
        }
        retention::index(txn, store, movement.business_day, retention::Indexed::Reference, reference);
        let Some(seen) = read::<SeenDay>(txn, Cf::Dedupe, &keys::seen(store, reference), "dedupe entry")? else {
            return Ok(());
        };
        for line in &movement.lines {
            let cached = step.sku_days.contains_key(&(seen.business_day, line.sku.clone()))
                || step.working.has_sku_day(store, seen.business_day, &line.sku);
            let key = keys::sku_day(store, seen.business_day, &line.sku);
            if cached || txn.get(Cf::Aggregates, &key)?.is_some() {
                self.sku_day_mut(txn, step, seen.business_day, &line.sku)?.forget_unmatched(reference);
            }
        }
        Ok(())
    }

    /// Keeps the latest day-close of a store-day and schedules the day's finalization.
    fn apply_day_close(&self, txn: &mut Overlay<'_>, step: &mut Step, close: DayClose) -> Result<(), TopologyError> {
        let day = close.business_day;
        self.update_store_day(txn, step, day, |totals| totals.day_close = Some(close))?;
        let due = step.clock.watermark + self.config.close_grace;
        clock::add_timer(txn, &mut step.clock, &step.store.clone(), due, &clock::Timer::Finalize { day });
        Ok(())
    }

    /// Changes a store-day (in the step's cache, written back at the record's end).
    pub(crate) fn update_store_day(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        day: NaiveDate,
        change: impl FnOnce(&mut StoreDay),
    ) -> Result<(), TopologyError> {
        change(self.store_day_mut(txn, step, day)?);
        Ok(())
    }

    /// The store-day in the step's cache, read on first use; a new one gets its timers.
    pub(crate) fn store_day_mut<'s>(
        &self,
        txn: &mut Overlay<'_>,
        step: &'s mut Step<'_>,
        day: NaiveDate,
    ) -> Result<&'s mut StoreDay, TopologyError> {
        let slot = match step.store_days.entry(day) {
            btree_map::Entry::Occupied(kept) => return Ok(kept.into_mut()),
            btree_map::Entry::Vacant(slot) => slot,
        };
        let known = match step.working.take_store_day(&step.store, day) {
            Some(totals) => Some(totals),
            None => read::<StoreDay>(txn, Cf::Aggregates, &keys::store_day(&step.store, day), "store-day totals")?,
        };
        let totals = match known {
            Some(totals) => totals,
            None => {
                let end = self.end_of_day(&step.store, day);
                let finalize_at = end + self.config.max_open;
                clock::add_timer(txn, &mut step.clock, &step.store, finalize_at, &clock::Timer::Finalize { day });
                let prune_at = end + self.config.retention.max(self.config.max_open + Duration::days(1));
                clock::add_timer(txn, &mut step.clock, &step.store, prune_at, &clock::Timer::Prune { day });
                StoreDay::default()
            }
        };
        Ok(slot.insert(totals))
    }

    pub(crate) fn update_sku_day(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        day: NaiveDate,
        sku: &str,
        change: impl FnOnce(&mut SkuDay),
    ) -> Result<(), TopologyError> {
        change(self.sku_day_mut(txn, step, day, sku)?);
        step.touched.insert((day, sku.to_string()));
        Ok(())
    }

    /// The sku-day in the step's cache, read on first use.
    pub(crate) fn sku_day_mut<'s>(
        &self,
        txn: &Overlay<'_>,
        step: &'s mut Step<'_>,
        day: NaiveDate,
        sku: &str,
    ) -> Result<&'s mut SkuDay, TopologyError> {
        let slot = match step.sku_days.entry((day, sku.to_string())) {
            hash_map::Entry::Occupied(kept) => return Ok(kept.into_mut()),
            hash_map::Entry::Vacant(slot) => slot,
        };
        let totals = match step.working.take_sku_day(&step.store, day, sku) {
            Some(totals) => totals,
            None => {
                let key = keys::sku_day(&step.store, day, sku);
                read::<SkuDay>(txn, Cf::Aggregates, &key, "sku-day totals")?.unwrap_or_default()
            }
        };
        Ok(slot.insert(totals))
    }

    /// The latest price of a sku in the step's store, read on first use.
    pub(crate) fn latest_price(
        &self,
        txn: &Overlay<'_>,
        step: &mut Step,
        sku: &str,
    ) -> Result<Option<LatestPrice>, TopologyError> {
        if let Some(price) = step.prices.get(sku) {
            return Ok(price.clone());
        }
        let price = match step.working.price(&step.store, sku) {
            Some(known) => known.clone(),
            None => {
                let price = read::<LatestPrice>(txn, Cf::Aggregates, &keys::price(&step.store, sku), "latest price")?;
                step.working.put_price(&step.store, sku, price.clone());
                price
            }
        };
        step.prices.insert(sku.to_string(), price.clone());
        Ok(price)
    }

    /// The end of a business day: the next local midnight in the store's zone.
    fn end_of_day(&self, store: &str, day: NaiveDate) -> DateTime<Utc> {
        use chrono::TimeZone;
        let zone = self.config.timezone(store);
        let midnight = day.succ_opt().unwrap_or(day).and_time(chrono::NaiveTime::MIN);
        zone.from_local_datetime(&midnight)
            .earliest()
            // A zone without that local midnight (a DST gap at 00:00) ends the day an hour later.
            .or_else(|| zone.from_local_datetime(&(midnight + Duration::hours(1))).earliest())
            .map(|t| t.to_utc())
            .unwrap_or_else(|| midnight.and_utc())
    }
}

/// What a record's codes are read against: the batch's alias table and the record's own
/// system, and where the unmapped lines it had are reported.
struct Codes<'a> {
    aliases: &'a SkuAliases,
    system: Option<&'a str>,
    unmapped: &'a mut Option<(String, u64)>,
}

/// Counters of a store-day that are not aggregates (duplicates, conflicts); no timers.
fn update_counters(
    txn: &mut Overlay<'_>,
    working: &mut WorkingSet,
    store: &str,
    day: NaiveDate,
    change: impl FnOnce(&mut StoreDay),
) -> Result<(), TopologyError> {
    let key = keys::store_day(store, day);
    let mut totals = match working.take_store_day(store, day) {
        Some(totals) => totals,
        None => read::<StoreDay>(txn, Cf::Aggregates, &key, "store-day totals")?.unwrap_or_default(),
    };
    change(&mut totals);
    txn.put(Cf::Aggregates, key, codec::encode(&totals));
    working.put_store_day(store, day, totals);
    Ok(())
}

/// The last committed input stream sequence, or 0 before the first commit.
pub fn committed_position(txn: &Overlay<'_>) -> Result<u64, TopologyError> {
    Ok(read_meta_u64(txn, keys::META_POSITION)?.unwrap_or(0))
}

pub fn set_position(txn: &mut Overlay<'_>, stream_seq: u64) {
    txn.put(Cf::Meta, keys::META_POSITION.to_vec(), stream_seq.to_be_bytes().to_vec());
}

fn sniff_content_type(payload: &[u8]) -> &'static str {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "application/json",
        _ => "application/msgpack",
    }
}

/// NATS header values are one line of visible text; the detail sentence is cut to fit.
fn header_safe(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    one_line.chars().take(512).collect()
}
