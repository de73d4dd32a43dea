//! The POS's own view of a business day and the `pos.day_close` record it sends. The POS counts
//! the transactions it generated for a store-day minus the ones post-voided before the close;
//! a void that comes after the close is not in its totals (tally posts it as an adjustment).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::catalog::{mix, unit, StoreProfile};
use crate::options::GenOptions;
use crate::wire::{encode, local_time, money, WireMessage};

/// What one transaction adds to its day's totals.
#[derive(Debug, Clone)]
pub(super) struct TxnTotals {
    pub net: Decimal,
    pub tax: Decimal,
    pub tenders: Vec<(&'static str, Decimal)>,
}

/// The POS's running totals of one store-day.
#[derive(Debug, Clone, Default)]
pub(super) struct DayTotals {
    transactions: i64,
    net: Decimal,
    tax: Decimal,
    tenders: BTreeMap<&'static str, Decimal>,
    /// Post-voids of this day's transactions, with the instant the void happens.
    voids: Vec<(DateTime<Utc>, TxnTotals)>,
}

impl DayTotals {
    pub fn add(&mut self, t: &TxnTotals) {
        self.transactions += 1;
        self.net += t.net;
        self.tax += t.tax;
        for (kind, amount) in &t.tenders {
            *self.tenders.entry(kind).or_default() += *amount;
        }
    }

    pub fn void_at(&mut self, at: DateTime<Utc>, t: TxnTotals) {
        self.voids.push((at, t));
    }

    /// Totals as the POS knows them at `close`: voids that happened by then are applied.
    fn as_of(&self, close: DateTime<Utc>) -> DayTotals {
        let mut out = DayTotals { voids: Vec::new(), ..self.clone() };
        for (at, t) in self.voids.iter().filter(|(at, _)| *at <= close) {
            debug_assert!(*at <= close);
            out.transactions -= 1;
            out.net -= t.net;
            out.tax -= t.tax;
            for (kind, amount) in &t.tenders {
                *out.tenders.entry(kind).or_default() -= *amount;
            }
        }
        out
    }
}

/// When the POS closes `day`: five minutes after local midnight, so every transaction of the day
/// (including night pick-ups) is in. Falls back to UTC midnight if the local time is skipped.
pub(super) fn close_instant(store: &StoreProfile, day: NaiveDate) -> DateTime<Utc> {
    let next = day.succ_opt().unwrap_or(day);
    let local = next.and_time(NaiveTime::MIN) + Duration::minutes(5);
    match store.tz.from_local_datetime(&local).earliest() {
        Some(at) => at.with_timezone(&Utc),
        None => Utc.from_utc_datetime(&local),
    }
}

/// The `pos.day_close` message of one store-day. Deterministic from (seed, store, day), so it
/// can be built from `&self`: encoding and the deliberate over/short come from a hash, not the
/// generator's random stream.
pub(super) fn day_close_message(
    opts: &GenOptions,
    index: usize,
    store: &StoreProfile,
    day: NaiveDate,
    totals: Option<&DayTotals>,
) -> WireMessage {
    let at = close_instant(store, day);
    let mut t = totals.map(|t| t.as_of(at)).unwrap_or_default();
    let h = mix(opts.seed ^ mix(index as u64) ^ mix(day_key(day)));
    if unit(h) < opts.day_close_error_share {
        // A real over/short: the drawer count was keyed wrong by a few cents to a few dollars.
        let cents = 1 + (mix(h) % 2_000) as i64;
        let delta = Decimal::new(if h & 1 == 0 { cents } else { -cents }, 2);
        t.net += delta;
        *t.tenders.entry("cash").or_default() += delta;
    }
    let tenders: Vec<Value> = t
        .tenders
        .iter()
        .filter(|(_, amount)| !amount.is_zero())
        .map(|(kind, amount)| json!({"type": kind, "amount": money(*amount)}))
        .collect();
    let value = json!({
        "type": "pos.day_close",
        "id": format!("CLOSE-{}-{}", store.id, day),
        "store": store.id,
        "business_day": day.to_string(),
        "occurred_at": local_time(at, store.tz),
        "transaction_count": t.transactions,
        "net_sales": money(t.net),
        "tax": money(t.tax),
        "tenders": tenders,
    });
    let msgpack = unit(h ^ 0xC105E) < opts.msgpack_share;
    let (content_type, payload) = encode(&value, msgpack);
    WireMessage { subject: format!("{}.pos.{}", opts.subject_prefix, store.id), content_type, payload, due: at }
}

fn day_key(day: NaiveDate) -> u64 {
    day.signed_duration_since(NaiveDate::MIN).num_days() as u64
}
