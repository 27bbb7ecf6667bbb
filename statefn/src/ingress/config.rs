//! What an operator sets: where to listen, how big a body may be, the admin token.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

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

/// Configuration of the HTTP ingress. Build it with struct update syntax:
///
/// # Examples
///
/// ```
/// use statefn::ingress::IngressConfig;
///
/// let config = IngressConfig {
///     listen: "0.0.0.0:9000".parse().expect("an address"),
///     admin_token: Some("s3cret".into()),
///     ..IngressConfig::default()
/// };
/// assert_eq!(config.body_limit, 1 << 20);
/// // The token is never printed.
/// assert!(!format!("{config:?}").contains("s3cret"));
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
    /// The bearer token of the admin routes (`/admin/...`). `None` (the
    /// default) turns the admin surface off: its paths answer 404.
    pub admin_token: Option<String>,
    /// Where `GET /metrics` reads from. `None` in a config given to
    /// [`router`](super::router): `/metrics` answers 404. `None` in a config
    /// given to [`serve`](super::serve) or [`Server::bind`](super::Server::bind):
    /// they install the process-wide recorder with
    /// [`install_prometheus_recorder`](super::install_prometheus_recorder).
    pub prometheus: Option<PrometheusHandle>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            listen: DEFAULT_LISTEN,
            body_limit: DEFAULT_BODY_LIMIT,
            admin_token: None,
            prometheus: None,
        }
    }
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("listen", &self.listen)
            .field("body_limit", &self.body_limit)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}
