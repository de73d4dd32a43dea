//! The `tally` processor: everything that talks to the outside world around the pure topology.
//!
//! - [`config`]: the TOML configuration with `TALLY_*` overrides, validated.
//! - [`nats`]: connecting, and creating or checking streams and the consumer.
//! - [`runner`]: the input loop: batch, apply, commit with the position, then ack.
//! - [`cluster`]: several instances sharing the partitions: membership and leases in a NATS KV
//!   bucket, partitions spread by rendezvous hashing.
//! - [`snapshot`]: checkpoints of owned partitions in the JetStream Object Store: upload,
//!   manifest, garbage collection, restore, and the input retention they need.
//! - [`partitions`]: where each partition's state lives, which consumer reads it, and every
//!   partition's state read as one.
//! - [`pipeline`]: one partition's input loop and outbox publisher, started and stopped together.
//! - [`owned`]: `tally run` as one of several instances: the partitions it owns, taken over and
//!   handed back as the cluster's leases move.
//! - [`outbox`]: publishing committed outputs, deleting them after their PubAck.
//! - [`webhook`]: delivering ERP postings over HTTP, in order per store with stores side by side,
//!   parking rejected ones on the DLQ.
//! - [`health`]: readiness of each component, for `/readyz`.
//! - [`alertmanager`]: pushing drift alerts to Prometheus Alertmanager's v2 API.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the `/v1` API.
//! - [`logging`]: text or JSON log lines on stderr (`[log]`, `RUST_LOG`).
//! - [`telemetry`]: every metric's name, description and emission.
//! - [`app`]: wiring for `tally run` (outputs, HTTP, input loop), the input loop alone for a
//!   rebuild, and `tally setup`; signal handling.
//! - [`gencli`]: the command-line face of the traffic generator (the `tally-traffic` crate),
//!   shared by `gen` and `demo`.
//! - [`demo`]: a local NATS, the generator and the processor, with a live screen and a summary.
//! - [`inspect`]: reading the state offline.
//! - [`backoff`]: how every retry loop waits before trying again.
//! - [`progress`]: progress bars (terminal) or periodic lines (logs) for long work.
//! - [`reconcile`]: reading the output streams back into a rebuilt or restored state.
//! - [`stateops`]: checkpoint, restore and rebuild of the state directory.
//! - [`dlq`]: `tally dlq list|show|replay`: reading the dead-letter queue, replaying it.
//! - [`sku_alias`]: the SKU alias bucket: created by setup, watched by run, edited by `tally sku-alias`.

pub mod alertmanager;
pub mod app;
pub mod backoff;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dlq;
pub mod gencli;
pub mod health;
pub mod http;
pub mod inspect;
pub mod logging;
pub mod memory;
pub mod nats;
pub mod outbox;
pub mod owned;
pub mod partitions;
pub mod pipeline;
pub mod progress;
pub mod reconcile;
pub mod runner;
pub mod sku_alias;
pub mod snapshot;
pub mod stateops;
pub mod telemetry;
pub mod webhook;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod test_nats;
