//! Unmapped codes (docs/http-api.md, "Unmapped codes"): per store-day, system and code, how
//! many lines carried a code that no alias maps, and when; read back for the HTTP API.
//!
//! Kept per store-day so that retention prunes them with their day (`retention`), and so that
//! the state they take stays bounded by a store's assortment times the retention. Written by
//! the record that saw the code, in the batch's one write; never read on the hot path for
//! anything but its own count.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tally_state::key::{KeyReader, KeyWriter};
use tally_state::{Cf, Overlay, StateError, Store};

use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::keys::{self, TAG_UNMAPPED};
use crate::sku_alias::UnmappedCodes;

/// One unmapped code of one store-day: lines seen with it, first and latest event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedDay {
    pub lines: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl crate::pack::Pack for UnmappedDay {}

fn key(store: &str, day: NaiveDate, system: &str, code: &str) -> Vec<u8> {
    let mut writer = KeyWriter::new();
    writer.tag(TAG_UNMAPPED).str(store).str(&day.to_string()).str(system).str(code).finish()
}

fn store_prefix(store: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_UNMAPPED).str(store).finish()
}

/// Every unmapped code of one store-day, for pruning it.
pub fn day_prefix(store: &str, day: NaiveDate) -> Vec<u8> {
    KeyWriter::new().tag(TAG_UNMAPPED).str(store).str(&day.to_string()).finish()
}

/// Counts one record's unmapped codes under its store-day.
pub fn note(
    txn: &mut Overlay<'_>,
    store: &str,
    day: NaiveDate,
    at: DateTime<Utc>,
    unmapped: &UnmappedCodes,
) -> Result<(), TopologyError> {
    for (code, lines) in &unmapped.codes {
        let key = key(store, day, &unmapped.system, code);
        let value = match read::<UnmappedDay>(txn, Cf::Aggregates, &key, "unmapped code")? {
            Some(mut known) => {
                known.lines += lines;
                known.first_seen = known.first_seen.min(at);
                known.last_seen = known.last_seen.max(at);
                known
            }
            None => UnmappedDay { lines: *lines, first_seen: at, last_seen: at },
        };
        txn.put(Cf::Aggregates, key, codec::encode(&value));
    }
    Ok(())
}

/// Rows read at most per request: a guard against a runaway scan, far above a store's assortment.
const SCAN_MAX: usize = 1_000_000;

/// The unmapped codes of a store (of one business day when given), one row per (system, code)
/// in that order, at most `limit`; `None` when tally has never seen the store.
pub fn report(
    store: &dyn Store,
    store_id: &str,
    day: Option<NaiveDate>,
    limit: usize,
) -> Result<Option<Value>, TopologyError> {
    let prefix = match day {
        Some(day) => day_prefix(store_id, day),
        None => store_prefix(store_id),
    };
    let rows = store.scan_prefix(Cf::Aggregates, &prefix, SCAN_MAX)?;
    if rows.is_empty() && store.scan_prefix(Cf::Aggregates, &keys::store_days_prefix(store_id), 1)?.is_empty() {
        return Ok(None);
    }
    let mut codes: BTreeMap<(String, String), Row> = BTreeMap::new();
    for (key, value) in rows {
        let (day, system, code) = parse(&key[store_prefix(store_id).len()..]).ok_or_else(|| StateError::Corrupt {
            cf: Cf::Aggregates,
            detail: format!("bad unmapped code key {key:?}"),
        })?;
        let figures: UnmappedDay =
            codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "unmapped code", source })?;
        assert!(figures.lines > 0 && figures.first_seen <= figures.last_seen, "an unmapped code is counted once seen");
        codes.entry((system, code)).or_default().add(day, &figures);
    }
    let total = codes.len();
    let listed: Vec<Value> =
        codes.into_iter().take(limit).map(|((system, code), row)| row.render(system, code)).collect();
    let mut body = json!({"store": store_id, "unmapped": listed, "total": total, "truncated": total > limit});
    if let Some(day) = day {
        body["business_day"] = json!(day.to_string());
    }
    Ok(Some(body))
}

fn parse(rest: &[u8]) -> Option<(String, String, String)> {
    let mut reader = KeyReader::new(rest);
    let (day, system, code) = (reader.str().ok()?, reader.str().ok()?, reader.str().ok()?);
    reader.is_empty().then_some((day, system, code))
}

#[derive(Default)]
struct Row {
    lines: u64,
    days: Vec<String>,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
}

impl Row {
    fn add(&mut self, day: String, figures: &UnmappedDay) {
        self.lines += figures.lines;
        self.days.push(day);
        self.first_seen = Some(self.first_seen.map_or(figures.first_seen, |t| t.min(figures.first_seen)));
        self.last_seen = Some(self.last_seen.map_or(figures.last_seen, |t| t.max(figures.last_seen)));
    }

    fn render(self, system: String, code: String) -> Value {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        json!({"system": system, "code": code, "lines": self.lines, "business_days": self.days,
               "first_seen": time(self.first_seen), "last_seen": time(self.last_seen)})
    }
}
