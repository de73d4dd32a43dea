//! The outbox publisher: sends committed outputs to JetStream in outbox order and deletes each
//! only after its PubAck (docs/operations.md, "The guarantees", "outputs are never lost").
//!
//! A crash between the PubAck and the delete re-sends the same bytes under the same
//! `Nats-Msg-Id` after restart; the output stream's duplicate window drops it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tally_state::{Cf, KeyReader, Store, WriteBatch};
use tally_topologies::aggregates::{OutboxEntry, OutputKind};
use tally_topologies::codec;
use tally_topologies::keys;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::cluster::Fence;
use crate::health::{Component, Health};
use crate::partitions::Partition;
use crate::telemetry;

/// Outputs sent before their acks are awaited together.
const DRAIN_BATCH: usize = 256;
/// Waits between failed drains: 100 ms doubling to 5 s.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How long a stopping publisher goes on sending what is left.
const FINAL_DRAIN: Duration = Duration::from_secs(10);
/// How often the publisher looks even when nobody woke it.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Publisher {
    pub store: Arc<dyn Store>,
    pub js: jetstream::Context,
    pub health: Arc<Health>,
    pub notify: Arc<Notify>,
    /// The partition whose outbox `store` holds, for the metrics.
    pub partition: Partition,
    /// Under a lease (several instances): nothing is published once it no longer holds.
    pub fence: Option<Fence>,
}

impl Publisher {
    /// Drains the outbox until shutdown; what is left stays for the next start.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(BACKOFF.0, BACKOFF.1);
        // Where the next drain starts: the oldest entry not yet sent. Entries are appended with
        // ever larger keys and deleted once sent; starting at the front of the family instead
        // would step over the deletion marker of every entry sent since the last compaction.
        let mut cursor = Vec::new();
        loop {
            if *shutdown.borrow() {
                self.send_what_is_left(&mut cursor).await;
                break;
            }
            match self.drain_once(&mut cursor).await {
                Ok(0) => {
                    self.health.set(Component::Outbox, Ok(()));
                    backoff.succeeded();
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        changed = shutdown.changed() => {
                            if changed.is_err() {
                                // Nobody can stop it any more: the program is going away.
                                break;
                            }
                        }
                    }
                }
                Ok(_) => {
                    self.health.set(Component::Outbox, Ok(()));
                    backoff.succeeded();
                }
                Err(err) => {
                    telemetry::publish_failed();
                    warn!(error = %format!("{err:#}"), "Publishing outputs failed; they stay in the outbox, retrying.");
                    self.health.set(Component::Outbox, Err(format!("publishing outputs failed: {err:#}")));
                    if backoff.wait_or_shutdown(&mut shutdown).await {
                        // Publishing fails: what is left goes out on the next start.
                        break;
                    }
                }
            }
        }
        info!("Outbox publisher stopped.");
    }

    /// At a stop: sends what the outbox still holds, for at most [`FINAL_DRAIN`], until a drain
    /// fails or the lease no longer holds.
    async fn send_what_is_left(&self, cursor: &mut Vec<u8>) {
        let until = tokio::time::Instant::now() + FINAL_DRAIN;
        while tokio::time::Instant::now() < until {
            match self.drain_once(cursor).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) => {
                    warn!(error = %format!("{err:#}"), "Publishing outputs at the stop failed; they go out on the next start.");
                    return;
                }
            }
        }
    }

    /// Publishes the oldest outbox entries from `cursor` on, deletes those acknowledged and
    /// moves `cursor` to the oldest one left. Returns how many were sent.
    async fn drain_once(&self, cursor: &mut Vec<u8>) -> anyhow::Result<usize> {
        let entries = self.store.scan_from(Cf::Outbox, cursor, DRAIN_BATCH)?;
        self.report_pending(entries.first().map(|(key, _)| key.as_slice()))?;
        if entries.is_empty() || !self.holds_lease() {
            return Ok(0);
        }
        let mut done = WriteBatch::default();
        let mut kinds: std::collections::BTreeMap<OutputKind, usize> = Default::default();
        let mut first_error: Option<anyhow::Error> = None;
        // DLQ entries and alerts (which carry their revision) go out pipelined. Postings are
        // awaited one by one: a failed posting must not let the next one of its store overtake
        // it, since an ERP books them in stream order.
        let mut pipelined = Vec::new();
        let mut oldest_kept: Option<Vec<u8>> = None;
        let max_payload = self.js.client().server_info().max_payload;
        for (key, value) in &entries {
            if !self.holds_lease() {
                // Lost meanwhile: what is left is the next owner's to send.
                keep_from(&mut oldest_kept, key);
                break;
            }
            let mut entry: OutboxEntry = codec::decode(value)?;
            let kind = entry.kind();
            if kind == OutputKind::Dlq {
                fit_dlq_copy(&mut entry, max_payload);
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", entry.msg_id.as_str());
            for (name, value) in &entry.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            let ack = match self.js.publish_with_headers(entry.subject.clone(), headers, entry.payload.into()).await {
                Ok(ack) => ack,
                Err(err) => {
                    first_error = Some(err.into());
                    keep_from(&mut oldest_kept, key);
                    break;
                }
            };
            if kind != OutputKind::Posting {
                pipelined.push((key.clone(), kind, ack));
                continue;
            }
            match ack.await {
                Ok(_) => {
                    done.delete(Cf::Outbox, key.clone());
                    *kinds.entry(kind).or_default() += 1;
                }
                Err(err) => {
                    first_error = Some(err.into());
                    keep_from(&mut oldest_kept, key);
                    break;
                }
            }
        }
        // Awaited together: each ack's timeout starts when it is awaited, so awaiting them one
        // by one after a connection loss took the timeout once per entry (over a minute).
        let (keys, acks): (Vec<_>, Vec<_>) = pipelined.into_iter().map(|(key, kind, ack)| ((key, kind), ack)).unzip();
        let results = futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await;
        for ((key, kind), result) in keys.into_iter().zip(results) {
            match result {
                Ok(_) => {
                    done.delete(Cf::Outbox, key);
                    *kinds.entry(kind).or_default() += 1;
                }
                // Others may be acked; keep their deletes and retry this one.
                Err(err) => {
                    first_error.get_or_insert(err.into());
                    keep_from(&mut oldest_kept, &key);
                }
            }
        }
        let sent = done.len();
        if !done.is_empty() {
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || store.write(&done)).await??;
        }
        *cursor = match oldest_kept {
            Some(key) => key,
            // All sent: the smallest key after the last one.
            None => entries.last().map(|(key, _)| [key.as_slice(), &[0]].concat()).unwrap_or_default(),
        };
        for (kind, n) in kinds {
            telemetry::outputs_published(kind.as_str(), n);
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(sent),
        }
    }

    /// Whether this instance may publish the partition's outputs: always, unless several
    /// instances share the partitions and its lease no longer holds.
    fn holds_lease(&self) -> bool {
        self.fence.as_ref().is_none_or(Fence::holds)
    }

    /// The outbox is keyed by a gapless sequence, so pending = next − oldest.
    fn report_pending(&self, oldest_key: Option<&[u8]>) -> anyhow::Result<()> {
        let Some(oldest_key) = oldest_key else {
            telemetry::outbox_pending(&self.partition, 0);
            return Ok(());
        };
        let oldest = KeyReader::new(oldest_key).u64()?;
        let meta = tally_state::Overlay::new(self.store.as_ref());
        let next = codec::read_meta_u64(&meta, keys::META_OUTBOX_NEXT)?.unwrap_or(oldest + 1);
        telemetry::outbox_pending(&self.partition, next.saturating_sub(oldest) as usize);
        Ok(())
    }
}

/// Lowers `oldest` to `key` when `key` is older: an entry that stays in the outbox.
fn keep_from(oldest: &mut Option<Vec<u8>>, key: &[u8]) {
    if oldest.as_deref().is_none_or(|kept| key < kept) {
        *oldest = Some(key.to_vec());
    }
}

/// Room kept for the protocol line and headers besides the payload.
const HEADER_ROOM_BYTES: usize = 4096;

/// A rejected input that was just below the server's `max_payload` cannot be copied verbatim
/// with the DLQ headers added: it would block the outbox for good. Its copy keeps the first
/// bytes that fit and says so in `Tally-Payload-Truncated` (the original size in bytes).
fn fit_dlq_copy(entry: &mut OutboxEntry, max_payload: usize) {
    let headers: usize = entry.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let room = max_payload.saturating_sub(headers + HEADER_ROOM_BYTES);
    if max_payload == 0 || entry.payload.len() <= room {
        return;
    }
    let original = entry.payload.len();
    entry.payload.truncate(room);
    entry.headers.push(("Tally-Payload-Truncated".into(), original.to_string()));
    warn!(msg_id = %entry.msg_id, original, kept = room, "Rejected input too large to copy whole to the DLQ; truncated.");
}
