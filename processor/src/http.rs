//! The HTTP API of docs/http-api.md: metrics, health, readiness and the day's reconciliation.
//! Read-only: it never changes state.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tally_state::Store;
use tally_topologies::drift::DriftAlert;
use tally_topologies::{report, trace as record_trace};
use tokio::sync::watch;

use crate::health::Health;

mod cluster;
mod unmapped;

pub use cluster::ClusterView;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
    /// `http.bearer_token`: required on `/v1/*` when set.
    pub bearer_token: Option<Arc<str>>,
    /// When several instances share the partitions: who runs what.
    pub cluster: Option<ClusterView>,
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/stores/{store}/days/{day}", get(store_day))
        .route("/v1/alerts", get(alerts))
        .route("/v1/stores/{store}/unmapped", get(unmapped::unmapped))
        .route("/v1/trace/{id}", get(trace))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), cluster::to_owner))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(v1)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// Checks `Authorization: Bearer <token>` when a token is configured, in constant time.
async fn require_token(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = &state.bearer_token else { return next.run(request).await };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        next.run(request).await
    } else {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required".into());
        response.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        response
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves until shutdown. Binding failures are returned (the port is taken, say).
pub async fn serve(addr: SocketAddr, state: ApiState, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on http.listen {addr}: {e}"))?;
    tracing::info!(%addr, "HTTP API listening.");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

async fn metrics(State(state): State<ApiState>) -> Response {
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let (status, mut body) = match state.health.check() {
        Ok(()) => (StatusCode::OK, json!({"status": "ready"})),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not ready", "reasons": problems})),
    };
    if let Some(view) = &state.cluster {
        body["instance"] = json!(view.instance);
        let running = view.running();
        let taking_over: Vec<u32> = view.owned().into_iter().filter(|p| !running.contains(p)).collect();
        body["partitions"] = json!(running);
        body["taking_over"] = json!(taking_over);
    }
    (status, Json(body)).into_response()
}

async fn store_day(State(state): State<ApiState>, Path((store, day)): Path<(String, String)>) -> Response {
    let Ok(day) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") else {
        return error(StatusCode::NOT_FOUND, format!("{day:?} is not a business day like 2026-11-27"));
    };
    let store_handle = Arc::clone(&state.store);
    let id = store.clone();
    let result = tokio::task::spawn_blocking(move || report::day_report(store_handle.as_ref(), &id, day)).await;
    match result {
        Ok(Ok(Some(body))) => Json(body).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no data for store {store:?} on {day}")),
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}")),
    }
}

#[derive(serde::Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    /// `instance`: only this instance's partitions, with their numbers (several instances).
    scope: Option<String>,
}

/// Alerts listed at most; the latest revision of each, in (store, day, sku) order.
const ALERTS_MAX: usize = 10_000;

async fn alerts(State(state): State<ApiState>, Query(query): Query<AlertsQuery>) -> Response {
    if let Some(wanted) = &query.state {
        if !matches!(wanted.as_str(), "firing" | "resolved" | "final") {
            return error(StatusCode::BAD_REQUEST, format!("state {wanted:?} is not one of firing, resolved, final"));
        }
    }
    let instance_only = match query.scope.as_deref() {
        None => false,
        Some("instance") => true,
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("scope {other:?} is not \"instance\"")),
    };
    let Some(view) = &state.cluster else {
        return match local_alerts(&state.store, query.state).await {
            Ok(alerts) => Json(json!({"alerts": alerts})).into_response(),
            Err(response) => response,
        };
    };
    // The partitions read throughout: those running both before and after the scan.
    let before = view.running();
    let alerts = match local_alerts(&state.store, query.state.clone()).await {
        Ok(alerts) => alerts,
        Err(response) => return response,
    };
    let partitions: Vec<u32> = view.running().into_iter().filter(|p| before.contains(p)).collect();
    if instance_only {
        return Json(json!({"alerts": alerts, "partitions": partitions})).into_response();
    }
    let token = state.bearer_token.as_deref();
    cluster::everywhere(view, token, query.state.as_deref(), cluster::InstanceAlerts { alerts, partitions }, ALERTS_MAX)
        .await
}

/// The latest revision of each alert this instance's state holds, in key order.
async fn local_alerts(store: &Arc<dyn Store>, wanted: Option<String>) -> Result<Vec<DriftAlert>, Response> {
    let store = Arc::clone(store);
    let result =
        tokio::task::spawn_blocking(move || report::alerts(store.as_ref(), wanted.as_deref(), ALERTS_MAX)).await;
    match result {
        Ok(Ok(alerts)) => Ok(alerts),
        Ok(Err(err)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}"))),
        Err(err) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}"))),
    }
}

#[derive(serde::Deserialize)]
struct TraceQuery {
    store: Option<String>,
    /// `instance`: only this instance's partitions, with their numbers (several instances).
    scope: Option<String>,
}

/// docs/http-api.md, "Trace a record".
async fn trace(State(state): State<ApiState>, Path(id): Path<String>, Query(query): Query<TraceQuery>) -> Response {
    let instance_only = match query.scope.as_deref() {
        None => false,
        Some("instance") => true,
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("scope {other:?} is not \"instance\"")),
    };
    // Without a store, several instances search every one's partitions (a request with one is
    // redirected to its owner before it gets here).
    let everywhere = state.cluster.as_ref().filter(|_| query.store.is_none());
    let before = everywhere.map(|view| view.running());
    let records = match local_trace(&state.store, &id, query.store.clone()).await {
        Ok(records) => records,
        Err(response) => return response,
    };
    if let (Some(view), Some(before)) = (everywhere, before) {
        let partitions: Vec<u32> = view.running().into_iter().filter(|p| before.contains(p)).collect();
        if instance_only {
            return Json(json!({"id": id, "records": records, "partitions": partitions})).into_response();
        }
        let mine = cluster::InstanceTrace { records, partitions };
        return cluster::trace_everywhere(view, state.bearer_token.as_deref(), &id, mine).await;
    }
    if records.is_empty() {
        let place = query.store.map(|s| format!(" in store {s:?}")).unwrap_or_default();
        return error(StatusCode::NOT_FOUND, format!("no record with id {id:?}{place}: never received, or pruned"));
    }
    Json(json!({"id": id, "records": records})).into_response()
}

/// What this instance's state holds of record `id`, in `store` or in every store.
async fn local_trace(
    state: &Arc<dyn Store>,
    id: &str,
    store: Option<String>,
) -> Result<Vec<serde_json::Value>, Response> {
    let state = Arc::clone(state);
    let wanted = id.to_string();
    let result =
        tokio::task::spawn_blocking(move || record_trace::trace(state.as_ref(), &wanted, store.as_deref())).await;
    match result {
        Ok(Ok(records)) => Ok(records),
        Ok(Err(err)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}"))),
        Err(err) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}"))),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}
