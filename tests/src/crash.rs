//! What the crash and fault tests compare: the outputs tally left in its three output streams,
//! read back and checked for the properties docs/operations.md, "The guarantees" promises, and a wire tap that sees every
//! publish, also those JetStream's duplicate window drops.
//!
//! - [`Outputs`]: postings, alerts and DLQ entries of one run, with their invariants checked
//!   (one message per `Nats-Msg-Id`, gapless posting seqs, gapless alert revisions).
//! - [`PostingSums`]: the sum of the posting deltas of one store-day, and what the
//!   [`Model`](crate::Model) says it must be.
//! - [`WireTap`]: a core NATS subscription on the output subjects that records each publish
//!   attempt, to prove no id was ever sent with two different payloads.
//! - [`Tmpfs`]: a small tmpfs mounted for a test (disk-full faults), unmounted on drop.
//! - [`env_usize`], [`metric`]: knobs and Prometheus samples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::model::decimal;
use crate::{Js, Model, StoredMessage, Tally};

pub const ERP_STREAM: &str = "RETAIL_ERP";
pub const ALERTS_STREAM: &str = "RETAIL_ALERTS";

/// An environment variable as a number, or `default` when unset; panics on garbage so that a
/// mistyped flag does not silently run the short version.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// The sum of the samples of metric `name` (all label sets) on tally's `/metrics`, or `None`
/// when tally does not answer or does not export it yet.
pub async fn metric(tally: &Tally, name: &str) -> Option<f64> {
    let url = format!("{}/metrics", tally.http_base());
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    let samples = crate::prom::parse(&text);
    let found = crate::prom::samples(&samples, name);
    if found.is_empty() {
        None
    } else {
        Some(found.iter().map(|s| s.value).sum())
    }
}

/// The sums of all postings of one store-day, in the contract's shape (docs/wire-format.md, "ERP posting").
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PostingSums {
    pub transactions: i64,
    pub net: Decimal,
    pub tax: Decimal,
    pub tenders: BTreeMap<String, Decimal>,
    /// sku → (qty, gross, discount, net, tax)
    pub lines: BTreeMap<String, [Decimal; 5]>,
}

impl PostingSums {
    pub fn add(&mut self, posting: &Value) {
        self.transactions += posting["control"]["transactions"].as_i64().expect("control.transactions");
        self.net += dec(&posting["control"]["net"]);
        self.tax += dec(&posting["control"]["tax"]);
        for tender in posting["tenders"].as_array().expect("tenders") {
            *self.tenders.entry(tender["type"].as_str().expect("tender type").into()).or_default() +=
                dec(&tender["amount"]);
        }
        for line in posting["lines"].as_array().expect("lines") {
            let entry = self.lines.entry(line["sku"].as_str().expect("line sku").into()).or_default();
            for (i, field) in ["qty", "gross", "discount", "net", "tax"].iter().enumerate() {
                entry[i] += dec(&line[*field]);
            }
        }
    }

    /// Drops entries that sum to zero: a sku or tender voided away may or may not appear.
    pub fn normalized(mut self) -> PostingSums {
        self.tenders.retain(|_, v| !v.is_zero());
        self.lines.retain(|_, v| v.iter().any(|x| !x.is_zero()));
        self
    }

    /// What the model says the postings of a store-day must add up to.
    pub fn expected(model: &Model, store: &str, day: &str) -> PostingSums {
        let totals = model.day(store, day);
        let lines = totals
            .skus
            .iter()
            .map(|(sku, t)| (sku.clone(), [t.sold_units - t.returned_units, t.gross, t.discount, t.net, t.tax]))
            .collect();
        PostingSums {
            transactions: totals.transactions,
            net: totals.net,
            tax: totals.tax,
            tenders: totals.tenders,
            lines,
        }
        .normalized()
    }
}

fn dec(value: &Value) -> Decimal {
    decimal(value).unwrap_or_else(|| panic!("{value} is not a decimal"))
}

/// The drift figures of an alert that must not depend on timing: everything but `revision`,
/// `over_since` and `evaluated_at` (those follow processing time when a store idles).
pub fn alert_figures(alert: &Value) -> Value {
    let mut figures = alert.clone();
    if let Some(map) = figures.as_object_mut() {
        for volatile in ["revision", "over_since", "evaluated_at"] {
            map.remove(volatile);
        }
    }
    figures
}

/// Every output of one run, read back from the output streams and checked for the invariants
/// that hold whatever happened during the run.
#[derive(Debug, Default)]
pub struct Outputs {
    /// (store, business_day) → postings in seq order.
    pub postings: BTreeMap<(String, String), Vec<Value>>,
    /// alert id → every revision, in revision order.
    pub alerts: BTreeMap<String, Vec<Value>>,
    /// source stream sequence → (reason, payload).
    pub dlq: BTreeMap<u64, (String, Vec<u8>)>,
}

impl Outputs {
    /// Reads RETAIL_ERP, RETAIL_ALERTS and RETAIL_DLQ and asserts, per stream, that no
    /// `Nats-Msg-Id` occurs twice; per store-day, that posting seqs run 1, 2, … without gaps and
    /// ids are `<store>/<day>/<seq:04>`; per alert, that revisions run 1, 2, …; per DLQ entry,
    /// that it is the only one for its source sequence.
    pub async fn read(js: &Js) -> Outputs {
        let mut outputs = Outputs::default();
        let erp = read_unique(js, ERP_STREAM).await;
        for (id, message) in &erp {
            let body: Value = serde_json::from_slice(&message.payload).expect("postings are JSON");
            assert_eq!(body["id"].as_str(), Some(id.as_str()), "Nats-Msg-Id must be the posting id");
            // Inventory adjustment postings are numbered per store and period, not per day
            // (tests/tests/inventory_adjustments.rs checks them).
            if body["kind"] == "inventory_adjustment" {
                continue;
            }
            let key = (body["store"].as_str().unwrap().to_string(), body["business_day"].as_str().unwrap().to_string());
            outputs.postings.entry(key).or_default().push(body);
        }
        for ((store, day), postings) in outputs.postings.iter_mut() {
            postings.sort_by_key(|p| p["seq"].as_u64().expect("posting seq"));
            for (i, posting) in postings.iter().enumerate() {
                let seq = i as u64 + 1;
                assert_eq!(posting["seq"].as_u64(), Some(seq), "{store}/{day}: posting seqs must be gapless from 1");
                assert_eq!(posting["id"].as_str(), Some(format!("{store}/{day}/{seq:04}").as_str()));
            }
        }
        let alerts = read_unique(js, ALERTS_STREAM).await;
        for (msg_id, message) in &alerts {
            let body: Value = serde_json::from_slice(&message.payload).expect("alerts are JSON");
            let id = body["id"].as_str().expect("alert id").to_string();
            assert_eq!(msg_id, &format!("{id}/{}", body["revision"]), "alert Nats-Msg-Id is <id>/<revision>");
            outputs.alerts.entry(id).or_default().push(body);
        }
        for (id, revisions) in outputs.alerts.iter_mut() {
            revisions.sort_by_key(|a| a["revision"].as_u64().expect("alert revision"));
            for (i, alert) in revisions.iter().enumerate() {
                assert_eq!(
                    alert["revision"].as_u64(),
                    Some(i as u64 + 1),
                    "alert {id}: revisions must be gapless from 1"
                );
            }
        }
        for (msg_id, message) in read_unique(js, crate::DLQ_STREAM).await {
            let seq: u64 = message
                .header("Tally-Source-Sequence")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("DLQ entry {msg_id} without a Tally-Source-Sequence"));
            assert_eq!(msg_id, format!("dlq/{seq}"), "DLQ Nats-Msg-Id is dlq/<source seq>");
            let reason = message.header("Tally-Error").unwrap_or_default().to_string();
            let previous = outputs.dlq.insert(seq, (reason, message.payload.to_vec()));
            assert!(previous.is_none(), "two DLQ entries for source sequence {seq}");
        }
        outputs
    }

    /// The latest revision of each alert whose latest revision is `final`: id → figures.
    pub fn final_alerts(&self) -> BTreeMap<String, Value> {
        self.alerts
            .iter()
            .filter_map(|(id, revisions)| revisions.last().map(|last| (id, last)))
            .filter(|(_, last)| last["state"] == "final")
            .map(|(id, last)| (id.clone(), alert_figures(last)))
            .collect()
    }

    /// The sums of the postings of each store-day.
    pub fn posting_sums(&self) -> BTreeMap<(String, String), PostingSums> {
        self.postings
            .iter()
            .map(|(key, postings)| {
                let mut sums = PostingSums::default();
                postings.iter().for_each(|p| sums.add(p));
                (key.clone(), sums.normalized())
            })
            .collect()
    }

    /// The kinds of the postings of a store-day, in seq order.
    pub fn kinds(&self, store: &str, day: &str) -> Vec<String> {
        self.postings
            .get(&(store.to_string(), day.to_string()))
            .map(|ps| ps.iter().map(|p| p["kind"].as_str().unwrap_or("?").to_string()).collect())
            .unwrap_or_default()
    }

    /// The final posting of a store-day, if sent.
    pub fn final_posting(&self, store: &str, day: &str) -> Option<&Value> {
        self.postings.get(&(store.to_string(), day.to_string()))?.iter().find(|p| p["kind"] == "final")
    }
}

/// Every message of `stream` by `Nats-Msg-Id`; panics when an id occurs twice or is missing.
async fn read_unique(js: &Js, stream: &str) -> BTreeMap<String, StoredMessage> {
    let mut by_id = BTreeMap::new();
    if js.message_count(stream).await == 0 {
        return by_id;
    }
    for message in js.messages(stream).await {
        let id = message
            .header("Nats-Msg-Id")
            .unwrap_or_else(|| panic!("a message in {stream} ({}) has no Nats-Msg-Id", message.subject))
            .to_string();
        if let Some(first) = by_id.get(&id) {
            let first: &StoredMessage = first;
            panic!(
                "{stream} holds two messages with Nats-Msg-Id {id} (seqs {} and {}; same bytes: {})",
                first.sequence,
                message.sequence,
                first.payload == message.payload
            );
        }
        by_id.insert(id, message);
    }
    by_id
}

/// Whether tally has sent everything its state says it sent: for each store-day the postings
/// stream holds `postings.last_seq` postings and the day is final, the alerts stream holds every
/// revision up to the latest one `/v1/alerts` lists, and the DLQ holds `dlq_expected` entries.
/// Counts only, so it is cheap enough to poll; [`Outputs::read`] checks ids afterwards.
pub async fn all_sent(tally: &Tally, js: &Js, store_days: &[(String, String)], dlq_expected: u64) -> bool {
    let mut postings = 0u64;
    for (store, day) in store_days {
        let Ok((200, body)) = tally.try_http_get(&format!("/v1/stores/{store}/days/{day}")).await else { return false };
        if body["postings"]["final"] != Value::Bool(true) {
            return false;
        }
        postings += body["postings"]["last_seq"].as_u64().unwrap_or(0);
    }
    let Ok((200, alerts)) = tally.try_http_get("/v1/alerts").await else { return false };
    let revisions: u64 =
        alerts["alerts"].as_array().map(|a| a.iter().filter_map(|x| x["revision"].as_u64()).sum()).unwrap_or(0);
    js.message_count(ERP_STREAM).await == postings
        && js.message_count(ALERTS_STREAM).await == revisions
        && js.message_count(crate::DLQ_STREAM).await == dlq_expected
}

/// One publish seen on the wire.
#[derive(Debug, Clone)]
pub struct WirePublish {
    pub subject: String,
    pub msg_id: String,
    pub payload: Vec<u8>,
}

/// What [`WireTap::check_against_streams`] counted.
#[derive(Debug, Default)]
pub struct WireCheck {
    pub publishes: usize,
    /// Publishes of an id already seen on the wire.
    pub resends: usize,
    /// Publishes, before the stored one, of an id with other bytes than the stream holds.
    pub never_stored: usize,
    /// The ids of those publishes.
    pub never_stored_ids: Vec<String>,
}

/// A core NATS subscription on every output subject. It sees each publish attempt, including
/// re-sends after a crash that JetStream's duplicate window then drops, so it can prove that no
/// id was ever sent with different bytes.
pub struct WireTap {
    seen: Arc<Mutex<Vec<WirePublish>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WireTap {
    /// Subscribes to `<prefix>.erp.postings.*`, `<prefix>.alerts.drift.*` and `<prefix>.dlq.*`
    /// and waits until the server has the subscriptions.
    pub async fn start(js: &Js, prefix: &str) -> WireTap {
        let seen: Arc<Mutex<Vec<WirePublish>>> = Arc::default();
        let mut subs = Vec::new();
        for pattern in ["erp.postings.*", "alerts.drift.*", "dlq.*"] {
            let subject = format!("{prefix}.{pattern}");
            subs.push(
                js.client.subscribe(subject.clone()).await.unwrap_or_else(|e| panic!("subscribe {subject}: {e}")),
            );
        }
        js.client.flush().await.expect("flush the subscriptions");
        let mut all = futures::stream::select_all(subs);
        let sink = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Some(message) = all.next().await {
                let msg_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                sink.lock().unwrap().push(WirePublish {
                    subject: message.subject.to_string(),
                    msg_id,
                    payload: message.payload.to_vec(),
                });
            }
        });
        WireTap { seen, task }
    }

    /// Asserts that every id was always sent with the same bytes; returns (publishes, re-sends
    /// of an id already sent).
    pub fn check(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let mut first: HashMap<&str, &WirePublish> = HashMap::new();
        let mut resends = 0;
        for publish in seen.iter() {
            assert!(!publish.msg_id.is_empty(), "an output on {} was published without Nats-Msg-Id", publish.subject);
            match first.get(publish.msg_id.as_str()) {
                None => {
                    first.insert(&publish.msg_id, publish);
                }
                Some(earlier) => {
                    resends += 1;
                    assert!(
                        earlier.payload == publish.payload && earlier.subject == publish.subject,
                        "id {} was published twice with different content:\n first {} {}\n later {} {}",
                        publish.msg_id,
                        earlier.subject,
                        String::from_utf8_lossy(&earlier.payload),
                        publish.subject,
                        String::from_utf8_lossy(&publish.payload)
                    );
                }
            }
        }
        (seen.len(), resends)
    }

    /// The same check where NATS servers fail: a publish that JetStream never stored (the
    /// server it went through died, or the stream's leader moved, before the stream had it) was
    /// still delivered to this core subscription, and the instance that takes the partition over
    /// cannot know of it, so it may send that id later with other content. What consumers read
    /// is the stream (the ERP webhook reads `RETAIL_ERP`): asserts that for each id every
    /// publish from the first one with the stored bytes on has those bytes, so that no stored
    /// output was ever sent again with other content. Earlier publishes of an id with other
    /// bytes than the stored ones are counted as never stored; an id sent with other bytes and
    /// stored under none of them fails.
    pub async fn check_against_streams(&self, js: &Js) -> WireCheck {
        let mut stored = BTreeMap::new();
        for stream in [ERP_STREAM, ALERTS_STREAM, crate::DLQ_STREAM] {
            stored.extend(read_unique(js, stream).await);
        }
        let seen = self.seen.lock().unwrap();
        let mut check = WireCheck { publishes: seen.len(), ..WireCheck::default() };
        let mut by_id: BTreeMap<&str, Vec<&WirePublish>> = BTreeMap::new();
        for publish in seen.iter() {
            assert!(!publish.msg_id.is_empty(), "an output on {} was published without Nats-Msg-Id", publish.subject);
            by_id.entry(publish.msg_id.as_str()).or_default().push(publish);
        }
        for (id, publishes) in by_id {
            check.resends += publishes.len() - 1;
            if publishes.iter().all(|p| p.payload == publishes[0].payload) {
                continue;
            }
            let kept = stored.get(id).unwrap_or_else(|| {
                panic!("id {id} was published with {} different contents and no stream holds it", publishes.len())
            });
            let first_stored = publishes.iter().position(|p| p.payload == kept.payload).unwrap_or_else(|| {
                panic!(
                    "id {id} was published with different contents, none of them the stored one:\n stored {}",
                    String::from_utf8_lossy(&kept.payload)
                )
            });
            for later in &publishes[first_stored..] {
                assert!(
                    later.payload == kept.payload && later.subject == kept.subject,
                    "id {id} was stored, then published again with different content:\n stored {} {}\n later {} {}",
                    kept.subject,
                    String::from_utf8_lossy(&kept.payload),
                    later.subject,
                    String::from_utf8_lossy(&later.payload)
                );
            }
            check.never_stored += first_stored;
            check.never_stored_ids.push(id.to_string());
        }
        check
    }

    /// Distinct ids seen so far.
    pub fn distinct_ids(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().iter().map(|p| p.msg_id.clone()).collect()
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tmpfs of a given size mounted on a fresh temp dir (needs root), lazily unmounted on drop.
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. "32m"); `Err` with the reason
    /// when this machine does not allow it (not root, no CAP_SYS_ADMIN).
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new().prefix("tally-test-tmpfs-").tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("mounted until dropped").path()
    }

    /// Changes the size (`mount -o remount,size=…`); panics when it cannot.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount to {size} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Fills the remaining space with a file; returns its path and size in bytes.
    pub fn fill(&self) -> (PathBuf, u64) {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        // Smaller writes take the last partial pages.
        loop {
            match file.write(&chunk[..512]) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        let _ = file.flush();
        (path, written)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // Lazy: a tally that still has files open there must not keep the mount alive.
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
            let _ = dir.close();
        }
    }
}

/// True when `consumer` (every partition's) has been delivered every message of `stream` and
/// has nothing unacked: [`Js::consumer_caught_up`].
pub async fn consumer_caught_up(js: &Js, stream: &str, consumer: &str) -> bool {
    js.consumer_caught_up(stream, consumer).await
}

/// SIGKILLs the nats-server process that `nats` started (found by its port and store dir in
/// `/proc`), as a server crash would: no flush, no goodbye to clients. Follow with
/// [`NatsServer::restart`](crate::NatsServer::restart), which reaps it and starts it again on
/// the same port and store. Panics when the process is not found.
pub fn sigkill_nats_server(nats: &crate::NatsServer) {
    let port = nats.port().to_string();
    let store = nats.store_dir().display().to_string();
    let mut killed = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with("nats-server"))
            && args.windows(2).any(|w| w[0] == "-p" && w[1] == port)
            && args.windows(2).any(|w| w[0] == "-sd" && w[1] == store);
        if is_ours {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is the nats-server this
            // test started, identified by its own port and store dir.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed.push(pid);
        }
    }
    assert!(!killed.is_empty(), "no nats-server process with -p {port} -sd {store} found");
}

/// A TCP proxy in front of a nats-server that can black-hole the network: while partitioned it
/// keeps connections open but drops every byte both ways, as a broken network path does, so
/// that messages the server delivers never arrive; healing closes those connections, and the
/// client reconnects through the proxy.
pub struct Partition {
    port: u16,
    state: Arc<PartitionState>,
    accept: tokio::task::JoinHandle<()>,
}

struct PartitionState {
    upstream: u16,
    partitioned: std::sync::atomic::AtomicBool,
    pumps: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Partition {
    /// Starts the proxy on a free port, forwarding to `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(PartitionState {
            upstream,
            partitioned: std::sync::atomic::AtomicBool::new(false),
            pumps: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", shared.upstream)).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(pump(client_read, server_write, Arc::clone(&shared)));
                let down = tokio::spawn(pump(server_read, client_write, Arc::clone(&shared)));
                shared.pumps.lock().unwrap().extend([up.abort_handle(), down.abort_handle()]);
            }
        });
        Partition { port, state, accept }
    }

    /// `nats://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// From now on every byte is dropped, both ways; connections stay open.
    pub fn cut(&self) {
        self.state.partitioned.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every connection (dropping what was in flight) and forwards again.
    pub fn heal(&self) {
        for pump in self.state.pumps.lock().unwrap().drain(..) {
            pump.abort();
        }
        self.state.partitioned.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.accept.abort();
        for pump in self.state.pumps.lock().unwrap().drain(..) {
            pump.abort();
        }
    }
}

/// Copies `from` to `to`, dropping the bytes while partitioned.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<PartitionState>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.partitioned.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
