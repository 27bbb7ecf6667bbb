//! `GET /v1/egress/{name}?from=N&limit=M[&wait=10s]`: consumers read an
//! egress log by offset, long-polling for records that are not there yet;
//! with an egress token, only consumers that hold it.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, auth, delay::parse_delay, error::ApiError};

/// The most records one read returns.
pub const MAX_EGRESS_LIMIT: usize = 1_000;

/// How long a read waits for a first record unless told otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The longest wait a client may ask for (keeps connections from piling up).
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
pub(super) struct ReadQuery {
    from: Option<u64>,
    limit: Option<usize>,
    wait: Option<String>,
}

/// 200 with `{"records": [{"offset", "id", "at_ms", "record"}], "next": N}`;
/// `next` is the offset to read from next. An empty list after the wait
/// means no new records yet. 401 without the egress token, when one is set.
pub(super) async fn read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if let Some(expected) = state.egress_token.as_deref() {
        auth::bearer(
            expected,
            &headers,
            "egress reads need the header `Authorization: Bearer <egress token>`",
        )?;
    }
    let Path(name) = name.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_EGRESS_LIMIT);
    let wait = match query.wait.as_deref() {
        None => DEFAULT_WAIT,
        Some(text) => parse_delay(text)
            .map_err(|m| ApiError::bad_request("invalid_query", m))?
            .min(MAX_WAIT),
    };
    let records = state.runtime.read_egress(&name, from, limit, wait).await?;
    let next = records.last().map_or(from, |r| r.offset + 1);
    Ok(Json(json!({ "records": records, "next": next })).into_response())
}
