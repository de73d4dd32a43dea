//! Pushes drift alerts to Prometheus Alertmanager's v2 API (`[alertmanager] url`).
//!
//! The state's latest revision of every alert is the source of truth. Every `resend_interval`
//! the active ones are re-sent with `endsAt` three intervals ahead, so that Alertmanager keeps
//! them while tally lives and resolves them by itself if tally dies; a new revision is pushed at
//! the next check (at most [`CHECK_EVERY`] later) without waiting for the resend. Resolved
//! alerts are sent once per process lifetime with an `endsAt` in the past. This module only
//! reads the state and talks HTTP; it never writes the state, and never logs the URL's
//! credentials.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tally_state::Store;
use tally_topologies::drift::DriftAlert;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::{wait_or_shutdown, Backoff};
use crate::telemetry;

/// The `alertname` label of every alert tally pushes.
pub const ALERT_NAME: &str = "TallyInventoryDrift";
/// Active alerts expire this many resend intervals after the last push (Prometheus uses 4;
/// 3 still tolerates two lost pushes).
const EXPIRY_INTERVALS: u32 = 3;
/// A `final` alert stays active in Alertmanager while its business day is at most this many
/// days before today (UTC); afterwards it is sent once as resolved. Someone must act on a final
/// drift, but a page for last month's stock-take helps nobody.
const FINAL_ACTIVE_DAYS: i64 = 2;
/// Alerts per POST, so that a large backlog of resolved alerts never makes one huge request.
const CHUNK_ALERTS: usize = 500;
/// How often the state's alerts are read to push new revisions promptly. The telemetry's
/// drift-key count reads the same index as often.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The first retry after a failed push; doubles up to [`BACKOFF_MAX`] (or the resend interval
/// when shorter, so that active alerts never expire while Alertmanager is reachable).
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Timeout of one POST.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error response body goes into the log.
const ERROR_BODY_CHARS: usize = 300;
/// The severities tally emits. A resolved alert is sent under each, because the severity may
/// have changed since the firing revision that Alertmanager holds.
const SEVERITIES: [&str; 2] = ["warning", "critical"];

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("reading alerts from the state failed: {0}")]
    State(String),
    #[error("request to Alertmanager failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("Alertmanager answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// One alert of Alertmanager's `POST /api/v2/alerts` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmAlert {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

/// What the pusher remembers between pushes (in memory only).
#[derive(Debug, Default)]
pub struct Memory {
    /// Inactive revisions `(alert id, revision)` already delivered in this process.
    sent_inactive: HashSet<(String, u64)>,
    /// Each active alert's revision and severity as last pushed: a difference means a push is
    /// due, and a changed severity means the old label set must be resolved.
    active: HashMap<String, (u64, String)>,
}

/// One push's alerts and what to remember once Alertmanager accepted them.
#[derive(Debug, Default)]
pub struct Push {
    pub alerts: Vec<AmAlert>,
    inactive: Vec<(String, u64)>,
    active: HashMap<String, (u64, String)>,
}

impl Push {
    /// Whether this push tells Alertmanager something the last accepted one did not.
    pub fn changes(&self, memory: &Memory) -> bool {
        !self.inactive.is_empty() || self.active != memory.active
    }
}

impl Memory {
    /// Records a push Alertmanager accepted.
    pub fn accepted(&mut self, push: Push) {
        self.sent_inactive.extend(push.inactive);
        self.active = push.active;
    }
}

/// Builds the alerts to push at wall-clock `now` from the state's latest revisions
/// (docs/wire-format.md, "Drift alert"). Pure, so that the rules about `startsAt`/`endsAt` are
/// unit-tested.
pub fn build(revisions: &[DriftAlert], memory: &Memory, now: DateTime<Utc>, resend: Duration) -> Push {
    let expiry = chrono::Duration::from_std(resend * EXPIRY_INTERVALS).unwrap_or(chrono::Duration::hours(1));
    let today = now.date_naive();
    let mut push = Push::default();
    for alert in revisions {
        let (id, revision, severity) = (alert.id.as_str(), u64::from(alert.revision), alert.severity.as_str());
        let evaluated_at = time(Some(&alert.evaluated_at)).unwrap_or(now);
        // Alertmanager needs startsAt ≤ endsAt; event time may run ahead of the wall clock.
        let starts_at = time(alert.over_since.as_deref()).unwrap_or(evaluated_at).min(now);
        if is_active(alert, today) {
            push.alerts.push(am_alert(alert, severity, starts_at, now + expiry));
            if let Some((_, previous)) = memory.active.get(id).filter(|(_, s)| s.as_str() != severity) {
                push.alerts.push(am_alert(alert, previous, starts_at, now));
            }
            push.active.insert(id.to_string(), (revision, severity.to_string()));
        } else if !memory.sent_inactive.contains(&(id.to_string(), revision)) {
            // A past endsAt is what tells Alertmanager the alert is resolved.
            let ends_at = evaluated_at.min(now).max(starts_at);
            for severity in SEVERITIES {
                push.alerts.push(am_alert(alert, severity, starts_at, ends_at));
            }
            push.inactive.push((id.to_string(), revision));
        }
    }
    push
}

/// Firing alerts, and final ones with drift for a recent day, are active.
fn is_active(alert: &DriftAlert, today: NaiveDate) -> bool {
    match alert.state.as_str() {
        "firing" => true,
        "final" => {
            let drift = alert.drift_units.parse::<rust_decimal::Decimal>().ok();
            let day = NaiveDate::parse_from_str(&alert.business_day, "%Y-%m-%d").ok();
            match (drift, day) {
                (Some(drift), Some(day)) => !drift.is_zero() && (today - day).num_days() <= FINAL_ACTIVE_DAYS,
                _ => false,
            }
        }
        _ => false,
    }
}

fn time(value: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value?).ok().map(|t| t.with_timezone(&Utc))
}

fn am_alert(alert: &DriftAlert, severity: &str, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> AmAlert {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("alertname".to_string(), ALERT_NAME.to_string());
    labels.insert("store".to_string(), alert.store.clone());
    labels.insert("sku".to_string(), alert.sku.clone());
    labels.insert("business_day".to_string(), alert.business_day.clone());
    labels.insert("severity".to_string(), severity.to_string());
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        "summary".to_string(),
        format!(
            "Store {} sku {} on {}: the POS says {} units left the shelf, inventory recorded {}; drift {} units worth {} ({}).",
            alert.store,
            alert.sku,
            alert.business_day,
            alert.expected_units,
            alert.recorded_units,
            alert.drift_units,
            alert.drift_value,
            alert.state,
        ),
    );
    for (key, value) in [
        ("expected_units", &alert.expected_units),
        ("recorded_units", &alert.recorded_units),
        ("drift_units", &alert.drift_units),
        ("drift_value", &alert.drift_value),
        ("drift_ratio", &alert.drift_ratio),
        ("state", &alert.state),
    ] {
        annotations.insert(key.to_string(), value.clone());
    }
    annotations.insert("revision".to_string(), alert.revision.to_string());
    annotations.insert("alert_id".to_string(), alert.id.clone());
    annotations.insert("unmatched".to_string(), alert.unmatched.join(", "));
    if let Some(by_source) = &alert.expected_units_by_source {
        annotations.insert("expected_units_pos".to_string(), by_source.pos.clone());
        annotations.insert("expected_units_orders".to_string(), by_source.orders.clone());
    }
    AmAlert { labels, annotations, starts_at: rfc3339(starts_at), ends_at: rfc3339(ends_at) }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `url` without user name and password, for logs.
pub fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The pusher task: every `resend` until shutdown, push; on failure retry with capped
/// exponential backoff (never slower than `resend`, so active alerts do not expire while
/// Alertmanager is reachable again).
pub struct Pusher {
    pub store: Arc<dyn Store>,
    /// `<base>/api/v2/alerts`.
    pub endpoint: reqwest::Url,
    pub resend: Duration,
    pub client: reqwest::Client,
}

impl Pusher {
    /// From `[alertmanager]`; `None` when the URL is empty.
    pub fn from_config(
        store: Arc<dyn Store>,
        config: &crate::config::AlertmanagerConfig,
    ) -> anyhow::Result<Option<Pusher>> {
        if config.url.trim().is_empty() {
            return Ok(None);
        }
        let base = reqwest::Url::parse(config.url.trim())
            .map_err(|err| anyhow::anyhow!("alertmanager.url is not a URL: {err}"))?;
        let endpoint = base
            .join(&format!("{}/api/v2/alerts", base.path().trim_end_matches('/')))
            .map_err(|err| anyhow::anyhow!("alertmanager.url: {err}"))?;
        let resend = crate::config::parse_duration(&config.resend_interval)
            .map_err(|err| anyhow::anyhow!("alertmanager.resend_interval: {err}"))?;
        anyhow::ensure!(!resend.is_zero(), "alertmanager.resend_interval must be more than 0");
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Some(Pusher { store, endpoint, resend, client }))
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!(url = %redacted(&self.endpoint), resend_secs = self.resend.as_secs_f64(), "Pushing drift alerts to Alertmanager.");
        let check = CHECK_EVERY.min(self.resend);
        let mut backoff = Backoff::new(BACKOFF_MIN.min(self.resend), BACKOFF_MAX.min(self.resend));
        let mut memory = Memory::default();
        let mut last_push: Option<Instant> = None;
        let mut failing = false;
        loop {
            let resend_due = last_push.is_none_or(|at| at.elapsed() + check / 2 >= self.resend);
            let wait = match self.push_once(&mut memory, resend_due).await {
                Ok(pushed) => {
                    if let Some(alerts) = pushed {
                        last_push = Some(Instant::now());
                        if failing {
                            info!(alerts, "Alertmanager accepts alerts again.");
                        }
                    }
                    failing = false;
                    backoff.succeeded();
                    check
                }
                Err(err) => {
                    telemetry::alertmanager_push_failed();
                    warn!(url = %redacted(&self.endpoint), error = %err, retry_secs = backoff.next_wait().as_secs_f64(), "Pushing alerts to Alertmanager failed; retrying.");
                    failing = true;
                    backoff.failed()
                }
            };
            if wait_or_shutdown(&mut shutdown, wait).await {
                break;
            }
        }
        info!("Alertmanager pusher stopped.");
    }

    /// Reads the alerts and pushes them when something changed or `resend_due`; remembers what
    /// Alertmanager accepted. Returns how many Alertmanager alerts were sent, `None` when no
    /// push was needed.
    pub async fn push_once(&self, memory: &mut Memory, resend_due: bool) -> Result<Option<usize>, PushError> {
        let reader = Arc::clone(&self.store);
        let revisions =
            tokio::task::spawn_blocking(move || tally_topologies::report::alerts(reader.as_ref(), None, usize::MAX))
                .await
                .map_err(|err| PushError::State(err.to_string()))?
                .map_err(|err| PushError::State(err.to_string()))?;
        let push = build(&revisions, memory, Utc::now(), self.resend);
        if push.alerts.is_empty() || !(resend_due || push.changes(memory)) {
            return Ok(None);
        }
        for chunk in push.alerts.chunks(CHUNK_ALERTS) {
            self.post(chunk).await?;
        }
        let sent = push.alerts.len();
        memory.accepted(push);
        Ok(Some(sent))
    }

    async fn post(&self, alerts: &[AmAlert]) -> Result<(), PushError> {
        // `without_url`: the error's text would otherwise carry the URL and its credentials.
        let response = self
            .client
            .post(self.endpoint.clone())
            .json(alerts)
            .send()
            .await
            .map_err(|e| PushError::Http(e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(PushError::Status { status: status.as_u16(), body: body.chars().take(ERROR_BODY_CHARS).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn alert(state: &str, revision: u64, day: &str, drift: &str, severity: &str) -> DriftAlert {
        serde_json::from_value(
            json!({"type": "drift.alert", "id": format!("drift/0042/{day}/100234"), "revision": revision,
               "state": state, "severity": severity, "store": "0042", "sku": "100234", "business_day": day,
               "expected_units": "12", "recorded_units": "9", "drift_units": drift, "drift_value": "59.97",
               "drift_ratio": "0.25", "over_since": format!("{day}T10:30:00-05:00"),
               "evaluated_at": format!("{day}T10:45:12-05:00"), "unmatched": ["T1", "T2"]}),
        )
        .expect("a complete alert")
    }

    const RESEND: Duration = Duration::from_secs(60);

    // Proves the breakdown of expected units by source becomes two annotations when an order
    // touched the key, and that an alert without it gets neither.
    #[test]
    fn orders_breakdown_becomes_annotations() {
        let plain = alert("firing", 1, "2026-11-27", "3", "warning");
        let mut with_orders = plain.clone();
        with_orders.expected_units_by_source =
            Some(tally_topologies::drift::ExpectedBySource { orders: "5".into(), pos: "7".into() });
        let push = build(&[with_orders], &Memory::default(), now(), RESEND);
        let a = &push.alerts[0].annotations;
        assert_eq!((a["expected_units_pos"].as_str(), a["expected_units_orders"].as_str()), ("7", "5"));
        let push = build(&[plain], &Memory::default(), now(), RESEND);
        assert!(!push.alerts[0].annotations.contains_key("expected_units_pos"));
        assert!(!push.alerts[0].annotations.contains_key("expected_units_orders"));
    }

    // Proves a firing alert is pushed with the contract's labels, figures and an endsAt three
    // resend intervals ahead, and again on every push.
    #[test]
    fn firing_is_active_with_labels_and_annotations() {
        let memory = Memory::default();
        let push = build(&[alert("firing", 2, "2026-11-27", "3", "warning")], &memory, now(), RESEND);
        assert_eq!(push.alerts.len(), 1);
        let a = &push.alerts[0];
        assert_eq!(a.labels["alertname"], ALERT_NAME);
        assert_eq!(a.labels["store"], "0042");
        assert_eq!(a.labels["sku"], "100234");
        assert_eq!(a.labels["business_day"], "2026-11-27");
        assert_eq!(a.labels["severity"], "warning");
        assert_eq!(a.labels.len(), 5);
        assert_eq!(a.annotations["drift_units"], "3");
        assert_eq!(a.annotations["drift_value"], "59.97");
        assert_eq!(a.annotations["unmatched"], "T1, T2");
        assert_eq!(a.annotations["alert_id"], "drift/0042/2026-11-27/100234");
        assert_eq!(a.annotations["revision"], "2");
        assert!(a.annotations["summary"].contains("drift 3 units"), "{}", a.annotations["summary"]);
        assert_eq!(a.starts_at, "2026-11-27T12:00:00.000Z", "over_since 15:30Z is after now: clamped to now");
        assert_eq!(a.ends_at, "2026-11-27T12:03:00.000Z");
        let mut memory = memory;
        memory.accepted(push);
        let again = build(&[alert("firing", 2, "2026-11-27", "3", "warning")], &memory, now(), RESEND);
        assert_eq!(again.alerts.len(), 1, "active alerts are re-sent every time");
    }

    // Proves a resolved revision is sent once per process, under both severities, with
    // startsAt ≤ endsAt ≤ now.
    #[test]
    fn resolved_is_sent_once_with_a_past_end() {
        let mut memory = Memory::default();
        let revisions = [alert("resolved", 3, "2026-11-26", "0", "warning")];
        let push = build(&revisions, &memory, now(), RESEND);
        assert_eq!(push.alerts.len(), 2);
        let severities: HashSet<&str> = push.alerts.iter().map(|a| a.labels["severity"].as_str()).collect();
        assert_eq!(severities, HashSet::from(["warning", "critical"]));
        for a in &push.alerts {
            assert_eq!(a.starts_at, "2026-11-26T15:30:00.000Z");
            assert_eq!(a.ends_at, "2026-11-26T15:45:12.000Z");
        }
        memory.accepted(push);
        assert!(build(&revisions, &memory, now(), RESEND).alerts.is_empty());
        // A later revision of the same alert is new again.
        let later = [alert("resolved", 5, "2026-11-26", "0", "warning")];
        assert_eq!(build(&later, &memory, now(), RESEND).alerts.len(), 2);
    }

    // Proves a failed push is retried in full: nothing is remembered until accepted.
    #[test]
    fn nothing_is_remembered_before_acceptance() {
        let memory = Memory::default();
        let revisions = [alert("resolved", 3, "2026-11-26", "0", "warning")];
        let _lost = build(&revisions, &memory, now(), RESEND);
        assert_eq!(build(&revisions, &memory, now(), RESEND).alerts.len(), 2);
    }

    // Proves final alerts are active only with drift and for recent days.
    #[test]
    fn final_is_active_only_while_recent_with_drift() {
        let memory = Memory::default();
        let recent = build(&[alert("final", 4, "2026-11-25", "3", "warning")], &memory, now(), RESEND);
        assert_eq!(recent.alerts.len(), 1);
        assert_eq!(recent.alerts[0].ends_at, "2026-11-27T12:03:00.000Z");
        let old = build(&[alert("final", 4, "2026-11-20", "3", "warning")], &memory, now(), RESEND);
        assert_eq!(old.alerts.len(), 2, "sent once as resolved");
        assert!(old.alerts.iter().all(|a| a.ends_at == "2026-11-20T15:45:12.000Z"));
        let zero = build(&[alert("final", 4, "2026-11-27", "0", "warning")], &memory, now(), RESEND);
        assert!(zero.alerts.iter().all(|a| a.ends_at.as_str() <= "2026-11-27T12:00:00.000Z"));
    }

    // Proves a push is due on a new revision or a new resolve, and not when nothing changed.
    #[test]
    fn changes_are_detected() {
        let mut memory = Memory::default();
        let firing = [alert("firing", 1, "2026-11-27", "3", "warning")];
        let push = build(&firing, &memory, now(), RESEND);
        assert!(push.changes(&memory));
        memory.accepted(push);
        assert!(!build(&firing, &memory, now(), RESEND).changes(&memory));
        let refired = [alert("firing", 3, "2026-11-27", "4", "warning")];
        assert!(build(&refired, &memory, now(), RESEND).changes(&memory));
        let resolved = [alert("resolved", 2, "2026-11-27", "0", "warning")];
        let push = build(&resolved, &memory, now(), RESEND);
        assert!(push.changes(&memory));
        memory.accepted(push);
        assert!(!build(&resolved, &memory, now(), RESEND).changes(&memory));
    }

    // Proves a severity change resolves the label set Alertmanager held under the old one.
    #[test]
    fn severity_change_resolves_the_old_label_set() {
        let mut memory = Memory::default();
        memory.accepted(build(&[alert("firing", 1, "2026-11-27", "3", "warning")], &memory, now(), RESEND));
        let push = build(&[alert("firing", 2, "2026-11-27", "30", "critical")], &memory, now(), RESEND);
        assert_eq!(push.alerts.len(), 2);
        assert_eq!(push.alerts[0].labels["severity"], "critical");
        assert_eq!(push.alerts[0].ends_at, "2026-11-27T12:03:00.000Z");
        assert_eq!(push.alerts[1].labels["severity"], "warning");
        assert_eq!(push.alerts[1].ends_at, "2026-11-27T12:00:00.000Z");
    }

    // Proves credentials in the URL never reach a log line.
    #[test]
    fn redacted_url_has_no_credentials() {
        let url = reqwest::Url::parse("https://user:s3cret@am.example:9093/api/v2/alerts").unwrap();
        let shown = redacted(&url);
        assert!(!shown.contains("s3cret") && !shown.contains("user"), "{shown}");
        assert_eq!(shown, "https://am.example:9093/api/v2/alerts");
    }

    // Proves the endpoint keeps a base path (Alertmanager behind a reverse proxy).
    #[test]
    fn endpoint_keeps_the_base_path() {
        let store: Arc<dyn Store> = Arc::new(tally_state::MemStore::default());
        for (base, want) in [
            ("http://127.0.0.1:9093", "http://127.0.0.1:9093/api/v2/alerts"),
            ("http://127.0.0.1:9093/", "http://127.0.0.1:9093/api/v2/alerts"),
            ("http://h/am/", "http://h/am/api/v2/alerts"),
        ] {
            let config = crate::config::AlertmanagerConfig { url: base.into(), resend_interval: "1m".into() };
            let pusher = Pusher::from_config(Arc::clone(&store), &config).unwrap().unwrap();
            assert_eq!(pusher.endpoint.as_str(), want);
        }
        let off = crate::config::AlertmanagerConfig::default();
        assert!(Pusher::from_config(store, &off).unwrap().is_none());
    }
}
