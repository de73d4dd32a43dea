//! One basket's life: the POS transaction, the inventory movements it causes (lagged, sometimes
//! missing or doubled on purpose), a later post-void with its stock reversal, and a re-send.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::Rng;
use rust_decimal::Decimal;

use super::{Traffic, RECENT_MAX};
use crate::basket::{self, Line, Recent, Stamp};
use crate::close::TxnTotals;
use crate::wire::WireMessage;

/// A post-void comes this many seconds after its transaction (a supervisor walking over).
const VOID_DELAY_SECS: std::ops::RangeInclusive<i64> = 60..=1_800;
/// A duplicate re-send comes this many seconds after the original (a publisher retry).
const RESEND_DELAY_SECS: std::ops::RangeInclusive<i64> = 1..=300;

impl Traffic {
    /// The basket's `pos.transaction` (to publish now); its consequences go to the queue.
    pub(super) fn transaction(&mut self, s: usize, at: DateTime<Utc>) -> WireMessage {
        let day = at.with_timezone(&self.stores[s].profile.tz).date_naive();
        let r = self.rng.random_range(0..self.stores[s].registers.len());
        let seq = {
            let reg = &mut self.stores[s].registers[r];
            // Only a later day restarts the count, so ids stay unique if time steps back.
            if day > reg.0 {
                *reg = (day, 0);
            }
            reg.1 += 1;
            reg.1
        };
        let register = format!("R{:02}", r + 1);
        let id = format!("{}-{}-{}-{:06}", self.stores[s].profile.id, register, day.format("%Y%m%d"), seq);
        let lines = basket::build_lines(
            &mut self.rng,
            &self.catalog,
            &self.stores[s].profile,
            &self.stores[s].recent,
            self.opts.return_share,
        );
        let net: Decimal = lines.iter().map(Line::net).sum();
        let tax: Decimal = lines.iter().map(|l| l.tax).sum();
        let tenders = basket::split_tenders(&mut self.rng, net + tax);
        let malformed = self.take_malformed();
        let qty_as_number = self.rng.random_bool(0.25);
        let null_voids = self.rng.random_bool(0.5);
        let stamp = Stamp { store: &self.stores[s].profile, at, business_day: day, qty_as_number };
        let value = basket::transaction_json(
            &stamp,
            &id,
            &register,
            seq,
            &self.opts.currency,
            &self.catalog,
            &lines,
            &tenders,
            null_voids,
        );
        let msg = self.wire(s, "pos", at, value, malformed);
        if malformed {
            return msg;
        }

        self.stats.transactions += 1;
        self.stats.lines += lines.len() as u64;
        self.stats.returns += lines.iter().filter(|l| l.qty < 0).count() as u64;
        let totals = TxnTotals { net, tax, tenders };
        self.days.entry((s, day)).or_default().add(&totals);
        let recent = &mut self.stores[s].recent;
        let skus = lines.iter().filter(|l| l.qty > 0).map(|l| l.sku).collect();
        recent.push_back(Recent { id: id.clone(), skus });
        if recent.len() > RECENT_MAX {
            recent.pop_front();
        }

        // Stock deltas the POS causes: sold units leave the shelf, restocked returns come back.
        let mut sold = BTreeMap::new();
        let mut restocked = BTreeMap::new();
        for l in &lines {
            if l.qty > 0 {
                *sold.entry(l.sku).or_insert(0) -= l.qty;
            } else if l.restock {
                *restocked.entry(l.sku).or_insert(0) -= l.qty;
            }
        }
        let drift = !sold.is_empty() && self.rng.random_bool(self.opts.drift_share.clamp(0.0, 1.0));
        let copies = match drift {
            false if sold.is_empty() => 0,
            false => 1,
            true if self.rng.random_bool(0.5) => 0,
            true => 2,
        };
        self.stats.drift_injected += u64::from(drift);
        let mut sale_msg = None;
        for _ in 0..copies {
            let due = at + self.lag(self.opts.movement_lag_max_secs);
            let m = self.movement(s, due, day, "sale", Some(&id), &sold, false);
            sale_msg = Some(m.clone());
            self.enqueue(m);
        }
        if !restocked.is_empty() {
            let due = at + self.lag(self.opts.movement_lag_max_secs);
            let m = self.movement(s, due, day, "return", Some(&id), &restocked, false);
            self.enqueue(m);
        }

        // Only clean baskets are voided, so a void never cancels injected drift.
        if !drift && self.rng.random_bool(self.opts.void_share.clamp(0.0, 1.0)) {
            self.void(s, at, day, &id, &register, totals, &sold, &restocked);
        }
        if self.rng.random_bool(self.opts.duplicate_share.clamp(0.0, 1.0)) {
            let mut dup = match sale_msg {
                Some(m) if self.rng.random_bool(0.3) => m,
                _ => msg.clone(),
            };
            dup.due += Duration::seconds(self.rng.random_range(RESEND_DELAY_SECS));
            self.stats.duplicates += 1;
            self.count(&dup);
            self.enqueue(dup);
        }
        msg
    }

    /// Queues the post-void of transaction `id` and the movements that put its stock back.
    #[allow(clippy::too_many_arguments)]
    fn void(
        &mut self,
        s: usize,
        at: DateTime<Utc>,
        day: NaiveDate,
        id: &str,
        register: &str,
        totals: TxnTotals,
        sold: &BTreeMap<usize, i64>,
        restocked: &BTreeMap<usize, i64>,
    ) {
        let void_at = at + Duration::seconds(self.rng.random_range(VOID_DELAY_SECS));
        let void_day = void_at.with_timezone(&self.stores[s].profile.tz).date_naive();
        let stamp = Stamp { store: &self.stores[s].profile, at: void_at, business_day: void_day, qty_as_number: false };
        let value = basket::void_json(&stamp, &format!("VOID-{id}"), register, id);
        let msg = self.wire(s, "pos", void_at, value, false);
        self.enqueue(msg);
        self.days.entry((s, day)).or_default().void_at(void_at, totals);
        self.stats.voids += 1;
        for (reason, lines) in [("sale", sold), ("return", restocked)] {
            if lines.is_empty() {
                continue;
            }
            let back: BTreeMap<usize, i64> = lines.iter().map(|(sku, q)| (*sku, -q)).collect();
            let due = void_at + self.lag(self.opts.movement_lag_max_secs);
            let m = self.movement(s, due, day, reason, Some(id), &back, false);
            self.enqueue(m);
        }
    }

    /// An inventory movement of store `s` with the next `INV-<store>-<n>` id. `day` is the
    /// business day it belongs to: a POS-caused movement carries its transaction's day.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn movement(
        &mut self,
        s: usize,
        at: DateTime<Utc>,
        day: NaiveDate,
        reason: &str,
        reference: Option<&str>,
        lines: &BTreeMap<usize, i64>,
        malformed: bool,
    ) -> WireMessage {
        self.stores[s].movement_counter += 1;
        let id = format!("INV-{}-{}", self.stores[s].profile.id, self.stores[s].movement_counter);
        let qty_as_number = self.rng.random_bool(0.25);
        let stamp = Stamp { store: &self.stores[s].profile, at, business_day: day, qty_as_number };
        let value = basket::movement_json(&stamp, &id, reason, reference, &self.catalog, lines);
        self.stats.movements += u64::from(!malformed);
        self.wire(s, "inventory", at, value, malformed)
    }
}
