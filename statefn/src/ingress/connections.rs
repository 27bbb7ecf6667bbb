//! Serving connections with limits: at most `max_connections` at once, each
//! given `header_read_timeout` to send a request's headers, and a graceful
//! drain on shutdown.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header timeout never
//! fires there, and it has no connection limit: a client dribbling headers a
//! byte at a time ("slowloris"), or simply opening connections, could hold
//! file descriptors without end. This accept loop is the small part of
//! `axum::serve` the ingress needs, with both limits.
//!
//! Connections are served half-closed: a client that shuts down its sending
//! side after its request still gets the answer, and hyper does not read
//! the socket while a request is in flight (see `serve`).

use std::{future::Future, sync::Arc, time::Duration};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use super::front::Front;

/// The largest connection limit taken as given: far above any file
/// descriptor limit, and small enough to count in a semaphore.
const MAX_CONNECTIONS_CAP: usize = 1 << 20;

/// How long to pause accepting after an error such as "too many open
/// files", so that the loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What bounds the connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// The most connections served at once (clamped to 1..=2^20).
    pub(super) max_connections: usize,
    /// How long a client has to send a request's headers.
    pub(super) header_read_timeout: Duration,
    /// How long the requests in flight may take to finish after shutdown.
    pub(super) drain_timeout: Duration,
}

/// Accepts and serves connections on `listener` until `shutdown`
/// completes; then stops accepting, lets every connection finish the
/// request it is serving (idle ones close at once), and returns when all
/// are closed, or after `drain_timeout`, closing those still busy.
///
/// A connection past the limit is not accepted until a served one closes:
/// it waits in the kernel's accept queue, and the served ones are not
/// disturbed.
pub(super) async fn serve(
    listener: TcpListener,
    front: Front,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, MAX_CONNECTIONS_CAP);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(());
    let (kill_tx, kill_rx) = watch::channel(());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client that closes its sending side after its request still
        // gets the answer. Without this, hyper reads the socket while a
        // request is in flight to notice such an end, and that read found
        // its buffer shared with the request's headers: a fresh 8 KiB
        // buffer on every request (issue 14). A client that goes away is
        // noticed when its answer is written, as one that stays silent is.
        .half_close(true)
        // Answers are small: one buffer and one `write` (head and body
        // copied together) cost less than queueing the body for `writev`
        // (~400 instructions a request at C=128, issue 14). The bytes sent
        // are the same.
        .writev(false);
    let open = metrics::gauge!(crate::metrics::HTTP_CONNECTIONS);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // closed: not done anywhere
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Per-connection errors (the peer reset before accept)
                    // are worth nothing; running out of descriptors is.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Answers are small and sent whole: do not hold them back.
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), front.clone());
        let mut stop = stop_rx.clone();
        let mut kill = kill_rx.clone();
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection.as_mut() => ended,
                        // Past the drain deadline: dropped, which closes it.
                        _ = kill.changed() => Ok(()),
                    }
                }
            };
            if let Err(error) = ended {
                // A client that timed out, reset or spoke no HTTP: its
                // business, not the server's.
                tracing::debug!(%error, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener); // new connections are refused from here on
    let _ = stop_tx.send(());
    // Every connection holds a permit until it closes.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all)).await;
    if drained.is_err() {
        let busy = max - permits.available_permits();
        tracing::warn!(
            connections = busy,
            timeout = ?limits.drain_timeout,
            "requests still in flight after the drain timeout; closing their connections"
        );
        let _ = kill_tx.send(());
        // Closing is immediate; the bound only guards against a task that
        // is never polled again.
        let _ = tokio::time::timeout(Duration::from_secs(1), permits.acquire_many(all)).await;
    }
}
