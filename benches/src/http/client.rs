//! A closed-loop HTTP/1.1 load generator: each caller owns one keep-alive
//! connection (hyper's connection-level client, `TCP_NODELAY`) and sends
//! one request at a time on it, so at most `callers` requests are in
//! flight. Nothing is pooled or pipelined: a caller is one client.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, sync::Mutex};

use crate::measure::{BoxError, Summary, Window, closed_loop_per_caller};

/// What every request of a run looks like: `POST path(key)` with `body`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// `{key}` in it is replaced by the key's number.
    pub path_template: String,
    /// Keys are drawn uniformly from `0..keys`.
    pub keys: u64,
    /// The JSON body.
    pub body: Bytes,
}

impl Target {
    fn path(&self, random: u64) -> String {
        let key = random % self.keys.max(1);
        self.path_template.replace("{key}", &key.to_string())
    }
}

type Connection = Arc<Mutex<SendRequest<Full<Bytes>>>>;

/// Opens one connection; its driver runs as a task until the sender drops.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request on `connection`; a non-2xx status is an error, so a run
/// never counts failures as throughput.
async fn request(connection: Connection, target: Arc<Target>, random: u64) -> Result<(), BoxError> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(target.path(random))
        .header(header::HOST, target.addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(target.body.clone()))?;
    // Uncontended: the connection belongs to this caller alone. The lock
    // only makes the sender reachable from a shared closure.
    let mut sender = connection.lock().await;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(())
}

/// Drives `target` with `callers` connections for `window`.
///
/// # Errors
///
/// A failed connect, an I/O error or a non-2xx reply: the run stops there.
pub async fn run(
    target: Target,
    callers: usize,
    window: Window,
    label: &str,
) -> Result<Summary, BoxError> {
    let mut connections = Vec::with_capacity(callers);
    for _ in 0..callers.max(1) {
        connections.push(Arc::new(Mutex::new(connect(target.addr).await?)));
    }
    let connections: Arc<Vec<Connection>> = Arc::new(connections);
    let target = Arc::new(target);
    closed_loop_per_caller(callers, window, label, move |caller, random| {
        let connection = connections.get(caller).cloned();
        let target = Arc::clone(&target);
        async move {
            let connection = connection.ok_or("no connection for the caller")?;
            request(connection, target, random).await
        }
    })
    .await
}
