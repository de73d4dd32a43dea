//! The async shell of the generator: paces baskets in processing time, maps processing time to
//! event time, and publishes what `Traffic` produces to JetStream with a bounded window of
//! in-flight acks. It never invents content; all of that is in the pure core.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use futures::FutureExt as _;
use tokio::time::{Instant, MissedTickBehavior};

use crate::options::GenStats;
use crate::traffic::Traffic;
use crate::wire::WireMessage;

/// Publishes awaiting their PubAck at most; beyond it the oldest ack is awaited first.
const IN_FLIGHT_MAX: usize = 256;
/// How often the pacer wakes; each wake publishes every basket whose slot has passed, so rates
/// far above 1/TICK still hold.
const TICK: Duration = Duration::from_millis(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("rate must be a positive number of baskets/s, not {0}")]
    Rate(f64),
    #[error("speedup must be a positive number, not {0}")]
    Speedup(f64),
    #[error("publishing to {subject}")]
    Publish {
        subject: String,
        #[source]
        source: PublishError,
    },
    #[error("waiting for a JetStream PubAck")]
    Ack(#[source] PublishError),
}

/// How long and how fast to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Baskets per second of processing time. Default 100.
    pub rate: f64,
    /// Stop after this much processing time. Default: no limit.
    pub duration: Option<Duration>,
    /// Stop after this many baskets. Default: no limit.
    pub count: Option<u64>,
    /// Event-time seconds per processing-time second. Default 1.
    pub speedup: f64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { rate: 100.0, duration: None, count: None, speedup: 1.0 }
    }
}

/// A publisher with a bounded window of unacknowledged messages.
struct Window<'a> {
    js: &'a Context,
    /// Ack futures in publish order; boxed so the front can be polled without consuming it.
    pending: VecDeque<<PublishAckFuture as IntoFuture>::IntoFuture>,
    acked: u64,
}

impl Window<'_> {
    async fn send(&mut self, msg: WireMessage) -> Result<(), RunError> {
        if self.pending.len() >= IN_FLIGHT_MAX {
            self.settle_one().await?;
        }
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", msg.content_type);
        let ack = self
            .js
            .publish_with_headers(msg.subject.clone(), headers, msg.payload.into())
            .await
            .map_err(|source| RunError::Publish { subject: msg.subject.clone(), source })?;
        self.pending.push_back(ack.into_future());
        Ok(())
    }

    /// Counts the acks that have already arrived, without waiting, so progress stays current
    /// at low rates where the window rarely fills.
    fn reap(&mut self) -> Result<(), RunError> {
        while let Some(front) = self.pending.front_mut() {
            match front.as_mut().now_or_never() {
                Some(result) => {
                    self.pending.pop_front();
                    result.map_err(RunError::Ack)?;
                    self.acked += 1;
                }
                None => break,
            }
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), RunError> {
        if let Some(ack) = self.pending.pop_front() {
            ack.await.map_err(RunError::Ack)?;
            self.acked += 1;
        }
        Ok(())
    }

    async fn send_all(&mut self, msgs: Vec<WireMessage>) -> Result<(), RunError> {
        for msg in msgs {
            self.send(msg).await?;
        }
        Ok(())
    }

    /// Acks received since the last call.
    fn take_acked(&mut self) -> u64 {
        std::mem::take(&mut self.acked)
    }
}

fn event_offset(secs: f64) -> chrono::Duration {
    chrono::Duration::microseconds((secs * 1e6).round() as i64)
}

/// Publishes `traffic` to JetStream until `run.duration` or `run.count` is reached or
/// `shutdown` completes (e.g. `tokio::signal::ctrl_c()` mapped to `()`, or a watch channel's
/// `changed()`), then flushes every queued message (lagged movements, voids) and waits for all
/// acks. Basket k gets the event time `traffic.now() at start + k / rate × speedup`, its nominal
/// slot, so a publisher that falls behind never bunches event times. Queued messages are
/// published when event time reaches their due time. `on_progress` is called about once per
/// second and once at the end; `GenStats::published` counts acknowledged messages. Returns the
/// final stats, or the first publish or ack error.
pub async fn run(
    js: &Context,
    traffic: &mut Traffic,
    run: &RunOptions,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&GenStats),
) -> Result<GenStats, RunError> {
    if !(run.rate.is_finite() && run.rate > 0.0) {
        return Err(RunError::Rate(run.rate));
    }
    if !(run.speedup.is_finite() && run.speedup > 0.0) {
        return Err(RunError::Speedup(run.speedup));
    }
    let base = traffic.now();
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut window = Window { js, pending: VecDeque::new(), acked: 0 };
    let mut generated: u64 = 0;
    let mut last_progress = started;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let elapsed = started.elapsed();
        let elapsed = run.duration.map_or(elapsed, |d| elapsed.min(d));
        let mut target = (elapsed.as_secs_f64() * run.rate) as u64;
        if let Some(count) = run.count {
            target = target.min(count);
        }
        while generated < target {
            let at = base + event_offset(generated as f64 / run.rate * run.speedup);
            window.send_all(traffic.due(at)).await?;
            window.send_all(traffic.next_basket(at)).await?;
            generated += 1;
        }
        // Lagged messages fall due between baskets too (and on their own at a low rate).
        window.send_all(traffic.due(base + event_offset(elapsed.as_secs_f64() * run.speedup))).await?;
        window.reap()?;
        traffic.note_published(window.take_acked());
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            on_progress(traffic.stats());
        }
        let done_count = run.count.is_some_and(|c| generated >= c);
        let done_time = run.duration.is_some_and(|d| started.elapsed() >= d);
        if done_count || done_time {
            break;
        }
    }

    window.send_all(traffic.drain_all()).await?;
    while !window.pending.is_empty() {
        window.settle_one().await?;
    }
    traffic.note_published(window.take_acked());
    on_progress(traffic.stats());
    Ok(traffic.stats().clone())
}
