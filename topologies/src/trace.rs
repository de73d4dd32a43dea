//! The trace of one input record, as `GET /v1/trace/<id>` and `tally trace` show it
//! (docs/http-api.md, "Trace a record"): read back from what `lineage` kept, from state alone,
//! so it answers the same offline as online.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};
use tally_state::key::KeyReader;
use tally_state::{Cf, Store};

use crate::adjustments;
use crate::aggregates::Seen;
use crate::clock;
use crate::codec;
use crate::drift;
use crate::error::TopologyError;
use crate::keys;
use crate::lineage::{self, AlertRevision, Arrival, PostingCover, Rejected};
use crate::postings;

/// Stores looked through at most when the caller does not name one.
const STORES_MAX: usize = 1_000_000;
/// Entries of one kind listed at most for one record (copies, movements, revisions, postings).
const ENTRIES_MAX: usize = 1_000;

/// The traces of the records with this id: one per store that holds one (ids are unique per
/// store), or only `store`'s when given. Empty when tally holds nothing of it: never seen, or
/// pruned after the retention.
pub fn trace(state: &dyn Store, id: &str, store: Option<&str>) -> Result<Vec<Value>, TopologyError> {
    let stores = match store {
        Some(store) => vec![store.to_string()],
        None => {
            let mut stores = known_stores(state)?;
            stores.extend(stores_that_rejected(state, id)?);
            stores.sort();
            stores.dedup();
            stores
        }
    };
    let mut traces = Vec::new();
    for store in stores {
        if let Some(trace) = trace_in(state, &store, id)? {
            traces.push(trace);
        }
    }
    Ok(traces)
}

/// Every store with a clock, which is every store that sent an accepted record.
fn known_stores(state: &dyn Store) -> Result<Vec<String>, TopologyError> {
    let rows = state.scan_prefix(Cf::Aggregates, &clock::all_clocks_prefix(), STORES_MAX)?;
    Ok(rows.iter().filter_map(|(key, _)| KeyReader::new(&key[1..]).str().ok()).collect())
}

/// The stores of the dead-lettered copies of `id`.
fn stores_that_rejected(state: &dyn Store, id: &str) -> Result<Vec<String>, TopologyError> {
    let prefix = lineage::rejected_id_prefix(id);
    let rows = state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)?;
    Ok(rows.iter().filter_map(|(key, _)| KeyReader::new(&key[prefix.len()..]).str().ok()).collect())
}

fn trace_in(state: &dyn Store, store: &str, id: &str) -> Result<Option<Value>, TopologyError> {
    let seen: Option<Seen> = read(state, Cf::Dedupe, &keys::seen(store, id), "dedupe entry")?;
    let rejected = rejections(state, store, id)?;
    if seen.is_none() && rejected.is_empty() {
        return Ok(None);
    }
    let mut trace = json!({"id": id, "store": store});
    let fields = trace.as_object_mut().expect("a JSON object");
    let dead_lettered: Vec<Value> = rejected.iter().map(|(seq, r)| rejection_json(*seq, r)).collect();
    match &seen {
        None => {
            fields.insert("outcome".into(), "dead_lettered".into());
        }
        Some(seen) => {
            let outcome = if seen.voided_by.is_some() { "voided" } else { "applied" };
            fields.insert("outcome".into(), outcome.into());
            fields.insert("business_day".into(), seen.business_day.to_string().into());
            if let Some(voided_by) = &seen.voided_by {
                fields.insert("voided_by".into(), voided_by.clone().into());
            }
            if let Some(arrival) = &seen.arrival {
                insert_arrival(fields, arrival);
            }
            insert_outputs(state, fields, store, id, seen)?;
        }
    }
    fields.insert("dead_lettered".into(), dead_lettered.into());
    Ok(Some(trace))
}

fn insert_arrival(fields: &mut serde_json::Map<String, Value>, arrival: &Arrival) {
    fields.insert("type".into(), arrival.record_type().into());
    fields.insert("arrived".into(), json!({"stream_sequence": arrival.stream_seq, "at": timestamp(arrival.at)}));
    if let Some(parent) = &arrival.traceparent {
        fields.insert("traceparent".into(), parent.clone().into());
    }
    if let Some(msg_id) = &arrival.msg_id {
        fields.insert("msg_id".into(), msg_id.clone().into());
    }
    if let Some(voids) = &arrival.voids {
        fields.insert("voids".into(), voids.clone().into());
    }
    fields.insert(
        "duplicates".into(),
        json!({"count": arrival.duplicates, "last_stream_sequence": arrival.last_duplicate_seq}),
    );
}

/// The movements that referenced a transaction, the alert revisions that listed it and the
/// postings that first included it.
fn insert_outputs(
    state: &dyn Store,
    fields: &mut serde_json::Map<String, Value>,
    store: &str,
    id: &str,
    seen: &Seen,
) -> Result<(), TopologyError> {
    let day = seen.business_day;
    let transaction_skus = seen.transaction.iter().flat_map(|tx| tx.lines.iter().map(|l| l.sku.as_str()));
    let skus: Vec<&str> = transaction_skus.chain(seen.order_skus.iter().map(String::as_str)).collect();
    fields.insert("movements".into(), movements(state, store, id)?.into());
    fields.insert("alerts".into(), alert_revisions(state, store, day, &skus, id)?.into());
    let record_type = seen.arrival.as_ref().and_then(Arrival::record_type);
    let posted = match (record_type, &seen.arrival) {
        (Some("pos.transaction"), Some(arrival)) => first_postings(state, store, day, arrival.stream_seq, false)?,
        (Some("pos.day_close"), Some(arrival)) => first_postings(state, store, day, arrival.stream_seq, true)?,
        (Some("inventory.movement"), Some(Arrival { booked_period: Some(period), stream_seq, .. })) => {
            first_adjustment_posting(state, store, period, *stream_seq)?
        }
        _ => Vec::new(),
    };
    fields.insert("postings".into(), posted.into());
    Ok(())
}

fn rejections(state: &dyn Store, store: &str, id: &str) -> Result<Vec<(u64, Rejected)>, TopologyError> {
    let prefix = lineage::rejected_prefix(store, id);
    let mut copies = Vec::new();
    for (key, value) in state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)? {
        let seq = KeyReader::new(&key[prefix.len()..]).u64().unwrap_or_default();
        copies.push((seq, decode(&value, "dead-letter lineage")?));
    }
    Ok(copies)
}

fn rejection_json(seq: u64, rejected: &Rejected) -> Value {
    let mut copy = json!({
        "stream_sequence": seq,
        "at": timestamp(rejected.at),
        "reason": rejected.reason,
        "detail": rejected.detail,
        "subject": rejected.subject,
    });
    if let Some(parent) = &rejected.traceparent {
        copy["traceparent"] = parent.clone().into();
    }
    copy
}

/// The inventory movements whose `ref` named the transaction, per sku. A reference written by
/// an earlier version does not name its movement (`movement` is null).
fn movements(state: &dyn Store, store: &str, id: &str) -> Result<Vec<Value>, TopologyError> {
    let prefix = keys::references_prefix(store, id);
    let rows = state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)?;
    Ok(rows
        .iter()
        .map(|(key, value)| {
            let sku = KeyReader::new(&key[prefix.len()..]).str().unwrap_or_default();
            let movement = (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
            json!({"sku": sku, "movement": movement})
        })
        .collect())
}

fn alert_revisions(
    state: &dyn Store,
    store: &str,
    day: NaiveDate,
    skus: &[&str],
    id: &str,
) -> Result<Vec<Value>, TopologyError> {
    let mut listed = Vec::new();
    for sku in skus {
        let prefix = lineage::alert_revisions_prefix(store, day, sku);
        for (key, value) in state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)? {
            let revision: AlertRevision = decode(&value, "alert lineage")?;
            if revision.unmatched.iter().any(|listed_id| listed_id == id) {
                let number = KeyReader::new(&key[prefix.len()..]).u64().unwrap_or_default();
                let alert = drift::alert_id(store, day, sku);
                listed.push(json!({"id": alert, "revision": number, "state": revision.state}));
            }
        }
    }
    Ok(listed)
}

/// The first posting of the store-day that covers `stream_seq`: the one that first carried the
/// record (for a day-close, the final posting, whose audit carries it).
fn first_postings(
    state: &dyn Store,
    store: &str,
    day: NaiveDate,
    stream_seq: u64,
    final_only: bool,
) -> Result<Vec<Value>, TopologyError> {
    let prefix = lineage::posting_covers_day_prefix(store, day);
    for (key, value) in state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)? {
        let cover: PostingCover = decode(&value, "posting lineage")?;
        if cover.covers < stream_seq || (final_only && cover.kind != "final") {
            continue;
        }
        let seq = KeyReader::new(&key[prefix.len()..]).u64().unwrap_or_default();
        let posting_id = postings::posting_id(store, day, u32::try_from(seq).unwrap_or(u32::MAX));
        return Ok(vec![json!({"id": posting_id, "kind": cover.kind, "covers_stream_sequence": cover.covers})]);
    }
    Ok(Vec::new())
}

/// The first inventory adjustment posting of the booked period that covers `stream_seq`.
fn first_adjustment_posting(
    state: &dyn Store,
    store: &str,
    period: &str,
    stream_seq: u64,
) -> Result<Vec<Value>, TopologyError> {
    let prefix = lineage::period_covers_prefix(store, period);
    for (key, value) in state.scan_prefix(Cf::Aggregates, &prefix, ENTRIES_MAX)? {
        let cover: PostingCover = decode(&value, "posting lineage")?;
        if cover.covers < stream_seq {
            continue;
        }
        let seq = KeyReader::new(&key[prefix.len()..]).u64().unwrap_or_default();
        let posting_id = adjustments::posting_id(store, period, u32::try_from(seq).unwrap_or(u32::MAX));
        return Ok(vec![json!({"id": posting_id, "kind": cover.kind, "covers_stream_sequence": cover.covers})]);
    }
    Ok(Vec::new())
}

fn read<T: serde::de::DeserializeOwned>(
    state: &dyn Store,
    cf: Cf,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, TopologyError> {
    match state.get(cf, key)? {
        Some(bytes) => decode(&bytes, what).map(Some),
        None => Ok(None),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, TopologyError> {
    codec::decode(bytes).map_err(|source| TopologyError::Corrupt { what, source })
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
