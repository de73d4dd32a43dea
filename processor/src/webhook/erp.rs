//! One POST of one posting to the ERP (docs/configuration.md, "ERP webhook"), and what its
//! answer means. Knows nothing of NATS or of order; never logs the auth header.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use super::WebhookError;
use crate::config::{parse_duration, Config, WebhookConfig};

/// Characters of the ERP's answer kept in `Tally-Error-Detail`.
const DETAIL_BODY_CHARS: usize = 200;
/// Bytes of the ERP's answer read at most; enough for [`DETAIL_BODY_CHARS`] of any UTF-8.
const DETAIL_BODY_BYTES: usize = 4 * DETAIL_BODY_CHARS;

/// A posting as it goes to the ERP and, when rejected, to the DLQ.
pub struct Posting {
    pub id: String,
    pub content_type: String,
    pub subject: String,
    pub stream_seq: u64,
    pub payload: bytes::Bytes,
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

pub use crate::telemetry::PARK_REASONS;

/// The park reason of a rejected posting's status (one of [`PARK_REASONS`]).
pub fn park_reason(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "too_large",
        422 => "unprocessable",
        _ => "other_4xx",
    }
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
        // an operator, and retrying keeps the posting and the store's later ones until then.
        _ => Verdict::Retry,
    }
}

/// The ERP endpoint and how to reach it.
pub struct Erp {
    http: reqwest::Client,
    url: String,
    /// Marked sensitive, so that no `Debug` of a request shows it.
    auth: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl Erp {
    /// The endpoint of `[erp.webhook]`, or `None` when none is configured.
    pub fn from_config(config: &Config) -> Result<Option<Erp>, WebhookError> {
        config.erp.webhook.as_ref().map(Erp::from_webhook).transpose()
    }

    pub fn from_webhook(webhook: &WebhookConfig) -> Result<Erp, WebhookError> {
        let timeout = parse_duration(&webhook.timeout).map_err(WebhookError::Timeout)?;
        Erp::new(&webhook.url, webhook.auth_header.as_deref(), timeout)
    }

    pub fn new(url: &str, auth_header: Option<&str>, timeout: Duration) -> Result<Erp, WebhookError> {
        let auth = auth_header.map(parse_auth_header).transpose()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Erp { http, url: url.to_string(), auth, timeout })
    }

    /// One POST of the posting's bytes, with the configured timeout.
    pub async fn post(&self, posting: &Posting) -> Attempt {
        let mut request = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, posting.content_type.as_str())
            .header("Idempotency-Key", posting.id.as_str())
            .body(posting.payload.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which answers complete, retry or park a posting (docs/wire-format.md: 4xx but
    // 408/429 park).
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

    // Proves every status that parks a posting maps to a listed, distinct-where-named reason, so
    // the label of tally_postings_parked_total stays within PARK_REASONS.
    #[test]
    fn park_reasons_are_bounded() {
        let named = [(400, "bad_request"), (401, "unauthorized"), (403, "forbidden"), (404, "not_found")];
        let more = [(409, "conflict"), (413, "too_large"), (422, "unprocessable"), (410, "other_4xx")];
        for (status, reason) in named.into_iter().chain(more) {
            assert_eq!(park_reason(status), reason, "{status}");
        }
        for status in (400..=499).filter(|s| verdict(*s) == Verdict::Reject) {
            assert!(PARK_REASONS.contains(&park_reason(status)), "{status}");
        }
        let mut distinct = PARK_REASONS.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), PARK_REASONS.len());
    }

    // Proves the DLQ detail is one line, holds the status and at most 200 characters of the body.
    #[test]
    fn error_detail_is_one_bounded_line() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(error_detail(status, b""), "HTTP 400 Bad Request");
        assert_eq!(
            error_detail(status, b"{\"error\":\n\"unknown sku\"}\r\n"),
            "HTTP 400 Bad Request: {\"error\": \"unknown sku\"}"
        );
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
