//! Test support shared by the topology's unit tests: a harness that applies input messages over
//! the in-memory store on a fake processing-time clock, builders for the contract's records with
//! explicit event times, and readers for state and for the outbox.
//!
//! It only drives the public surface of the topology (`Retail::apply_batch`) and reads
//! back what a processor would commit, so a test here sees what an operator would see.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use tally_state::{Cf, MemStore, Overlay, Store};

use crate::aggregates::{OutboxEntry, SkuDay, StoreDay};
use crate::clock::{self, StoreClock};
use crate::codec;
use crate::keys;
use crate::lineage::TraceContext;
use crate::outputs::Emitted;
use crate::topology::{BatchResult, InputMessage, Outcome, Retail, Tick, TopologyConfig};

/// The business day most tests work in.
pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Applies input messages as the processor would, each in its own committed batch unless a
/// test asks for one batch over several messages.
pub struct Harness {
    pub store: MemStore,
    pub retail: Retail,
    pub seq: u64,
    /// The fake processing-time clock.
    pub now: DateTime<Utc>,
}

impl Harness {
    pub fn new() -> Self {
        Harness::with(TopologyConfig::default())
    }

    pub fn with(config: TopologyConfig) -> Self {
        let now = utc("2026-11-27T15:00:00Z");
        Harness { store: MemStore::default(), retail: Retail::new(config), seq: 0, now }
    }

    /// Runs the processing-time tick after moving the fake clock forward.
    pub fn tick_after(&mut self, elapsed: Duration) -> Emitted {
        self.now += elapsed;
        self.commit(&[], Tick::Run).tick.expect("the tick ran")
    }

    pub fn send(&mut self, subject: &str, payload: &[u8]) -> Outcome {
        self.seq += 1;
        let msg = InputMessage::new(subject, None, payload, self.seq);
        let result = self.commit(&[msg], Tick::Skip);
        result.applied[0].as_ref().expect("a new sequence is applied").outcome
    }

    /// Sends a record with the trace context of its headers, in its own batch.
    pub fn send_traced(&mut self, value: &Value, trace: TraceContext<'_>) -> Outcome {
        self.seq += 1;
        let (subject, payload) = (subject_of(value), value.to_string());
        let msg = InputMessage { trace, ..InputMessage::new(&subject, None, payload.as_bytes(), self.seq) };
        let result = self.commit(&[msg], Tick::Skip);
        result.applied[0].as_ref().expect("a new sequence is applied").outcome
    }

    /// One batch through `Retail::apply_batch`, as the run loop applies it, committed.
    fn commit(&self, messages: &[InputMessage<'_>], tick: Tick) -> BatchResult {
        let mut txn = Overlay::new(&self.store);
        let result = self.retail.apply_batch(&mut txn, messages, self.now, tick).unwrap();
        self.store.write(&txn.into_batch()).unwrap();
        result
    }

    /// Sends a record of store 0042 on its POS subject.
    pub fn pos(&mut self, value: &Value) -> Outcome {
        self.send("retail.pos.0042", value.to_string().as_bytes())
    }

    /// Sends a record of store 0042 on its inventory subject.
    pub fn inventory(&mut self, value: &Value) -> Outcome {
        self.send("retail.inventory.0042", value.to_string().as_bytes())
    }

    /// Sends a record on the subject its `type` and `store` call for, in its own batch.
    pub fn record(&mut self, value: &Value) -> Outcome {
        let subject = subject_of(value);
        self.send(&subject, value.to_string().as_bytes())
    }

    /// Applies several records through one overlay and commits them as one batch.
    pub fn record_batch(&mut self, values: &[Value]) -> Vec<Outcome> {
        let payloads: Vec<(String, Vec<u8>)> =
            values.iter().map(|v| (subject_of(v), v.to_string().into_bytes())).collect();
        let mut messages = Vec::new();
        for (subject, payload) in &payloads {
            self.seq += 1;
            messages.push(InputMessage::new(subject, None, payload, self.seq));
        }
        let result = self.commit(&messages, Tick::Skip);
        result.applied.into_iter().map(|applied| applied.expect("new sequences are applied").outcome).collect()
    }

    /// Store 0042's totals of `day()`.
    pub fn store_day(&self) -> StoreDay {
        self.store_day_of("0042", day()).unwrap_or_default()
    }

    /// Store 0042's sku-day of `day()`.
    pub fn sku(&self, sku: &str) -> SkuDay {
        self.sku_of("0042", day(), sku).unwrap_or_default()
    }

    pub fn store_day_of(&self, store: &str, day: NaiveDate) -> Option<StoreDay> {
        let bytes = self.store.get(Cf::Aggregates, &keys::store_day(store, day)).unwrap()?;
        Some(codec::decode(&bytes).unwrap())
    }

    pub fn sku_of(&self, store: &str, day: NaiveDate, sku: &str) -> Option<SkuDay> {
        let bytes = self.store.get(Cf::Aggregates, &keys::sku_day(store, day, sku)).unwrap()?;
        Some(codec::decode(&bytes).unwrap())
    }

    /// Every sku-day of a store-day, by sku.
    pub fn skus_of(&self, store: &str, day: NaiveDate) -> Vec<(String, SkuDay)> {
        let rows = self.store.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(store, day), usize::MAX).unwrap();
        rows.iter().map(|(key, value)| (keys::parse_sku_day_sku(key).unwrap(), codec::decode(value).unwrap())).collect()
    }

    pub fn clock(&self, store: &str) -> Option<StoreClock> {
        let bytes = self.store.get(Cf::Aggregates, &clock::clock_key(store)).unwrap()?;
        Some(codec::decode(&bytes).unwrap())
    }

    /// The outbox in the order the publisher drains it.
    pub fn outbox(&self) -> Vec<OutboxEntry> {
        self.store
            .scan_from(Cf::Outbox, &[], usize::MAX)
            .unwrap()
            .iter()
            .map(|(_, v)| codec::decode(v).unwrap())
            .collect()
    }

    /// The outbox messages on one subject, their JSON bodies decoded, in outbox order.
    pub fn published(&self, subject: &str) -> Vec<Published> {
        self.outbox()
            .into_iter()
            .filter(|entry| entry.subject == subject)
            .map(|entry| {
                let content_type = entry.headers.iter().find(|(n, _)| n == "Content-Type").map(|(_, v)| v.clone());
                assert_eq!(content_type.as_deref(), Some("application/json"), "outputs are JSON by default");
                Published { msg_id: entry.msg_id, body: serde_json::from_slice(&entry.payload).unwrap() }
            })
            .collect()
    }

    /// Drift alerts of a store (`retail.alerts.drift.<store>`).
    pub fn alerts(&self, store: &str) -> Vec<Published> {
        self.published(&format!("retail.alerts.drift.{store}"))
    }

    /// ERP postings of a store (`retail.erp.postings.<store>`).
    pub fn postings(&self, store: &str) -> Vec<Published> {
        self.published(&format!("retail.erp.postings.{store}"))
    }
}

/// One output message: its `Nats-Msg-Id` and decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub msg_id: String,
    pub body: Value,
}

/// `retail.pos.<store>`, `retail.inventory.<store>` or `retail.orders.<store>`, from the
/// record's `type` and `store`.
pub fn subject_of(value: &Value) -> String {
    let store = value["store"].as_str().expect("record has a store");
    match value["type"].as_str() {
        Some("inventory.movement") => format!("retail.inventory.{store}"),
        Some("order.fulfillment") => format!("retail.orders.{store}"),
        _ => format!("retail.pos.{store}"),
    }
}

/// The business day of an RFC 3339 time written in the store's local offset.
fn local_day(at: &str) -> &str {
    &at[..10]
}

/// A one-line sale (or return, for a negative `qty`) at event time `at`, register R01, no seq.
pub fn sale_at(store: &str, id: &str, at: &str, sku: &str, qty: &str, price: &str) -> Value {
    json!({"type": "pos.transaction", "id": id, "store": store, "register": "R01",
           "occurred_at": at, "business_day": local_day(at),
           "lines": [{"line": 1, "sku": sku, "qty": qty, "unit_price": price}],
           "tenders": [{"type": "card", "amount": "1.00"}]})
}

/// A post-void of `target` at event time `at`.
pub fn void_at(store: &str, id: &str, at: &str, target: &str) -> Value {
    json!({"type": "pos.transaction", "id": id, "store": store, "occurred_at": at,
           "business_day": local_day(at), "voids": target})
}

/// An inventory movement at event time `at`, with an optional `ref`.
pub fn movement_at(
    store: &str,
    id: &str,
    at: &str,
    reason: &str,
    reference: Option<&str>,
    lines: &[(&str, &str)],
) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect();
    let mut value = json!({"type": "inventory.movement", "id": id, "store": store, "occurred_at": at,
                           "business_day": local_day(at), "reason": reason, "lines": lines});
    if let Some(reference) = reference {
        value["ref"] = json!(reference);
    }
    value
}

/// A day-close with the POS's own totals.
pub fn day_close_at(store: &str, day: &str, at: &str, count: u64, net: &str, tax: &str) -> Value {
    json!({"type": "pos.day_close", "id": format!("CLOSE-{store}-{day}"), "store": store,
           "business_day": day, "occurred_at": at, "transaction_count": count,
           "net_sales": net, "tax": tax, "tenders": [{"type": "card", "amount": net}]})
}

/// An order fulfillment of `kind` at event time `at`.
pub fn order_at(store: &str, id: &str, at: &str, kind: &str, lines: &[(&str, &str)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect();
    json!({"type": "order.fulfillment", "id": id, "store": store, "occurred_at": at,
           "business_day": local_day(at), "fulfillment": kind, "lines": lines})
}
