//! The admin surface: mounted only when an admin token is configured, and
//! every route checks `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, auth, error::ApiError};

/// `GET /admin/functions`: the registered types and their handlers, internal
/// ones included (marked `"internal": true`: not callable over HTTP).
pub(super) async fn functions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let functions: Vec<Value> = state
        .runtime
        .functions()
        .into_iter()
        .map(|(name, handlers)| {
            let handlers: Vec<Value> = handlers
                .iter()
                .map(|h| {
                    json!({
                        "name": h.name,
                        "args": h.args,
                        "mutates": h.mutates,
                        "fallible": h.fallible,
                        "internal": h.internal,
                    })
                })
                .collect();
            json!({ "type": name, "handlers": handlers })
        })
        .collect();
    Ok(Json(json!({ "functions": functions })))
}

/// `GET /admin/shards`: each shard's state (serving or recovering, mailbox,
/// checkpoint position, log size), from [`Runtime::shard_status`](crate::Runtime::shard_status).
pub(super) async fn shards(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(json!({ "shards": state.runtime.shard_status() })))
}

/// `GET /admin/dead-letters`: messages from functions that failed every
/// attempt, with the message as JSON and the last error.
pub(super) async fn dead_letters(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(
        json!({ "dead_letters": state.runtime.dead_letters().await }),
    ))
}

/// `POST /admin/dead-letters/{id}/replay`: delivers it again.
pub(super) async fn replay_dead_letter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    state.runtime.replay_dead_letter(id.parse()?).await?;
    Ok(Json(json!({ "replayed": id })))
}

/// `DELETE /admin/dead-letters/{id}`: drops it without delivering it.
pub(super) async fn drop_dead_letter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    state.runtime.drop_dead_letter(id.parse()?).await?;
    Ok(Json(json!({ "dropped": id })))
}

/// `GET /admin/state/{type}/{id}`: the instance's state as JSON
/// (`{"state": ...}`), 404 `not_found` if it has none.
pub(super) async fn get_state(
    State(state): State<Arc<AppState>>,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    match state.runtime.state_json(&type_name, &id).await? {
        Some(value) => Ok(Json(json!({ "state": value }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{type_name}/{id} has no state"),
        )),
    }
}

/// `GET /admin/cluster`: the nodes and, per log group, its owner and
/// epoch, from [`Runtime::cluster_status`](crate::Runtime::cluster_status).
#[cfg(feature = "cluster")]
pub(super) async fn cluster(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    match state.runtime.cluster_status() {
        Some(status) => Ok(Json(json!(status))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "this node runs in single-node mode (start it with `--nats` for cluster mode)",
        )),
    }
}

/// `DELETE /admin/state/{type}/{id}`: deletes the instance's state and its
/// pending timers; answers once that is committed (durable under the
/// runtime's `Durability`): `{"deleted": true}`, or `false` if there was
/// nothing.
pub(super) async fn delete_state(
    State(state): State<Arc<AppState>>,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let deleted = state.runtime.delete_instance(&type_name, &id).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

/// The query of `GET /admin/state/{type}`.
#[derive(Debug, Deserialize)]
pub(super) struct Page {
    /// The cursor: the `next` of the previous page.
    after: Option<String>,
    /// At most this many ids (100 by default, at most 1000).
    limit: Option<usize>,
}

/// `GET /admin/state/{type}?after=&limit=`: a page of the type's instance
/// ids, `{"ids": [...], "next": "<cursor>" | null}`.
pub(super) async fn list_instances(
    State(state): State<Arc<AppState>>,
    Path(type_name): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let limit = page.limit.unwrap_or(100);
    let instances = state
        .runtime
        .instances(&type_name, page.after.as_deref(), limit)
        .await?;
    Ok(Json(json!(instances)))
}

/// `GET /admin/timers/{type}/{id}`: the instance's pending timers, soonest
/// first, `{"timers": [{"id", "due_ms", "expiry", "message", "key",
/// "invocation_key", "every_ms"}]}` (see [`PendingTimer`](crate::PendingTimer)).
pub(super) async fn instance_timers(
    State(state): State<Arc<AppState>>,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let timers = state.runtime.timers_of(&type_name, &id).await?;
    Ok(Json(json!({ "timers": timers })))
}

/// Accepts the request only with the configured admin token, as
/// `Authorization: Bearer <token>`, compared in constant time.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    const REFUSAL: &str = "admin routes need the header `Authorization: Bearer <admin token>`";
    match state.admin_token.as_deref() {
        Some(expected) => auth::bearer(expected, headers, REFUSAL),
        // Not reached: without a token the admin routes are not mounted.
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            REFUSAL,
        )),
    }
}
