//! The deterministic core of `tally gen`: given options, a seed and event times, it produces the
//! exact bytes a retail chain's POS and inventory platform would publish. It owns no clock and
//! does no I/O; the publisher decides when event time advances.
//!
//! Injected faults are kept exact so a test can predict tally's answers: a malformed transaction
//! takes its consequences with it (no movements, void, duplicate or day-close share), and only
//! clean baskets are voided, so the drift tally finds is exactly the injected drift.

mod order;
mod sale;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::basket::{self, Recent};
use crate::catalog::{self, store_id, Catalog, StoreProfile};
use crate::close::{close_instant, day_close_message, DayTotals};
use crate::options::{GenOptions, GenStats};
use crate::wire::{encode, encode_malformed, Malformed, WireMessage};

/// Recent transactions per store that a return may reference.
const RECENT_MAX: usize = 64;
/// Upper bound of any configured lag: a year of event time.
const LAG_MAX_SECS: u64 = 366 * 24 * 3600;

struct StoreState {
    profile: StoreProfile,
    /// Per register: the local day its `seq` counts for, and the last seq used.
    registers: Vec<(NaiveDate, u32)>,
    movement_counter: u64,
    order_counter: u64,
    recent: VecDeque<Recent>,
    /// The next business day whose close `due` will emit.
    close_day: NaiveDate,
}

/// The generator. See the module docs for the guarantees.
pub struct Traffic {
    opts: GenOptions,
    rng: SmallRng,
    catalog: Catalog,
    stores: Vec<StoreState>,
    /// Cumulative store weights, recomputed when event time enters a new minute.
    picker: (i64, Vec<f64>),
    queue: BTreeMap<(DateTime<Utc>, u64), WireMessage>,
    order: u64,
    days: BTreeMap<(usize, NaiveDate), DayTotals>,
    next_close: DateTime<Utc>,
    malformed_credit: f64,
    now: DateTime<Utc>,
    stats: GenStats,
}

impl Traffic {
    pub fn new(mut opts: GenOptions, start: DateTime<Utc>) -> Self {
        opts.stores = opts.stores.max(1);
        let mut rng = SmallRng::seed_from_u64(opts.seed);
        let catalog = Catalog::new(opts.skus_per_store, &mut rng);
        let stores: Vec<StoreState> = (0..opts.stores)
            .map(|i| {
                let profile = StoreProfile::new(&opts, i);
                let today = start.with_timezone(&profile.tz).date_naive();
                StoreState {
                    registers: vec![(today, 0); profile.registers as usize],
                    profile,
                    movement_counter: 0,
                    order_counter: 0,
                    recent: VecDeque::new(),
                    close_day: today,
                }
            })
            .collect();
        let mut t = Traffic {
            opts,
            rng,
            catalog,
            stores,
            picker: (i64::MIN, Vec::new()),
            queue: BTreeMap::new(),
            order: 0,
            days: BTreeMap::new(),
            next_close: start,
            malformed_credit: 0.0,
            now: start,
            stats: GenStats::default(),
        };
        t.next_close = t.earliest_close();
        t
    }

    pub fn options(&self) -> &GenOptions {
        &self.opts
    }

    /// The latest event time handed to `next_basket` or `due` (initially the start).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn stats(&self) -> &GenStats {
        &self.stats
    }

    pub(super) fn note_published(&mut self, n: u64) {
        self.stats.published += n;
    }

    /// The next basket's messages to publish now (its transaction, sometimes an unrelated
    /// movement); its lagged movements, void and duplicate re-send are queued for `due`.
    pub fn next_basket(&mut self, at: DateTime<Utc>) -> Vec<WireMessage> {
        self.now = self.now.max(at);
        self.stats.baskets += 1;
        let s = self.pick_store(at);
        let mut out = Vec::with_capacity(2);
        out.push(self.transaction(s, at));
        if self.rng.random_bool(self.opts.other_movement_share.clamp(0.0, 1.0)) {
            let (reason, lines) = basket::unrelated_movement(&mut self.rng, &self.catalog);
            let day = at.with_timezone(&self.stores[s].profile.tz).date_naive();
            let malformed = self.take_malformed();
            out.push(self.movement(s, at, day, reason, None, &lines, malformed));
        }
        // Drawn only when asked for, so that traffic without orders stays what it was.
        if self.opts.order_share > 0.0 && self.rng.random_bool(self.opts.order_share.clamp(0.0, 1.0)) {
            out.push(self.order(s, at));
        }
        out
    }

    /// Queued messages (lagged movements, voids, re-sends) and day closes due at or before
    /// `now`, in due order, removed from the queue.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<WireMessage> {
        self.now = self.now.max(now);
        let later = self.queue.split_off(&(now, u64::MAX));
        let mut out: Vec<WireMessage> = std::mem::replace(&mut self.queue, later).into_values().collect();
        if self.opts.emit_day_closes && self.next_close <= now {
            for i in 0..self.stores.len() {
                while close_instant(&self.stores[i].profile, self.stores[i].close_day) <= now {
                    let day = self.stores[i].close_day;
                    let msg = self.close_of(i, day);
                    self.count(&msg);
                    self.stats.day_closes += 1;
                    out.push(msg);
                    self.stores[i].close_day = day.succ_opt().unwrap_or(day);
                }
            }
            out.sort_by_key(|m| m.due);
            self.next_close = self.earliest_close();
        }
        out
    }

    /// Everything still queued, in due order (to flush at the end of a run).
    pub fn drain_all(&mut self) -> Vec<WireMessage> {
        std::mem::take(&mut self.queue).into_values().collect()
    }

    /// The `pos.day_close` of every store for `day` with the POS's totals of the baskets
    /// generated for that store-day (voids applied when they happened before the close).
    pub fn day_closes(&self, day: NaiveDate) -> Vec<WireMessage> {
        (0..self.stores.len()).map(|i| self.close_of(i, day)).collect()
    }

    fn close_of(&self, i: usize, day: NaiveDate) -> WireMessage {
        day_close_message(&self.opts, i, &self.stores[i].profile, day, self.days.get(&(i, day)))
    }

    fn earliest_close(&self) -> DateTime<Utc> {
        let closes = self.stores.iter().map(|s| close_instant(&s.profile, s.close_day));
        closes.min().unwrap_or(self.now)
    }

    /// A store drawn by size and local time of day; the weights change by the minute.
    fn pick_store(&mut self, at: DateTime<Utc>) -> usize {
        let minute = at.timestamp().div_euclid(60);
        if self.picker.0 != minute {
            let mut total = 0.0;
            self.picker.1 = self
                .stores
                .iter()
                .map(|s| {
                    total += s.profile.size * catalog::traffic_weight(s.profile.tz, at);
                    total
                })
                .collect();
            self.picker.0 = minute;
        }
        let total = self.picker.1.last().copied().unwrap_or(0.0);
        let x = self.rng.random::<f64>() * total;
        self.picker.1.partition_point(|&c| c <= x).min(self.stores.len() - 1)
    }

    /// Whether the next eligible message is to be malformed. A credit grows by the share with
    /// every message and is spent on eligible ones (transactions and unrelated movements), so
    /// the share of all messages holds although most kinds are never corrupted.
    fn take_malformed(&mut self) -> bool {
        if self.opts.malformed_share <= 0.0 {
            return false;
        }
        if self.rng.random::<f64>() < self.malformed_credit.min(1.0) {
            self.malformed_credit -= 1.0;
            return true;
        }
        false
    }

    fn count(&mut self, msg: &WireMessage) {
        self.stats.messages += 1;
        self.stats.msgpack += u64::from(msg.is_msgpack());
        self.malformed_credit = (self.malformed_credit + self.opts.malformed_share).min(2.0);
    }

    fn enqueue(&mut self, msg: WireMessage) {
        self.order += 1;
        self.queue.insert((msg.due, self.order), msg);
    }

    /// A random lag of 0..=max_secs, capped at a year so chrono's Duration cannot overflow.
    fn lag(&mut self, max_secs: u64) -> Duration {
        Duration::seconds(self.rng.random_range(0..=max_secs.min(LAG_MAX_SECS)) as i64)
    }

    /// Encodes a record for store `s` on `P.<topic>.<store>`, malformed when asked.
    fn wire(&mut self, s: usize, topic: &str, at: DateTime<Utc>, value: Value, malformed: bool) -> WireMessage {
        let msgpack = self.rng.random_bool(self.opts.msgpack_share.clamp(0.0, 1.0));
        let (content_type, payload) = if malformed {
            let kind = Malformed::pick(&mut self.rng);
            self.stats.malformed += 1;
            *self.stats.malformed_by_reason.entry(kind.reason()).or_default() += 1;
            let other = store_id(if s == 0 { 1 } else { s - 1 });
            encode_malformed(value, kind, msgpack, &other, &mut self.rng)
        } else {
            encode(&value, msgpack)
        };
        let subject = format!("{}.{}.{}", self.opts.subject_prefix, topic, self.stores[s].profile.id);
        let msg = WireMessage { subject, content_type, payload, due: at };
        self.count(&msg);
        msg
    }
}
