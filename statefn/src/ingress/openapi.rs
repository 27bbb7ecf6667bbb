//! `GET /v1/openapi.json`: the ingress's HTTP API as an OpenAPI 3.0
//! document, from the registered functions, so that other teams can read it
//! and generate clients.
//!
//! One operation per public handler and route (`POST /v1/{type}/{id}/{handler}`
//! and `.../send`); internal handlers are left out, as the ingress refuses
//! them. Argument and reply schemas come from `schemars` (see
//! [`openapi`](super::openapi())); the error responses are the ones the
//! ingress really gives (`error.rs`).

use std::sync::Arc;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{AppState, error::ApiError};
use crate::{
    MAX_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN, Runtime,
    function::HandlerInfo,
    schema::{HandlerSchema, Schemas},
};

/// The OpenAPI version of the document (3.0: what client generators read
/// most widely; `schemars` writes schemas in its dialect).
pub(super) const OPENAPI_VERSION: &str = "3.0.3";

/// `GET /v1/openapi.json`, built on first use (the registered functions do
/// not change while the runtime runs).
pub(super) async fn serve(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if !state.serve_openapi {
        return Err(super::error::not_found().await);
    }
    let text = state
        .openapi
        .get_or_init(|| document(&state.runtime).to_string());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text.clone(),
    )
        .into_response())
}

/// The document for `runtime`'s registered functions.
pub(super) fn document(runtime: &Runtime) -> Value {
    let mut schemas = Schemas::new();
    let mut functions = runtime.inner().registry.public_schemas(&mut schemas);
    // Replies and errors are described as serialized: their references are
    // renamed where a type reads and writes differently.
    let mut replies: Vec<&mut Value> = functions
        .iter_mut()
        .flat_map(|(_, handlers)| handlers.iter_mut())
        .flat_map(|(_, schema)| std::iter::once(&mut schema.reply).chain(schema.error.as_mut()))
        .collect();
    let components = schemas.into_components(&mut replies);
    let mut paths = Map::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (type_name, handlers) in &functions {
        for (info, schema) in handlers {
            let (call, send) = operations(type_name, info, schema, &mut operation_ids);
            paths.insert(format!("/v1/{type_name}/{{id}}/{}", info.name), call);
            paths.insert(format!("/v1/{type_name}/{{id}}/{}/send", info.name), send);
        }
    }
    paths.insert(
        "/v1/invocations/{invocation_id}".into(),
        invocation_operations(),
    );
    let mut component_schemas = components;
    component_schemas.insert("Error".into(), error_schema());
    let mut tags: Vec<Value> = functions
        .iter()
        .map(|(name, _)| json!({ "name": name, "description": format!("The `{name}` function's handlers.") }))
        .collect();
    tags.push(
        json!({ "name": "invocations", "description": "Invocations enqueued with `/send`." }),
    );
    let body = json!({
        "paths": paths,
        "components": {
            "schemas": component_schemas,
            "parameters": parameters(),
            "responses": responses(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (at least 1).",
                    "schema": { "type": "integer", "minimum": 1 },
                },
            },
        },
    });
    // The API's version: a hash of what it describes, so that a client can
    // tell that the API changed.
    let version = format!("{:08x}", crate::wire::fingerprint(&body.to_string()));
    let mut document = json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "statefn functions",
            "version": version,
            "description": INFO,
        },
        "tags": tags,
    });
    if let (Some(out), Value::Object(body)) = (document.as_object_mut(), body) {
        out.extend(body);
    }
    document
}

const INFO: &str = "Stateful functions served over HTTP by statefn. Each instance of a \
function type is addressed by its id; a call is applied exactly once and answered once \
it is committed. Send `Idempotency-Key` to make a retried call apply once; errors are \
`{\"error\": {\"code\", \"message\", \"details\"?}}`.";

/// The call and `/send` operations of one handler.
fn operations(
    type_name: &str,
    info: &HandlerInfo,
    schema: &HandlerSchema,
    operation_ids: &mut std::collections::BTreeSet<String>,
) -> (Value, Value) {
    let (summary, description) = summary(type_name, info, schema);
    let mut properties = Map::new();
    let mut required = Vec::new();
    for arg in &schema.args {
        properties.insert(arg.name.to_owned(), arg.schema.clone());
        if arg.required {
            required.push(arg.name);
        }
    }
    let mut arguments = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        set(&mut arguments, "required", json!(required));
    }
    let request_body = json!({
        "required": !required.is_empty(),
        "description": if schema.args.is_empty() {
            "No arguments: send no body or `{}` (still with `Content-Type: application/json`)."
        } else {
            "The handler's arguments by name."
        },
        "content": { "application/json": { "schema": arguments } },
    });
    let mut responses = json!({
        "200": {
            "description": "The handler's reply, once the invocation is committed.",
            "content": { "application/json": { "schema": schema.reply } },
        },
        "400": { "$ref": "#/components/responses/BadRequest" },
        "403": { "$ref": "#/components/responses/OriginNotAllowed" },
        "404": { "$ref": "#/components/responses/NotFound" },
        "408": { "$ref": "#/components/responses/RequestTimeout" },
        "409": { "$ref": "#/components/responses/IdempotencyKeyReused" },
        "413": { "$ref": "#/components/responses/PayloadTooLarge" },
        "415": { "$ref": "#/components/responses/UnsupportedMediaType" },
        "500": { "$ref": "#/components/responses/InternalError" },
        "503": { "$ref": "#/components/responses/Unavailable" },
    });
    if let Some(error) = &schema.error {
        set(
            &mut responses,
            "422",
            json!({
                "description": "The handler returned `Err`: nothing changed. `details` is the error value, `message` its text.",
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": { "type": "string", "enum": ["handler_error"] },
                            "message": { "type": "string" },
                            "details": error,
                        },
                    } },
                } } },
            }),
        );
    }
    let base = operation_id(type_name, info.name);
    let call = json!({ "post": {
        "tags": [type_name],
        "operationId": unique(operation_ids, format!("call_{base}")),
        "summary": summary,
        "description": description,
        "parameters": [
            { "$ref": "#/components/parameters/Id" },
            { "$ref": "#/components/parameters/IdempotencyKey" },
            { "$ref": "#/components/parameters/Traceparent" },
        ],
        "requestBody": request_body,
        "responses": responses,
    } });
    let send = json!({ "post": {
        "tags": [type_name],
        "operationId": unique(operation_ids, format!("send_{base}")),
        "summary": format!("Enqueues `{}` (answered once it is stored, before it runs)", info.name),
        "description": format!(
            "Stores the call durably and answers 202 with its invocation id; it runs later \
             (after `delay`, if given). The key of `Idempotency-Key` (one is generated \
             without it) is part of the id: a retry with it enqueues nothing new.\n\n{description}"
        ),
        "parameters": [
            { "$ref": "#/components/parameters/Id" },
            { "$ref": "#/components/parameters/IdempotencyKey" },
            { "$ref": "#/components/parameters/Traceparent" },
            { "$ref": "#/components/parameters/Delay" },
        ],
        "requestBody": request_body,
        "responses": {
            "202": {
                "description": "Enqueued and committed.",
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["invocation_id"],
                    "properties": { "invocation_id": { "type": "string" } },
                } } },
            },
            "400": { "$ref": "#/components/responses/BadRequest" },
            "403": { "$ref": "#/components/responses/OriginNotAllowed" },
            "404": { "$ref": "#/components/responses/NotFound" },
            "408": { "$ref": "#/components/responses/RequestTimeout" },
            "409": { "$ref": "#/components/responses/IdempotencyKeyReused" },
            "413": { "$ref": "#/components/responses/PayloadTooLarge" },
            "415": { "$ref": "#/components/responses/UnsupportedMediaType" },
            "500": { "$ref": "#/components/responses/InternalError" },
            "503": { "$ref": "#/components/responses/SendUnavailable" },
        },
    } });
    (call, send)
}

/// The handler's summary (the first line of its doc comment, or a
/// sentence) and description.
fn summary(type_name: &str, info: &HandlerInfo, schema: &HandlerSchema) -> (String, String) {
    let first = schema.description.lines().next().unwrap_or_default().trim();
    let summary = if first.is_empty() {
        format!("Calls `{type_name}.{}`", info.name)
    } else {
        first.to_owned()
    };
    let access = if info.mutates {
        "May change the instance's state."
    } else {
        "Reads the instance's state (`&self`): changes nothing."
    };
    let description = if schema.description.is_empty() {
        access.to_owned()
    } else {
        format!("{}\n\n{access}", schema.description)
    };
    (summary, description)
}

/// `Type.handler` as an identifier (other characters become `_`).
fn operation_id(type_name: &str, handler: &str) -> String {
    format!("{type_name}_{handler}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `id`, or `id_2`, `id_3`... if taken: operation ids must be unique.
fn unique(taken: &mut std::collections::BTreeSet<String>, id: String) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{id}_{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// Sets `key` of a JSON object (built by `json!` here, so always one).
fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(object) = object.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

/// `GET` and `DELETE /v1/invocations/{invocation_id}`.
fn invocation_operations() -> Value {
    json!({ "get": status_operation(), "delete": {
        "tags": ["invocations"],
        "operationId": "cancel_invocation",
        "summary": "Cancels a delayed invocation before it runs",
        "description": "Answered once the cancellation is committed.",
        "parameters": [invocation_id_parameter()],
        "responses": {
            "200": {
                "description": "Cancelled: it will not run.",
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["invocation_id", "status"],
                    "properties": {
                        "invocation_id": { "type": "string" },
                        "status": { "type": "string", "enum": ["cancelled"] },
                    },
                } } },
            },
            "400": { "$ref": "#/components/responses/BadRequest" },
            "403": { "$ref": "#/components/responses/OriginNotAllowed" },
            "404": { "$ref": "#/components/responses/NotFound" },
            "409": {
                "description": "`invocation_not_pending`: it ran already, was cancelled, or had no delay.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            },
            "500": { "$ref": "#/components/responses/InternalError" },
            "503": { "$ref": "#/components/responses/Unavailable" },
        },
    } })
}

/// `GET /v1/invocations/{invocation_id}[?wait=]`: what became of an
/// enqueued invocation.
fn status_operation() -> Value {
    json!({
        "tags": ["invocations"],
        "operationId": "invocation_status",
        "summary": "What became of an enqueued invocation",
        "description": concat!(
            "`scheduled` (delayed, not due yet), `pending` (queued or running), `done` ",
            "(with `reply`), `failed` (with `error`: the handler's `Err`, or every attempt failed ",
            "and it became a dead letter) or `cancelled`. Kept for the idempotency retention ",
            "after it ran, across restarts. With `wait`, answers as soon as it is done or when ",
            "the wait passed."
        ),
        "parameters": [
            invocation_id_parameter(),
            {
                "name": "wait",
                "in": "query",
                "required": false,
                "description": "How long to wait for the outcome (`250ms`, `10s`; at most 60 s).",
                "schema": { "type": "string" },
            },
        ],
        "responses": {
            "200": {
                "description": "The invocation's status, and its reply or error once it has one.",
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["invocation_id", "status"],
                    "properties": {
                        "invocation_id": { "type": "string" },
                        "status": {
                            "type": "string",
                            "enum": ["scheduled", "pending", "done", "failed", "cancelled"],
                        },
                        "reply": { "description": "The handler's reply, once `done`." },
                        "error": { "$ref": "#/components/schemas/Error" },
                    },
                } } },
            },
            "400": { "$ref": "#/components/responses/BadRequest" },
            "403": { "$ref": "#/components/responses/OriginNotAllowed" },
            "404": { "$ref": "#/components/responses/NotFound" },
            "500": { "$ref": "#/components/responses/InternalError" },
            "503": { "$ref": "#/components/responses/Unavailable" },
        },
    })
}

/// The `invocation_id` path parameter of `/v1/invocations/{invocation_id}`.
fn invocation_id_parameter() -> Value {
    json!({
        "name": "invocation_id",
        "in": "path",
        "required": true,
        "description": "The id a `/send` answered with.",
        "schema": { "type": "string" },
    })
}

fn parameters() -> Value {
    json!({
        "Id": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The instance's id (instances are virtual: the first call creates it).",
            "schema": { "type": "string", "minLength": 1, "maxLength": MAX_ID_LEN },
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes the call exactly-once across client retries: a retry with the \
                same key gets the stored reply (a key used for another call: 409). Printable \
                ASCII, no spaces.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY_LEN,
                "pattern": "^[!-~]+$",
            },
        },
        "Traceparent": {
            "name": "traceparent",
            "in": "header",
            "required": false,
            "description": "A W3C trace context: the invocation's span continues this trace. \
                A malformed one is ignored.",
            "schema": { "type": "string" },
            "example": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        "Delay": {
            "name": "delay",
            "in": "query",
            "required": false,
            "description": "Run the call this long from now: an integer and a unit, ms, s, m \
                or h (`500ms`, `5s`, `2m`, `1h`), at most 366 days.",
            "schema": { "type": "string", "pattern": "^[0-9]+(ms|s|m|h)$" },
        },
    })
}

/// The error responses shared by operations, with the codes each may carry.
fn responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        })
    };
    let retry = |description: &str| {
        let mut response = error(description);
        set(
            &mut response,
            "headers",
            json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } }),
        );
        response
    };
    let mut send_unavailable = retry(
        "`unavailable`, `overloaded` or `shutting_down`: nothing was enqueued. Without an \
         `Idempotency-Key` in the request, the generated one is in this answer's \
         `Idempotency-Key` header and the invocation id in `details.invocation_id`: retry \
         with that key.",
    );
    if let Some(headers) = send_unavailable.get_mut("headers") {
        set(
            headers,
            "Idempotency-Key",
            json!({
                "description": "The key generated for this call: send it on the retry.",
                "schema": { "type": "string" },
            }),
        );
    }
    json!({
        "BadRequest": error(
            "`invalid_json`, `invalid_utf8`, `json_too_deep`, `invalid_arguments` (with \
             `details.field`), `invalid_address`, `invalid_delay`, `invalid_query`, \
             `invalid_idempotency_key` or `invalid_path`: the request cannot be a call.",
        ),
        "OriginNotAllowed": error(
            "`origin_not_allowed`: the `Origin` header is not an allowed origin.",
        ),
        "NotFound": error(
            "`unknown_function`, `unknown_handler` or `unknown_invocation`.",
        ),
        "RequestTimeout": error(
            "`request_timeout`: the body did not arrive in time; the connection is closed.",
        ),
        "IdempotencyKeyReused": error(
            "`idempotency_key_reused`: the key was used for a different call.",
        ),
        "PayloadTooLarge": error("`payload_too_large`: the body is over the limit."),
        "UnsupportedMediaType": error(
            "`unsupported_media_type`: calls need `Content-Type: application/json`, even \
             with no body.",
        ),
        "InternalError": error(
            "`handler_panicked` or `internal`: nothing changed; the details are in the \
             server's log.",
        ),
        "Unavailable": retry(
            "`unavailable`, `overloaded` or `shutting_down`: the call was not accepted; \
             retry after `Retry-After` seconds.",
        ),
        "SendUnavailable": send_unavailable,
    })
}

/// Every error's body.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "What went wrong, for programs (`unknown_handler`, `overloaded`...).",
                },
                "message": {
                    "type": "string",
                    "description": "What went wrong and what to do, for people.",
                },
                "details": {
                    "description": "More, depending on the code (the handler's error value for \
                        `handler_error`, the field for `invalid_arguments`).",
                },
            },
        } },
    })
}
