//! Event time per store, and the timers that fire from it.
//!
//! A store's watermark is the latest `occurred_at` of its accepted records, POS and inventory
//! together. While a store is idle for longer than the idle timeout, its watermark advances
//! with processing time, so that an idle store still settles and finalizes. Timers are stored
//! in the `Timers` column family, committed with the batch that set them, and fire when the
//! watermark reaches them — never from the wall clock directly, so replays fire identically.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tally_state::key::{KeyReader, KeyWriter};
use tally_state::{Cf, Overlay, Store};

use crate::codec::{self, read};
use crate::error::TopologyError;
use crate::keys::TAG_CLOCK;

const TIMER_FINALIZE: u8 = 1;
const TIMER_SETTLE: u8 = 2;
const TIMER_PRUNE: u8 = 3;
const TIMER_PRUNE_ADJUSTMENTS: u8 = 4;
/// Timers read by the first scan while firing; each further round reads twice as many, up to
/// `TIMERS_PER_SCAN`.
const TIMERS_FIRST_PAGE: usize = 8;
const TIMERS_PER_SCAN: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreClock {
    /// The store's event time. (Times are stored as integers: this record is read and written
    /// for every accepted record.)
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub watermark: DateTime<Utc>,
    /// Processing time of the last accepted record.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub last_event_proc: DateTime<Utc>,
    /// Processing time up to which idle time already advanced the watermark.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub advanced_proc: Option<DateTime<Utc>>,
    /// The earliest timer of this store, if any, so most events need no timer scan.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub next_timer: Option<DateTime<Utc>>,
}

impl crate::pack::Pack for StoreClock {}

/// Something to do for a store once its watermark reaches a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// Finalize a business day (ERP final posting, final drift alerts).
    Finalize { day: NaiveDate },
    /// Check whether a pending drift key stayed over threshold for the settle time.
    Settle { day: NaiveDate, sku: String },
    /// Remove a finished business day and its dedupe ids after the retention period.
    Prune { day: NaiveDate },
    /// Remove the inventory adjustment books of the periods that ended by `day`, after the
    /// retention period (`adjustments`).
    PruneAdjustments { day: NaiveDate },
}

pub fn clock_key(store: &str) -> Vec<u8> {
    KeyWriter::new().tag(TAG_CLOCK).str(store).finish()
}

pub fn all_clocks_prefix() -> Vec<u8> {
    KeyWriter::new().tag(TAG_CLOCK).finish()
}

pub fn load(txn: &Overlay<'_>, store: &str) -> Result<Option<StoreClock>, TopologyError> {
    read(txn, Cf::Aggregates, &clock_key(store), "store clock")
}

pub fn save(txn: &mut Overlay<'_>, store: &str, clock: &StoreClock) {
    txn.put(Cf::Aggregates, clock_key(store), codec::encode(clock));
}

impl StoreClock {
    pub fn new(occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> StoreClock {
        StoreClock { watermark: occurred_at, last_event_proc: now, advanced_proc: None, next_timer: None }
    }

    /// An accepted record at event time `occurred_at`, processed at `now`.
    pub fn observe(&mut self, occurred_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.watermark = self.watermark.max(occurred_at);
        self.last_event_proc = now;
        self.advanced_proc = None;
    }

    /// Advances the watermark by the processing time spent idle beyond `idle_timeout`.
    /// Returns whether it moved.
    pub fn advance_idle(&mut self, now: DateTime<Utc>, idle_timeout: Duration) -> bool {
        let idle_from = self.last_event_proc + idle_timeout;
        let from = self.advanced_proc.map_or(idle_from, |done| done.max(idle_from));
        if now <= from {
            return false;
        }
        self.watermark += now - from;
        self.advanced_proc = Some(now);
        true
    }
}

fn timer_key(store: &str, due: DateTime<Utc>, timer: &Timer) -> Vec<u8> {
    let mut key = KeyWriter::new();
    key.str(store).i64(due.timestamp_millis());
    match timer {
        Timer::Finalize { day } => key.tag(TIMER_FINALIZE).str(&day.to_string()),
        Timer::Settle { day, sku } => key.tag(TIMER_SETTLE).str(&day.to_string()).str(sku),
        Timer::Prune { day } => key.tag(TIMER_PRUNE).str(&day.to_string()),
        Timer::PruneAdjustments { day } => key.tag(TIMER_PRUNE_ADJUSTMENTS).str(&day.to_string()),
    };
    key.finish()
}

/// [`parse_timer_key`], with a key it cannot read reported as corrupt state.
fn read_timer_key(key: &[u8]) -> Result<(DateTime<Utc>, Timer), TopologyError> {
    parse_timer_key(key).ok_or_else(|| {
        tally_state::StateError::Corrupt { cf: Cf::Timers, detail: format!("bad timer key {key:?}") }.into()
    })
}

fn parse_timer_key(key: &[u8]) -> Option<(DateTime<Utc>, Timer)> {
    let mut reader = KeyReader::new(key);
    reader.str().ok()?;
    let due = DateTime::from_timestamp_millis(reader.i64().ok()?)?;
    let kind = reader.tag().ok()?;
    let day = NaiveDate::parse_from_str(&reader.str().ok()?, "%Y-%m-%d").ok()?;
    let timer = match kind {
        TIMER_FINALIZE => Timer::Finalize { day },
        TIMER_SETTLE => Timer::Settle { day, sku: reader.str().ok()? },
        TIMER_PRUNE => Timer::Prune { day },
        TIMER_PRUNE_ADJUSTMENTS => Timer::PruneAdjustments { day },
        _ => return None,
    };
    Some((due, timer))
}

pub fn add_timer(txn: &mut Overlay<'_>, clock: &mut StoreClock, store: &str, due: DateTime<Utc>, timer: &Timer) {
    txn.put(Cf::Timers, timer_key(store, due, timer), Vec::new());
    clock.next_timer = Some(clock.next_timer.map_or(due, |next| next.min(due)));
}

/// Removes and returns the store's timers due at or before its watermark, earliest first.
pub fn take_due(
    txn: &mut Overlay<'_>,
    clock: &mut StoreClock,
    store: &str,
) -> Result<Vec<(DateTime<Utc>, Timer)>, TopologyError> {
    let Some(next) = clock.next_timer.filter(|next| *next <= clock.watermark) else {
        return Ok(Vec::new());
    };
    let prefix = KeyWriter::new().str(store).finish();
    // No timer of the store is due before `next_timer` (`add_timer` lowers it, a scan sets it to
    // the first timer left), so the scan starts there: past the deletion markers of the timers
    // fired before, which RocksDB would otherwise step over on every scan until compaction.
    let mut start = KeyWriter::new().str(store).i64(next.timestamp_millis()).finish();
    // Usually one or two timers are due while hundreds wait (a settle timer per drifting key):
    // read a few first, more only while all of them are due.
    let mut page = TIMERS_FIRST_PAGE;
    let mut due = Vec::new();
    loop {
        let entries = txn.scan_prefix_from(Cf::Timers, &prefix, &start, page)?;
        let mut rest = None;
        for (key, _) in &entries {
            let (at, timer) = read_timer_key(key)?;
            if at > clock.watermark {
                rest = Some(at);
                break;
            }
            txn.delete(Cf::Timers, key.clone());
            due.push((at, timer));
        }
        if rest.is_some() || entries.len() < page {
            clock.next_timer = rest;
            return Ok(due);
        }
        if let Some((last, _)) = entries.last() {
            // The smallest key after the last one read.
            start = [last.as_slice(), &[0]].concat();
        }
        page = (page * 2).min(TIMERS_PER_SCAN);
    }
}

/// The store of a `clock_key`.
pub fn parse_clock_key(key: &[u8]) -> Option<String> {
    let mut reader = KeyReader::new(key);
    if reader.tag().ok()? != TAG_CLOCK {
        return None;
    }
    reader.str().ok()
}

/// The days whose `Finalize` timer is due at or before `cutoff` but has not fired, because the
/// store's watermark has not reached it. The scan starts at the clock's `next_timer` (no timer
/// of the store is due before it), so a store whose timers all lie after `cutoff` costs no
/// read, and one that is behind reads only its timers due by `cutoff`.
pub fn finalize_days_due_by(
    store: &dyn Store,
    store_id: &str,
    clock: &StoreClock,
    cutoff: DateTime<Utc>,
) -> Result<BTreeSet<NaiveDate>, TopologyError> {
    let mut days = BTreeSet::new();
    let Some(next) = clock.next_timer.filter(|next| *next <= cutoff) else { return Ok(days) };
    let prefix = KeyWriter::new().str(store_id).finish();
    let mut start = KeyWriter::new().str(store_id).i64(next.timestamp_millis()).finish();
    loop {
        let entries = store.scan_prefix_from(Cf::Timers, &prefix, &start, TIMERS_PER_SCAN)?;
        for (key, _) in &entries {
            let (at, timer) = read_timer_key(key)?;
            if at > cutoff {
                return Ok(days);
            }
            if let Timer::Finalize { day } = timer {
                days.insert(day);
            }
        }
        let Some((last, _)) = entries.last().filter(|_| entries.len() == TIMERS_PER_SCAN) else { return Ok(days) };
        // The smallest key after the last one read.
        start = [last.as_slice(), &[0]].concat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_state::{MemStore, Store};

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    // Proves idle time beyond the timeout moves the watermark at processing-time speed, once.
    #[test]
    fn idle_store_advances_with_processing_time() {
        let mut clock = StoreClock::new(t("2026-11-27T10:00:00Z"), t("2026-11-27T12:00:00Z"));
        assert!(!clock.advance_idle(t("2026-11-27T12:04:00Z"), Duration::minutes(5)));
        assert!(clock.advance_idle(t("2026-11-27T12:07:00Z"), Duration::minutes(5)));
        assert_eq!(clock.watermark, t("2026-11-27T10:02:00Z"));
        assert!(clock.advance_idle(t("2026-11-27T12:08:00Z"), Duration::minutes(5)));
        assert_eq!(clock.watermark, t("2026-11-27T10:03:00Z"));
        clock.observe(t("2026-11-27T10:01:00Z"), t("2026-11-27T12:09:00Z"));
        assert_eq!(clock.watermark, t("2026-11-27T10:03:00Z"), "a late event never moves it back");
    }

    // Proves timers due in numbers beyond one page all fire, in order, across pages that start
    // after the timers fired before, while those not yet due stay.
    #[test]
    fn many_due_timers_fire_across_pages() {
        let store = MemStore::default();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut clock = StoreClock::new(t("2026-11-27T10:00:00Z"), t("2026-11-27T10:00:00Z"));
        let mut txn = Overlay::new(&store);
        let base = t("2026-11-27T10:00:00Z");
        for i in 0..100 {
            let timer = Timer::Settle { day, sku: format!("SKU-{i:03}") };
            add_timer(&mut txn, &mut clock, "S1", base + Duration::seconds(i), &timer);
        }
        add_timer(&mut txn, &mut clock, "S2", base, &Timer::Finalize { day });
        store.write(&txn.into_batch()).unwrap();

        let mut txn = Overlay::new(&store);
        clock.watermark = base + Duration::seconds(9);
        let first: Vec<_> = take_due(&mut txn, &mut clock, "S1").unwrap().into_iter().map(|(at, _)| at).collect();
        assert_eq!(first, (0..10).map(|i| base + Duration::seconds(i)).collect::<Vec<_>>());
        assert_eq!(clock.next_timer, Some(base + Duration::seconds(10)));
        store.write(&txn.into_batch()).unwrap();

        let mut txn = Overlay::new(&store);
        clock.watermark = base + Duration::seconds(89);
        let second = take_due(&mut txn, &mut clock, "S1").unwrap();
        assert_eq!(second.len(), 80);
        assert!(second.windows(2).all(|pair| pair[0].0 < pair[1].0), "earliest first");
        assert_eq!(second[0].0, base + Duration::seconds(10));
        assert_eq!(clock.next_timer, Some(base + Duration::seconds(90)));
        store.write(&txn.into_batch()).unwrap();
        let left = store.scan_prefix(Cf::Timers, b"", usize::MAX).unwrap();
        assert_eq!(left.len(), 10 + 1, "ten of S1 not yet due and the one of S2");
    }

    // Proves timers come out in due order, only once due, and the next due time is kept.
    #[test]
    fn timers_fire_in_order_when_due() {
        let store = MemStore::default();
        let mut txn = Overlay::new(&store);
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut clock = StoreClock::new(t("2026-11-27T10:00:00Z"), t("2026-11-27T10:00:00Z"));
        add_timer(&mut txn, &mut clock, "S1", t("2026-11-27T10:30:00Z"), &Timer::Finalize { day });
        add_timer(&mut txn, &mut clock, "S1", t("2026-11-27T10:15:00Z"), &Timer::Settle { day, sku: "A".into() });
        add_timer(&mut txn, &mut clock, "S10", t("2026-11-27T10:01:00Z"), &Timer::Finalize { day });
        assert!(take_due(&mut txn, &mut clock, "S1").unwrap().is_empty());
        clock.watermark = t("2026-11-27T10:20:00Z");
        let due = take_due(&mut txn, &mut clock, "S1").unwrap();
        assert_eq!(due, vec![(t("2026-11-27T10:15:00Z"), Timer::Settle { day, sku: "A".into() })]);
        assert_eq!(clock.next_timer, Some(t("2026-11-27T10:30:00Z")));
        clock.watermark = t("2026-11-27T11:00:00Z");
        assert_eq!(take_due(&mut txn, &mut clock, "S1").unwrap().len(), 1);
        assert_eq!(clock.next_timer, None);
    }
}
