//! What the demo reads to show and to sum up: the state (the per-store table, what was counted,
//! the committed position and the outbox) and, at the end, the output streams themselves (what
//! went out, by alert state, posting kind and DLQ reason), so the summary says what a consumer
//! of those streams sees.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use async_nats::jetstream;
use async_nats::jetstream::stream::RawMessageErrorKind;
use rust_decimal::Decimal;
use tally_state::{Cf, Overlay, Store};
use tally_topologies::aggregates::SkuDay;
use tally_topologies::codec;
use tally_topologies::drift::Phase;
use tally_topologies::{keys, report, topology};

use super::feed::{decode, Alert, Posting};
use super::screen::StoreRow;
use super::summary::Summary;

/// Store-days and outbox entries read at most (a demo has a few dozen store-days).
const SCAN_MAX: usize = 100_000;
/// Sku-days of one store-day read at most (a store's assortment).
const SKUS_MAX: usize = 1_000_000;

/// Each partition's committed input stream sequence.
pub fn positions(parts: &[Arc<dyn Store>]) -> anyhow::Result<Vec<u64>> {
    parts.iter().map(|store| Ok(topology::committed_position(&Overlay::new(store.as_ref()))?)).collect()
}

/// Outputs committed and not yet acknowledged by JetStream.
pub fn outbox(store: &dyn Store) -> anyhow::Result<usize> {
    Ok(store.scan_from(Cf::Outbox, &[], SCAN_MAX)?.len())
}

/// Every store-day with its totals and drift keys.
pub fn store_rows(store: &dyn Store, min_units: Decimal) -> anyhow::Result<Vec<StoreRow>> {
    let mut rows = Vec::new();
    for (store_id, day) in report::store_days(store, SCAN_MAX)? {
        let Some(totals) = report::store_day_totals(store, &store_id, day)? else {
            continue;
        };
        let mut row = StoreRow {
            store: store_id,
            day: Some(day),
            transactions: totals.transactions,
            net: totals.net,
            duplicates: totals.duplicates,
            conflicts: totals.conflicts,
            postings: totals.posting.seq,
            ..StoreRow::default()
        };
        for (_, value) in store.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(&row.store, day), SKUS_MAX)? {
            let sku: SkuDay = codec::decode(&value)?;
            if sku.drift_units().abs() >= min_units {
                row.lagging += 1;
            }
            match sku.alert.phase {
                Phase::Pending => row.pending += 1,
                Phase::Firing | Phase::Final => row.firing += 1,
                _ => {}
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Fills what was counted: transactions, lines, stores, days, duplicates and conflicts, from
/// the state; and the store-day with the most transactions as the example to look at.
pub fn counted(store: &dyn Store, parts: &[Arc<dyn Store>], summary: &mut Summary) -> anyhow::Result<()> {
    let mut stores = BTreeSet::new();
    let mut days = BTreeSet::new();
    let mut busiest: Option<(i64, String, chrono::NaiveDate)> = None;
    for (store_id, day) in report::store_days(store, SCAN_MAX)? {
        let Some(totals) = report::store_day_totals(store, &store_id, day)? else {
            continue;
        };
        summary.transactions += totals.transactions;
        summary.lines += totals.lines;
        summary.duplicates += totals.duplicates;
        summary.conflicts += totals.conflicts;
        if busiest.as_ref().is_none_or(|(most, _, _)| totals.transactions > *most) {
            busiest = Some((totals.transactions, store_id.clone(), day));
        }
        stores.insert(store_id);
        days.insert(day);
    }
    summary.stores = stores.len();
    summary.days = days.into_iter().collect();
    summary.committed = positions(parts)?.into_iter().max().unwrap_or(0);
    summary.outbox = outbox(store)?;
    summary.next.example = busiest.map(|(_, store_id, day)| (store_id, day));
    Ok(())
}

/// Fills what went out, from the output streams: alert revisions by state (and distinct alert
/// ids), postings by kind, dead letters by reason; and the input stream's message count.
pub async fn sent(js: &jetstream::Context, input_stream: &str, summary: &mut Summary) -> anyhow::Result<()> {
    summary.input_messages = js.get_stream(input_stream).await?.get_info().await?.state.messages;
    let mut alert_ids = HashSet::new();
    for (headers, _, payload) in &messages(js, &summary.next.alerts_stream).await? {
        let alert: Alert = decode(headers.as_ref(), payload).unwrap_or_default();
        *summary.alerts_by_state.entry(alert.state).or_default() += 1;
        alert_ids.insert(alert.id);
    }
    summary.alert_ids = alert_ids.len();
    for (headers, _, payload) in &messages(js, &summary.next.erp_stream).await? {
        let posting: Posting = decode(headers.as_ref(), payload).unwrap_or_default();
        *summary.postings_by_kind.entry(posting.kind).or_default() += 1;
    }
    let mut reasons = BTreeMap::new();
    for (_, subject, _) in &messages(js, &summary.next.dlq_stream).await? {
        *reasons.entry(subject.rsplit('.').next().unwrap_or_default().to_string()).or_default() += 1;
    }
    summary.dead_letters_by_reason = reasons;
    Ok(())
}

/// Every message of a stream: headers, subject, payload. One request per message; the output
/// streams of a demo hold hundreds to a few thousand.
async fn messages(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<Vec<(Option<async_nats::HeaderMap>, String, bytes::Bytes)>> {
    let stream = js.get_stream(name).await?;
    let state = stream.get_info().await?.state;
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        match stream.get_raw_message(seq).await {
            Ok(message) => {
                let headers = (!message.headers.is_empty()).then_some(message.headers);
                out.push((headers, message.subject.to_string(), message.payload));
            }
            // A gap (a deleted message) is no error when reading everything.
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(err) => return Err(anyhow::Error::new(err).context(format!("reading message {seq} of {name}"))),
        }
    }
    Ok(out)
}
