//! The ERP webhook (CONTRACT §5, §6): POSTs every posting of `RETAIL_ERP`, in stream order, to
//! the configured URL, and parks the postings the ERP rejects for good on `P.dlq.erp_rejected`.
//!
//! The stream is the durable queue: the webhook reads it through its own durable pull consumer
//! with `max_ack_pending = 1` and acks a posting only once the ERP answered 2xx or the posting
//! sits on the DLQ, so tally's state holds nothing of it and a restart resumes at the first
//! posting not yet completed. A posting may reach the ERP more than once (a crash between the
//! 2xx and the ack); its `Idempotency-Key` lets the ERP book it once.
//!
//! It must never skip a posting, never send one out of order and never log the auth header.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{parse_duration, Config};
use crate::health::{Component, Health};
use crate::runner::wait_or_shutdown;
use crate::telemetry;

/// The stream of ERP postings (CONTRACT §1).
pub const ERP_STREAM: &str = "RETAIL_ERP";
/// The first wait after a failed attempt; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const _: () = assert!(BACKOFF_MIN.as_millis() < BACKOFF_MAX.as_millis());
/// How long one pull request waits for the next posting before asking again.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Extra ack wait beyond one attempt and one backoff, so that a posting being retried (with a
/// progress ack before each attempt) is never redelivered behind the webhook's back.
const ACK_WAIT_MARGIN: Duration = Duration::from_secs(15);
/// Characters of the ERP's answer kept in `Tally-Error-Detail`.
const DETAIL_BODY_CHARS: usize = 200;
/// Bytes of the ERP's answer read at most; enough for [`DETAIL_BODY_CHARS`] of any UTF-8.
const DETAIL_BODY_BYTES: usize = 4 * DETAIL_BODY_CHARS;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("erp.webhook.auth_header must read `Name: value` with a valid header name and value")]
    AuthHeader,
    #[error("erp.webhook.timeout: {0}")]
    Timeout(String),
    #[error("cannot build the HTTP client for the ERP webhook")]
    Client(#[source] reqwest::Error),
}

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: the ERP has the posting.
    Delivered,
    /// 408, 429, 5xx, other non-final answers, timeouts, connection errors: send it again.
    Retry(String),
    /// Any other 4xx: the ERP will never take this posting.
    Rejected { status: u16, detail: String },
}

/// How an HTTP status ends an attempt, before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delivered,
    Retry,
    Reject,
}

fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 => Verdict::Retry,
        400..=499 => Verdict::Reject,
        // 5xx is the ERP's trouble; 1xx and 3xx (redirects are not followed) mean the URL needs
        // an operator, and retrying keeps the posting and everything after it until then.
        _ => Verdict::Retry,
    }
}

/// How handling one posting ended.
enum Handled {
    /// Delivered or parked: ack it.
    Done,
    /// Shutdown came first: leave it for the next start.
    Shutdown,
}

/// The posting being handled: what the POST and the DLQ entry need.
struct Posting<'a> {
    id: String,
    content_type: String,
    subject: &'a str,
    stream_seq: u64,
    payload: &'a bytes::Bytes,
}

pub struct Webhook {
    js: jetstream::Context,
    health: Arc<Health>,
    erp: ErpClient,
    consumer: String,
    prefix: String,
}

impl Webhook {
    /// The webhook of `config.erp.webhook`, or `None` when none is configured.
    pub fn from_config(config: &Config, js: jetstream::Context, health: Arc<Health>) -> Result<Option<Webhook>, WebhookError> {
        let (Some(webhook), Some(erp)) = (&config.erp.webhook, ErpClient::from_config(config)?) else { return Ok(None) };
        Ok(Some(Webhook {
            js,
            health,
            erp,
            consumer: webhook.consumer.clone(),
            prefix: config.input.subject_prefix.clone(),
        }))
    }

    /// Delivers postings until shutdown. A posting in flight at shutdown is handed back to the
    /// server (nak), so the next start sends it first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        telemetry::webhook_started();
        let mut backoff = BACKOFF_MIN;
        // The stream sequence of the last posting completed by this process: a redelivery of it
        // (its ack was lost) is acked again, not sent again.
        let mut last_done = 0u64;
        'connect: while !*shutdown.borrow() {
            let consumer = match self.consumer().await {
                Ok(consumer) => consumer,
                Err(err) => {
                    self.nats_failed(&format!("{err:#}"), "Cannot set up the ERP webhook's consumer; retrying.");
                    if wait_or_shutdown(&mut shutdown, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            info!(consumer = %self.consumer, "ERP webhook consuming.");
            loop {
                let message = tokio::select! {
                    next = next_message(&consumer) => next,
                    _ = shutdown.wait_for(|stop| *stop) => break 'connect,
                };
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        self.health.set(Component::Webhook, Ok(()));
                        continue;
                    }
                    Err(err) => {
                        self.nats_failed(&err.to_string(), "Reading RETAIL_ERP for the ERP webhook failed; retrying.");
                        if wait_or_shutdown(&mut shutdown, backoff).await {
                            break 'connect;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue 'connect;
                    }
                };
                backoff = BACKOFF_MIN;
                self.health.set(Component::Webhook, Ok(()));
                let stream_seq = match message.info() {
                    Ok(info) => info.stream_sequence,
                    Err(err) => {
                        // Only a JetStream delivery has metadata; anything else is not a posting.
                        warn!(error = %err, subject = %message.subject, "Webhook message without JetStream metadata; skipped.");
                        continue;
                    }
                };
                if stream_seq > last_done {
                    match self.handle(&message, stream_seq, &mut shutdown).await {
                        Handled::Done => last_done = stream_seq,
                        Handled::Shutdown => {
                            if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
                                warn!(error = %err, "Handing the posting in flight back failed; it is redelivered after the ack wait.");
                            }
                            break 'connect;
                        }
                    }
                }
                if let Err(err) = message.double_ack().await {
                    // The server redelivers it after the ack wait; `last_done` skips it then.
                    warn!(error = %err, stream_seq, "Acking a completed posting failed.");
                }
            }
        }
        info!("ERP webhook stopped.");
    }

    /// The durable consumer, created when absent; an existing one is used as it is.
    async fn consumer(&self) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
        let stream = self.js.get_stream(ERP_STREAM).await?;
        let config = consumer::pull::Config {
            durable_name: Some(self.consumer.clone()),
            description: Some("tally: ERP postings to the HTTP webhook".into()),
            filter_subject: format!("{}.erp.postings.*", self.prefix),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.erp.timeout + BACKOFF_MAX + ACK_WAIT_MARGIN,
            // One posting out at a time: strict stream order, and a retried posting holds the rest.
            max_ack_pending: 1,
            ..Default::default()
        };
        Ok(stream.get_or_create_consumer(&self.consumer, config).await?)
    }

    fn nats_failed(&self, error: &str, message: &'static str) {
        warn!(error, "{message}");
        self.health.set(Component::Webhook, Err(format!("ERP webhook cannot read {ERP_STREAM}: {error}")));
    }

    /// POSTs one posting until the ERP answers 2xx or rejects it for good (then parks it).
    async fn handle(&self, message: &jetstream::Message, stream_seq: u64, shutdown: &mut watch::Receiver<bool>) -> Handled {
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let id = header("Nats-Msg-Id").unwrap_or_else(|| {
            // tally always sets it; something else published here. Still give the ERP a stable key.
            warn!(stream_seq, subject = %message.subject, "Posting without Nats-Msg-Id; keyed by its stream sequence.");
            format!("{ERP_STREAM}/{stream_seq}")
        });
        let posting = Posting {
            id,
            content_type: header("Content-Type").unwrap_or_else(|| "application/json".into()),
            subject: message.subject.as_str(),
            stream_seq,
            payload: &message.payload,
        };
        let mut backoff = BACKOFF_MIN;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 1 {
                // Keeps the server from redelivering the posting while it is being retried.
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %err, posting_id = %posting.id, "Progress ack failed.");
                }
            }
            let outcome = tokio::select! {
                outcome = self.erp.post(&posting.id, &posting.content_type, posting.payload) => outcome,
                _ = shutdown.wait_for(|stop| *stop) => return Handled::Shutdown,
            };
            match outcome {
                Attempt::Delivered => {
                    telemetry::webhook_delivered(unix_now_seconds());
                    self.health.set(Component::Webhook, Ok(()));
                    if attempt > 1 {
                        info!(posting_id = %posting.id, attempt, "ERP took the posting after retries.");
                    }
                    return Handled::Done;
                }
                Attempt::Rejected { status, detail } => {
                    if !self.park(&posting, &detail, shutdown).await {
                        return Handled::Shutdown;
                    }
                    telemetry::webhook_rejected();
                    self.health.set(Component::Webhook, Ok(()));
                    error!(posting_id = %posting.id, status, detail = %detail, "ERP rejected the posting; parked on the DLQ.");
                    return Handled::Done;
                }
                Attempt::Retry(reason) => {
                    telemetry::webhook_retried();
                    warn!(
                        posting_id = %posting.id, attempt, retry_in_ms = backoff.as_millis() as u64, reason = %reason,
                        "ERP webhook attempt failed; retrying the same posting."
                    );
                    self.health.set(
                        Component::Webhook,
                        Err(format!("ERP webhook failing on posting {} (attempt {attempt}): {reason}", posting.id)),
                    );
                }
            }
            if wait_or_shutdown(shutdown, backoff).await {
                return Handled::Shutdown;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Puts the posting verbatim on `P.dlq.erp_rejected` and awaits the PubAck, retrying with
    /// backoff. False when shutdown came first (the posting is then not acked either).
    async fn park(&self, posting: &Posting<'_>, detail: &str, shutdown: &mut watch::Receiver<bool>) -> bool {
        let subject = format!("{}.dlq.erp_rejected", self.prefix);
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("dlq/{}", posting.id));
            headers.insert("Tally-Error", "erp_rejected");
            headers.insert("Tally-Error-Detail", detail);
            headers.insert("Tally-Source-Subject", posting.subject);
            headers.insert("Tally-Source-Sequence", posting.stream_seq.to_string());
            headers.insert("Content-Type", posting.content_type.as_str());
            let published = async {
                self.js.publish_with_headers(subject.clone(), headers, posting.payload.clone()).await?.await?;
                anyhow::Ok(())
            };
            let result = tokio::select! {
                result = published => result,
                _ = shutdown.wait_for(|stop| *stop) => return false,
            };
            match result {
                Ok(()) => return true,
                Err(err) => {
                    warn!(posting_id = %posting.id, error = %format!("{err:#}"), "Parking a rejected posting on the DLQ failed; retrying.");
                    self.health.set(Component::Webhook, Err(format!("cannot park rejected posting {} on the DLQ: {err:#}", posting.id)));
                    if wait_or_shutdown(shutdown, backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The HTTP side of the webhook: one POST of one posting to the configured URL, with its
/// timeout and auth header. `tally dlq replay` re-delivers parked postings through it too.
pub struct ErpClient {
    http: reqwest::Client,
    url: String,
    /// Marked sensitive, so that no `Debug` of a request shows it.
    auth: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl ErpClient {
    /// The client of `config.erp.webhook`, or `None` when none is configured.
    pub fn from_config(config: &Config) -> Result<Option<ErpClient>, WebhookError> {
        let Some(webhook) = &config.erp.webhook else { return Ok(None) };
        let timeout = parse_duration(&webhook.timeout).map_err(WebhookError::Timeout)?;
        let auth = webhook.auth_header.as_deref().map(parse_auth_header).transpose()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Some(ErpClient { http, url: webhook.url.clone(), auth, timeout }))
    }

    /// One POST of a posting's bytes, keyed by its id (`Idempotency-Key`), with the configured
    /// timeout.
    pub async fn post(&self, id: &str, content_type: &str, payload: &bytes::Bytes) -> Attempt {
        let mut request = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, content_type)
            .header("Idempotency-Key", id)
            .body(payload.clone());
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Attempt::Retry(describe_http_error(&err)),
        };
        let status = response.status();
        match verdict(status.as_u16()) {
            Verdict::Delivered => Attempt::Delivered,
            Verdict::Retry => Attempt::Retry(format!("HTTP {status}")),
            Verdict::Reject => {
                // The answer says why; read a bounded prefix of it (it may be huge or never end).
                let mut body = Vec::new();
                while body.len() < DETAIL_BODY_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                body.truncate(DETAIL_BODY_BYTES);
                Attempt::Rejected { status: status.as_u16(), detail: error_detail(status, &body) }
            }
        }
    }
}

/// The next posting, or `None` when the pull request expired with nothing new.
async fn next_message(consumer: &consumer::Consumer<consumer::pull::Config>) -> Result<Option<jetstream::Message>, async_nats::Error> {
    let mut batch = consumer.batch().max_messages(1).expires(FETCH_WAIT).messages().await?;
    batch.next().await.transpose()
}

/// `Name: value` → a header pair, the value marked sensitive.
fn parse_auth_header(text: &str) -> Result<(HeaderName, HeaderValue), WebhookError> {
    let (name, value) = text.split_once(':').ok_or(WebhookError::AuthHeader)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| WebhookError::AuthHeader)?;
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| WebhookError::AuthHeader)?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// `Tally-Error-Detail`: the status and the start of the answer, on one line.
fn error_detail(status: reqwest::StatusCode, body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    let body: String = body.chars().take(DETAIL_BODY_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}

/// A transport error in words, without the URL (it may carry credentials).
fn describe_http_error(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unix_now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which answers complete, retry or park a posting (CONTRACT §6: 4xx but 408/429 park).
    #[test]
    fn statuses_map_to_deliver_retry_or_reject() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(verdict(status), Verdict::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599, 100, 301, 302, 304, 307] {
            assert_eq!(verdict(status), Verdict::Retry, "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422, 499] {
            assert_eq!(verdict(status), Verdict::Reject, "{status}");
        }
    }

    // Proves the DLQ detail is one line, holds the status and at most 200 characters of the body.
    #[test]
    fn error_detail_is_one_bounded_line() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(error_detail(status, b""), "HTTP 400 Bad Request");
        assert_eq!(error_detail(status, b"{\"error\":\n\"unknown sku\"}\r\n"), "HTTP 400 Bad Request: {\"error\": \"unknown sku\"}");
        let long = "é".repeat(500);
        let detail = error_detail(status, long.as_bytes());
        assert_eq!(detail, format!("HTTP 400 Bad Request: {}", "é".repeat(200)));
        assert!(!detail.contains(['\r', '\n']));
    }

    // Proves the auth header is split at its first colon and its value hidden from Debug output.
    #[test]
    fn auth_header_parses_and_stays_secret() {
        let (name, value) = parse_auth_header("Authorization: Bearer a:b").expect("a valid header");
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(value.to_str().ok(), Some("Bearer a:b"));
        assert!(!format!("{value:?}").contains("Bearer"));
        assert!(matches!(parse_auth_header("no colon"), Err(WebhookError::AuthHeader)));
        assert!(matches!(parse_auth_header("Bad Name: x"), Err(WebhookError::AuthHeader)));
        assert!(matches!(parse_auth_header("X-Key: a\nb"), Err(WebhookError::AuthHeader)));
    }
}
