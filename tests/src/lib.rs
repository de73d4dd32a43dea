//! Black-box test harness for the `tally` binary: everything here talks to real processes over
//! the wire, exactly as a user's publishers, alerting pipeline and dashboards would.
//!
//! - [`daemon`]: a Prometheus-family server (Prometheus, Alertmanager) run for one test.
//! - [`alertmanager`]: a throwaway Prometheus Alertmanager on a free port, killed on drop.
//! - [`cluster`]: a NATS cluster of three JetStream servers on loopback ports.
//! - [`nats`]: a throwaway `nats-server -js` on a free port with a temp store dir, killed on drop
//!   (the shared launcher of the `tally-traffic` crate).
//! - [`process`]: the `tally` binary ([`tally_bin`]) and a running instance ([`Tally`]) with its
//!   own config, state dir and HTTP port.
//! - [`js`]: JetStream helpers: publish JSON / MessagePack / raw payloads and await the PubAck,
//!   read every message of a stream with its headers, wait until the consumer has drained.
//! - [`model`]: an independent reference model of the day totals (docs/wire-format.md, "Input records"; docs/http-api.md) and the
//!   normalised [`DayTotals`] that both the model and the HTTP answer turn into.
//! - [`fixtures`]: builders for the contract's input records.
//! - [`prom`]: a small parser for the Prometheus text format.
//! - [`prometheus`]: a throwaway Prometheus server scraping given targets, and its query API.
//! - [`wait`]: [`wait_until`], polling with a deadline instead of sleeping.
//! - [`crash`]: output-stream invariants, posting sums and a wire tap for crash and fault tests.
//!
//! Every integration test starts its own nats-server and tally, so tests run in parallel.

pub mod alertmanager;
pub mod cluster;
pub mod crash;
pub mod daemon;
pub mod fixtures;
pub mod js;
pub mod model;
pub mod nats;
pub mod process;
pub mod prom;
pub mod prometheus;
pub mod wait;

pub use alertmanager::Alertmanager;
pub use cluster::NatsCluster;
pub use js::{Js, StoredMessage};
pub use model::{DayTotals, Model, SkuTotals};
pub use nats::NatsServer;
pub use process::{tally_bin, Tally, TallyBuilder};
pub use prometheus::Prometheus;
pub use wait::wait_until;

use std::path::{Path, PathBuf};

/// The workspace's root directory. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for every
/// test it runs), not compiled in: a test binary reused from a shared target directory was
/// perhaps built in another checkout, which may be gone.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    manifest_dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))).join("..")
}

/// The last `lines` lines of a log file, for failure messages; never fails.
pub fn tail(path: &Path, lines: usize) -> String {
    tally_traffic::process::log_tail(path, lines)
}

/// A TCP port on 127.0.0.1 that was free a moment ago, drawn at random below the kernel's
/// ephemeral range, so no outgoing connection takes it before the test's server binds it.
pub fn free_port() -> u16 {
    tally_traffic::process::free_port().expect("bind 127.0.0.1:0")
}

/// The DLQ stream of docs/wire-format.md, "The dead-letter queue".
pub const DLQ_STREAM: &str = "RETAIL_DLQ";

/// How long tests wait for tally to work through what they published.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A nats-server, a ready tally configured with `extra_toml` (see [`TallyBuilder::toml`]), and
/// a JetStream client. Bind them in this order (`let (nats, tally, js) = …`) so that, dropped in
/// reverse, tally dies before its server.
pub async fn start_all(extra_toml: &str) -> (NatsServer, Tally, Js) {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), extra_toml).await;
    let js = Js::connect(&nats.url()).await;
    (nats, tally, js)
}

/// Waits until stream `name` holds at least `count` messages, then returns them all. Panics
/// with what it found after [`DRAIN_TIMEOUT`].
pub async fn wait_for_messages(js: &Js, name: &str, count: u64) -> Vec<StoredMessage> {
    let reached = wait_until(DRAIN_TIMEOUT, move || async move { js.message_count(name).await >= count }).await;
    let messages = if js.message_count(name).await > 0 { js.messages(name).await } else { Vec::new() };
    assert!(
        reached,
        "stream {name} has {} messages after {DRAIN_TIMEOUT:?}, expected at least {count}: {:?}",
        messages.len(),
        messages.iter().map(|m| (&m.subject, m.header("Tally-Error"))).collect::<Vec<_>>()
    );
    messages
}

/// Asserts that `dlq` holds exactly one entry for input `source_seq`, with every header of
/// docs/wire-format.md, "The dead-letter queue" and the payload verbatim; returns it.
pub fn assert_dlq_entry<'a>(
    dlq: &'a [StoredMessage],
    prefix: &str,
    reason: &str,
    source_subject: &str,
    source_seq: u64,
    payload: &[u8],
) -> &'a StoredMessage {
    let seq = source_seq.to_string();
    let entries: Vec<&StoredMessage> =
        dlq.iter().filter(|m| m.header("Tally-Source-Sequence") == Some(seq.as_str())).collect();
    let summary = || {
        dlq.iter()
            .map(|m| format!("{} {:?} src#{:?}", m.subject, m.header("Tally-Error"), m.header("Tally-Source-Sequence")))
            .collect::<Vec<_>>()
    };
    assert_eq!(entries.len(), 1, "expected one DLQ entry ({reason}) for source seq {source_seq}; DLQ: {:?}", summary());
    let entry = entries[0];
    assert_eq!(entry.subject, format!("{prefix}.dlq.{reason}"), "DLQ subject for source seq {source_seq}");
    assert_eq!(entry.header("Tally-Error"), Some(reason), "Tally-Error for source seq {source_seq}");
    let detail = entry.header("Tally-Error-Detail").unwrap_or_default();
    assert!(!detail.trim().is_empty(), "Tally-Error-Detail is empty for source seq {source_seq} ({reason})");
    assert_eq!(entry.header("Tally-Source-Subject"), Some(source_subject), "Tally-Source-Subject ({reason})");
    let msg_id = format!("dlq/{source_seq}");
    assert_eq!(entry.header("Nats-Msg-Id"), Some(msg_id.as_str()), "Nats-Msg-Id ({reason})");
    assert!(
        entry.payload.as_ref() == payload,
        "DLQ payload for source seq {source_seq} ({reason}) is not verbatim:\n got {:?}\nwant {:?}",
        String::from_utf8_lossy(&entry.payload),
        String::from_utf8_lossy(payload)
    );
    entry
}
