//! tally's retail logic as pure code: no I/O, no tokio, no wall clock.
//!
//! - [`model`]: the typed input records of the contract (transactions, movements, day-closes).
//! - [`decode`]: bytes (JSON or MessagePack) to records, or a DLQ rejection with its reason.
//! - [`keys`]: where each record lives in the store, as order-preserving binary keys (the posting registry's too).
//! - [`error`]: the one error of the topology: state that cannot be read.
//! - [`codec`]: how values are stored (MessagePack) and read back, typed.
//! - `pack`: MessagePack written by hand, the bytes serde writes (the values every record writes, the fingerprint).
//! - [`books`]: the posting bookkeeping kept in state.
//! - [`aggregates`]: the stored values (store-day, sku-day totals, dedupe, outbox) and their arithmetic.
//! - [`fingerprint`]: a stable content hash, for duplicates versus conflicts.
//! - [`topology`]: one input message in, state changes and outbox entries out.
//! - `orders`: order fulfillments (ship-from-store, pickup, returns to store) as expected units in drift.
//! - `working_set`: the typed values records keep touching, kept decoded across records and batches.
//! - [`clock`]: per-store event time (watermark) and the timers that fire from it.
//! - [`drift`]: drift figures, thresholds and the alert lifecycle of one key.
//! - [`postings`]: ERP posting deltas, interim to final to adjustment, with the audit.
//! - [`posting_body`]: the ERP posting as it goes out, typed.
//! - [`fiscal`]: the fiscal calendar: the accounting period of a business day.
//! - [`adjustments`]: inventory adjustments to finance, per store and accounting period.
//! - [`adjustments_reconcile`]: adjustment books set from the postings stream, for a rebuilt state.
//! - [`adjustment_body`]: the inventory adjustment posting as it goes out, typed.
//! - [`tenders_audit`]: tenders over/short, the day close's amounts against the computed ones.
//! - `lifecycle`: evaluating touched keys, firing timers, finalizing days, the tick.
//! - [`partition`]: which partition holds a store (the server's `partition()` subject transform).
//! - [`retention`]: pruning finished business days and their dedupe ids after the retention.
//! - [`outputs`]: alerts, postings and DLQ entries into the outbox, in the chosen format.
//! - [`reconcile`]: posting books and alert revisions set from what the output streams hold.
//! - [`lineage`]: what tally keeps to trace a record from arrival to outputs, and the trace itself.
//! - [`report`]: the day's reconciliation, read back from state.
//! - [`sku_alias`]: SKU aliases (`<system>/<code>` → canonical sku), read as a per-batch snapshot.
//! - [`unmapped`]: codes no alias mapped, per store-day, and their report.
//! - `report_orders`: the day report's order section and drift breakdown.
//! - [`trace`]: one record's trace (arrival, outcome, movements, alerts, postings), read back from state.
//! - [`kpi`]: business KPIs per store (unreconciled sales, inventory variance), read back from state.

pub mod adjustment_body;
pub mod adjustments;
pub mod adjustments_reconcile;
pub mod aggregates;
pub mod books;
pub mod clock;
pub mod codec;
pub mod decode;
pub mod drift;
pub mod error;
pub mod fingerprint;
pub mod fiscal;
pub mod keys;
pub mod kpi;
mod lifecycle;
pub mod lineage;
pub mod model;
mod orders;
pub mod outputs;
mod pack;
pub mod partition;
pub mod posting_body;
pub mod postings;
pub mod reconcile;
pub mod report;
mod report_orders;
pub mod retention;
pub mod sku_alias;
pub mod stored_decimal;
pub mod tenders_audit;
pub mod topology;
pub mod trace;
pub mod unmapped;
mod working_set;

#[cfg(test)]
mod adjustment_tests;
#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod pack_tests;
#[cfg(test)]
mod posting_tests;
#[cfg(test)]
mod reconcile_tests;
#[cfg(test)]
mod sku_alias_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod topology_tests;
#[cfg(test)]
mod trace_tests;
