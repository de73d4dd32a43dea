//! An online order fulfilled through a store (docs/wire-format.md, "Order fulfillment"): the
//! `order.fulfillment` record and the inventory movement that fulfils it, lagged like a sale's.
//! Orders inject no drift: every order is matched exactly by its movement, so the drift tally
//! finds stays the injected drift.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::Traffic;
use crate::basket::{self, Stamp};
use crate::wire::WireMessage;

impl Traffic {
    /// The order's record (to publish now); its movement goes to the queue.
    pub(super) fn order(&mut self, s: usize, at: DateTime<Utc>) -> WireMessage {
        let day = at.with_timezone(&self.stores[s].profile.tz).date_naive();
        self.stores[s].order_counter += 1;
        let id = format!("WEB-{}-{}", self.stores[s].profile.id, self.stores[s].order_counter);
        // Shipped or picked up units leave the shelf (a `sale` decrement); returned ones come back.
        let (kind, reason, sign) = match self.rng.random::<f64>() {
            x if x < 0.6 => ("ship_from_store", "sale", -1),
            x if x < 0.9 => ("pickup_in_store", "sale", -1),
            _ => ("returned_to_store", "return", 1),
        };
        let mut lines: BTreeMap<usize, i64> = BTreeMap::new();
        for _ in 0..self.rng.random_range(1..=2) {
            *lines.entry(self.catalog.sample(&mut self.rng)).or_insert(0) += self.rng.random_range(1..=2);
        }
        let qty_as_number = self.rng.random_bool(0.25);
        let stamp = Stamp { store: &self.stores[s].profile, at, business_day: day, qty_as_number };
        let value = basket::order_json(&stamp, &id, kind, &self.catalog, &lines);
        let msg = self.wire(s, "orders", at, value, false);
        self.stats.orders += 1;

        let stock: BTreeMap<usize, i64> = lines.iter().map(|(sku, q)| (*sku, sign * q)).collect();
        let due = at + self.lag(self.opts.movement_lag_max_secs);
        let movement = self.movement(s, due, day, reason, Some(&id), &stock, false);
        self.enqueue(movement);
        msg
    }
}
