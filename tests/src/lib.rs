//! Black-box test harness for the `tally` binary: everything here talks to real processes over
//! the wire, exactly as a user's publishers, alerting pipeline and dashboards would.
//!
//! - [`nats`]: a throwaway `nats-server -js` on a free port with a temp store dir, killed on drop.
//! - [`process`]: the `tally` binary ([`tally_bin`]) and a running instance ([`Tally`]) with its
//!   own config, state dir and HTTP port.
//! - [`js`]: JetStream helpers: publish JSON / MessagePack / raw payloads and await the PubAck,
//!   read every message of a stream with its headers, wait until the consumer has drained.
//! - [`model`]: an independent reference model of the day totals (CONTRACT §3, §8) and the
//!   normalised [`DayTotals`] that both the model and the HTTP answer turn into.
//! - [`fixtures`]: builders for the contract's input records.
//! - [`prom`]: a small parser for the Prometheus text format.
//! - [`wait`]: [`wait_until`], polling with a deadline instead of sleeping.
//!
//! Every integration test starts its own nats-server and tally, so tests run in parallel.

pub mod fixtures;
pub mod js;
pub mod model;
pub mod nats;
pub mod process;
pub mod prom;
pub mod wait;

pub use js::{Js, StoredMessage};
pub use model::{DayTotals, Model, SkuTotals};
pub use nats::NatsServer;
pub use process::{tally_bin, Tally, TallyBuilder};
pub use wait::wait_until;

use std::path::Path;

/// The last `lines` lines of a log file, for failure messages; never fails.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. The OS hands out ephemeral ports in
/// rotation, so two tests asking at the same time get different ones.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr of a bound listener").port()
}
