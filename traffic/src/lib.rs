//! tally's traffic generator and local nats-server launcher, shared by the `tally` binary
//! (`tally gen`, `tally demo`), the benchmark and the integration tests. It knows the wire
//! format of the input records (docs/wire-format.md) but nothing of the processor.
//!
//! - `options`: what to generate ([`GenOptions`]) and what was generated ([`GenStats`]).
//! - `catalog`: the chain's stores (ids, time zones, opening hours) and their SKUs.
//! - `basket`: one basket's POS transaction and the inventory movements it causes.
//! - `close`: the POS's day close and the totals it reports.
//! - `wire`: JSON and MessagePack encoding, including the malformed variants.
//! - [`traffic`]: the pure, seeded core that turns event times into wire messages.
//! - [`publish`]: the async shell that paces the core and publishes to JetStream.
//! - [`localnats`]: a throwaway JetStream nats-server on a free port, killed on drop.
//! - [`process`]: free ports, graceful stops and log tails for child processes.

mod basket;
mod catalog;
mod close;
pub mod localnats;
mod options;
pub mod process;
pub mod publish;
pub mod traffic;
mod wire;

#[cfg(test)]
mod tests;

pub use catalog::{store_id, store_ids, store_timezone};
pub use localnats::{LaunchError, LocalNats};
pub use options::{GenOptions, GenStats};
pub use publish::{run, RunError, RunOptions};
pub use traffic::Traffic;
pub use wire::{Malformed, WireMessage, CONTENT_JSON, CONTENT_MSGPACK};
