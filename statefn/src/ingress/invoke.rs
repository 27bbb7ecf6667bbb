//! `POST /v1/{type}/{id}/{handler}` and `.../send`: HTTP requests become
//! [`Runtime::call_json`](crate::Runtime::call_json) and
//! [`Runtime::enqueue_json`](crate::Runtime::enqueue_json);
//! `GET /v1/invocations/{id}[?wait=10s]` becomes
//! [`Runtime::invocation`](crate::Runtime::invocation), and
//! `DELETE /v1/invocations/{id}`
//! [`Runtime::cancel_invocation`](crate::Runtime::cancel_invocation).
//!
//! Everything a request can be rejected for (path, headers, body, delay) is
//! checked before the call is submitted, so a rejected request changes nothing.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::{Bytes, HttpBody},
    extract::{
        Path, Query, Request, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderName, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, body::read_args, delay::parse_delay, error::ApiError};
use crate::{JsonReply, protocol::idempotency};

/// The header that makes a call exactly-once across client retries.
/// A `HeaderName` rather than a `&str`: a lookup by string parses the name
/// on every request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The W3C trace context header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

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
    request: Request,
) -> Result<Response, ApiError> {
    let Path(target) = target.map_err(bad_path)?;
    // The request itself, not a `HeaderMap` extractor: that one clones
    // every header.
    let (Parts { headers, .. }, body) = request.into_parts();
    call_target(
        &state,
        &target.type_name,
        &target.id,
        &target.handler,
        &headers,
        body,
    )
    .await
}

/// [`call`] once its path is read: also what the [`Front`](super::front::Front)
/// runs for the calls it serves without the router.
pub(super) async fn call_target<B>(
    state: &AppState,
    type_name: &str,
    id: &str,
    handler: &str,
    headers: &HeaderMap,
    body: B,
) -> Result<Response, ApiError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let key = idempotency_key(headers)?;
    let args = read_args(headers, body, state.body_limit, state.body_read_timeout).await?;
    let reply = state
        .runtime
        .call_json_traced(type_name, id, handler, args, key, trace_parent(headers))
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
/// committed, with its invocation id (naming the instance and the
/// idempotency key).
pub(super) async fn send(
    State(state): State<Arc<AppState>>,
    target: Result<Path<Target>, PathRejection>,
    query: Result<Query<SendQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(target) = target.map_err(bad_path)?;
    let (Parts { headers, .. }, body) = request.into_parts();
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
    let id = state
        .runtime
        .enqueue_json_traced(
            &target.type_name,
            &target.id,
            &target.handler,
            args,
            delay,
            Some(key.clone()),
            trace_parent(&headers),
        )
        .await
        .map_err(|e| {
            let refused = ApiError::from_runtime(e, state.list_api_in_errors);
            if generated {
                match crate::Address::new(target.type_name.as_str(), target.id.as_str()) {
                    Ok(address) => refused.with_invocation_id(
                        &crate::InvocationId::enqueued(address, key.clone()),
                        &key,
                    ),
                    Err(_) => refused,
                }
            } else {
                refused
            }
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "invocation_id": id.to_string() })),
    )
        .into_response())
}

/// The query of `GET /v1/invocations/{id}`.
#[derive(Debug, Deserialize)]
pub(super) struct StatusQuery {
    wait: Option<String>,
}

/// The longest `?wait=` a status request may ask for (keeps connections
/// from piling up).
const MAX_STATUS_WAIT: Duration = Duration::from_secs(60);

/// `GET /v1/invocations/{id}[?wait=10s]`: what became of an enqueued
/// invocation, `{"invocation_id", "status"}` with `"reply"` once done (or,
/// if its handler returned `Err`, `"error": {"code": "handler_error",
/// "message", "details"}` as the call itself would have answered) and
/// `"error"` once failed; with `wait`, answers when it is done or the wait
/// passed. 404 `unknown_invocation` for an id that is unknown.
pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let wait = match query.wait.as_deref() {
        None => Duration::ZERO,
        Some(text) => parse_delay(text)
            .map_err(|m| ApiError::bad_request("invalid_query", m))?
            .min(MAX_STATUS_WAIT),
    };
    let runtime_error = |e| ApiError::from_runtime(e, state.list_api_in_errors);
    let id: crate::InvocationId = id.parse().map_err(runtime_error)?;
    let status = state
        .runtime
        .invocation(&id, wait)
        .await
        .map_err(runtime_error)?;
    let mut body = serde_json::Map::new();
    body.insert("invocation_id".into(), json!(id.to_string()));
    body.insert("status".into(), json!(status.name()));
    match status {
        crate::InvocationStatus::Unknown => {
            return Err(runtime_error(crate::Error::UnknownInvocation {
                id: id.to_string(),
            }));
        }
        crate::InvocationStatus::Done(JsonReply::Ok(value)) => {
            body.insert("reply".into(), value);
        }
        crate::InvocationStatus::Done(JsonReply::Err { error, message }) => {
            let error = json!({ "code": "handler_error", "message": message, "details": error });
            body.insert("error".into(), error);
        }
        crate::InvocationStatus::Failed { error } => {
            body.insert(
                "error".into(),
                json!({ "code": "failed", "message": error }),
            );
        }
        _ => {}
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `DELETE /v1/invocations/{id}`: cancels a delayed invocation before it
/// runs; 200 once the cancellation is committed, 404 if none is pending.
pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let id: crate::InvocationId = id
        .parse()
        .map_err(|e| ApiError::from_runtime(e, state.list_api_in_errors))?;
    state
        .runtime
        .cancel_invocation(&id)
        .await
        .map_err(|e| ApiError::from_runtime(e, state.list_api_in_errors))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "invocation_id": id.to_string(), "status": "cancelled" })),
    )
        .into_response())
}

/// The W3C `traceparent` header, if present and well-formed: the
/// invocation's span continues that trace. A malformed one is ignored, as
/// the W3C specification asks (the call is not refused).
fn trace_parent(headers: &HeaderMap) -> Option<crate::TraceContext> {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::TraceContext::parse)
}

fn bad_path(rejection: PathRejection) -> ApiError {
    invalid_path(&rejection.body_text())
}

/// The 400 for a path that cannot be read; `why` is axum's rejection text
/// (the [`Front`](super::front::Front) writes the same for the calls it
/// reads itself).
pub(super) fn invalid_path(why: &str) -> ApiError {
    ApiError::bad_request("invalid_path", format!("the path cannot be read: {why}"))
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
