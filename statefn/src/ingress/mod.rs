//! HTTP ingress: call stateful functions over HTTP with JSON (feature `http`,
//! on by default).
//!
//! A web request goes in, the invocation commits (about one fsync in durable
//! mode), the reply comes out: there is no checkpoint to wait for.
//!
//! # Routes
//!
//! | route | what |
//! | --- | --- |
//! | `POST /v1/{type}/{id}/{handler}` | calls the handler with the body as its arguments (`{"amount": 5}`; no body or `{}` for none), sent with `Content-Type: application/json` even when empty; 200 with the reply as JSON |
//! | `POST /v1/{type}/{id}/{handler}/send[?delay=5s]` | enqueues the call durably; 202 with `{"invocation_id": "..."}` (an [`InvocationId`](crate::InvocationId): the instance and the `Idempotency-Key`, or one generated; a 503 names the invocation of a generated key in `details.invocation_id` and the key in the `Idempotency-Key` header, for the retry) |
//! | `GET /v1/invocations/{id}[?wait=10s]` | what became of an enqueued invocation (its `invocation_id` from `/send`): 200 with `{"invocation_id": "...", "status": "scheduled" \| "pending" \| "done" \| "failed" \| "cancelled"}`, with `"reply"` once done (or `"error"` as the call would have answered, if the handler returned `Err`; or `"error"` once it failed every attempt and became a dead letter); `wait` (at most 60 s) answers as soon as it is done or when the wait passed; kept for the idempotency retention after it ran, across restarts; 404 `unknown_invocation` if the id is unknown. Cluster mode: any node answers (it asks the node serving the instance) |
//! | `DELETE /v1/invocations/{id}` | cancels a delayed invocation before it runs: 200 with `{"invocation_id": "...", "status": "cancelled"}` once that is committed; 409 `invocation_not_pending` if it ran already, was cancelled or had no delay; 404 `unknown_invocation` if the id is unknown; cluster mode: any node answers |
//! | `GET /v1/egress/{name}?from=N&limit=M[&wait=10s]` | egress records from offset `N` (long-polls up to `wait` for the first); 200 with `{"records": [...], "next": N}`; with an [egress token](IngressConfig::egress_token), only for `Authorization: Bearer <token>` |
//! | `GET /v1/openapi.json` | the OpenAPI 3.0 document of the calls above for the registered functions (see [`openapi()`]); 404 with [`serve_openapi`](IngressConfig::serve_openapi) off |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /admin/functions` | the registered types and handlers, with `"internal": true` for internal ones (only with an admin token, as `Authorization: Bearer <token>`) |
//! | `GET /admin/shards` | each shard: serving or recovering, mailbox, checkpoint position, log size (admin) |
//! | `GET /admin/state/{type}/{id}`, `DELETE /admin/state/{type}/{id}` | an instance's state as JSON (`{"state": ...}`, 404 if none); its deletion with its timers, answered once committed (admin): the timeouts of requests it sent go too, and their replies are then dropped (logged, counted in `statefn_late_replies_dropped_total`), while a reply to a request without a timeout arrives as a message and starts it afresh (see [`Runtime::delete_instance`](crate::Runtime::delete_instance)) |
//! | `GET /admin/state/{type}?after=&limit=` | a page of the type's instance ids: `{"ids": [...], "next": cursor or null}` (admin) |
//! | `GET /admin/timers/{type}/{id}` | the instance's pending timers, soonest first (admin) |
//! | `GET /admin/dead-letters`, `POST /admin/dead-letters/{id}/replay`, `DELETE /admin/dead-letters/{id}` | messages from functions that failed every attempt: list, deliver again, drop (admin) |
//! | `GET /admin/cluster` | cluster mode (feature `cluster`): the nodes, and per log group its owner, epoch, standbys and lag; 404 `not_clustered` on a single node (admin) |
//!
//! Header `Idempotency-Key` makes a call exactly-once across client retries:
//! a retry gets the stored reply. On `/send` the key is part of the
//! invocation id (one is generated without it), and a retry enqueues nothing
//! new and gets the same id.
//!
//! # Errors
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`:
//!
//! | status | code | when |
//! | --- | --- | --- |
//! | 400 | `invalid_json`, `invalid_utf8`, `json_too_deep`, `invalid_arguments`, `invalid_address`, `invalid_delay`, `invalid_idempotency_key`, `invalid_path` | the request cannot be a call |
//! | 401 | `unauthorized` | an admin route or (with an egress token) an egress read without the right bearer token; with `WWW-Authenticate: Bearer` |
//! | 403 | `origin_not_allowed`, `host_not_allowed` | an `Origin` header not in [`IngressConfig::allowed_origins`]; a `Host` not in [`IngressConfig::allowed_hosts`] (by default, on a loopback address, a name other than this machine's) |
//! | 404 | `unknown_function`, `unknown_handler`, `unknown_invocation`, `not_found` | without an admin token the message lists the known types or handlers; with one it does not (`GET /admin/functions` does); an `#[handler(internal)]` handler answers exactly as one that does not exist |
//! | 405 | `method_not_allowed` | a known route with another method |
//! | 408 | `request_timeout` | the body did not arrive within [`IngressConfig::body_read_timeout`]; the connection is closed |
//! | 409 | `idempotency_key_reused`, `invocation_not_pending` | the key was used for a different call; the invocation to cancel is no longer pending |
//! | 413 | `payload_too_large` | the body is over [`IngressConfig::body_limit`] |
//! | 415 | `unsupported_media_type` | a call without `Content-Type: application/json` (or another `application/*+json`), even with no body |
//! | 422 | `handler_error` | the handler returned `Err`; `"details"` holds the error value |
//! | 500 | `handler_panicked`, `internal` | a generic message only; details go to the log |
//! | 503 | `unavailable`, `overloaded`, `shutting_down` | with `Retry-After` (seconds) |
//!
//! Every rejection happens before the call is submitted: a rejected request
//! changes nothing.
//!
//! # Hostile clients
//!
//! The defaults keep a server safe to run on a laptop and ready to harden
//! for the network:
//!
//! - **Slow and idle clients.** [`Server`] serves at most
//!   [`max_connections`](IngressConfig::max_connections) connections (512);
//!   more wait in the kernel's accept queue until one closes. A client has
//!   [`header_read_timeout`](IngressConfig::header_read_timeout) (10 s) to
//!   send a request's headers, which also closes idle keep-alive
//!   connections, and [`body_read_timeout`](IngressConfig::body_read_timeout)
//!   (30 s) to send its body (then 408). A client dribbling bytes to hold
//!   a connection ("slowloris") is cut off.
//! - **Web pages on other sites** (cross-site request forgery, DNS
//!   rebinding to `127.0.0.1`). A call needs `Content-Type:
//!   application/json`, which a browser sends cross-site only after a CORS
//!   preflight that the ingress does not grant (unless you add CORS
//!   yourself), so a form, a beacon or a `no-cors` fetch cannot reach even
//!   a zero-argument handler. A
//!   request whose `Origin` header is not in
//!   [`allowed_origins`](IngressConfig::allowed_origins) (empty by default)
//!   is refused with 403; requests without `Origin` (curl, servers) pass.
//!   A page whose name is rebound to `127.0.0.1` is the server's own origin
//!   to the browser, and its GETs carry no `Origin`: a [`Server`] on a
//!   loopback address therefore serves only requests addressed to this
//!   machine's names (`Host: localhost`, `127.0.0.1`, `[::1]`), unless
//!   [`allowed_hosts`](IngressConfig::allowed_hosts) says otherwise.
//! - **Readers.** With an [`egress_token`](IngressConfig::egress_token),
//!   egress logs are served only to holders of it; with an
//!   [`admin_token`](IngressConfig::admin_token), 404s stop listing the API.
//!   Tokens are compared in constant time and never printed.
//!
//! Calls themselves are not authenticated: put the ingress behind your own
//! authentication (a tower layer around [`router`], or a proxy) before
//! exposing it beyond the machines you trust.
//!
//! # Durability
//!
//! A 200 from a call, or a 202 from `/send`, is sent only after the
//! invocation (or the enqueued message) is committed: with the runtime's
//! default [`Durability::Fsync`](crate::Durability::Fsync) it survives a crash
//! of the process from then on. A request whose connection broke before the
//! answer may or may not have been applied: retry it with the same
//! `Idempotency-Key` to find out without applying it twice.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use statefn::{ingress::{self, IngressConfig}, prelude::*};
//!
//! #[stateful_function]
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counter { n: u64 }
//!
//! #[stateful_function]
//! impl Counter {
//!     #[handler]
//!     pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
//! let config = IngressConfig { listen: "127.0.0.1:0".parse()?, ..IngressConfig::default() };
//! let server = ingress::Server::bind(runtime, config).await?;
//! println!("listening on http://{}", server.local_addr());
//! // `server.run().await` serves until SIGTERM or Ctrl-C; here, until a oneshot fires.
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.run_until(async { let _ = stopped.await; }));
//! stop.send(()).ok();
//! serving.await??; // the runtime was shut down too
//! # Ok(())
//! # }
//! ```

mod admin;
mod auth;
mod body;
mod config;
mod connections;
mod delay;
mod egress;
mod error;
mod front;
mod invoke;
mod observe;
mod openapi;
mod server;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;

pub use crate::metrics::{HTTP_CONNECTIONS, HTTP_REQUEST_DURATION, HTTP_REQUESTS};
pub use config::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, IngressConfig,
    LOOPBACK_HOSTS, MAX_JSON_DEPTH,
};
pub use egress::MAX_EGRESS_LIMIT;
pub use error::ServeError;
pub use observe::install_prometheus_recorder;
pub use server::{Server, serve, shutdown_signal};

use crate::Runtime;

/// The OpenAPI 3.0 document of the ingress's calls over `runtime`'s
/// registered functions: what `GET /v1/openapi.json` serves.
///
/// One path per public handler (`POST /v1/{type}/{id}/{handler}`, 200 with
/// the reply, 422 with the error value of a fallible handler) and one for
/// its `/send`; `#[handler(internal)]` handlers are not in it, since the
/// ingress refuses them. The error responses, the `Idempotency-Key`,
/// `traceparent` and `Retry-After` headers and the `delay` of `/send` are
/// described as the ingress handles them. The handlers' doc comments become
/// the operations' descriptions; `info.version` is a hash of the document, so
/// it changes when the API does.
///
/// # Schemas: derive `JsonSchema`
///
/// An argument, reply or error type that implements
/// [`schemars::JsonSchema`](https://docs.rs/schemars/1) (version 1) is
/// described by its schema, shared under `#/components/schemas/`; the
/// standard types (`i64`, `String`, `Vec<T>`, `Option<T>`...) do already.
/// Add `schemars = "1"` to your dependencies and
/// `#[derive(schemars::JsonSchema)]` next to `Serialize, Deserialize`.
/// A type without it still works everywhere: the document describes it as
/// any JSON value, with a description naming the type and saying to derive
/// `JsonSchema` (a type deriving the trait of another schemars major version
/// counts as without it). Arguments are described as serde reads them, replies
/// as it writes them.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::{ingress, prelude::*};
///
/// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
/// pub struct Line { sku: String, units: u32 }
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Order { lines: Vec<Line> }
///
/// #[stateful_function]
/// impl Order {
///     /// Adds a line to the order.
///     #[handler]
///     fn add(&mut self, line: Line) -> usize { self.lines.push(line); self.lines.len() }
///     #[handler(internal)]
///     fn clear(&mut self) { self.lines.clear(); }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let runtime = Runtime::builder().in_memory().register::<Order>().open().await?;
/// let document = ingress::openapi(&runtime);
/// let add = &document["paths"]["/v1/Order/{id}/add"]["post"];
/// assert_eq!(add["summary"], "Adds a line to the order.");
/// let body = &add["requestBody"]["content"]["application/json"]["schema"];
/// assert_eq!(body["properties"]["line"]["$ref"], "#/components/schemas/Line");
/// assert_eq!(document["components"]["schemas"]["Line"]["required"], serde_json::json!(["sku", "units"]));
/// // Internal handlers are not part of the HTTP API.
/// assert!(document["paths"].get("/v1/Order/{id}/clear").is_none());
/// # runtime.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub fn openapi(runtime: &Runtime) -> serde_json::Value {
    openapi::document(runtime)
}

/// A header's text: borrowed when it is UTF-8 (checked the quick way
/// first), else with U+FFFD for the bytes that are not.
fn header_text(value: &axum::http::HeaderValue) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// What every request handler shares.
#[derive(Debug)]
struct AppState {
    runtime: Runtime,
    body_limit: usize,
    body_read_timeout: std::time::Duration,
    /// Normalized by [`auth::normalize_origins`].
    allowed_origins: Vec<String>,
    /// Normalized by [`auth::normalize_hosts`]; empty: any host.
    allowed_hosts: Vec<String>,
    admin_token: Option<String>,
    egress_token: Option<String>,
    /// Whether 404s for unknown types and handlers list the known ones:
    /// only without an admin token, which keeps that list for the admin.
    list_api_in_errors: bool,
    prometheus: Option<PrometheusHandle>,
    /// Whether `GET /v1/openapi.json` is served.
    serve_openapi: bool,
    /// The OpenAPI document, rendered on first request.
    openapi: std::sync::OnceLock<String>,
}

/// The ingress's routes over `runtime`, to serve with your own server or to
/// merge into a larger axum application. [`serve`] and [`Server`] serve it
/// with graceful shutdown.
///
/// `config.listen`, `config.max_connections` and
/// `config.header_read_timeout` are not used here: they bound connections,
/// which belong to the server (with `axum::serve`, neither a connection
/// limit nor a header timeout applies). Everything else, from the body
/// timeout to the allowed origins, is part of the router. `GET /metrics` renders
/// `config.prometheus`; when that is `None` it answers 404 (call
/// [`install_prometheus_recorder`] and pass its handle to turn it on).
/// Taking the handle from the config rather than installing a recorder here
/// lets a process build many routers (tests do) without two recorders
/// competing for the one global slot.
///
/// # Examples
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use statefn::prelude::*;
/// # #[stateful_function]
/// # #[derive(Default, Serialize, Deserialize)]
/// # pub struct Counter { n: u64 }
/// # #[stateful_function]
/// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use statefn::ingress::{self, IngressConfig};
///
/// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
/// let app = axum::Router::new()
///     .route("/healthz", axum::routing::get(|| async { "ok" }))
///     .merge(ingress::router(runtime.clone(), IngressConfig::default()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = tokio::spawn(async move { axum::serve(listener, app).await });
/// # server.abort();
/// # runtime.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub fn router(runtime: Runtime, config: IngressConfig) -> Router {
    routes(runtime, config).1
}

/// [`router`], and the state its handlers share (which the [`Server`]'s
/// [`Front`](front::Front) shares too).
fn routes(runtime: Runtime, config: IngressConfig) -> (Arc<AppState>, Router) {
    let admin_on = config.admin_token.is_some();
    let state = Arc::new(AppState {
        runtime,
        body_limit: config.body_limit,
        body_read_timeout: config.body_read_timeout,
        allowed_origins: auth::normalize_origins(&config.allowed_origins),
        allowed_hosts: auth::normalize_hosts(&config.allowed_hosts),
        list_api_in_errors: !admin_on,
        admin_token: config.admin_token,
        egress_token: config.egress_token,
        prometheus: config.prometheus,
        serve_openapi: config.serve_openapi,
        openapi: std::sync::OnceLock::new(),
    });
    let mut router = Router::new()
        .route("/v1/{type}/{id}/{handler}", post(invoke::call))
        .route("/v1/{type}/{id}/{handler}/send", post(invoke::send))
        .route(
            "/v1/invocations/{id}",
            get(invoke::status).delete(invoke::cancel),
        )
        .route("/v1/egress/{name}", get(egress::read))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/metrics", get(observe::render_metrics));
    if admin_on {
        // Without a token the admin paths are not routes at all: 404, the
        // same as any unknown path, so their existence is not advertised.
        router = router
            .route("/admin/functions", get(admin::functions))
            .route("/admin/shards", get(admin::shards))
            .route("/admin/dead-letters", get(admin::dead_letters))
            .route(
                "/admin/dead-letters/{id}/replay",
                post(admin::replay_dead_letter),
            )
            .route("/admin/state/{type}", get(admin::list_instances))
            .route(
                "/admin/state/{type}/{id}",
                get(admin::get_state).delete(admin::delete_state),
            )
            .route("/admin/timers/{type}/{id}", get(admin::instance_timers))
            .route(
                "/admin/dead-letters/{id}",
                axum::routing::delete(admin::drop_dead_letter),
            );
        #[cfg(feature = "cluster")]
        {
            router = router.route("/admin/cluster", get(admin::cluster));
        }
    }
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // One layer: the span, the host and origin checks, and the request
        // metrics (refused requests are counted and traced too).
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            observe::observe,
        ))
        .with_state(Arc::clone(&state));
    (state, router)
}
