//! The ceiling: how fast a bare JetStream pull consumer reads the same stream on the same
//! machine. It batches exactly as tally's runner does (one pull stream, `batch_max` messages per
//! pull, a batch is whatever has arrived, at most `batch_max`) and acks the last message of each
//! batch under AckPolicy::All, but decodes, stores and publishes nothing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::{FutureExt as _, StreamExt as _};
use tally_processor::nats::{ACK_PENDING_MAX, ACK_WAIT};

/// The ceiling consumer's durable name; tally's own is `tally`.
pub const CONSUMER: &str = "bench-ceiling";

/// Reads `n` messages of `stream`; returns the time from creating the consumer to the last ack.
pub async fn measure(js: &jetstream::Context, stream: &str, batch_max: usize, n: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stream = js.get_stream(stream).await.context("the input stream")?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: ACK_PENDING_MAX,
            ..Default::default()
        })
        .await
        .context("creating the ceiling consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch_max)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    let mut read: u64 = 0;
    while read < n {
        let first = messages.next().await.context("the pull stream ended")??;
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                _ => break,
            }
        }
        read += batch.len() as u64;
        if let Some(last) = batch.last() {
            last.ack().await.map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
        }
    }
    let elapsed = started.elapsed();
    stream.delete_consumer(CONSUMER).await.context("deleting the ceiling consumer")?;
    Ok(elapsed)
}
