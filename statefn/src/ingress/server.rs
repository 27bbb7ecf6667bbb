//! Serving the router with graceful shutdown: stop accepting, finish the
//! requests in flight, then shut the runtime down.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use tokio::net::TcpListener;

use super::{
    IngressConfig, ServeError,
    connections::{self, Limits},
    front::Front,
    install_prometheus_recorder, routes,
};
use crate::Runtime;

/// How often histogram upkeep runs, so that an unscraped `/metrics` does not
/// let the recorder's buffers grow.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A bound, not yet running HTTP ingress. Binding first lets a program print
/// the real address (with port 0) before it serves.
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
/// use statefn::ingress::{IngressConfig, Server};
///
/// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
/// let config = IngressConfig { listen: "127.0.0.1:0".parse()?, ..IngressConfig::default() };
/// let server = Server::bind(runtime, config).await?;
/// assert_ne!(server.local_addr().port(), 0);
/// server.run_until(async {}).await?; // stops at once: the future is ready
/// # Ok(())
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    /// The router, behind the call route served without it.
    front: Front,
    limits: Limits,
    runtime: Runtime,
    local_addr: SocketAddr,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen`, and installs the Prometheus recorder when
    /// `config.prometheus` is `None`. On a loopback address with no
    /// [`allowed_hosts`](IngressConfig::allowed_hosts), only requests for
    /// the loopback names are served ([`LOOPBACK_HOSTS`](super::LOOPBACK_HOSTS)).
    ///
    /// # Errors
    ///
    /// [`ServeError::Bind`] when the address cannot be bound,
    /// [`ServeError::Metrics`] when the recorder cannot be installed.
    pub async fn bind(runtime: Runtime, mut config: IngressConfig) -> Result<Server, ServeError> {
        let prometheus = match config.prometheus.take() {
            Some(handle) => handle,
            None => install_prometheus_recorder()?,
        };
        config.prometheus = Some(prometheus.clone());
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        if config.allowed_hosts.is_empty() && local_addr.ip().is_loopback() {
            // Only this machine can connect: only its names are real Hosts
            // (anything else is a page whose name was rebound to loopback).
            config.allowed_hosts = super::config::LOOPBACK_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect();
        }
        let limits = Limits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            drain_timeout: config.drain_timeout,
        };
        let (state, router) = routes(runtime.clone(), config);
        Ok(Server {
            listener,
            limits,
            front: Front::new(state, router),
            runtime,
            local_addr,
            prometheus,
        })
    }

    /// The address the server listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully (see
    /// [`run_until`](Self::run_until)). The signal handlers are registered
    /// when this is called; a program that announces it is ready before
    /// calling it should register them first with [`shutdown_signal`] and
    /// use `run_until`, so that a signal right after the announcement is
    /// not the default one that kills the process.
    ///
    /// # Errors
    ///
    /// [`ServeError::Signal`] when the signal handlers cannot be registered,
    /// else as [`run_until`](Self::run_until).
    pub async fn run(self) -> Result<(), ServeError> {
        let signal = shutdown_signal().map_err(ServeError::Signal)?;
        self.run_until(signal).await
    }

    /// Serves until `shutdown` completes, then: stops accepting connections,
    /// lets the requests in flight finish (idle connections close at once,
    /// egress long-polls answer at once, and connections still busy after
    /// [`IngressConfig::drain_timeout`] are closed), and shuts the runtime
    /// down (within its [`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout)) (it finishes its in-flight invocations
    /// and, in durable mode, closes its data directory). Returns `Ok` when
    /// all of that went cleanly.
    ///
    /// At most [`IngressConfig::max_connections`] connections are served at
    /// once, and each must send a request's headers within
    /// [`IngressConfig::header_read_timeout`] (see the
    /// [module docs](super#hostile-clients)).
    ///
    /// # Errors
    ///
    /// [`ServeError::Runtime`] when the runtime did not shut down cleanly.
    /// Errors of single connections (a client that timed out or reset) are
    /// logged at debug level and do not stop the server; failing to accept
    /// (out of file descriptors) is logged as a warning and retried.
    ///
    /// # Durability
    ///
    /// Every request answered with 200 or 202 was committed before its
    /// answer; requests still in flight at the signal are finished and
    /// answered before this returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let prometheus = self.prometheus;
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                prometheus.run_upkeep();
            }
        });
        let runtime = self.runtime.clone();
        let shutdown = async move {
            shutdown.await;
            // Long-polls answer now, so that the drain does not wait for them.
            runtime.inner().egress.close_readers();
        };
        connections::serve(self.listener, self.front, self.limits, shutdown).await;
        upkeep.abort();
        tracing::info!("HTTP server stopped; shutting down the runtime");
        self.runtime.shutdown().await?;
        Ok(())
    }
}

/// Binds `config.listen` and serves until SIGTERM or Ctrl-C, then shuts down
/// gracefully: [`Server::bind`] then [`Server::run`]. Returns `Ok` after a
/// clean shutdown, so a `main` returning it exits 0.
///
/// # Errors
///
/// As [`Server::bind`] and [`Server::run_until`].
///
/// # Examples
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use statefn::prelude::*;
/// # #[stateful_function]
/// # #[derive(Default, Serialize, Deserialize)]
/// # pub struct Counter { n: u64 }
/// # #[stateful_function]
/// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let runtime = Runtime::builder().data_dir("./data").register::<Counter>().open().await?;
///     statefn::ingress::serve(runtime, Default::default()).await?; // 127.0.0.1:8080
///     Ok(())
/// }
/// ```
pub async fn serve(runtime: Runtime, config: IngressConfig) -> Result<(), ServeError> {
    Server::bind(runtime, config).await?.run().await
}

/// Completes on the first SIGTERM or Ctrl-C (SIGINT). Registers the handlers
/// when called, so call it early and await it later.
///
/// # Errors
///
/// The operating system's error if a handler cannot be registered.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut signals = Signals::register()?;
    Ok(signals.take())
}

/// The registered shutdown signals.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                streams: Some((
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                )),
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The future that completes on the first signal.
    fn take(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        #[cfg(unix)]
        {
            let Some((mut term, mut int)) = self.streams.take() else {
                return Box::pin(std::future::pending());
            };
            Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                }
            })
        }
        #[cfg(not(unix))]
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C: shutting down");
            }
        })
    }
}
