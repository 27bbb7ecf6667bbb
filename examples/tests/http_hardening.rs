//! The ingress against hostile or careless clients, over raw TCP where a
//! well-behaved HTTP client cannot misbehave enough: headers and bodies
//! dribbled a byte at a time, more connections than the limit, cross-site
//! requests from browsers, pages whose name was rebound to 127.0.0.1,
//! egress reads without the token, and 404s that would list the API.
//!
//! Every wait here is a hang detector, never a speed bound: a slow machine
//! only makes these tests slower.

#![allow(clippy::unwrap_used, unreachable_pub)] // handlers must be `pub`

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::Reply;
use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};
use statefn::{
    ingress::{IngressConfig, ServeError, Server},
    prelude::*,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

/// How long a test waits for something that must happen before it calls it
/// a hang. Generous: only a broken server gets near it.
const HANG_DEADLINE: Duration = Duration::from_secs(60);

/// A switch with a zero-argument mutating handler: the shape a cross-site
/// form post can reach when an empty body skips the content-type check.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Switch {
    flips: u64,
}

#[stateful_function]
impl Switch {
    #[handler]
    pub fn flip(&mut self, ctx: &mut Context) -> u64 {
        self.flips += 1;
        ctx.emit("flips", &self.flips);
        self.flips
    }

    #[handler]
    pub fn flips(&self) -> u64 {
        self.flips
    }
}

/// An ingress served in this process on a free port.
struct Served {
    addr: SocketAddr,
    base: String,
    runtime: Runtime,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<Result<(), ServeError>>,
}

impl Served {
    async fn start(config: IngressConfig) -> Served {
        let runtime = Runtime::builder()
            .in_memory()
            .workers(1)
            .shards(2)
            .register::<Switch>()
            .open()
            .await
            .unwrap();
        let config = IngressConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let server = Server::bind(runtime.clone(), config).await.unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            base: format!("http://{addr}"),
            runtime,
            stop: Some(stop),
            serving,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn flips(&self, id: &str) -> u64 {
        self.runtime.handle::<Switch>(id).flips().await.unwrap()
    }

    /// Stops the server and checks it shut down cleanly.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(HANG_DEADLINE, self.serving)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// A request for `flip` on switch `id` with the given headers and no body.
fn flip_request(id: &str, headers: &str) -> String {
    format!(
        "POST /v1/Switch/{id}/flip HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\n\r\n"
    )
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) off a
/// keep-alive connection; returns its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return head.lines().next().unwrap_or("").to_owned();
            }
        }
        let n = tokio::time::timeout(HANG_DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer before the hang deadline")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `prefix`, then one byte of `dribble` every 100 ms, until the
/// server closes the connection; returns what the server sent. Panics if
/// the connection is still open after [`HANG_DEADLINE`].
async fn dribble_until_closed(addr: SocketAddr, prefix: &[u8], dribble: u8) -> String {
    let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        // A reset instead of a clean close is a close too.
        let _ = read.read_to_end(&mut got).await;
        got
    });
    write.write_all(prefix).await.unwrap();
    let started = Instant::now();
    while !reader.is_finished() {
        assert!(
            started.elapsed() < HANG_DEADLINE,
            "still connected after {HANG_DEADLINE:?} of dribbling"
        );
        if write.write_all(&[dribble]).await.is_err() {
            break; // the server is gone
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = tokio::time::timeout(HANG_DEADLINE, reader)
        .await
        .expect("the connection closes")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_disconnected_after_the_header_timeout() {
    let served = Served::start(IngressConfig {
        header_read_timeout: Duration::from_secs(1),
        ..IngressConfig::default()
    })
    .await;
    // A header line that never ends, a byte at a time.
    let prefix = b"POST /v1/Switch/s/flip HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let answer = dribble_until_closed(served.addr, prefix, b'a').await;
    assert!(!answer.contains(" 200 "), "served: {answer}");
    assert_eq!(served.flips("s").await, 0);

    // The server is still up for clients that send their requests whole.
    let c = reqwest::Client::new();
    let flip = common::post(&c, &served.url("/v1/Switch/s/flip"), None, None).await;
    assert_eq!(flip.status, StatusCode::OK, "{flip:?}");
    served.stop().await;
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_refused_and_its_connection_closed() {
    let served = Served::start(IngressConfig {
        body_read_timeout: Duration::from_secs(1),
        ..IngressConfig::default()
    })
    .await;
    // A body announced at 100 kB and sent at 10 bytes a second.
    let prefix = b"POST /v1/Switch/b/flip HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    let answer = dribble_until_closed(served.addr, prefix, b' ').await;
    // A reset can swallow the 408 before it is read; a closed connection is
    // the behaviour promised either way.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(served.flips("b").await, 0);
    served.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_a_served_one_closes() {
    let served = Served::start(IngressConfig {
        max_connections: 2,
        // Idle connections must stay open for this test.
        header_read_timeout: Duration::from_secs(600),
        ..IngressConfig::default()
    })
    .await;
    let request = flip_request("c", "Content-Type: application/json\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }

    // The third connects (the kernel queues it) and sends its request...
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    // ...while the two served connections go on being served...
    for stream in &mut held {
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_response(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // ...and the third gets nothing.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served past the limit: {early:?}");
    assert_eq!(served.flips("c").await, 4);

    // One closes: the third is served.
    drop(held.pop());
    let answer = read_response(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(served.flips("c").await, 5);
    drop((held, third));
    served.stop().await;
}

#[tokio::test]
async fn calls_need_a_json_content_type_even_without_a_body() {
    let served = Served::start(IngressConfig::default()).await;
    let c = reqwest::Client::new();
    let url = served.url("/v1/Switch/csrf/flip");
    // What a cross-site `<form>` or `fetch(.., {mode: "no-cors"})` can send
    // without asking the server first: no body, or a "simple" content type.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = c.post(&url);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let refused = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {refused:?}"
        );
        assert_eq!(refused.code(), "unsupported_media_type");
        assert!(
            refused.message().contains("application/json"),
            "{refused:?}"
        );
    }
    // `/send` too.
    let send = Reply::from(c.post(format!("{url}/send")).send().await.unwrap()).await;
    assert_eq!(send.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{send:?}");
    assert_eq!(served.flips("csrf").await, 0);

    // With the header, no body still means no arguments.
    let json = Reply::from(
        c.post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((json.status, json.json), (StatusCode::OK, 1.into()));
    served.stop().await;
}

#[tokio::test]
async fn requests_from_browser_origins_not_allowed_are_refused() {
    let served = Served::start(IngressConfig {
        allowed_origins: vec!["https://app.example".into()],
        ..IngressConfig::default()
    })
    .await;
    let c = reqwest::Client::new();
    let url = served.url("/v1/Switch/o/flip");

    // A page on another site posting an empty form: refused before anything runs.
    let evil = Reply::from(
        c.post(&url)
            .header(header::ORIGIN, "https://evil.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN, "{evil:?}");
    assert_eq!(evil.code(), "origin_not_allowed");
    for (origin, method, path) in [
        ("https://evil.example", "POST", "/v1/Switch/o/flip"),
        ("null", "POST", "/v1/Switch/o/flip"),
        (
            "https://app.example.evil.example",
            "POST",
            "/v1/Switch/o/flip",
        ),
        ("http://app.example", "POST", "/v1/Switch/o/flip/send"),
        ("https://evil.example", "GET", "/v1/egress/flips?wait=0ms"),
        ("https://evil.example", "GET", "/metrics"),
    ] {
        let refused = Reply::from(
            c.request(method.parse().unwrap(), served.url(path))
                .header(header::ORIGIN, origin)
                .header(header::CONTENT_TYPE, "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{origin} {method} {path}: {refused:?}"
        );
    }
    assert_eq!(served.flips("o").await, 0);

    // The listed origin (any case) and requests without an Origin are served.
    for origin in [
        Some("https://app.example"),
        Some("HTTPS://App.Example"),
        None,
    ] {
        let mut request = c
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let reply = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin:?}: {reply:?}");
    }
    assert_eq!(served.flips("o").await, 3);
    served.stop().await;
}

#[tokio::test]
async fn by_default_every_browser_origin_is_refused() {
    let served = Served::start(IngressConfig::default()).await;
    let c = reqwest::Client::new();
    let refused = Reply::from(
        c.post(served.url("/v1/Switch/d/flip"))
            .header(header::ORIGIN, "http://127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(served.flips("d").await, 0);
    served.stop().await;
}

/// `method path` with `Host: host`, `Content-Type: application/json` and no
/// `Origin`: what a page does with a same-origin `fetch` (a GET carries no
/// `Origin`).
async fn with_host(served: &Served, method: &str, path: &str, host: &str) -> Reply {
    let c = reqwest::Client::new();
    Reply::from(
        c.request(method.parse().unwrap(), served.url(path))
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// DNS rebinding: a page of `rebound.example`, whose name the attacker
/// then points at 127.0.0.1, calls and reads the local server as its own
/// origin (no CORS, no `Origin` on a GET). Only the `Host` header tells.
#[tokio::test]
async fn a_loopback_server_refuses_requests_for_other_host_names() {
    let served = Served::start(IngressConfig::default()).await;
    let port = served.addr.port();
    let rebound = format!("rebound.example:{port}");
    for (method, path) in [
        ("GET", "/v1/egress/flips?wait=0ms"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/metrics"),
        ("POST", "/v1/Switch/h/flip"),
    ] {
        let refused = with_host(&served, method, path, &rebound).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {refused:?}"
        );
        assert_eq!(refused.code(), "host_not_allowed");
        assert!(refused.message().contains("allowed_hosts"), "{refused:?}");
        assert!(
            refused.message().contains("can allow it ("),
            "the message reads as one sentence: {:?}",
            refused.message()
        );
    }
    assert_eq!(served.flips("h").await, 0);
    // Loopback names, with or without the port, in any case, are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LocalHost".to_owned(),
        format!("[::1]:{port}"),
        format!("app.localhost:{port}"),
    ] {
        let reply = with_host(&served, "POST", "/v1/Switch/h/flip", &host).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {reply:?}");
    }
    assert_eq!(served.flips("h").await, 5);
    served.stop().await;
}

#[tokio::test]
async fn listed_hosts_replace_the_loopback_names() {
    let served = Served::start(IngressConfig {
        allowed_hosts: vec!["api.example".into(), ".svc.example".into()],
        ..IngressConfig::default()
    })
    .await;
    for host in [
        "api.example",
        "API.example:443",
        "cart.svc.example",
        "svc.example",
    ] {
        let reply = with_host(&served, "POST", "/v1/Switch/l/flip", host).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {reply:?}");
    }
    for host in ["localhost", "127.0.0.1", "evil.example", "evilsvc.example"] {
        let refused = with_host(&served, "POST", "/v1/Switch/l/flip", host).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{host}: {refused:?}");
        assert_eq!(refused.code(), "host_not_allowed");
    }
    assert_eq!(served.flips("l").await, 4);
    served.stop().await;
}

#[tokio::test]
async fn egress_reads_need_the_egress_token_when_one_is_configured() {
    let served = Served::start(IngressConfig {
        egress_token: Some("consumer-s3cret".into()),
        admin_token: Some("admin-s3cret".into()),
        ..IngressConfig::default()
    })
    .await;
    let c = reqwest::Client::new();
    common::post(&c, &served.url("/v1/Switch/e/flip"), None, None).await;
    let url = served.url("/v1/egress/flips?wait=0ms");
    for authorization in [
        None,
        Some("Bearer consumer-s3creT"),
        Some("Bearer consumer"),
        Some("Bearer admin-s3cret"),
        Some("Basic consumer-s3cret"),
        Some("consumer-s3cret"),
    ] {
        let mut request = c.get(&url);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let refused = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {refused:?}"
        );
        assert_eq!(refused.code(), "unauthorized");
        assert!(
            refused.headers.contains_key(header::WWW_AUTHENTICATE),
            "{refused:?}"
        );
        assert!(!refused.text.contains("s3cret"), "{refused:?}");
    }
    let read = Reply::from(
        c.get(&url)
            .bearer_auth("consumer-s3cret")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.json["records"][0]["record"], 1, "{read:?}");
    served.stop().await;
}

#[tokio::test]
async fn with_an_admin_token_404s_do_not_list_the_api() {
    let served = Served::start(IngressConfig {
        admin_token: Some("admin-s3cret".into()),
        ..IngressConfig::default()
    })
    .await;
    let c = reqwest::Client::new();
    let no_type = common::post(&c, &served.url("/v1/Swich/x/flip"), None, None).await;
    assert_eq!(no_type.status, StatusCode::NOT_FOUND, "{no_type:?}");
    assert_eq!(no_type.code(), "unknown_function");
    let no_handler = common::post(&c, &served.url("/v1/Switch/x/steal"), None, None).await;
    assert_eq!(no_handler.status, StatusCode::NOT_FOUND, "{no_handler:?}");
    assert_eq!(no_handler.code(), "unknown_handler");
    // The caller's own words come back, the registered names do not.
    assert!(!no_type.text.contains("Switch"), "{no_type:?}");
    assert!(!no_handler.text.contains("flip"), "{no_handler:?}");
    for reply in [&no_type, &no_handler] {
        assert!(reply.json["error"]["details"].is_null(), "{reply:?}");
    }
    assert!(no_handler.message().contains("steal"), "{no_handler:?}");

    // The admin still gets the list.
    let functions = Reply::from(
        c.get(served.url("/admin/functions"))
            .bearer_auth("admin-s3cret")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(functions.status, StatusCode::OK, "{functions:?}");
    assert_eq!(functions.json["functions"][0]["type"], "Switch");
    served.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_404s_list_the_known_types_and_handlers() {
    let served = Served::start(IngressConfig::default()).await;
    let c = reqwest::Client::new();
    let no_type = common::post(&c, &served.url("/v1/Swich/x/flip"), None, None).await;
    assert_eq!(no_type.status, StatusCode::NOT_FOUND, "{no_type:?}");
    assert!(no_type.message().contains("Switch"), "{no_type:?}");
    assert_eq!(no_type.json["error"]["details"]["known"][0], "Switch");
    let no_handler = common::post(&c, &served.url("/v1/Switch/x/steal"), None, None).await;
    assert_eq!(no_handler.status, StatusCode::NOT_FOUND, "{no_handler:?}");
    assert!(no_handler.message().contains("flips"), "{no_handler:?}");
    served.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let served = Served::start(IngressConfig {
        header_read_timeout: Duration::from_secs(1),
        ..IngressConfig::default()
    })
    .await;
    // One that never sends anything, and one idle after an answered request.
    let mut silent = TcpStream::connect(served.addr).await.unwrap();
    let mut kept_alive = TcpStream::connect(served.addr).await.unwrap();
    let request = flip_request("i", "Content-Type: application/json\r\n");
    kept_alive.write_all(request.as_bytes()).await.unwrap();
    let answer = read_response(&mut kept_alive).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for stream in [&mut silent, &mut kept_alive] {
        let mut rest = Vec::new();
        // A reset instead of a clean close is a close too.
        let _ = tokio::time::timeout(HANG_DEADLINE, stream.read_to_end(&mut rest))
            .await
            .expect("closed before the hang deadline");
        assert!(rest.is_empty() || !String::from_utf8_lossy(&rest).contains(" 200 "));
    }
    served.stop().await;
}

/// A client may close its sending side once its request is out (`shutdown
/// (SHUT_WR)`, as `nc -N` and some proxies do): the request is still
/// answered, then the connection closes. Here a status long-poll keeps the
/// request in flight for a second after the client's FIN has arrived. The
/// ingress serves connections with hyper's `half_close`, which also keeps
/// hyper from reading the socket while a request is in flight (that read
/// regrew its read buffer on every request, issue 14).
#[tokio::test]
async fn a_client_that_closes_its_sending_side_still_gets_its_answer() {
    let served = Served::start(IngressConfig::default()).await;
    let sent = reqwest::Client::new()
        .post(served.url("/v1/Switch/h/flip/send?delay=1h"))
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: serde_json::Value = sent.json().await.unwrap();
    let id = sent["invocation_id"].as_str().unwrap();
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let request = format!("GET /v1/invocations/{id}?wait=1s HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    // A reset instead of a clean close would lose the answer: unwrap.
    tokio::time::timeout(HANG_DEADLINE, stream.read_to_end(&mut got))
        .await
        .expect("closed before the hang deadline")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "answered: {got:?}");
    assert!(got.contains(r#""status":"scheduled""#), "{got}");
    served.stop().await;
}
