//! Errors as HTTP responses, and the errors of serving.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::Error;

/// Why [`serve`](super::serve) or [`Server`](super::Server) stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address could not be bound (in use, no permission).
    #[error("cannot listen on {addr}: {source}; choose another address with `listen`")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The shutdown signals (SIGTERM, Ctrl-C) could not be registered.
    #[error("cannot register the shutdown signal handlers: {0}")]
    Signal(std::io::Error),
    /// Accepting or serving connections failed.
    #[error("the HTTP server failed: {0}")]
    Io(std::io::Error),
    /// The Prometheus recorder could not be installed (another recorder was
    /// installed first: pass its handle as `IngressConfig::prometheus`).
    #[error("cannot install the Prometheus recorder: {0}")]
    Metrics(String),
    /// The runtime failed to shut down cleanly.
    #[error(transparent)]
    Runtime(#[from] Error),
}

/// An error answered to the client: a status and the JSON body
/// `{"error": {"code", "message", "details"?}}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    retry_after: Option<Duration>,
    /// Headers added to the answer (`WWW-Authenticate`, `Connection`,
    /// `Idempotency-Key`).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub(super) fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// For a `/send` under a generated key: a 503 names the invocation (in
    /// `details.invocation_id`) and its key (the `Idempotency-Key` header),
    /// so that the client can retry without risking a second message.
    pub(super) fn with_invocation_id(mut self, id: &crate::InvocationId, key: &str) -> Self {
        if self.status != StatusCode::SERVICE_UNAVAILABLE {
            return self;
        }
        if let Ok(value) = HeaderValue::from_str(key) {
            self.headers
                .push((header::HeaderName::from_static("idempotency-key"), value));
        }
        let mut details = self.details.take().unwrap_or_else(|| json!({}));
        if let Some(object) = details.as_object_mut() {
            object.insert("invocation_id".to_owned(), json!(id.to_string()));
        }
        self.details = Some(details);
        self
    }

    /// Closes the connection after the answer: what is left of the request
    /// on it cannot be trusted to end.
    pub(super) fn closing(self) -> Self {
        self.with_header(header::CONNECTION, "close")
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A generic 500: the details are for the log, not for the client.
    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to process the request; it was logged",
        )
    }

    /// The status and JSON a runtime error is answered with. `list_known`:
    /// whether a 404 for an unknown type or handler lists the known ones
    /// (helpful in development, a map of the API for anyone otherwise).
    pub(super) fn from_runtime(error: Error, list_known: bool) -> Self {
        match error {
            Error::UnknownFunction {
                ref name,
                ref known,
            } => {
                let refused =
                    |message| Self::new(StatusCode::NOT_FOUND, "unknown_function", message);
                if list_known {
                    refused(format!(
                        "no function type named `{name}` (known: {})",
                        known.join(", ")
                    ))
                    .with_details(json!({ "known": known }))
                } else {
                    refused(format!("no function type named `{name}`"))
                }
            }
            Error::UnknownHandler {
                ref function,
                ref handler,
                ref known,
            } => {
                let refused =
                    |message| Self::new(StatusCode::NOT_FOUND, "unknown_handler", message);
                if list_known {
                    refused(format!(
                        "`{function}` has no handler `{handler}` (its handlers: {})",
                        known.join(", ")
                    ))
                    .with_details(json!({ "known": known }))
                } else {
                    refused(format!("`{function}` has no handler `{handler}`"))
                }
            }
            Error::InvalidArguments { ref field, .. } => {
                let field = field.clone();
                let refused = Self::bad_request("invalid_arguments", error.to_string());
                match field {
                    Some(field) => refused.with_details(json!({ "field": field })),
                    None => refused,
                }
            }
            Error::InvalidAddress { .. } => Self::bad_request("invalid_address", error.to_string()),
            Error::InvalidIdempotencyKey { .. } => {
                Self::bad_request("invalid_idempotency_key", error.to_string())
            }
            Error::IdempotencyKeyReused { .. } => Self::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                error.to_string(),
            ),
            Error::HandlerPanicked {
                function,
                id,
                handler,
                message,
            } => {
                // The panic message may carry internals (paths, values):
                // it goes to the log only.
                tracing::error!(%function, %id, %handler, panic = %message, "handler panicked");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "handler_panicked",
                    "the handler failed; the invocation changed nothing",
                )
            }
            Error::Panicked {
                function,
                id,
                during,
                message,
            } => {
                tracing::error!(%function, %id, %during, panic = %message, "function code panicked");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "handler_panicked",
                    "the function failed; the invocation changed nothing",
                )
            }
            Error::Unavailable {
                shard,
                reason,
                retry_after,
            } => {
                tracing::warn!(shard, %reason, ?retry_after, "shard unavailable");
                // The reason is written for callers: it says what happened,
                // whether the call may have been applied, and what to do.
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the instance is temporarily unavailable: {reason}"),
                )
                .with_details(json!({ "shard": shard }))
                .retry_after(retry_after)
            }
            Error::Overloaded {
                shard, retry_after, ..
            } => {
                tracing::debug!(shard, ?retry_after, "shard overloaded");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the server is busy; the call was not accepted, retry after the Retry-After seconds",
                )
                .retry_after(retry_after)
            }
            Error::UnknownDeadLetter { ref id } => Self::new(
                StatusCode::NOT_FOUND,
                "unknown_dead_letter",
                format!("no dead letter `{id}`"),
            ),
            Error::UnknownInvocation { ref id } => Self::new(
                StatusCode::NOT_FOUND,
                "unknown_invocation",
                format!("no invocation `{id}` is known"),
            ),
            Error::InvocationNotPending { ref id } => Self::new(
                StatusCode::CONFLICT,
                "invocation_not_pending",
                format!(
                    "invocation `{id}` is no longer pending: it ran already, was cancelled, or had no delay"
                ),
            ),
            Error::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; the call was not accepted, retry later",
            )
            .retry_after(Duration::from_secs(1)),
            // Decode, Encode, Storage, Config, ReplyTargetMismatch and any
            // variant added later: a server-side fault, not the client's.
            other => {
                tracing::error!(error = %other, "call failed");
                Self::internal()
            }
        }
    }
}

/// Without the API listed in 404s: routes that want the listing say so
/// with [`ApiError::from_runtime`].
impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::from_runtime(error, false)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(details), Some(object)) = (self.details, error.as_object_mut()) {
            object.insert("details".to_owned(), details);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up, at least 1: `Retry-After: 0` invites a busy loop.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The fallback for paths that are no route.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; calls are `POST /v1/{type}/{id}/{handler}` and \
         `POST /v1/{type}/{id}/{handler}/send`",
    )
}

/// The fallback for a known path with another method.
pub(super) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here; calls use POST, `/metrics` and `/admin` use GET"),
    )
}
