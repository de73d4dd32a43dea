//! The run loop: read a batch from the input consumer, apply it to the topology, commit state,
//! outbox and stream position in one write, then ack.
//!
//! The order is the guarantee (docs/operations.md, "The guarantees"): nothing is acked before it is committed, and the
//! committed position, not the broker's ack floor, decides where reading resumes. A failed
//! commit is retried in place with capped backoff, holding the batch and its acks, so the
//! processor neither loses nor re-applies anything while the disk is away.
//!
//! Commits are pipelined: while batch k is written and fsynced on a blocking thread, batch k+1
//! is applied over an overlay that reads k's writes as if they had landed. At most one batch
//! is in flight; k+1's commit starts only once k's has finished (and k is acked), so writes
//! land and acks leave in input order. If k's commit never succeeds, k+1 is never committed
//! either, and neither is acked. Messages that arrive while k commits join k+1, so that when
//! the disk sets the pace, each fsync carries more messages instead of the latency growing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tally_state::{Overlay, Store, Writes};
use tally_topologies::decode::RejectReason;
use tally_topologies::lineage::TraceContext;
use tally_topologies::topology::{self, Decoded, InputMessage, Outcome, Retail};
use tokio::sync::{watch, Notify, Semaphore};
use tracing::{debug, error, info, trace, warn, Level};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::health::{Component, Health};
use crate::partitions::Partition;
use crate::telemetry::{self, BatchTally};

/// What the loop needs, shared with the HTTP server and the outbox publisher.
pub struct Runner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// Shared with the thread that decodes a batch ahead of its application.
    pub retail: Arc<Retail>,
    pub health: Arc<Health>,
    /// Woken after each commit, so that new outputs leave at once.
    pub outbox_notify: Arc<Notify>,
    /// When the processing-time tick last ran.
    pub last_tick: std::sync::Mutex<Instant>,
    /// The NATS connection, whose state clears a stale stream error while idle.
    pub client: async_nats::Client,
    /// Whether the processing-time tick runs.
    pub tick: Tick,
    /// The partition of the input this loop reads, with its own state in `store`.
    pub partition: Partition,
    /// Permits to apply a batch, shared by every partition's loop: `input.threads` of them, so
    /// that at most that many partitions apply at once.
    pub apply_slots: Arc<Semaphore>,
    /// The epoch of this instance's lease on the partition when several instances share them;
    /// it names the consumer (docs/operations.md, "Several instances").
    pub epoch: Option<u64>,
}

/// The processing-time tick: it advances idle stores' watermarks by processing time and sends
/// interim and adjustment postings every `erp.interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Every second, as `tally run` does.
    Live,
    /// Never: a rebuild replays the stream on event time alone, so that what it computes does
    /// not depend on how fast it reads (docs/operations.md, rebuilding state).
    Never,
}

/// Waits while NATS cannot set up or open the input consumer: 200 ms doubling to 1 s.
const NATS_RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(1));
/// Waits between failed commits: 100 ms doubling to 5 s.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Whether a batch's deliveries were contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    InOrder,
    /// A delivery was missing; the batch was handled only up to it.
    Gap,
}
/// How often the processing-time tick runs (idle stores, interim postings).
const TICK_EVERY: Duration = Duration::from_secs(1);

impl Runner {
    /// Consumes until `shutdown` turns true; the batch in flight is committed and acked first.
    pub async fn run(&self, js: &jetstream::Context, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Some(consumer) = self.consumer_at_position(js, &mut shutdown).await? else { return Ok(()) };
        let mut consumer = consumer;
        self.health.set(Component::Nats, Ok(()));
        self.health.set(Component::Consumer, Ok(()));
        let mut messages = self.open_stream(&consumer, &mut shutdown).await?;
        // The consumer sequence of the next delivery. A new consumer starts at 1.
        let mut next_delivery = 1u64;
        let mut in_flight = None;
        let idle_wait = self.config.fetch_wait().min(TICK_EVERY);
        while !*shutdown.borrow() {
            let first = tokio::select! {
                next = messages.next() => next,
                _ = tokio::time::sleep(idle_wait) => {
                    // An idle stream after a reconnect yields nothing to clear its last error;
                    // a live connection is what readiness needs while there is no input.
                    match self.client.connection_state() {
                        async_nats::connection::State::Connected => self.health.set(Component::Nats, Ok(())),
                        state => self.health.set(Component::Nats, Err(format!("NATS connection {state}"))),
                    }
                    self.process(Vec::new(), None, &mut next_delivery, &mut in_flight, &mut shutdown).await?;
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let first = match first {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    self.health.set(Component::Nats, Err(err.to_string()));
                    if err.kind() == MessagesErrorKind::MissingHeartbeat {
                        // The pull request went unanswered (a consumer whose leader was still
                        // being elected, a lost connection): the stream would wait out its
                        // expiry (30 s) before asking again, so ask again now.
                        warn!(error = %err, "Input stream error; reopening it.");
                        messages = self.open_stream(&consumer, &mut shutdown).await?;
                    } else {
                        warn!(error = %err, "Input stream error; continuing.");
                    }
                    continue;
                }
                None => {
                    warn!("Input message stream ended; reopening it.");
                    messages = self.open_stream(&consumer, &mut shutdown).await?;
                    continue;
                }
            };
            self.health.set(Component::Nats, Ok(()));
            let mut batch = vec![first];
            // Take whatever has already arrived, without waiting, up to the batch bound. Outside
            // tokio's cooperative budget (128 polls), which would otherwise end every batch at
            // 128 messages whatever `batch_max` says, and multiply the commits.
            tokio::task::unconstrained(async {
                while batch.len() < self.config.input.batch_max {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(message))) => batch.push(message),
                        _ => break,
                    }
                }
            })
            .await;
            if self.process(batch, Some(&mut messages), &mut next_delivery, &mut in_flight, &mut shutdown).await?
                == Delivery::Gap
            {
                // Deliveries were lost on the way (a partition, a reconnect): acking past them
                // would drop them for good, so read again right after the committed position.
                drop(messages);
                finish(&mut in_flight).await?;
                let Some(fresh) = self.consumer_at_position(js, &mut shutdown).await? else { break };
                consumer = fresh;
                messages = self.open_stream(&consumer, &mut shutdown).await?;
                next_delivery = 1;
            }
        }
        finish(&mut in_flight).await?;
        info!("Input loop stopped.");
        Ok(())
    }

    /// (Re)creates the consumer right after the committed position, retrying until NATS
    /// answers; `None` on shutdown.
    async fn consumer_at_position(
        &self,
        js: &jetstream::Context,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<consumer::Consumer<consumer::pull::Config>>> {
        let mut backoff = Backoff::new(NATS_RETRY.0, NATS_RETRY.1);
        loop {
            let position = topology::committed_position(&Overlay::new(self.store.as_ref()))?;
            match crate::nats::consumer_at(js, &self.config, self.partition, self.epoch, position).await {
                Ok(consumer) => return Ok(Some(consumer)),
                Err(err) => {
                    self.health.set(Component::Nats, Err(format!("{err:#}")));
                    warn!(error = %format!("{err:#}"), "Cannot set up the input consumer; retrying.");
                    if backoff.wait_or_shutdown(shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn open_stream(
        &self,
        consumer: &consumer::Consumer<consumer::pull::Config>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<consumer::pull::Stream> {
        let mut backoff = Backoff::new(NATS_RETRY.0, NATS_RETRY.1);
        loop {
            match consumer
                .stream()
                .max_messages_per_batch(self.config.input.batch_max)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(stream) => return Ok(stream),
                Err(err) => {
                    self.health.set(Component::Nats, Err(err.to_string()));
                    warn!(error = %err, "Cannot open the input stream; retrying.");
                    if backoff.wait_or_shutdown(shutdown).await {
                        anyhow::bail!("shut down while waiting for NATS");
                    }
                }
            }
        }
    }

    /// Applies one batch (possibly empty: then only the tick runs), in delivery order and only
    /// up to the first gap in the consumer's delivery sequence, then hands it to a commit task
    /// that acks it once written. Messages that arrive while the batch before is still being
    /// written join this batch (from `messages`, up to `batch_max`). Returns an error only for corrupt state or a commit that
    /// never succeeded before shutdown.
    async fn process(
        &self,
        batch: Vec<jetstream::Message>,
        mut messages: Option<&mut consumer::pull::Stream>,
        next_delivery: &mut u64,
        in_flight: &mut Option<InFlight>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Delivery> {
        if in_flight.as_ref().is_some_and(|flight| flight.task.is_finished()) {
            finish(in_flight).await?;
        }
        let apply_slot = self.apply_slots.acquire().await?;
        let mut txn = match in_flight {
            Some(flight) => Overlay::over_in_flight(self.store.as_ref(), Arc::clone(&flight.writes)),
            None => Overlay::new(self.store.as_ref()),
        };
        let now = Utc::now();
        let mut applying = self.retail.batch(&mut txn, now)?;
        let mut pending = None;
        let mut delivery = Delivery::InOrder;
        let mut handled = 0;
        let mut batch = batch;
        let mut decoder = self.decoder(&batch);
        let mut index = 0;
        'apply: loop {
            while index < batch.len() {
                let message = &batch[index];
                index += 1;
                let ahead = decoder.next().await?;
                let info = match message.info() {
                    Ok(info) => info,
                    Err(err) => {
                        warn!(error = %err, subject = %message.subject, "Message without JetStream metadata; skipped.");
                        handled += 1;
                        continue;
                    }
                };
                if info.consumer_sequence != *next_delivery {
                    warn!(
                        expected = *next_delivery,
                        got = info.consumer_sequence,
                        position = applying.position(),
                        "Deliveries went missing; re-reading after the committed position."
                    );
                    delivery = Delivery::Gap;
                    break 'apply;
                }
                *next_delivery += 1;
                handled += 1;
                pending = Some(info.pending);
                let seq = info.stream_sequence;
                let position = applying.position();
                let input = InputMessage {
                    subject: self.partition.published_subject(message.subject.as_str()),
                    content_type: content_type(message),
                    payload: &message.payload,
                    stream_seq: seq,
                    trace: trace_context(message),
                };
                match applying.push(&input, ahead)? {
                    Some(applied) => self.log_outcome(&input, applied.outcome),
                    None if tracing::enabled!(Level::DEBUG) => {
                        let (id, store) = self.retail.identify(&input);
                        let trace = trace_field(&input);
                        debug!(id, store, seq, trace, position, "Already committed; skipping a redelivery.");
                    }
                    None => {}
                }
            }
            // While the batch before is still being written, what has arrived meanwhile joins
            // this one: one commit (and fsync) for more messages where the disk sets the pace.
            if !self.join_arrivals(&mut batch, messages.as_deref_mut(), in_flight).await {
                break;
            }
        }
        let tick_due =
            self.tick == Tick::Live && self.last_tick.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= TICK_EVERY;
        let result = applying.finish(if tick_due { topology::Tick::Run } else { topology::Tick::Skip })?;
        drop(apply_slot);
        let mut tally = BatchTally::default();
        for applied in result.applied.into_iter().flatten() {
            tally.record_unmapped(applied.unmapped);
            tally.record(applied.source, applied.outcome, applied.emitted);
        }
        if let Some(emitted) = result.tick {
            tally.record_emitted(emitted);
            *self.last_tick.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        let position = result.position;
        if let Some(pending) = pending {
            telemetry::consumer_pending(&self.partition, pending);
        }
        // AckAll: acking the last handled message acks it and everything before it — never
        // past a gap, whose messages must be delivered again.
        let last = batch[..handled].last().cloned();
        // The earlier batch lands (and is acked) before this one is written.
        finish(in_flight).await?;
        if txn.pending_len() == 0 {
            // Only redeliveries of committed input, or nothing at all.
            ack(last).await;
            return Ok(delivery);
        }
        let writes = Arc::new(txn.into_writes());
        let commit = Commit {
            store: Arc::clone(&self.store),
            health: Arc::clone(&self.health),
            outbox_notify: Arc::clone(&self.outbox_notify),
            writes: Arc::clone(&writes),
            partition: self.partition,
            messages: handled,
            position,
            tally,
            last,
        };
        let task = tokio::spawn(commit.run(shutdown.clone()));
        *in_flight = Some(InFlight { writes, task });
        Ok(delivery)
    }
}

impl Runner {
    /// Logs what became of one input record, with its `id`, `store` and stream sequence `seq`
    /// (docs/configuration.md#logs): dead-lettered at INFO, duplicates at DEBUG, accepted at
    /// TRACE. The id is read from the payload again only for a line that is written, so a level
    /// that is off costs nothing per message; the topology itself stays silent.
    fn log_outcome(&self, input: &InputMessage<'_>, outcome: Outcome) {
        let seq = input.stream_seq;
        let trace = trace_field(input);
        let identify = || self.retail.identify(input);
        match outcome {
            Outcome::Rejected(RejectReason::Conflict) if tracing::enabled!(Level::INFO) => {
                let (id, store) = identify();
                let reason = "conflict";
                info!(id, store, seq, trace, reason, "Conflicting record; dead-lettered.");
            }
            Outcome::Rejected(reason) if tracing::enabled!(Level::INFO) => {
                let (id, store) = identify();
                let reason = reason.as_str();
                info!(id, store, seq, trace, reason, "Record dead-lettered.");
            }
            Outcome::Duplicate if tracing::enabled!(Level::DEBUG) => {
                let (id, store) = identify();
                debug!(id, store, seq, trace, "Duplicate record; skipped.");
            }
            Outcome::Accepted if tracing::enabled!(Level::TRACE) => {
                let (id, store) = identify();
                trace!(id, store, seq, trace, "Record accepted.");
            }
            _ => {}
        }
    }
}

/// The `trace` field of log lines about a record: its `traceparent`, else its `Nats-Msg-Id`,
/// else empty (docs/configuration.md#logs).
fn trace_field<'m>(input: &InputMessage<'m>) -> &'m str {
    input.trace.traceparent.or(input.trace.msg_id).unwrap_or("")
}

/// Batches at least this large are decoded on a blocking thread, ahead of their application;
/// smaller ones (light load) are decoded in line, sparing a thread hand-off per message.
const DECODE_AHEAD_MIN: usize = 32;

impl Runner {
    /// Appends to `batch` the messages that have already arrived, up to `batch_max`, while the
    /// batch before is still committing. Returns whether it added any.
    async fn join_arrivals(
        &self,
        batch: &mut Vec<jetstream::Message>,
        messages: Option<&mut consumer::pull::Stream>,
        in_flight: &Option<InFlight>,
    ) -> bool {
        let (Some(messages), Some(flight)) = (messages, in_flight) else { return false };
        let before = batch.len();
        tokio::task::unconstrained(async {
            while batch.len() < self.config.input.batch_max && !flight.task.is_finished() {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    // Nothing more yet; an error or the end is for the input loop to see next.
                    _ => break,
                }
            }
        })
        .await;
        batch.len() > before
    }

    /// Starts decoding `batch` on another thread when it is large enough to be worth it.
    fn decoder(&self, batch: &[jetstream::Message]) -> Decoder {
        if batch.len() < DECODE_AHEAD_MIN {
            return Decoder::InLine;
        }
        let inputs: Vec<_> = batch
            .iter()
            .map(|m| {
                let subject = self.partition.published_subject(m.subject.as_str()).to_string();
                (subject, content_type(m).map(str::to_string), m.payload.clone())
            })
            .collect();
        Decoder::ahead(Arc::clone(&self.retail), inputs)
    }
}

/// A message's subject, content type and payload, as the decoding thread takes them.
/// The subject is the one the record was published on (without a partition token).
type RawInput = (String, Option<String>, bytes::Bytes);

/// Where a batch's decoded messages come from, one per message in delivery order.
///
/// Ahead: a helper thread and the applying task share the decoding, each message going to
/// whichever claims it first (the helper, in order, from the front). The applying task never
/// waits for a helper that has not got a core yet: with both cores busy (the commit, the
/// broker), that wait was 8 % of (b)'s time, 2 ms at the start of each batch; it decodes the
/// message itself instead, and waits only for one the helper is decoding at that moment.
enum Decoder {
    InLine,
    Ahead { receiver: tokio::sync::mpsc::Receiver<Decoded>, next: Arc<AtomicUsize>, count: usize, index: usize },
}

impl Decoder {
    /// Starts the helper thread on `inputs`.
    fn ahead(retail: Arc<Retail>, inputs: Vec<RawInput>) -> Decoder {
        let (decoded, receiver) = tokio::sync::mpsc::channel(inputs.len().max(1));
        let count = inputs.len();
        let next = Arc::new(AtomicUsize::new(0));
        let claims = Arc::clone(&next);
        tokio::task::spawn_blocking(move || loop {
            let index = claims.fetch_add(1, Ordering::AcqRel);
            let Some((subject, content_type, payload)) = inputs.get(index) else { break };
            // A closed channel means the batch stopped early (a gap): nothing more to do.
            if decoded.blocking_send(retail.decode(subject, content_type.as_deref(), payload)).is_err() {
                break;
            }
        });
        Decoder::Ahead { receiver, next, count, index: 0 }
    }

    /// The next message's decoding when the helper did it, `None` when it is to be done in line
    /// (by the caller).
    async fn next(&mut self) -> anyhow::Result<Option<Decoded>> {
        let Decoder::Ahead { receiver, next, count, index } = self else { return Ok(None) };
        if *index >= *count {
            // Joined the batch after its decoding started.
            return Ok(None);
        }
        let mine = *index;
        *index += 1;
        if next.compare_exchange(mine, mine + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Ok(None);
        }
        // The helper claimed it; it sends what it claimed in order, and every earlier one it
        // claimed was received already.
        match receiver.recv().await {
            Some(decoded) => Ok(Some(decoded)),
            None => anyhow::bail!("the decoding thread stopped before the end of the batch"),
        }
    }
}

fn content_type(message: &jetstream::Message) -> Option<&str> {
    message.headers.as_ref().and_then(|h| h.get("Content-Type")).map(|v| v.as_str())
}

/// The trace context of an input message's headers (docs/wire-format.md, "Trace context").
fn trace_context(message: &jetstream::Message) -> TraceContext<'_> {
    let Some(headers) = message.headers.as_ref() else { return TraceContext::default() };
    TraceContext {
        traceparent: headers.get("traceparent").map(|v| v.as_str()),
        msg_id: headers.get("Nats-Msg-Id").map(|v| v.as_str()),
    }
}

/// A batch being committed while the next one is applied.
struct InFlight {
    writes: Arc<Writes>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Waits for the batch in flight, if any, to be committed and acked.
async fn finish(in_flight: &mut Option<InFlight>) -> anyhow::Result<()> {
    match in_flight.take() {
        Some(flight) => flight.task.await?,
        None => Ok(()),
    }
}

async fn ack(last: Option<jetstream::Message>) {
    if let Some(last) = last {
        if let Err(err) = last.ack().await {
            // The commit holds; the server will redeliver and the position skips them.
            warn!(error = %err, "Ack failed; redeliveries will be skipped by position.");
        }
    }
}

/// One batch's commit and what follows it: metrics, waking the outbox, the ack.
struct Commit {
    store: Arc<dyn Store>,
    health: Arc<Health>,
    outbox_notify: Arc<Notify>,
    writes: Arc<Writes>,
    partition: Partition,
    messages: usize,
    position: u64,
    tally: BatchTally,
    last: Option<jetstream::Message>,
}

impl Commit {
    /// Writes the batch, retrying with capped backoff while the store fails, then acks it.
    async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(BACKOFF.0, BACKOFF.1);
        loop {
            let started = Instant::now();
            let store = Arc::clone(&self.store);
            let writes = Arc::clone(&self.writes);
            let result = tokio::task::spawn_blocking(move || store.write(writes.batch())).await?;
            match result {
                Ok(()) => {
                    telemetry::commit_done(
                        &self.partition,
                        started.elapsed().as_secs_f64(),
                        self.messages,
                        self.position,
                    );
                    self.health.set(Component::Store, Ok(()));
                    break;
                }
                Err(err) => {
                    telemetry::commit_failed();
                    error!(error = %err, position = self.position, "Commit failed; input stays unacked, retrying.");
                    self.health.set(Component::Store, Err(format!("commit failed: {err}")));
                    if backoff.wait_or_shutdown(&mut shutdown).await {
                        anyhow::bail!("shut down while the state store was failing; batch not committed, not acked");
                    }
                }
            }
        }
        self.tally.emit();
        self.outbox_notify.notify_one();
        ack(self.last).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tally_topologies::topology::TopologyConfig;
    use tally_traffic::{GenOptions, Traffic};

    /// Generated messages (with a few undecodable ones) as the decoding thread takes them.
    fn inputs() -> Vec<RawInput> {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 14, 0, 0).single().unwrap_or_default();
        let mut traffic = Traffic::new(GenOptions { stores: 4, skus_per_store: 50, ..GenOptions::default() }, start);
        let mut messages = Vec::new();
        for k in 0..400 {
            messages.extend(traffic.next_basket(start + chrono::Duration::seconds(k)));
        }
        messages.extend(traffic.drain_all());
        let mut inputs: Vec<RawInput> =
            messages.into_iter().map(|m| (m.subject, Some(m.content_type.to_string()), m.payload.into())).collect();
        inputs.insert(7, ("retail.pos.transaction".to_string(), None, bytes::Bytes::from_static(b"{not json")));
        inputs
    }

    // Proves the shared decoding yields, for every message in order, what decoding them one by
    // one yields, whether the helper thread or the caller decoded each, and however the two
    // interleave (the caller sometimes too slow for the helper, sometimes faster).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_decoding_yields_each_message_once_in_order() {
        let retail = Arc::new(Retail::new(TopologyConfig::default()));
        let inputs = inputs();
        assert!(inputs.len() > 600, "{} inputs", inputs.len());
        let expected: Vec<String> =
            inputs.iter().map(|(s, c, p)| format!("{:?}", retail.decode(s, c.as_deref(), p))).collect();
        for pause_every in [1, 3, 50, usize::MAX] {
            let mut decoder = Decoder::ahead(Arc::clone(&retail), inputs.clone());
            let (mut by_helper, mut in_line) = (0, 0);
            for (index, (subject, content_type, payload)) in inputs.iter().enumerate() {
                if index % pause_every == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let decoded = match decoder.next().await.unwrap() {
                    Some(decoded) => {
                        by_helper += 1;
                        decoded
                    }
                    None => {
                        in_line += 1;
                        retail.decode(subject, content_type.as_deref(), payload)
                    }
                };
                assert_eq!(format!("{decoded:?}"), expected[index], "message {index}, pausing every {pause_every}");
            }
            assert_eq!(by_helper + in_line, inputs.len());
            assert!(decoder.next().await.unwrap().is_none(), "nothing past the batch");
        }
    }
}
