//! tally's retail logic as pure code: no I/O, no tokio, no wall clock.
//!
//! - [`model`]: the typed input records of the contract (transactions, movements, day-closes).
//! - [`decode`]: bytes (JSON or MessagePack) to records, or a DLQ rejection with its reason.
//! - [`keys`]: where each record lives in the store, as order-preserving binary keys.
//! - [`aggregates`]: the stored values (store-day, sku-day totals, dedupe, outbox) and their arithmetic.
//! - [`fingerprint`]: a stable content hash, for duplicates versus conflicts.
//! - [`topology`]: one input message in, state changes and outbox entries out.
//! - [`report`]: the day's reconciliation, read back from state.

pub mod aggregates;
pub mod decode;
pub mod fingerprint;
pub mod keys;
pub mod model;
pub mod report;
pub mod topology;

#[cfg(test)]
mod topology_tests;
