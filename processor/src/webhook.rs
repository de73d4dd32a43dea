//! The ERP webhook (docs/configuration.md, "ERP webhook"): POSTs every posting of `RETAIL_ERP`
//! to the configured URL, in stream order per store with stores side by side, and parks the
//! postings the ERP rejects for good on `P.dlq.erp_rejected` (docs/wire-format.md).
//!
//! The stream is the durable queue. The webhook reads it through its own durable pull consumer,
//! whose `max_ack_pending` is the window of postings held at once over all stores, and acks each
//! posting once the ERP answered 2xx or the posting sits on the DLQ, out of order across stores;
//! tally's state holds nothing of it. [`schedule`] decides what goes next, [`erp`] does one POST;
//! this module does the I/O around them:
//! - every held posting is progress-acked three times per ack wait, so that the server never
//!   redelivers one held behind a failing posting of its store;
//! - at start nothing goes out until the postings the last run left unacked are back (the
//!   schedule's gate); at shutdown every held posting is handed back (nak), in stream order;
//! - a held posting keeps its bytes while they fit [`PAYLOAD_BYTES_MAX`]; the others are read
//!   again from the stream by sequence when their turn comes;
//! - a store that crowds the window moves to a consumer of its own until it has caught up.
//!
//! A posting may reach the ERP more than once (a crash between the 2xx and the ack); its
//! `Idempotency-Key` lets the ERP book it once. It must never skip a posting, never send a
//! store's posting before that store's earlier ones, and never log the auth header.

pub mod erp;
mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::{Config, WebhookConfig};
use crate::health::{Component, Health};
use crate::nats::{self, ERP_STREAM, WEBHOOK_ACK_WAIT, WEBHOOK_WINDOW};
use crate::telemetry;
use erp::{Attempt, Erp, Posting};
use schedule::{Fetched, Job, Offered, Schedule, Source, BACKOFF_MAX, BACKOFF_MIN};

type PullConsumer = consumer::Consumer<consumer::pull::Config>;

/// Bytes of held postings kept in memory; postings beyond are read again when due.
const PAYLOAD_BYTES_MAX: usize = 16 << 20;
/// Postings asked for per pull request; the window bounds what the server hands out.
const PULL_BATCH: usize = 256;
/// How long one pull request waits for postings before the client asks again.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Beyond one ack wait, how long the gate waits for the postings the last run held.
const GATE_MARGIN: Duration = Duration::from_secs(5);
/// How long after a failed move to its own consumer a store may be moved again.
const MOVE_AGAIN: Duration = Duration::from_secs(30);
/// The largest `erp.webhook.concurrency` fits the window many times over.
const _: () = assert!(crate::config::WEBHOOK_CONCURRENCY_MAX * 4 <= WEBHOOK_WINDOW);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("erp.webhook.auth_header must read `Name: value` with a valid header name and value")]
    AuthHeader,
    #[error("erp.webhook.timeout: {0}")]
    Timeout(String),
    #[error("cannot build the HTTP client for the ERP webhook")]
    Client(#[source] reqwest::Error),
}

/// A posting the webhook holds: its JetStream delivery (to ack it) and whether its bytes are
/// kept; without them the payload is empty and read again from the stream.
#[derive(Clone)]
struct Held {
    message: jetstream::Message,
    kept: bool,
}

/// What a delivery task came to.
enum Delivery {
    Delivered,
    Parked {
        status: u16,
        detail: String,
    },
    /// The stream's limits removed the posting before it could be sent.
    Gone,
    /// Send it again later.
    Retry {
        reason: String,
        attempted: bool,
    },
}

/// What a background task reports to the loop.
enum Event {
    /// `acked`: the server confirmed the ack of a delivered or parked posting.
    Delivered {
        store: String,
        seq: u64,
        posting_id: String,
        delivery: Delivery,
        acked: bool,
    },
    Fetched {
        store: String,
        fetch: Fetch,
    },
    Moved {
        store: String,
        from: u64,
        /// Boxed: a consumer is several hundred bytes, the other events a few words.
        result: Result<Box<PullConsumer>, String>,
    },
    Deleted {
        name: String,
        result: Result<(), String>,
    },
}

enum Fetch {
    /// Boxed: a message is ~400 bytes, the other variants a few words.
    Posting(Box<jetstream::Message>),
    Nothing(Option<String>),
    Drained {
        upto: u64,
    },
}

/// What the delivery tasks share.
struct Shared {
    js: jetstream::Context,
    stream: stream::Stream,
    erp: Erp,
    prefix: String,
}

pub struct Webhook {
    js: jetstream::Context,
    health: Arc<Health>,
    erp: Erp,
    config: Config,
    webhook: WebhookConfig,
}

impl Webhook {
    /// The webhook of `config.erp.webhook`, or `None` when none is configured.
    pub fn from_config(
        config: &Config,
        js: jetstream::Context,
        health: Arc<Health>,
    ) -> Result<Option<Webhook>, WebhookError> {
        let Some(webhook) = &config.erp.webhook else { return Ok(None) };
        let erp = Erp::from_webhook(webhook)?;
        Ok(Some(Webhook { js, health, erp, config: config.clone(), webhook: webhook.clone() }))
    }

    /// Delivers postings until shutdown, then hands the held ones back to the server (nak), so
    /// that the next start sends them first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        telemetry::webhook_started();
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let start = loop {
            match self.start().await {
                Ok(start) => break start,
                Err(err) => {
                    let error = format!("{err:#}");
                    warn!(error, "Cannot set up the ERP webhook's consumer; retrying.");
                    self.health.set(Component::Webhook, Err(format!("ERP webhook cannot read {ERP_STREAM}: {error}")));
                    if backoff.wait_or_shutdown(&mut shutdown).await {
                        info!("ERP webhook stopped.");
                        return;
                    }
                }
            }
        };
        let mut run = Run::new(self, start);
        run.serve(&mut shutdown).await;
        run.hand_back().await;
        info!("ERP webhook stopped.");
    }

    async fn start(&self) -> anyhow::Result<Start> {
        let main = nats::webhook_consumer(&self.js, &self.config, &self.webhook).await?;
        let info = main.cached_info();
        let (delivered_upto, pending) = (info.delivered.stream_sequence, info.num_ack_pending as u64);
        let stream = self.js.get_stream(ERP_STREAM).await?;
        let own = self.own_consumers(&stream).await?;
        Ok(Start { main, stream, own, delivered_upto, pending })
    }

    /// The consumers of stores moved in an earlier run: (store, first sequence, consumer).
    async fn own_consumers(&self, stream: &stream::Stream) -> anyhow::Result<Vec<(String, u64, PullConsumer)>> {
        let prefix = nats::webhook_store_consumer_name(&self.webhook, "");
        let names: Vec<String> = stream.consumer_names().try_collect().await?;
        let mut found = Vec::new();
        for name in names {
            let Some(store) = name.strip_prefix(&prefix) else { continue };
            let consumer: PullConsumer = stream.get_consumer(&name).await.map_err(|err| anyhow::anyhow!(err))?;
            match consumer.cached_info().config.deliver_policy {
                consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
                    found.push((store.to_string(), start_sequence, consumer))
                }
                _ => {
                    warn!(consumer = %name, "A consumer named like a store's own ERP webhook consumer does not start at a sequence; ignored.")
                }
            }
        }
        Ok(found)
    }
}

/// What the webhook found at start.
struct Start {
    main: PullConsumer,
    stream: stream::Stream,
    own: Vec<(String, u64, PullConsumer)>,
    /// The main consumer's last delivered stream sequence and its unacked postings.
    delivered_upto: u64,
    pending: u64,
}

/// A store's current posting, failed at least once.
struct Failing {
    posting_id: String,
    /// Failed attempts so far.
    attempts: u32,
    /// Why the last attempt failed.
    reason: String,
    /// When the first attempt failed: `tally_posting_failure_resolution_seconds` counts from here.
    since: std::time::Instant,
}

/// The webhook at work: the schedule and everything in flight.
struct Run {
    shared: Arc<Shared>,
    health: Arc<Health>,
    config: Config,
    webhook: WebhookConfig,
    main: PullConsumer,
    messages: Option<consumer::pull::Stream>,
    reconnect_at: Option<Instant>,
    nats_backoff: Backoff,
    nats_problem: Option<String>,
    schedule: Schedule<Held>,
    own: HashMap<String, PullConsumer>,
    /// Per moved store, the postings its own consumer still has, as of its last delivery.
    own_pending: HashMap<String, u64>,
    tasks: JoinSet<Event>,
    /// Stores whose current posting failed, and how.
    failing: BTreeMap<String, Failing>,
    kept_bytes: usize,
    move_again_at: Option<Instant>,
}

impl Run {
    fn new(hook: Webhook, start: Start) -> Run {
        let Webhook { js, health, erp, config, webhook } = hook;
        let prefix = config.input.subject_prefix.clone();
        let shared = Arc::new(Shared { js, stream: start.stream, erp, prefix });
        let mut schedule = Schedule::new(webhook.concurrency, WEBHOOK_WINDOW);
        if start.pending > 0 {
            info!(
                pending = start.pending,
                wait_max_secs = (WEBHOOK_ACK_WAIT + GATE_MARGIN).as_secs(),
                "The last run left postings unacked; waiting until the server hands them back before sending anything."
            );
            let deadline = Instant::now() + WEBHOOK_ACK_WAIT + GATE_MARGIN;
            schedule.close_gate(start.delivered_upto, start.pending, deadline.into_std());
        }
        let mut own = HashMap::new();
        for (store, from, consumer) in start.own {
            info!(store, from, "The store's postings come from its own consumer until it has caught up.");
            schedule.restore_own(&store, from);
            own.insert(store, consumer);
        }
        Run {
            shared,
            health,
            config,
            webhook,
            main: start.main,
            messages: None,
            reconnect_at: None,
            nats_backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            nats_problem: None,
            schedule,
            own,
            own_pending: HashMap::new(),
            tasks: JoinSet::new(),
            failing: BTreeMap::new(),
            kept_bytes: 0,
            move_again_at: None,
        }
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) {
        info!(consumer = %self.webhook.consumer, concurrency = self.webhook.concurrency, "ERP webhook consuming.");
        let mut progress = tokio::time::interval(WEBHOOK_ACK_WAIT / 3);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.messages.is_none() && self.reconnect_at.is_none_or(|at| at <= Instant::now()) {
                self.reconnect().await;
            }
            self.dispatch();
            self.move_if_crowded();
            self.report_health();
            let wakeup = [self.schedule.next_wakeup().map(Instant::from_std), self.reconnect_at, self.move_again_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                message = next_message(&mut self.messages) => self.on_message(message).await,
                Some(joined) = self.tasks.join_next() => self.on_event(joined).await,
                _ = progress.tick() => self.progress_ack().await,
                _ = sleep_until(wakeup) => {}
                // The guard `wait_for` returns must not live on across the other branches' awaits.
                _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => return,
            }
        }
    }

    /// (Re)opens the main consumer's message stream; the consumer is created again when it
    /// was deleted.
    async fn reconnect(&mut self) {
        let opened = async {
            if self.reconnect_at.is_some() {
                self.main = nats::webhook_consumer(&self.shared.js, &self.config, &self.webhook).await?;
            }
            let messages = self.main.stream().max_messages_per_batch(PULL_BATCH).expires(FETCH_WAIT).messages().await?;
            anyhow::Ok(messages)
        };
        match opened.await {
            Ok(messages) => {
                self.messages = Some(messages);
                self.reconnect_at = None;
                self.nats_problem = None;
            }
            Err(err) => self.nats_failed(&format!("{err:#}")),
        }
    }

    fn nats_failed(&mut self, error: &str) {
        warn!(error, "Reading RETAIL_ERP for the ERP webhook failed; retrying.");
        self.nats_problem = Some(format!("ERP webhook cannot read {ERP_STREAM}: {error}"));
        self.messages = None;
        self.reconnect_at = Some(Instant::now() + self.nats_backoff.failed());
    }

    /// Starts every job the schedule allows now.
    fn dispatch(&mut self) {
        while let Some(job) = self.schedule.next(std::time::Instant::now()) {
            match job {
                Job::Deliver { store, seq } => {
                    let held = self.schedule.item(&store, seq).expect("a posting handed out is held").clone();
                    let posting_id = posting_id(&held.message, seq);
                    let shared = Arc::clone(&self.shared);
                    self.tasks.spawn(async move {
                        let (delivery, acked) = deliver(&shared, &held, &posting_id, seq).await;
                        Event::Delivered { store, seq, posting_id, delivery, acked }
                    });
                }
                Job::Fetch { store } => {
                    let consumer = self.own.get(&store).expect("a store fetching has its own consumer").clone();
                    self.tasks.spawn(async move { Event::Fetched { fetch: fetch_own(&consumer).await, store } });
                }
            }
        }
    }

    /// When the window is nearly full, moves the store holding the most of it to a consumer
    /// of its own, so that the main consumer keeps handing out the other stores' postings.
    fn move_if_crowded(&mut self) {
        if self.move_again_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        self.move_again_at = None;
        let Some((store, from)) = self.schedule.crowded() else { return };
        info!(
            store,
            from,
            waiting = self.schedule.waiting(&store),
            window = WEBHOOK_WINDOW,
            "The ERP webhook's window is nearly full; the store with the most postings waiting moves to a consumer of its own."
        );
        self.schedule.moving(&store, from);
        let name = nats::webhook_store_consumer_name(&self.webhook, &store);
        let config = nats::webhook_store_consumer_config(&self.config, &self.webhook, &store, from);
        let stream = self.shared.stream.clone();
        self.tasks.spawn(async move {
            // A consumer of that name left by a hand-back whose delete failed starts elsewhere.
            let result = match delete_consumer(&stream, &name).await {
                Ok(()) => stream.create_consumer(config).await.map(Box::new).map_err(|err| err.to_string()),
                Err(err) => Err(err),
            };
            Event::Moved { store, from, result }
        });
    }

    async fn on_message(&mut self, message: Option<Result<jetstream::Message, consumer::pull::MessagesError>>) {
        match message {
            Some(Ok(message)) => {
                self.nats_problem = None;
                self.nats_backoff.succeeded();
                self.take(message, Source::Main).await;
            }
            Some(Err(err)) => self.nats_failed(&err.to_string()),
            None => self.nats_failed("the pull stream ended"),
        }
    }

    /// Hands a delivered posting to the schedule.
    async fn take(&mut self, message: jetstream::Message, source: Source) {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(err) => {
                // Only a JetStream delivery has metadata; anything else is not a posting.
                warn!(error = %err, subject = %message.subject, "Webhook message without JetStream metadata; skipped.");
                return;
            }
        };
        let store = store_of(&message.subject).to_string();
        let len = message.payload.len();
        let kept = self.kept_bytes + len <= PAYLOAD_BYTES_MAX;
        let mut held = Held { message, kept };
        if !kept {
            held.message.message.payload = bytes::Bytes::new();
        }
        let acked = match self.schedule.offer(&store, seq, held, source) {
            Offered::Held => None,
            Offered::Late => {
                warn!(
                    store,
                    stream_seq = seq,
                    "A posting came back after a later posting of its store was handed out; sending it next."
                );
                None
            }
            Offered::Again(older) => {
                self.release(&older);
                None
            }
            Offered::Done(again) | Offered::Moved(again) => Some(again),
        };
        match acked {
            // Completed in this run, or delivered by the store's own consumer: ack, send nothing.
            Some(again) => ack_quietly(&again.message, AckKind::Ack).await,
            None if kept => self.kept_bytes += len,
            None => {}
        }
        self.gauge(&store);
    }

    fn release(&mut self, held: &Held) {
        if held.kept {
            self.kept_bytes -= held.message.payload.len();
        }
    }

    fn gauge(&self, store: &str) {
        let own = self.own_pending.get(store).copied().unwrap_or(0);
        telemetry::webhook_waiting(store, self.schedule.waiting(store) as u64 + own);
    }

    async fn on_event(&mut self, joined: Result<Event, JoinError>) {
        let event = match joined {
            Ok(event) => event,
            // A panic is a bug: crash loudly rather than leave a store stuck.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => return,
        };
        match event {
            Event::Delivered { store, seq, posting_id, delivery, acked } => {
                self.delivered(&store, seq, &posting_id, delivery, acked)
            }
            Event::Fetched { store, fetch } => self.fetched(store, fetch).await,
            Event::Moved { store, from, result } => self.moved(store, from, result).await,
            Event::Deleted { name, result: Err(error) } => {
                warn!(consumer = %name, error, "Deleting a store's own ERP webhook consumer failed; the next start resumes from it.")
            }
            Event::Deleted { .. } => {}
        }
    }

    fn delivered(&mut self, store: &str, seq: u64, posting_id: &str, delivery: Delivery, acked: bool) {
        match delivery {
            Delivery::Delivered | Delivery::Parked { .. } | Delivery::Gone => {
                let held = self.schedule.finished(store, seq, acked);
                self.release(&held);
                // The entry of an earlier posting of the store (one that left otherwise) is not this one's.
                let failed = self.failing.remove(store).filter(|failing| failing.posting_id == posting_id);
                match delivery {
                    Delivery::Delivered => {
                        telemetry::webhook_delivered(unix_now_seconds());
                        if let Some(failed) = failed {
                            telemetry::webhook_failure_resolved(failed.since.elapsed().as_secs_f64());
                            info!(posting_id, store, attempt = failed.attempts + 1, "ERP took the posting after retries.");
                        }
                    }
                    Delivery::Parked { status, detail } => {
                        telemetry::webhook_rejected();
                        telemetry::posting_parked(erp::park_reason(status));
                        error!(posting_id, store, status, detail = %detail, "ERP rejected the posting; parked on the DLQ.");
                    }
                    _ => error!(
                        posting_id,
                        store,
                        stream_seq = seq,
                        "The posting was removed from RETAIL_ERP (the stream's limits) before the webhook could send it."
                    ),
                }
            }
            Delivery::Retry { reason, attempted } => {
                let wait = self.schedule.failed(store, seq, std::time::Instant::now());
                let fresh = || Failing {
                    posting_id: posting_id.to_string(),
                    attempts: 0,
                    reason: String::new(),
                    since: std::time::Instant::now(),
                };
                let entry = self.failing.entry(store.to_string()).or_insert_with(fresh);
                if entry.posting_id != posting_id {
                    *entry = fresh();
                }
                entry.attempts += 1;
                entry.reason.clone_from(&reason);
                if attempted {
                    telemetry::webhook_retried();
                }
                warn!(
                    posting_id, store, attempt = entry.attempts, retry_in_ms = wait.as_millis() as u64, reason = %reason,
                    "ERP webhook attempt failed; retrying the same posting."
                );
            }
        }
        self.gauge(store);
    }

    async fn fetched(&mut self, store: String, fetch: Fetch) {
        let fetched = match fetch {
            Fetch::Posting(message) => {
                if let Ok(info) = message.info() {
                    self.own_pending.insert(store.clone(), info.pending);
                }
                self.take(*message, Source::Own).await;
                Fetched::Posting
            }
            Fetch::Nothing(error) => {
                if let Some(error) = error {
                    warn!(store, error, "Fetching from the store's own ERP webhook consumer failed; retrying.");
                }
                Fetched::Nothing
            }
            Fetch::Drained { upto } => Fetched::Drained { upto },
        };
        if self.schedule.fetch_done(&store, fetched, std::time::Instant::now()) {
            self.own.remove(&store);
            self.own_pending.remove(&store);
            info!(store, "The store has caught up; its postings come from the webhook's consumer again.");
            let name = nats::webhook_store_consumer_name(&self.webhook, &store);
            let stream = self.shared.stream.clone();
            self.tasks.spawn(async move { Event::Deleted { result: delete_consumer(&stream, &name).await, name } });
        }
        self.gauge(&store);
    }

    async fn moved(&mut self, store: String, from: u64, result: Result<Box<PullConsumer>, String>) {
        match result {
            Ok(consumer) => {
                let handed_over = self.schedule.moved(&store);
                for held in &handed_over {
                    self.release(held);
                    ack_quietly(&held.message, AckKind::Ack).await;
                }
                info!(
                    store,
                    from,
                    handed_over = handed_over.len(),
                    "The store's postings now come from its own consumer."
                );
                self.own_pending.insert(store.clone(), handed_over.len() as u64);
                self.own.insert(store.clone(), *consumer);
            }
            Err(error) => {
                warn!(
                    store,
                    from,
                    error,
                    "Creating the store's own ERP webhook consumer failed; it stays on the webhook's consumer."
                );
                self.schedule.move_failed(&store);
                self.move_again_at = Some(Instant::now() + MOVE_AGAIN);
            }
        }
        self.gauge(&store);
    }

    /// Keeps the server from redelivering what the webhook holds.
    async fn progress_ack(&self) {
        let mut failed = 0usize;
        for held in self.schedule.held() {
            if held.message.ack_with(AckKind::Progress).await.is_err() {
                failed += 1;
            }
        }
        if failed > 0 {
            warn!(failed, "Progress acks failed; the server may redeliver those postings, which are then recognised.");
        }
    }

    /// `/readyz`: NATS trouble first, else the stores whose posting is failing.
    fn report_health(&self) {
        let state = match (&self.nats_problem, self.failing.iter().next()) {
            (Some(problem), _) => Err(problem.clone()),
            (None, Some((store, failing))) => Err(format!(
                "ERP webhook failing for {} store(s); store {store}, posting {} (attempt {}): {}",
                self.failing.len(),
                failing.posting_id,
                failing.attempts,
                failing.reason
            )),
            (None, None) => Ok(()),
        };
        self.health.set(Component::Webhook, state);
    }

    /// At shutdown: stops the tasks (a POST in flight may have reached the ERP; it is sent again
    /// under the same key) and hands every held posting back in stream order.
    async fn hand_back(mut self) {
        self.tasks.shutdown().await;
        let held = self.schedule.take_all();
        for posting in &held {
            ack_quietly(&posting.message, AckKind::Nak(None)).await;
        }
        if !held.is_empty() {
            info!(
                postings = held.len(),
                "Handed the held postings back to the server; the next start sends them first."
            );
        }
    }
}

/// The next message of the main consumer; never, while it is closed.
async fn next_message(
    messages: &mut Option<consumer::pull::Stream>,
) -> Option<Result<jetstream::Message, consumer::pull::MessagesError>> {
    match messages {
        Some(messages) => messages.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(wakeup: Option<Instant>) {
    match wakeup {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `P.erp.postings.<store>` → the store (the consumers' filters guarantee the shape).
fn store_of(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// The posting's id (`Nats-Msg-Id`, which tally always sets), else a stable key from its
/// stream sequence.
fn posting_id(message: &jetstream::Message, seq: u64) -> String {
    match message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
        Some(id) => id.as_str().to_string(),
        None => {
            warn!(stream_seq = seq, subject = %message.subject, "Posting without Nats-Msg-Id; keyed by its stream sequence.");
            format!("{ERP_STREAM}/{seq}")
        }
    }
}

async fn ack_quietly(message: &jetstream::Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        // The server redelivers it after the ack wait, and it is recognised then.
        warn!(error = %err, subject = %message.subject, "Acking a posting failed.");
    }
}

/// One attempt at one posting: POST it, park it when rejected, ack it when done. Returns what
/// came of it and whether the server confirmed the ack.
async fn deliver(shared: &Shared, held: &Held, posting_id: &str, seq: u64) -> (Delivery, bool) {
    let delivery = match read_posting(shared, held, posting_id, seq).await {
        Ok(Some(posting)) => match shared.erp.post(&posting).await {
            Attempt::Delivered => Delivery::Delivered,
            Attempt::Retry(reason) => return (Delivery::Retry { reason, attempted: true }, false),
            Attempt::Rejected { status, detail } => match park(shared, &posting, &detail).await {
                Ok(()) => Delivery::Parked { status, detail },
                Err(err) => {
                    let reason = format!("HTTP {status}, and parking it on the DLQ failed: {err}");
                    return (Delivery::Retry { reason, attempted: false }, false);
                }
            },
        },
        Ok(None) => Delivery::Gone,
        Err(reason) => return (Delivery::Retry { reason, attempted: false }, false),
    };
    match held.message.double_ack().await {
        Ok(()) => (delivery, true),
        Err(err) => {
            // The server may redeliver it after the ack wait; the schedule recognises it then.
            warn!(error = %err, posting_id, stream_seq = seq, "Acking a completed posting failed.");
            (delivery, false)
        }
    }
}

/// The posting's bytes and headers: kept, or read again from the stream (`None` when gone).
async fn read_posting(shared: &Shared, held: &Held, posting_id: &str, seq: u64) -> Result<Option<Posting>, String> {
    let (subject, headers, payload) = if held.kept {
        let message = &held.message;
        (message.subject.to_string(), message.headers.clone().unwrap_or_default(), message.payload.clone())
    } else {
        match shared.stream.get_raw_message(seq).await {
            Ok(stored) => (stored.subject.to_string(), stored.headers, stored.payload),
            Err(err) if matches!(err.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
            Err(err) => return Err(format!("reading the posting from {ERP_STREAM} failed: {err}")),
        }
    };
    let content_type = headers.get("Content-Type").map_or("application/json", |v| v.as_str()).to_string();
    Ok(Some(Posting { id: posting_id.to_string(), content_type, subject, stream_seq: seq, payload }))
}

/// Puts the posting verbatim on `P.dlq.erp_rejected` and awaits the PubAck.
async fn park(shared: &Shared, posting: &Posting, detail: &str) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("dlq/{}", posting.id));
    headers.insert("Tally-Error", "erp_rejected");
    headers.insert("Tally-Error-Detail", detail);
    headers.insert("Tally-Source-Subject", posting.subject.as_str());
    headers.insert("Tally-Source-Sequence", posting.stream_seq.to_string());
    headers.insert("Content-Type", posting.content_type.as_str());
    let subject = format!("{}.dlq.erp_rejected", shared.prefix);
    shared.js.publish_with_headers(subject, headers, posting.payload.clone()).await?.await?;
    Ok(())
}

/// The next posting of a store's own consumer, or whether it has delivered everything.
async fn fetch_own(consumer: &PullConsumer) -> Fetch {
    let error = match fetch_one(consumer).await {
        Ok(Some(message)) => return Fetch::Posting(Box::new(message)),
        Ok(None) => match consumer.get_info().await {
            Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {
                return Fetch::Drained { upto: info.delivered.stream_sequence }
            }
            Ok(_) => None,
            Err(err) => Some(err.to_string()),
        },
        Err(err) => Some(err.to_string()),
    };
    Fetch::Nothing(error)
}

/// One message, if the consumer has one right now.
async fn fetch_one(consumer: &PullConsumer) -> Result<Option<jetstream::Message>, async_nats::Error> {
    let mut batch = consumer.fetch().max_messages(1).messages().await?;
    batch.next().await.transpose()
}

async fn delete_consumer(stream: &stream::Stream, name: &str) -> Result<(), String> {
    match stream.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.kind(), stream::ConsumerErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {
            Ok(())
        }
        Err(err) => Err(err.to_string()),
    }
}

fn unix_now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
