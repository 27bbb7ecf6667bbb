//! What an operator sets: where to listen, how big a body may be, how many
//! connections and how slow a client may be, which browser origins may call,
//! and the admin and egress tokens.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusHandle;

/// The default address: loopback only, so a fresh install is not reachable
/// from the network until the operator says so.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// The default largest request body, 1 MiB: handler arguments are small, and a
/// bound keeps one client from making the server buffer without limit.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The deepest nesting of arrays and objects accepted in a body. Arguments
/// are shallow; the bound keeps a hostile body from costing deep recursion.
pub const MAX_JSON_DEPTH: usize = 64;

/// The default most connections served at once, 512: half of the usual
/// default limit of open files (`ulimit -n` is 1024 on most Linux systems),
/// so that idle or hostile clients cannot take the file descriptors the
/// write-ahead log and the state store need to open their files. Raise both
/// together on a busy server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The default time a client has to send a request's headers, 10 s. A real
/// client sends them in one packet, right after connecting or after the
/// previous answer; 10 s covers a slow mobile link with retransmissions and
/// cuts a "slowloris" client that dribbles headers to hold a connection.
/// It is also how long an idle keep-alive connection stays open.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time a client has to send a whole request body once its
/// headers are in, 30 s: a full [`DEFAULT_BODY_LIMIT`] body at about
/// 35 KB/s, while a body trickled a byte at a time is cut off.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time [`Server`](super::Server) lets requests in flight
/// finish after the shutdown signal, 10 s: calls answer in milliseconds and
/// long-polls return at once on shutdown, so only a stuck request (a disk
/// that does not answer) is still there; its connection is then closed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The host names a [`Server`](super::Server) on a loopback address serves
/// when [`IngressConfig::allowed_hosts`] is empty: the names of this machine
/// (`.localhost` stands for every name under `localhost`).
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", ".localhost", "127.0.0.1", "[::1]"];

/// Configuration of the HTTP ingress. Build it with struct update syntax:
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use statefn::ingress::IngressConfig;
///
/// let config = IngressConfig {
///     listen: "0.0.0.0:9000".parse().expect("an address"),
///     admin_token: Some("s3cret".into()),
///     egress_token: Some("consumer-token".into()),
///     allowed_origins: vec!["https://app.example".into()],
///     header_read_timeout: Duration::from_secs(5),
///     ..IngressConfig::default()
/// };
/// assert_eq!(config.body_limit, 1 << 20);
/// assert_eq!(config.max_connections, 512);
/// // The tokens are never printed.
/// let printed = format!("{config:?}");
/// assert!(!printed.contains("s3cret") && !printed.contains("consumer-token"));
/// ```
#[derive(Clone)]
pub struct IngressConfig {
    /// Where [`serve`](super::serve) and [`Server::bind`](super::Server::bind)
    /// listen (default [`DEFAULT_LISTEN`], `127.0.0.1:8080`). Port 0 picks a
    /// free port: read it from [`Server::local_addr`](super::Server::local_addr).
    pub listen: SocketAddr,
    /// The largest request body in bytes (default [`DEFAULT_BODY_LIMIT`]);
    /// larger ones get 413 before the call is made.
    pub body_limit: usize,
    /// The most connections [`Server`](super::Server) serves at once (default
    /// [`DEFAULT_MAX_CONNECTIONS`], at least 1). Past it, new connections wait
    /// in the operating system's accept queue until a served one closes; the
    /// served ones go on undisturbed. Not used by [`router`](super::router):
    /// a server you run yourself sets its own limit.
    pub max_connections: usize,
    /// How long [`Server`](super::Server) waits for a request's headers, from
    /// the connection's start or the end of the previous answer (default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]). A client that has not sent them all
    /// by then is disconnected; an idle keep-alive connection is closed. Not
    /// used by [`router`](super::router).
    pub header_read_timeout: Duration,
    /// How long a call may take to receive its whole body once the headers
    /// are in (default [`DEFAULT_BODY_READ_TIMEOUT`]). Past it the answer is
    /// 408 `request_timeout` and the connection is closed; nothing was called.
    pub body_read_timeout: Duration,
    /// How long [`Server`](super::Server) lets the requests in flight finish
    /// after the shutdown signal before it closes their connections
    /// (default [`DEFAULT_DRAIN_TIMEOUT`]); then it shuts the runtime down.
    /// Not used by [`router`](super::router).
    pub drain_timeout: Duration,
    /// The browser origins (`scheme://host[:port]`, such as
    /// `https://app.example`) whose pages may call the ingress. A request
    /// with an `Origin` header not on this list is refused with 403
    /// `origin_not_allowed`; requests without one (curl, other servers) are
    /// not affected. Empty by default: no web page may call. List the origin
    /// of a page you serve yourself; a page of another origin also needs
    /// CORS answers (for example tower-http's `CorsLayer` around the router).
    pub allowed_origins: Vec<String>,
    /// The host names requests may be addressed to (the `Host` header,
    /// port ignored, any case): `api.example`, or `.example` for every name
    /// under `example`. A request for another host is refused with 403
    /// `host_not_allowed`; one without `Host` passes. Empty (the default):
    /// [`Server`](super::Server) on a loopback address serves only
    /// [`LOOPBACK_HOSTS`], which stops a web page whose name an attacker
    /// points at 127.0.0.1 ("DNS rebinding") from reading the server as its
    /// own origin; on another address, and with [`router`](super::router),
    /// any host. List the names clients use when a proxy on the same
    /// machine forwards its own `Host`.
    pub allowed_hosts: Vec<String>,
    /// The bearer token of the admin routes (`/admin/...`). `None` (the
    /// default) turns the admin surface off: its paths answer 404. With a
    /// token, 404s for unknown types and handlers no longer list the known
    /// ones (`GET /admin/functions` does, for the admin).
    pub admin_token: Option<String>,
    /// The bearer token `GET /v1/egress/...` requires, as
    /// `Authorization: Bearer <token>`; without it or with another, 401.
    /// `None` (the default) leaves egress reads open to anyone who can
    /// connect. The admin token is not accepted here: give consumers their own.
    pub egress_token: Option<String>,
    /// Where `GET /metrics` reads from. `None` in a config given to
    /// [`router`](super::router): `/metrics` answers 404. `None` in a config
    /// given to [`serve`](super::serve) or [`Server::bind`](super::Server::bind):
    /// they install the process-wide recorder with
    /// [`install_prometheus_recorder`](super::install_prometheus_recorder).
    pub prometheus: Option<PrometheusHandle>,
    /// Whether `GET /v1/openapi.json` serves the API's OpenAPI document
    /// (default `true`): every public handler with its argument and reply
    /// schemas, internal handlers left out. Turn it off to keep the shape of
    /// the API to yourself; the document is still had from Rust with
    /// [`openapi`](super::openapi).
    pub serve_openapi: bool,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            listen: DEFAULT_LISTEN,
            body_limit: DEFAULT_BODY_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            admin_token: None,
            egress_token: None,
            prometheus: None,
            serve_openapi: true,
        }
    }
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |token: &Option<String>| token.as_ref().map(|_| "<redacted>");
        f.debug_struct("IngressConfig")
            .field("listen", &self.listen)
            .field("body_limit", &self.body_limit)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("admin_token", &redacted(&self.admin_token))
            .field("egress_token", &redacted(&self.egress_token))
            .field("prometheus", &self.prometheus.is_some())
            .field("serve_openapi", &self.serve_openapi)
            .finish()
    }
}
