//! `GET /v1/stores/<store>/unmapped` (docs/http-api.md, "Unmapped codes"): the codes a store's
//! records carried that no SKU alias mapped, read from state.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use tally_topologies::unmapped;

use super::{error, ApiState};

/// Rows listed by default, and at most.
const LIMIT_DEFAULT: usize = 1_000;
const LIMIT_MAX: usize = 10_000;

#[derive(serde::Deserialize)]
pub(super) struct UnmappedQuery {
    business_day: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn unmapped(
    State(state): State<ApiState>,
    Path(store): Path<String>,
    Query(query): Query<UnmappedQuery>,
) -> Response {
    let day = match query.business_day.as_deref().map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d")) {
        None => None,
        Some(Ok(day)) => Some(day),
        Some(Err(_)) => {
            let text = query.business_day.unwrap_or_default();
            return error(StatusCode::BAD_REQUEST, format!("business_day {text:?} is not a day like 2026-11-27"));
        }
    };
    let limit = query.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={LIMIT_MAX}"));
    }
    let handle = Arc::clone(&state.store);
    let id = store.clone();
    let result = tokio::task::spawn_blocking(move || unmapped::report(handle.as_ref(), &id, day, limit)).await;
    match result {
        Ok(Ok(Some(body))) => Json(body).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no data for store {store:?}")),
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading state failed: {err}")),
    }
}
