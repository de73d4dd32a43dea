//! Order fulfillments (docs/wire-format.md, "Order fulfillment"): the units an online order
//! took from a store's shelf (shipped from the store, picked up in it) or put back (returned to
//! it), as expected stock movements in drift.
//!
//! An order changes the units of its sku-days and the store-day's order totals, and nothing
//! else: no POS total, no latest price, no ERP posting (the order's money is the order
//! management system's to book). Like a POS transaction it waits on the unmatched list of each
//! of its sku-days until an inventory movement names it in `ref`.

use tally_state::{Cf, Overlay};

use crate::keys;
use crate::model::OrderFulfillment;
use crate::topology::{Retail, Step, TopologyError};

impl Retail {
    /// Applies an accepted order fulfillment to the store-day and its sku-days.
    pub(crate) fn apply_order(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        order: &OrderFulfillment,
    ) -> Result<(), TopologyError> {
        let day = order.business_day;
        self.update_store_day(txn, step, day, |totals| totals.apply_order(order))?;
        for line in &order.lines {
            // A movement that named this order before it arrived has already matched it.
            let referenced = txn.get(Cf::Aggregates, &keys::reference(&order.store, &order.id, &line.sku))?.is_some();
            self.update_sku_day(txn, step, day, &line.sku, |sku| {
                sku.apply_order_qty(order.fulfillment, line.qty);
                if !referenced {
                    let leaving = line.qty * order.fulfillment.expected_sign().max(rust_decimal::Decimal::ZERO);
                    sku.note_unmatched_order(&order.id, order.occurred_at, leaving);
                }
            })?;
        }
        Ok(())
    }
}
