//! Alerts, postings and dead letters as they go out: core NATS subscriptions on the output
//! subjects (docs/wire-format.md), so the screen shows each message the moment the outbox
//! publishes it. A re-publish (same `Nats-Msg-Id`, after a retry) is shown once, as JetStream
//! stores it once. What the final summary counts is read from the streams instead (`read`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::screen::{AlertLine, PostingLine, Snapshot};

/// Alerts and postings kept for the screen, newest last.
const RECENT_MAX: usize = 32;

/// The live view of the outputs, shared with the subscription tasks.
#[derive(Clone, Default)]
pub struct Feed {
    inner: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    alerts: VecDeque<AlertLine>,
    postings: VecDeque<PostingLine>,
    alerts_by_state: BTreeMap<String, u64>,
    postings_by_kind: BTreeMap<String, u64>,
    dead_letters_by_reason: BTreeMap<String, u64>,
}

/// The fields of a drift alert the screen shows (the whole message: docs/wire-format.md).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Alert {
    pub id: String,
    pub revision: u64,
    pub state: String,
    pub severity: String,
    pub store: String,
    pub sku: String,
    pub business_day: String,
    pub drift_units: String,
    pub drift_value: String,
}

/// The fields of an ERP posting the screen shows.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Posting {
    pub id: String,
    pub kind: String,
    pub control: Control,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Control {
    pub transactions: i64,
    pub net: String,
}

/// An output payload in either output format (`output.format`), told apart by `Content-Type`.
pub fn decode<T: DeserializeOwned>(headers: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Option<T> {
    let msgpack =
        headers.and_then(|h| h.get("Content-Type")).is_some_and(|value| value.as_str() == "application/msgpack");
    if msgpack {
        rmp_serde::from_slice(payload).ok()
    } else {
        serde_json::from_slice(payload).ok()
    }
}

impl Feed {
    /// Subscribes to the alert, posting and DLQ subjects under `prefix`; the tasks end when
    /// the client closes.
    pub async fn start(client: &async_nats::Client, prefix: &str) -> Result<Feed, async_nats::SubscribeError> {
        let feed = Feed::default();
        for (subject, kind) in [
            (format!("{prefix}.alerts.drift.>"), Kind::Alert),
            (format!("{prefix}.erp.postings.>"), Kind::Posting),
            (format!("{prefix}.dlq.>"), Kind::DeadLetter),
        ] {
            let mut subscriber = client.subscribe(subject).await?;
            let feed = feed.clone();
            tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    feed.note(kind, &message);
                }
            });
        }
        Ok(feed)
    }

    fn note(&self, kind: Kind, message: &async_nats::Message) {
        let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
        let mut seen = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = id {
            if !seen.ids.insert(format!("{kind:?}/{id}")) {
                return;
            }
        }
        let headers = message.headers.as_ref();
        match kind {
            Kind::Alert => {
                let Some(alert) = decode::<Alert>(headers, &message.payload) else {
                    return;
                };
                *seen.alerts_by_state.entry(alert.state.clone()).or_default() += 1;
                push(&mut seen.alerts, alert_line(alert));
            }
            Kind::Posting => {
                let Some(posting) = decode::<Posting>(headers, &message.payload) else {
                    return;
                };
                *seen.postings_by_kind.entry(posting.kind.clone()).or_default() += 1;
                push(&mut seen.postings, posting_line(posting));
            }
            Kind::DeadLetter => {
                let reason = message.subject.rsplit('.').next().unwrap_or_default().to_string();
                *seen.dead_letters_by_reason.entry(reason).or_default() += 1;
            }
        }
    }

    /// Copies what was seen into `snapshot`.
    pub fn fill(&self, snapshot: &mut Snapshot) {
        let seen = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshot.alerts = seen.alerts.iter().cloned().collect();
        snapshot.postings = seen.postings.iter().cloned().collect();
        snapshot.alerts_by_state = seen.alerts_by_state.clone();
        snapshot.postings_by_kind = seen.postings_by_kind.clone();
        snapshot.dead_letters_by_reason = seen.dead_letters_by_reason.clone();
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Alert,
    Posting,
    DeadLetter,
}

fn push<T>(recent: &mut VecDeque<T>, item: T) {
    if recent.len() == RECENT_MAX {
        recent.pop_front();
    }
    recent.push_back(item);
}

fn alert_line(a: Alert) -> AlertLine {
    AlertLine {
        store: a.store,
        day: a.business_day,
        sku: a.sku,
        state: a.state,
        severity: a.severity,
        revision: a.revision,
        drift_units: a.drift_units,
        drift_value: a.drift_value,
    }
}

fn posting_line(p: Posting) -> PostingLine {
    PostingLine { id: p.id, kind: p.kind, transactions: p.control.transactions, net: p.control.net }
}
