//! `POST /v1/{type}/{id}/{handler}` and `.../send`: HTTP requests become
//! [`Runtime::call_json`](crate::Runtime::call_json) and
//! [`Runtime::enqueue_json`](crate::Runtime::enqueue_json).
//!
//! Everything a request can be rejected for (path, headers, body, delay) is
//! checked before the call is submitted, so a rejected request changes nothing.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Body,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, body::read_args, delay::parse_delay, error::ApiError};
use crate::{JsonReply, protocol::idempotency};

/// The header that makes a call exactly-once across client retries.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The path of a call.
#[derive(Debug, Deserialize)]
pub(super) struct Target {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
    handler: String,
}

/// The query of `/send`.
#[derive(Debug, Deserialize)]
pub(super) struct SendQuery {
    delay: Option<String>,
}

/// `POST /v1/{type}/{id}/{handler}`: 200 with the reply, 422 with a handler's `Err`.
pub(super) async fn call(
    State(state): State<Arc<AppState>>,
    target: Result<Path<Target>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(target) = target.map_err(bad_path)?;
    let key = idempotency_key(&headers)?;
    let args = read_args(&headers, body, state.body_limit, state.body_read_timeout).await?;
    let reply = state
        .runtime
        .call_json(&target.type_name, &target.id, &target.handler, args, key)
        .await
        .map_err(|e| ApiError::from_runtime(e, state.list_api_in_errors))?;
    Ok(match reply {
        JsonReply::Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        JsonReply::Err { error, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "handler_error", message)
                .with_details(error)
                .into_response()
        }
    })
}

/// `POST /v1/{type}/{id}/{handler}/send[?delay=5s]`: 202 once the message is
/// committed, with its invocation id (the idempotency key).
pub(super) async fn send(
    State(state): State<Arc<AppState>>,
    target: Result<Path<Target>, PathRejection>,
    query: Result<Query<SendQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(target) = target.map_err(bad_path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let delay = match query.delay.as_deref() {
        None => Duration::ZERO,
        Some(text) => parse_delay(text).map_err(|m| ApiError::bad_request("invalid_delay", m))?,
    };
    // Enqueueing is always keyed, so that the id returned names exactly one
    // message; without a client key a fresh random one is used, and a 503
    // gives it back, so that the client can retry under it.
    let given = idempotency_key(&headers)?;
    let generated = given.is_none();
    let key = given.unwrap_or_else(|| format!("inv-{:032x}", rand::random::<u128>()));
    let args = read_args(&headers, body, state.body_limit, state.body_read_timeout).await?;
    state
        .runtime
        .enqueue_json(
            &target.type_name,
            &target.id,
            &target.handler,
            args,
            delay,
            Some(key.clone()),
        )
        .await
        .map_err(|e| {
            let refused = ApiError::from_runtime(e, state.list_api_in_errors);
            if generated {
                refused.with_invocation_id(&key)
            } else {
                refused
            }
        })?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "invocation_id": key }))).into_response())
}

fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        format!("the path cannot be read: {}", rejection.body_text()),
    )
}

/// The `Idempotency-Key` header, checked as every key is
/// ([`MAX_IDEMPOTENCY_KEY_LEN`](crate::MAX_IDEMPOTENCY_KEY_LEN) printable
/// ASCII characters at most).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        ApiError::from(crate::Error::InvalidIdempotencyKey {
            reason: "it holds a space, a control or a non-ASCII character".into(),
        })
    })?;
    idempotency::check_key(key)?;
    Ok(Some(key.to_owned()))
}
