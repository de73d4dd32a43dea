//! The realistic traffic generator behind `tally gen` and `tally demo`.
//!
//! - `traffic`: the pure, seeded core that turns event times into wire messages.
//! - `publish`: the async shell that paces the core and publishes to JetStream.
//! - `catalog`, `basket`, `close`, `wire`: stores and SKUs, basket contents and records, the
//!   POS's day close, and encoding (including the malformed variants).

mod basket;
mod catalog;
mod close;
pub mod publish;
pub mod traffic;
mod wire;

#[cfg(test)]
mod tests;

pub use catalog::{store_id, store_ids, store_timezone};
pub use publish::{run, RunOptions};
pub use traffic::{GenOptions, GenStats, Traffic};
pub use wire::{Malformed, WireMessage, CONTENT_JSON, CONTENT_MSGPACK};
