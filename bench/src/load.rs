//! Input for the benchmark, from tally's own realistic generator: a preload of exactly N
//! messages published as fast as JetStream acknowledges them, and a paced run at a fixed rate
//! that remembers when each message and each POS transaction was published.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use tally_traffic::{Traffic, WireMessage};

/// PubAcks awaited together at most while preloading; enough to keep the server busy, few
/// enough that the client's outgoing buffer stays bounded.
const PRELOAD_IN_FLIGHT_MAX: usize = 4096;
/// The same for the paced run, where the window rarely fills.
const PACED_IN_FLIGHT_MAX: usize = 1024;
/// Messages per basket in the generator's default mix (transaction, its movements, the odd
/// unrelated movement, void or re-send), to size the preload's event-time span.
const MESSAGES_PER_BASKET: f64 = 2.1;

/// What the published messages were.
#[derive(Debug, Default, Clone)]
pub struct Mix {
    pub messages: u64,
    pub pos: u64,
    pub inventory: u64,
    pub msgpack: u64,
    pub payload_bytes: u64,
}

impl Mix {
    fn note(&mut self, msg: &WireMessage) {
        self.messages += 1;
        if msg.subject.contains(".pos.") {
            self.pos += 1;
        } else {
            self.inventory += 1;
        }
        self.msgpack += u64::from(msg.is_msgpack());
        self.payload_bytes += msg.payload.len() as u64;
    }

    pub fn describe(&self) -> String {
        let share = |n: u64| 100.0 * n as f64 / self.messages.max(1) as f64;
        format!(
            "{:.0} % POS, {:.0} % inventory, {:.0} % MessagePack, mean payload {:.0} bytes",
            share(self.pos),
            share(self.inventory),
            share(self.msgpack),
            self.payload_bytes as f64 / self.messages.max(1) as f64
        )
    }
}

type AckFuture = <PublishAckFuture as IntoFuture>::IntoFuture;

/// Publishes with a bounded window of PubAcks in flight; remembers when each message left and
/// the stream sequence JetStream gave it.
struct Window<'a> {
    js: &'a Context,
    in_flight_max: usize,
    /// (publish instant, store token of the subject, PubAck to come), in publish order.
    pending: VecDeque<(Instant, String, AckFuture)>,
    acked: Vec<Published>,
    keep_acked: bool,
    last_seq: u64,
}

impl<'a> Window<'a> {
    fn new(js: &'a Context, in_flight_max: usize, keep_acked: bool) -> Self {
        Window { js, in_flight_max, pending: VecDeque::new(), acked: Vec::new(), keep_acked, last_seq: 0 }
    }

    async fn send(&mut self, msg: WireMessage) -> anyhow::Result<Instant> {
        if self.pending.len() >= self.in_flight_max {
            self.settle_one().await?;
        }
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", msg.content_type);
        let store = store_token(&msg.subject).to_string();
        let sent_at = Instant::now();
        let ack = self
            .js
            .publish_with_headers(msg.subject, headers, msg.payload.into())
            .await
            .context("publishing an input message")?;
        self.pending.push_back((sent_at, store, ack.into_future()));
        Ok(sent_at)
    }

    fn record(&mut self, seq: u64, sent: Instant, store: String) {
        self.last_seq = self.last_seq.max(seq);
        if self.keep_acked {
            self.acked.push(Published { seq, sent, store });
        }
    }

    async fn settle_one(&mut self) -> anyhow::Result<()> {
        if let Some((sent_at, store, ack)) = self.pending.pop_front() {
            let ack = ack.await.context("waiting for a PubAck")?;
            self.record(ack.sequence, sent_at, store);
        }
        Ok(())
    }

    /// Takes the PubAcks that already arrived, without waiting.
    fn reap(&mut self) -> anyhow::Result<()> {
        while let Some((_, _, front)) = self.pending.front_mut() {
            let Some(result) = front.as_mut().now_or_never() else { break };
            let (sent_at, store, _) = self.pending.pop_front().expect("the front was just polled");
            self.record(result.context("waiting for a PubAck")?.sequence, sent_at, store);
        }
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }
}

/// A finished preload.
pub struct Preloaded {
    pub mix: Mix,
    pub last_seq: u64,
    pub elapsed: Duration,
}

/// Publishes exactly `n` messages of `traffic`, event time advancing `1 / event_rate` seconds
/// per basket from `start`. Lagged movements come out when event time reaches them, as in a
/// live run; those still queued after the n-th message are not sent.
pub async fn preload(
    js: &Context,
    traffic: &mut Traffic,
    start: DateTime<Utc>,
    event_rate: f64,
    n: u64,
) -> anyhow::Result<Preloaded> {
    let started = Instant::now();
    let step = chrono::Duration::microseconds((1e6 / event_rate).round() as i64);
    let mut window = Window::new(js, PRELOAD_IN_FLIGHT_MAX, false);
    let mut mix = Mix::default();
    let mut buffer = VecDeque::new();
    let mut basket: i32 = 0;
    while mix.messages < n {
        let Some(msg) = buffer.pop_front() else {
            let at = start + step * basket;
            buffer.extend(traffic.due(at));
            buffer.extend(traffic.next_basket(at));
            basket += 1;
            continue;
        };
        mix.note(&msg);
        window.send(msg).await?;
    }
    window.finish().await?;
    Ok(Preloaded { mix, last_seq: window.last_seq, elapsed: started.elapsed() })
}

/// The event-time span a preload of `n` messages covers at `event_rate` baskets per second.
pub fn preload_span(n: u64, event_rate: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((n as f64 / MESSAGES_PER_BASKET / event_rate * 1000.0) as i64)
}

/// One message of a paced run: its stream sequence, when it left, and the store token of its
/// subject, which says the partition that commits it (`partition::of_store`).
pub struct Published {
    pub seq: u64,
    pub sent: Instant,
    pub store: String,
}

/// The store token of an input subject (`<prefix>.<kind>.<store>`): what the stream's
/// partition transform hashes.
pub fn store_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or_default()
}

/// A finished paced run.
pub struct Paced {
    pub mix: Mix,
    /// Every message, in publish order.
    pub published: Vec<Published>,
    /// POS transaction id → publish instant.
    pub transactions: HashMap<String, Instant>,
    pub last_seq: u64,
    pub elapsed: Duration,
}

#[derive(serde::Deserialize)]
struct Head {
    id: String,
}

fn record_id(msg: &WireMessage) -> Option<String> {
    let head: Head = if msg.is_msgpack() {
        rmp_serde::from_slice(&msg.payload).ok()?
    } else {
        serde_json::from_slice(&msg.payload).ok()?
    };
    Some(head.id)
}

/// Publishes `traffic` at `rate` messages per second for `duration`, event time = wall time.
pub async fn publish_paced(
    js: &Context,
    traffic: &mut Traffic,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Paced> {
    let started = Instant::now();
    let mut window = Window::new(js, PACED_IN_FLIGHT_MAX, true);
    let mut mix = Mix::default();
    let mut transactions = HashMap::new();
    let mut buffer = VecDeque::new();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let target = (elapsed.as_secs_f64() * rate) as u64;
        while mix.messages < target {
            let Some(msg) = buffer.pop_front() else {
                let at = Utc::now();
                buffer.extend(traffic.due(at));
                buffer.extend(traffic.next_basket(at));
                continue;
            };
            let id = if msg.subject.contains(".pos.") { record_id(&msg) } else { None };
            mix.note(&msg);
            let sent_at = window.send(msg).await?;
            if let Some(id) = id {
                transactions.insert(id, sent_at);
            }
        }
        window.reap()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    window.finish().await?;
    Ok(Paced { mix, published: window.acked, transactions, last_seq: window.last_seq, elapsed: started.elapsed() })
}
