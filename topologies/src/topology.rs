//! The retail topology: one input message in, state changes and outputs out.
//!
//! It reads and writes only through an `Overlay`, so a whole input batch becomes one atomic
//! write that the processor commits together with the stream position. It never waits, never
//! talks to the network and never reads the wall clock: the processor passes time in.

use std::collections::HashMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use tally_state::{Cf, Overlay, StateError};

use crate::aggregates::{self, LatestPrice, OutboxEntry, Seen, SkuDay, StoreDay};
use crate::decode::{self, DecodeContext, RejectReason, Rejection};
use crate::fingerprint::fingerprint;
use crate::keys;
use crate::model::{DayClose, Event, InventoryMovement, PosTransaction, Source};

/// What the topology needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    pub subject_prefix: String,
    pub default_currency: String,
    pub default_timezone: Tz,
    pub store_timezones: HashMap<String, Tz>,
    pub max_message_bytes: usize,
    pub max_lines: usize,
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
        }
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

/// The outcome with the source it was read from, when the subject named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub source: Option<Source>,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("state access failed")]
    State(#[from] StateError),
    #[error("stored {what} could not be decoded; the state is corrupt or from another version")]
    Corrupt {
        what: &'static str,
        #[source]
        source: rmp_serde::decode::Error,
    },
}

pub struct Retail {
    config: TopologyConfig,
}

impl Retail {
    pub fn new(config: TopologyConfig) -> Self {
        Retail { config }
    }

    pub fn config(&self) -> &TopologyConfig {
        &self.config
    }

    /// Applies one input message: decode, dedupe, voids, aggregates; a rejection becomes a DLQ
    /// entry in the outbox. Only state errors fail; bad input never does.
    pub fn apply(&self, txn: &mut Overlay<'_>, msg: &InputMessage<'_>) -> Result<Applied, TopologyError> {
        let source = decode::parse_input_subject(&self.config.subject_prefix, msg.subject).map(|(s, _)| s);
        let timezone_of = |store: &str| {
            self.config.store_timezones.get(store).copied().unwrap_or(self.config.default_timezone)
        };
        let ctx = DecodeContext {
            subject_prefix: &self.config.subject_prefix,
            default_currency: &self.config.default_currency,
            timezone_of: &timezone_of,
            max_message_bytes: self.config.max_message_bytes,
            max_lines: self.config.max_lines,
        };
        let outcome = match decode::decode(msg.subject, msg.content_type, msg.payload, &ctx) {
            Ok((_, event)) => self.apply_event(txn, msg, event)?,
            Err(rejection) => self.reject(txn, msg, &rejection)?,
        };
        Ok(Applied { source, outcome })
    }

    fn apply_event(&self, txn: &mut Overlay<'_>, msg: &InputMessage<'_>, event: Event) -> Result<Outcome, TopologyError> {
        let store = event.store().to_string();
        let seen_key = keys::seen(&store, event.id());
        let print = fingerprint(&event);
        if let Some(seen) = read::<Seen>(txn, Cf::Dedupe, &seen_key, "dedupe entry")? {
            return if seen.fingerprint == print {
                update_store_day(txn, &store, event.business_day(), |day| day.duplicates += 1)?;
                Ok(Outcome::Duplicate)
            } else {
                update_store_day(txn, &store, event.business_day(), |day| day.conflicts += 1)?;
                let rejection = Rejection {
                    reason: RejectReason::Conflict,
                    detail: format!(
                        "id {:?} was already accepted with different content (business day {})",
                        event.id(),
                        seen.business_day
                    ),
                };
                self.reject(txn, msg, &rejection)
            };
        }
        let mut seen = Seen { fingerprint: print, business_day: event.business_day(), transaction: None, voided_by: None };
        match event {
            Event::Transaction(tx) if tx.voids.is_some() => apply_void(txn, &tx)?,
            Event::Transaction(tx) => {
                seen.voided_by = apply_transaction(txn, &tx)?;
                seen.transaction = Some(tx);
            }
            Event::Movement(movement) => apply_movement(txn, &movement)?,
            Event::DayClose(close) => apply_day_close(txn, close)?,
        }
        txn.put(Cf::Dedupe, seen_key, aggregates::encode(&seen));
        Ok(Outcome::Accepted)
    }

    /// Puts the verbatim input on `P.dlq.<reason>` through the outbox (CONTRACT §6).
    fn reject(&self, txn: &mut Overlay<'_>, msg: &InputMessage<'_>, rejection: &Rejection) -> Result<Outcome, TopologyError> {
        let reason = rejection.reason.as_str();
        let content_type = msg.content_type.map(str::to_string).unwrap_or_else(|| sniff_content_type(msg.payload).into());
        let entry = OutboxEntry {
            subject: format!("{}.dlq.{}", self.config.subject_prefix, reason),
            msg_id: format!("dlq/{}", msg.stream_seq),
            headers: vec![
                ("Tally-Error".into(), reason.into()),
                ("Tally-Error-Detail".into(), header_safe(&rejection.detail)),
                ("Tally-Source-Subject".into(), msg.subject.into()),
                ("Tally-Source-Sequence".into(), msg.stream_seq.to_string()),
                ("Content-Type".into(), content_type),
            ],
            payload: msg.payload.to_vec(),
        };
        enqueue_output(txn, &entry)?;
        Ok(Outcome::Rejected(rejection.reason))
    }
}

/// Appends an output message to the durable outbox, in the same batch as the state change.
pub fn enqueue_output(txn: &mut Overlay<'_>, entry: &OutboxEntry) -> Result<(), TopologyError> {
    let next = read_u64(txn, keys::META_OUTBOX_NEXT)?.unwrap_or(1);
    txn.put(Cf::Outbox, keys::outbox(next), aggregates::encode(entry));
    txn.put(Cf::Meta, keys::META_OUTBOX_NEXT.to_vec(), (next + 1).to_be_bytes().to_vec());
    Ok(())
}

/// The last committed input stream sequence, or 0 before the first commit.
pub fn committed_position(txn: &Overlay<'_>) -> Result<u64, TopologyError> {
    Ok(read_u64(txn, keys::META_POSITION)?.unwrap_or(0))
}

pub fn set_position(txn: &mut Overlay<'_>, stream_seq: u64) {
    txn.put(Cf::Meta, keys::META_POSITION.to_vec(), stream_seq.to_be_bytes().to_vec());
}

fn read_u64(txn: &Overlay<'_>, key: &[u8]) -> Result<Option<u64>, TopologyError> {
    let Some(bytes) = txn.get(Cf::Meta, key)? else { return Ok(None) };
    let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| StateError::Corrupt {
        cf: Cf::Meta,
        detail: format!("meta value {:?} is {} bytes, not 8", String::from_utf8_lossy(key), bytes.len()),
    })?;
    Ok(Some(u64::from_be_bytes(array)))
}

/// A post-void: reverses its target if already accepted, else waits for it in `Voids`.
fn apply_void(txn: &mut Overlay<'_>, void: &PosTransaction) -> Result<(), TopologyError> {
    let Some(target_id) = void.voids.as_deref() else { return Ok(()) };
    let target_key = keys::seen(&void.store, target_id);
    match read::<Seen>(txn, Cf::Dedupe, &target_key, "dedupe entry")? {
        Some(mut target) => {
            // A second void of the same transaction, or a void of a non-transaction, changes nothing.
            let Some(tx) = target.transaction.as_ref().filter(|_| target.voided_by.is_none()) else {
                return Ok(());
            };
            apply_transaction_effect(txn, tx, Decimal::NEGATIVE_ONE)?;
            target.voided_by = Some(void.id.clone());
            txn.put(Cf::Dedupe, target_key, aggregates::encode(&target));
        }
        None => {
            let key = keys::pending_void(&void.store, target_id);
            if txn.get(Cf::Voids, &key)?.is_none() {
                txn.put(Cf::Voids, key, void.id.as_bytes().to_vec());
            }
        }
    }
    Ok(())
}

/// Applies a transaction with lines, unless a void for it arrived first; returns that void's id.
fn apply_transaction(txn: &mut Overlay<'_>, tx: &PosTransaction) -> Result<Option<String>, TopologyError> {
    update_store_day(txn, &tx.store, tx.business_day, |day| day.note_seq(tx))?;
    let void_key = keys::pending_void(&tx.store, &tx.id);
    if let Some(void_id) = txn.get(Cf::Voids, &void_key)? {
        txn.delete(Cf::Voids, void_key);
        return Ok(Some(String::from_utf8_lossy(&void_id).into_owned()));
    }
    apply_transaction_effect(txn, tx, Decimal::ONE)?;
    for line in &tx.lines {
        let key = keys::price(&tx.store, &line.sku);
        let newer = match read::<LatestPrice>(txn, Cf::Aggregates, &key, "latest price")? {
            Some(latest) => tx.occurred_at >= latest.at,
            None => true,
        };
        if newer {
            let price = LatestPrice { unit_price: line.unit_price, at: tx.occurred_at };
            txn.put(Cf::Aggregates, key, aggregates::encode(&price));
        }
    }
    Ok(None)
}

/// Adds (`sign` 1) or reverses (`sign` −1) a transaction's effect on every aggregate.
fn apply_transaction_effect(txn: &mut Overlay<'_>, tx: &PosTransaction, sign: Decimal) -> Result<(), TopologyError> {
    update_store_day(txn, &tx.store, tx.business_day, |day| day.apply_transaction(tx, sign))?;
    for line in &tx.lines {
        update_sku_day(txn, &tx.store, tx.business_day, &line.sku, |sku| sku.apply_line(line, sign))?;
    }
    Ok(())
}

fn apply_movement(txn: &mut Overlay<'_>, movement: &InventoryMovement) -> Result<(), TopologyError> {
    update_store_day(txn, &movement.store, movement.business_day, |day| day.apply_movement(movement))?;
    for line in &movement.lines {
        update_sku_day(txn, &movement.store, movement.business_day, &line.sku, |sku| {
            sku.apply_movement_qty(movement.reason, line.qty)
        })?;
    }
    Ok(())
}

/// The latest day-close for a store-day replaces an earlier one with another id.
fn apply_day_close(txn: &mut Overlay<'_>, close: DayClose) -> Result<(), TopologyError> {
    let (store, day) = (close.store.clone(), close.business_day);
    update_store_day(txn, &store, day, |totals| totals.day_close = Some(close))
}

fn update_store_day(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    change: impl FnOnce(&mut StoreDay),
) -> Result<(), TopologyError> {
    let key = keys::store_day(store, day);
    let mut totals = read::<StoreDay>(txn, Cf::Aggregates, &key, "store-day totals")?.unwrap_or_default();
    change(&mut totals);
    txn.put(Cf::Aggregates, key, aggregates::encode(&totals));
    Ok(())
}

fn update_sku_day(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    sku: &str,
    change: impl FnOnce(&mut SkuDay),
) -> Result<(), TopologyError> {
    let key = keys::sku_day(store, day, sku);
    let mut totals = read::<SkuDay>(txn, Cf::Aggregates, &key, "sku-day totals")?.unwrap_or_default();
    change(&mut totals);
    txn.put(Cf::Aggregates, key, aggregates::encode(&totals));
    Ok(())
}

/// Reads and decodes a stored value.
pub fn read<T: serde::de::DeserializeOwned>(
    txn: &Overlay<'_>,
    cf: Cf,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, TopologyError> {
    match txn.get(cf, key)? {
        Some(bytes) => aggregates::decode(&bytes).map(Some).map_err(|source| TopologyError::Corrupt { what, source }),
        None => Ok(None),
    }
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
